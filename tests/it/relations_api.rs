//! The relation questions of `verdict.v1.Authorization` (issue 17) through a real server:
//! CheckRelation with contextual tuples (also from grpcurl, a stock client that knows the API
//! only through reflection), LookupResources and LookupSubjects paged to the end, a cursor
//! resumed after a reload, the client's deadline, and invalid contextual tuples.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use tonic::Code;
use verdict::api::proto;

use crate::common::{self, TestServer, entity, test_config};

const MODEL: &str = "model\n  schema 1.1\n\ntype User\n\ntype Folder\n  relations\n    define viewer: [User]\n\ntype Document\n  relations\n    define parent: [Folder]\n    define editor: [User]\n    define blocked: [User]\n    define viewer: ([User, User:*] or editor or viewer from parent) but not blocked\n";

const DOCS: usize = 23;

fn write_bundle(dir: &Path, extra: &str) {
    std::fs::write(dir.join("model.fga"), MODEL).unwrap();
    let mut tuples: String = (0..DOCS)
        .map(|i| format!("Document::\"d{i:02}\"#parent@Folder::\"f\"\n"))
        .collect();
    tuples.push_str(
        "Folder::\"f\"#viewer@User::\"anne\"\nDocument::\"d05\"#blocked@User::\"anne\"\n",
    );
    for i in 0..7 {
        tuples.push_str(&format!("Document::\"d00\"#editor@User::\"e{i}\"\n"));
    }
    tuples.push_str(extra);
    std::fs::write(dir.join("docs.tuples"), tuples).unwrap();
    std::fs::write(
        dir.join("p.cedar"),
        "permit (principal, action == Action::\"read\", resource is Document)\n\
         when { principal in resource.viewer };",
    )
    .unwrap();
}

fn user(id: &str) -> proto::Subject {
    proto::Subject {
        entity: Some(entity("User", id)),
        relation: String::new(),
        wildcard: false,
    }
}

fn tuple(object: (&str, &str), relation: &str, subject: proto::Subject) -> proto::RelationTuple {
    proto::RelationTuple {
        object: Some(entity(object.0, object.1)),
        relation: relation.to_owned(),
        subject: Some(subject),
    }
}

fn check_relation(
    doc: &str,
    who: &str,
    tuples: Vec<proto::RelationTuple>,
) -> proto::CheckRelationRequest {
    proto::CheckRelationRequest {
        object: Some(entity("Document", doc)),
        relation: "viewer".to_owned(),
        subject: Some(user(who)),
        contextual_tuples: tuples,
        consistency: None,
    }
}

fn resources(who: &str, page_size: u32, cursor: &str) -> proto::LookupResourcesRequest {
    proto::LookupResourcesRequest {
        subject: Some(user(who)),
        relation: "viewer".to_owned(),
        resource_type: "Document".to_owned(),
        contextual_tuples: Vec::new(),
        page_size,
        cursor: cursor.to_owned(),
        consistency: None,
    }
}

#[tokio::test]
async fn check_relation_sees_contextual_tuples_for_that_request_only() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), "");
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let answer = |r: Result<tonic::Response<proto::CheckRelationResponse>, tonic::Status>| {
        r.unwrap().into_inner().allowed
    };
    assert!(answer(
        client
            .check_relation(check_relation("d01", "anne", vec![]))
            .await
    ));
    assert!(!answer(
        client
            .check_relation(check_relation("d05", "anne", vec![]))
            .await
    ));
    assert!(!answer(
        client
            .check_relation(check_relation("x", "bob", vec![]))
            .await
    ));
    let grant = vec![
        tuple(
            ("Document", "x"),
            "parent",
            proto::Subject {
                entity: Some(entity("Folder", "g")),
                relation: String::new(),
                wildcard: false,
            },
        ),
        tuple(("Folder", "g"), "viewer", user("bob")),
    ];
    assert!(answer(
        client
            .check_relation(check_relation("x", "bob", grant.clone()))
            .await
    ));
    assert!(!answer(
        client
            .check_relation(check_relation("x", "bob", vec![]))
            .await
    ));

    // Check sees them too: Cedar's `principal in resource.viewer` follows the model.
    let mut request = common::check(("User", "bob"), "read", ("Document", "x"), json!({}));
    request.contextual_tuples = grant;
    let decision = client.check(request).await.unwrap().into_inner().decision;
    assert_eq!(decision, common::ALLOW);
    server.stop().await;
}

#[tokio::test]
async fn contextual_tuples_the_model_refuses_are_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), "");
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    for bad in [
        tuple(("Document", "x"), "owner", user("bob")),
        tuple(("Document", "x"), "parent", user("bob")),
        tuple(("Nope", "x"), "viewer", user("bob")),
    ] {
        let status = client
            .check_relation(check_relation("x", "bob", vec![bad.clone()]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with("contextual_tuples[0]"),
            "{status:?}"
        );
        let mut request = common::check(("User", "bob"), "read", ("Document", "x"), json!({}));
        request.contextual_tuples = vec![bad];
        let status = client.check(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    server.stop().await;
}

async fn all_resources(
    client: &mut proto::authorization_client::AuthorizationClient<tonic::transport::Channel>,
    who: &str,
    page_size: u32,
) -> (Vec<String>, usize) {
    let mut stream = client
        .lookup_resources(resources(who, page_size, ""))
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    let mut pages = 0;
    while let Some(page) = stream.message().await.unwrap() {
        assert!(page.resource_ids.len() <= page_size as usize);
        ids.extend(page.resource_ids);
        pages += 1;
    }
    (ids, pages)
}

#[tokio::test]
async fn lookups_stream_small_pages_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), "");
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let (ids, pages) = all_resources(&mut client, "anne", 4).await;
    let expected: Vec<String> = (0..DOCS)
        .filter(|i| *i != 5)
        .map(|i| format!("d{i:02}"))
        .collect();
    assert_eq!(ids, expected);
    assert!(pages >= 6, "{pages} pages");

    let mut stream = client
        .lookup_subjects(proto::LookupSubjectsRequest {
            object: Some(entity("Document", "d00")),
            relation: "viewer".to_owned(),
            subject_type: "User".to_owned(),
            subject_relation: String::new(),
            contextual_tuples: Vec::new(),
            page_size: 2,
            cursor: String::new(),
            consistency: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut subjects = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        assert!(page.subjects.len() <= 2);
        subjects.extend(page.subjects.into_iter().map(|s| s.entity.unwrap().id));
    }
    let mut expected: Vec<String> = (0..7).map(|i| format!("e{i}")).collect();
    expected.insert(0, "anne".to_owned());
    assert_eq!(subjects, expected);
    server.stop().await;
}

#[tokio::test]
async fn a_cursor_resumed_after_a_reload_is_failed_precondition_never_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), "");
    let server = TestServer::start_with(test_config(dir.path())).await;
    let mut client = server.client().await;
    let mut stream = client
        .lookup_resources(resources("anne", 3, ""))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    drop(stream);
    let old = first.snapshot_version.clone();
    assert!(!first.next_cursor.is_empty());

    write_bundle(dir.path(), "Document::\"d01a\"#viewer@User::\"anne\"\n");
    let started = Instant::now();
    loop {
        let version = server
            .snapshots
            .load()
            .unwrap()
            .snapshot
            .served_version()
            .to_owned();
        if version != old {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Err(status) = client
        .lookup_resources(resources("anne", 3, &first.next_cursor))
        .await
    else {
        panic!("a stale cursor is refused");
    };
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let (ids, _) = all_resources(&mut client, "anne", 3).await;
    assert!(ids.contains(&"d01a".to_owned()));
    server.stop().await;
}

#[tokio::test]
async fn a_lookup_past_its_deadline_is_deadline_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), "");
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(resources("anne", 1, ""));
    // Already past when the server starts its first page.
    request
        .metadata_mut()
        .insert("grpc-timeout", "1n".parse().unwrap());
    let outcome = client.lookup_resources(request).await;
    let code = match outcome {
        Err(status) => status.code(),
        Ok(response) => {
            let mut stream = response.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("the stream ended without an error"),
                    Err(status) => break status.code(),
                }
            }
        }
    };
    // Verdict ends a lookup whose deadline passed with DEADLINE_EXCEEDED; a deadline that
    // passes before the handler runs is answered by tonic's own timeout, CANCELLED.
    assert!(
        matches!(code, Code::DeadlineExceeded | Code::Cancelled),
        "{code:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn grpcurl_checks_a_relation_with_contextual_tuples_through_reflection() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), "");
    let server = TestServer::start(dir.path()).await;
    let addr = server.addr.to_string();
    let body = r#"{"object": {"type": "Document", "id": "x"}, "relation": "viewer",
        "subject": {"entity": {"type": "User", "id": "bob"}},
        "contextual_tuples": [{"object": {"type": "Document", "id": "x"}, "relation": "editor",
                               "subject": {"entity": {"type": "User", "id": "bob"}}}]}"#;
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || {
        crate::stock_clients::run_grpcurl(&[
            "-plaintext",
            "-d",
            body,
            &addr,
            "verdict.v1.Authorization/CheckRelation",
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["allowed"], true, "{stdout}");
    server.stop().await;
}

#[test]
fn http_routes_answer_the_relation_questions_page_by_page() {
    use crate::common::http1::post_json;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), "");
    let mut config = test_config(dir.path());
    config.http.addr = Some("127.0.0.1:0".parse().unwrap());
    let server = runtime.block_on(TestServer::start_with(config));
    let addr = server.api_addr.unwrap();

    let asked = json!({
        "object": {"type": "Document", "id": "x"}, "relation": "viewer",
        "subject": {"entity": {"type": "User", "id": "bob"}},
        "contextualTuples": [{"object": {"type": "Document", "id": "x"}, "relation": "editor",
                              "subject": {"entity": {"type": "User", "id": "bob"}}}]
    });
    let response = post_json(addr, "/v1/check-relation", &asked);
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.json()["allowed"], true);
    let bad = json!({
        "object": {"type": "Document", "id": "x"}, "relation": "viewer",
        "subject": {"entity": {"type": "User", "id": "bob"}},
        "contextual_tuples": [{"object": {"type": "Document", "id": "x"}, "relation": "owner",
                               "subject": {"entity": {"type": "User", "id": "bob"}}}]
    });
    assert_eq!(post_json(addr, "/v1/check-relation", &bad).status, 400);

    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let response = post_json(
            addr,
            "/v1/lookup-resources",
            &json!({"subject": {"entity": {"type": "User", "id": "anne"}}, "relation": "viewer",
                    "resourceType": "Document", "pageSize": 5, "cursor": cursor}),
        );
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        let page = response.json();
        for id in page["resourceIds"].as_array().unwrap() {
            ids.push(id.as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(ids.len(), DOCS - 1);

    let response = post_json(
        addr,
        "/v1/lookup-subjects",
        &json!({"object": {"type": "Document", "id": "d00"}, "relation": "viewer",
                "subjectType": "User"}),
    );
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.json()["subjects"].as_array().unwrap().len(), 8);
    runtime.block_on(server.stop());
}

#[test]
fn the_cli_asks_the_three_questions_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), "");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_verdict"))
            .arg("relation")
            .args(args)
            .arg("--policies")
            .arg(dir.path())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(&["check", "Document::\"d01\"", "viewer", "User::\"anne\""]);
    assert_eq!((code, out.trim()), (Some(0), "allowed"));
    let (code, out, _) = run(&["check", "Document::\"d05\"", "viewer", "User::\"anne\""]);
    assert_eq!((code, out.trim()), (Some(2), "denied"));
    let (code, out, _) = run(&[
        "check",
        "Document::\"x\"",
        "viewer",
        "User::\"bob\"",
        "--tuple",
        "Document::\"x\"#editor@User::\"bob\"",
    ]);
    assert_eq!((code, out.trim()), (Some(0), "allowed"));
    let (code, out, _) = run(&["lookup-resources", "User::\"anne\"", "viewer", "Document"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), DOCS - 1);
    assert!(out.starts_with("Document::\"d00\"\n"), "{out}");
    let (code, out, _) = run(&["lookup-subjects", "Document::\"d00\"", "viewer", "User"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 8, "{out}");
    let (code, _, err) = run(&["check", "Document::\"x\"", "owner", "User::\"bob\""]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("owner"), "{err}");
}
