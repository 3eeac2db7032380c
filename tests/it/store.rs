//! The relationship store (issue #19) against a real PostgreSQL (see `common/postgres.rs`),
//! through real servers and a real gRPC client: writes, consistency tokens, atomic batches,
//! preconditions, the bundle's own tuples, paged reads, resumable watches, replicas in step,
//! and the database going away and coming back.
//!
//! No test sleeps to synchronize: each waits for a condition (a revision applied, a status
//! seen) with a generous bound, and consistency tokens make "a check sees a write" a
//! guarantee rather than a race.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;
use crate::common::postgres;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{ALLOW, DENY, TestServer, entity};
use tonic::Code;
use tonic::transport::Channel;
use verdict::api::proto::{
    self, Consistency, Operation, RelationTuple, RelationshipUpdate, Subject,
    WriteRelationshipsRequest, relationships_client::RelationshipsClient,
};
use verdict::config::{StoreArgs, ValidConfig};
use verdict::reload::Reloader;
use verdict::serving::SnapshotHandle;

/// Generous bound for anything a test waits for.
const PATIENCE: Duration = Duration::from_secs(60);

/// A bundle: a schema, a policy (viewers read) and one file tuple (alice views d1).
fn bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("schema.cedarschema"),
        "entity User;\nentity Team { member: Verdict::Userset };\n\
         entity Doc { viewer: Verdict::Userset };\n\
         action read appliesTo { principal: User, resource: Doc };\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("docs.cedar"),
        "@id(\"viewers-read\")\npermit (principal, action == Action::\"read\", resource is Doc)\n\
         when { principal in resource.viewer };\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("docs.tuples"),
        "Doc::\"d1\"#viewer@User::\"alice\"\n",
    )
    .unwrap();
    dir
}

/// The serve configuration for `bundle` with the store at `url`: quick polling, readiness
/// failing as soon as the store is unreachable, the HTTP port on.
fn store_config(bundle: &Path, url: &str, extra: &[&str]) -> ValidConfig {
    use clap::{Args, FromArgMatches};
    let mut config = common::test_config(bundle);
    let command =
        StoreArgs::augment_args(clap::Command::new("verdict")).mut_args(|arg| arg.env(None));
    let mut args = vec![
        "verdict",
        "--store-url",
        url,
        "--migrate",
        "--store-poll-interval",
        "200ms",
        "--store-max-staleness",
        "0s",
        "--store-consistency-timeout",
        "20s",
    ];
    args.extend_from_slice(extra);
    let matches = command.try_get_matches_from(args).unwrap();
    config.store = StoreArgs::from_arg_matches(&matches)
        .unwrap()
        .validate()
        .unwrap();
    config.telemetry.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    config
}

/// Starts a replica on the store, the way `verdict serve` does, once the schema is migrated,
/// and waits until it serves (bundle and store loaded).
async fn replica(config: ValidConfig) -> TestServer {
    let store = config.store.clone().unwrap();
    verdict::store::migrate(&store.connection).await.unwrap();
    let snapshots = Arc::new(SnapshotHandle::with_relationship_store());
    let reloader = Reloader::new(
        &config.policies,
        config.load_options(),
        config.reload.max_drop,
        Arc::clone(&snapshots),
    );
    reloader.load_initial();
    let server = TestServer::serve(config, snapshots, reloader).await;
    wait_until("the replica serves", || server.snapshots.load().is_some()).await;
    server
}

/// Waits for `condition`, checking every few milliseconds, for at most [`PATIENCE`].
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn relationships(server: &TestServer) -> RelationshipsClient<Channel> {
    RelationshipsClient::new(server.channel().await)
}

fn user(id: &str) -> Subject {
    Subject {
        entity: Some(entity("User", id)),
        relation: String::new(),
        wildcard: false,
    }
}

fn tuple(object: (&str, &str), relation: &str, subject: Subject) -> RelationTuple {
    RelationTuple {
        object: Some(entity(object.0, object.1)),
        relation: relation.to_owned(),
        subject: Some(subject),
    }
}

fn viewer(doc: &str, who: &str) -> RelationTuple {
    tuple(("Doc", doc), "viewer", user(who))
}

fn write(tuple: RelationTuple) -> RelationshipUpdate {
    RelationshipUpdate {
        operation: Operation::Write as i32,
        tuple: Some(tuple),
    }
}

fn delete(tuple: RelationTuple) -> RelationshipUpdate {
    RelationshipUpdate {
        operation: Operation::Delete as i32,
        tuple: Some(tuple),
    }
}

fn batch(updates: Vec<RelationshipUpdate>) -> WriteRelationshipsRequest {
    WriteRelationshipsRequest {
        updates,
        ..WriteRelationshipsRequest::default()
    }
}

fn at_least_as_fresh(token: &str) -> Option<Consistency> {
    Some(Consistency {
        requirement: Some(proto::consistency::Requirement::AtLeastAsFresh(
            token.to_owned(),
        )),
    })
}

/// Whether `who` may read `doc`, answered at least as fresh as `token` (when given).
async fn reads(server: &TestServer, who: &str, doc: &str, token: Option<&str>) -> bool {
    let mut request = common::check(("User", who), "read", ("Doc", doc), serde_json::json!({}));
    request.consistency = token.and_then(at_least_as_fresh);
    let response = server
        .client()
        .await
        .check(request)
        .await
        .unwrap()
        .into_inner();
    assert!(
        response.decision == ALLOW || response.decision == DENY,
        "{response:?}"
    );
    response.decision == ALLOW
}

/// Every tuple the store holds, read a page at a time, as canonical text, sorted.
async fn read_all(server: &TestServer, page_size: u32) -> Vec<String> {
    let mut client = relationships(server).await;
    let mut cursor = String::new();
    let mut all = Vec::new();
    // Bounded: a page is at least one tuple, and the store holds finitely many.
    for _ in 0..100_000 {
        let page = client
            .read_relationships(proto::ReadRelationshipsRequest {
                filter: None,
                page_size,
                cursor: cursor.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.tuples.iter().map(text));
        if page.next_cursor.is_empty() {
            all.sort();
            return all;
        }
        cursor = page.next_cursor;
    }
    panic!("the read did not end");
}

/// The services reflection (v1) lists, sorted.
async fn listed_services(server: &TestServer) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    match stream.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("unexpected {other:?}"),
    }
}

const SERVICES_WITHOUT_STORE: [&str; 4] = [
    "envoy.service.auth.v3.Authorization",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "verdict.v1.Authorization",
];

fn text(tuple: &RelationTuple) -> String {
    let object = tuple.object.as_ref().unwrap();
    let subject = tuple.subject.as_ref().unwrap();
    let subject_entity = subject.entity.as_ref().unwrap();
    let subject_text = if subject.wildcard {
        format!("{}::*", subject_entity.r#type)
    } else if subject.relation.is_empty() {
        format!("{}::{:?}", subject_entity.r#type, subject_entity.id)
    } else {
        format!(
            "{}::{:?}#{}",
            subject_entity.r#type, subject_entity.id, subject.relation
        )
    };
    format!(
        "{}::{:?}#{}@{subject_text}",
        object.r#type, object.id, tuple.relation
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_seen_by_a_check_that_carries_its_token() {
    let pg = postgres::Postgres::start();
    let dir = bundle();
    let server = replica(store_config(dir.path(), &pg.url(), &[])).await;
    assert!(!reads(&server, "bob", "d1", None).await);
    // Reflection lists the Relationships service beside the others.
    let mut expected = SERVICES_WITHOUT_STORE.to_vec();
    expected.push("verdict.v1.Relationships");
    expected.sort_unstable();
    assert_eq!(listed_services(&server).await, expected);
    // gRPC health reports SERVING once the store's first state is in (no bundle reload says so).
    let (mut health, mut status) = server.watch_health().await;
    while status.status != tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        status = tokio::time::timeout(PATIENCE, health.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    let written = relationships(&server)
        .await
        .write_relationships(batch(vec![write(viewer("d1", "bob"))]))
        .await
        .unwrap()
        .into_inner()
        .written_at;
    assert!(reads(&server, "bob", "d1", Some(&written)).await);
    // The bundle's own tuple still answers: one graph.
    assert!(reads(&server, "alice", "d1", Some(&written)).await);
    // The answer names the bundle version and the store revision.
    let mut request = common::check(
        ("User", "bob"),
        "read",
        ("Doc", "d1"),
        serde_json::json!({}),
    );
    request.consistency = at_least_as_fresh(&written);
    let response = server
        .client()
        .await
        .check(request)
        .await
        .unwrap()
        .into_inner();
    assert!(
        response.snapshot_version.ends_with(&format!("@{written}")),
        "{} vs {written}",
        response.snapshot_version
    );

    // A delete takes it away again.
    let deleted = relationships(&server)
        .await
        .write_relationships(batch(vec![delete(viewer("d1", "bob"))]))
        .await
        .unwrap()
        .into_inner()
        .written_at;
    assert!(!reads(&server, "bob", "d1", Some(&deleted)).await);

    // A token that is not one is refused, naming the field.
    let mut request = common::check(
        ("User", "bob"),
        "read",
        ("Doc", "d1"),
        serde_json::json!({}),
    );
    request.consistency = at_least_as_fresh("yesterday");
    let status = server.client().await.check(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("consistency.at_least_as_fresh:"),
        "{}",
        status.message()
    );
    server.stop().await;
}

/// A second replica that is its own `verdict serve` process (the real binary, configured by
/// flags alone) on the same database: a check with the write's token sees it; one with
/// `minimize_latency` answers from whatever it has, never an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_verdict_process_sees_a_write_through_its_token() {
    let pg = postgres::Postgres::start();
    let dir = bundle();
    let writer = replica(store_config(dir.path(), &pg.url(), &[])).await;
    let url = pg.url();
    let other = common::process::Verdict::start(
        dir.path(),
        &[
            "--store-url",
            &url,
            "--store-poll-interval",
            "200ms",
            "--store-consistency-timeout",
            "20s",
        ],
    );
    let started = std::time::Instant::now();
    while common::process::try_http_get(other.metrics, "/readyz").map(|(status, _)| status)
        != Some(200)
    {
        assert!(
            started.elapsed() < PATIENCE,
            "the second process never got ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = other.client_async().await;
    let mut writes = relationships(&writer).await;
    for i in 0..20 {
        let doc = format!("p{i}");
        let token = writes
            .write_relationships(batch(vec![write(viewer(&doc, "bob"))]))
            .await
            .unwrap()
            .into_inner()
            .written_at;
        let mut request = common::check(
            ("User", "bob"),
            "read",
            ("Doc", &doc),
            serde_json::json!({}),
        );
        request.consistency = Some(Consistency {
            requirement: Some(proto::consistency::Requirement::MinimizeLatency(true)),
        });
        let quick = client.check(request.clone()).await.unwrap().into_inner();
        assert!(
            quick.decision == ALLOW || quick.decision == DENY,
            "{quick:?}"
        );
        request.consistency = at_least_as_fresh(&token);
        let fresh = client.check(request).await.unwrap().into_inner();
        assert_eq!(fresh.decision, ALLOW, "{fresh:?}");
        let served = verdict_core::store::ConsistencyToken::parse(&fresh.snapshot_version).unwrap();
        let wanted = verdict_core::store::ConsistencyToken::parse(&token).unwrap();
        assert!(
            served >= wanted,
            "{} answered for {token}",
            fresh.snapshot_version
        );
    }
    // A delete through the first is seen by the second the same way.
    let token = writes
        .write_relationships(batch(vec![delete(viewer("p0", "bob"))]))
        .await
        .unwrap()
        .into_inner()
        .written_at;
    let mut request = common::check(
        ("User", "bob"),
        "read",
        ("Doc", "p0"),
        serde_json::json!({}),
    );
    request.consistency = at_least_as_fresh(&token);
    assert_eq!(
        client.check(request).await.unwrap().into_inner().decision,
        DENY
    );
    other.stop();
    writer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_bad_item_changes_nothing() {
    let pg = postgres::Postgres::start();
    let dir = bundle();
    let server = replica(store_config(dir.path(), &pg.url(), &[])).await;
    let mut client = relationships(&server).await;

    // Invalid: a relation the schema does not declare, and an entity type it does not know.
    let status = client
        .write_relationships(batch(vec![
            write(viewer("d2", "bob")),
            write(tuple(("Doc", "d2"), "editor", user("bob"))),
            write(tuple(("Robot", "r"), "viewer", user("bob"))),
        ]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let message = status.message();
    assert!(
        message.contains("updates[1].tuple: relation `editor` of `Doc` is not declared")
            && message.contains("updates[2].tuple: entity type `Robot` is not declared"),
        "{message}"
    );
    assert!(!message.contains("updates[0]"), "{message}");
    assert!(read_all(&server, 100).await.is_empty());

    // Valid items, but one deletes a tuple that does not exist: the database refuses it, and
    // the write in the same batch is rolled back.
    let status = client
        .write_relationships(batch(vec![
            write(viewer("d2", "bob")),
            delete(viewer("d2", "carol")),
        ]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().starts_with("updates[1]:"),
        "{}",
        status.message()
    );
    assert!(read_all(&server, 100).await.is_empty());

    // The same tuple twice in a batch is refused.
    let status = client
        .write_relationships(batch(vec![
            write(viewer("d2", "bob")),
            delete(viewer("d2", "bob")),
        ]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("the same tuple as updates[0]"),
        "{}",
        status.message()
    );

    // Writing what exists is ALREADY_EXISTS, unless told to ignore it.
    client
        .write_relationships(batch(vec![write(viewer("d2", "bob"))]))
        .await
        .unwrap();
    let status = client
        .write_relationships(batch(vec![
            write(viewer("d2", "bob")),
            write(viewer("d3", "bob")),
        ]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(read_all(&server, 100).await.len(), 1);
    client
        .write_relationships(WriteRelationshipsRequest {
            ignore_existing: true,
            ..batch(vec![write(viewer("d2", "bob")), write(viewer("d3", "bob"))])
        })
        .await
        .unwrap();
    assert_eq!(read_all(&server, 100).await.len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preconditions_and_the_bundles_own_tuples_guard_writes() {
    let pg = postgres::Postgres::start();
    let dir = bundle();
    let server = replica(store_config(dir.path(), &pg.url(), &[])).await;
    let mut client = relationships(&server).await;
    let must =
        |requirement: proto::precondition::Requirement, tuple: RelationTuple| proto::Precondition {
            requirement: requirement as i32,
            tuple: Some(tuple),
        };
    use proto::precondition::Requirement::{MustExist, MustNotExist};

    let status = client
        .write_relationships(WriteRelationshipsRequest {
            preconditions: vec![must(MustExist, viewer("d5", "carol"))],
            ..batch(vec![write(viewer("d5", "bob"))])
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "preconditions[0]: the tuple does not exist"
    );
    client
        .write_relationships(WriteRelationshipsRequest {
            preconditions: vec![must(MustNotExist, viewer("d5", "carol"))],
            ..batch(vec![write(viewer("d5", "carol"))])
        })
        .await
        .unwrap();
    let status = client
        .write_relationships(WriteRelationshipsRequest {
            preconditions: vec![must(MustNotExist, viewer("d5", "carol"))],
            ..batch(vec![write(viewer("d5", "bob"))])
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    // A bundle tuple exists for preconditions.
    client
        .write_relationships(WriteRelationshipsRequest {
            preconditions: vec![must(MustExist, viewer("d1", "alice"))],
            ..batch(vec![write(viewer("d5", "bob"))])
        })
        .await
        .unwrap();

    // The bundle's own tuple can be neither written nor deleted through the API.
    for update in [write(viewer("d1", "alice")), delete(viewer("d1", "alice"))] {
        let status = client
            .write_relationships(batch(vec![update]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .contains("is defined by the bundle's tuple files; change it there"),
            "{}",
            status.message()
        );
    }
    assert!(reads(&server, "alice", "d1", None).await);

    // A check key may not write: writes are an admin operation (tests/it/auth.rs covers keys in
    // general; here, the path's role).
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_filter_and_page_through_the_store() {
    let pg = postgres::Postgres::start();
    let dir = bundle();
    let server = replica(store_config(dir.path(), &pg.url(), &[])).await;
    let mut client = relationships(&server).await;
    let mut updates: Vec<RelationshipUpdate> = (0..25)
        .map(|i| write(viewer(&format!("doc-{i:02}"), "bob")))
        .collect();
    updates.push(write(tuple(("Doc", "doc-00"), "viewer", user("carol"))));
    updates.push(write(tuple(
        ("Doc", "doc-00"),
        "viewer",
        Subject {
            entity: Some(entity("Team", "eng")),
            relation: "member".to_owned(),
            wildcard: false,
        },
    )));
    updates.push(write(tuple(
        ("Doc", "doc-01"),
        "viewer",
        Subject {
            entity: Some(entity("User", "")),
            relation: String::new(),
            wildcard: true,
        },
    )));
    client.write_relationships(batch(updates)).await.unwrap();

    // Every page size reads the same 28 tuples, each once.
    let all = read_all(&server, 1000).await;
    assert_eq!(all.len(), 28);
    for page_size in [1, 7, 28] {
        assert_eq!(
            read_all(&server, page_size).await,
            all,
            "page size {page_size}"
        );
    }
    let filtered = |filter: proto::RelationshipFilter| {
        let mut client = client.clone();
        async move {
            client
                .read_relationships(proto::ReadRelationshipsRequest {
                    filter: Some(filter),
                    page_size: 100,
                    cursor: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .tuples
                .iter()
                .map(text)
                .collect::<Vec<_>>()
        }
    };
    let doc_00 = filtered(proto::RelationshipFilter {
        object_type: "Doc".to_owned(),
        object_id: "doc-00".to_owned(),
        ..Default::default()
    })
    .await;
    assert_eq!(doc_00.len(), 3, "{doc_00:?}");
    let carol = filtered(proto::RelationshipFilter {
        subject_type: "User".to_owned(),
        subject_id: "carol".to_owned(),
        ..Default::default()
    })
    .await;
    assert_eq!(carol, [r##"Doc::"doc-00"#viewer@User::"carol""##]);
    let wildcards = filtered(proto::RelationshipFilter {
        subject_id: "*".to_owned(),
        ..Default::default()
    })
    .await;
    assert_eq!(wildcards, [r##"Doc::"doc-01"#viewer@User::*"##]);
    let usersets = filtered(proto::RelationshipFilter {
        subject_relation: "member".to_owned(),
        ..Default::default()
    })
    .await;
    assert_eq!(usersets, [r##"Doc::"doc-00"#viewer@Team::"eng"#member"##]);

    let status = client
        .read_relationships(proto::ReadRelationshipsRequest {
            filter: None,
            page_size: 10,
            cursor: "not-a-cursor".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("cursor:"),
        "{}",
        status.message()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_watch_gets_exactly_the_changes_after_its_revision() {
    let pg = postgres::Postgres::start();
    let dir = bundle();
    let server = replica(store_config(dir.path(), &pg.url(), &[])).await;
    let mut client = relationships(&server).await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        let written = client
            .write_relationships(batch(vec![
                write(viewer(&format!("w{i}"), "bob")),
                write(viewer(&format!("w{i}"), "carol")),
            ]))
            .await
            .unwrap()
            .into_inner()
            .written_at;
        tokens.push(written);
    }
    // Resume after the second write: the third, fourth and fifth, in order, whole.
    let mut stream = client
        .watch_relationships(proto::WatchRelationshipsRequest {
            after: tokens[1].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    for (i, token) in tokens.iter().enumerate().skip(2) {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(&message.changes_through, token);
        let texts: Vec<String> = message
            .updates
            .iter()
            .map(|u| {
                assert_eq!(u.operation, Operation::Write as i32);
                text(u.tuple.as_ref().unwrap())
            })
            .collect();
        assert_eq!(
            texts,
            [
                format!("Doc::\"w{i}\"#viewer@User::\"bob\""),
                format!("Doc::\"w{i}\"#viewer@User::\"carol\"")
            ]
        );
    }
    // A change made while watching arrives next, and only it.
    let later = client
        .write_relationships(batch(vec![delete(viewer("w0", "bob"))]))
        .await
        .unwrap()
        .into_inner()
        .written_at;
    let message = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(message.changes_through, later);
    assert_eq!(message.updates.len(), 1);
    assert_eq!(message.updates[0].operation, Operation::Delete as i32);

    // Once the log is collected past a revision, a watch from it is refused, not silently
    // short; a new replica starting now loads the whole store and agrees.
    let store = verdict::store::Store::new(server_store_config(&pg)).unwrap();
    store.collect_garbage(Duration::ZERO).await.unwrap();
    let status = client
        .watch_relationships(proto::WatchRelationshipsRequest {
            after: tokens[0].clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange);
    let second = replica(store_config(dir.path(), &pg.url(), &[])).await;
    assert_eq!(read_all(&second, 100).await, read_all(&server, 100).await);
    assert!(reads(&second, "carol", "w0", Some(&later)).await);
    assert!(!reads(&second, "bob", "w0", Some(&later)).await);
    second.stop().await;
    server.stop().await;
}

/// Writes 40 batches through `server` (every third also deletes an earlier tuple) and returns
/// the last token.
async fn writer(server: &TestServer, name: &str) -> String {
    let mut client = relationships(server).await;
    let mut last = String::new();
    for i in 0..40 {
        let mut updates = vec![write(viewer(&format!("{name}-{i}"), "bob"))];
        if i % 3 == 2 {
            updates.push(delete(viewer(&format!("{name}-{}", i - 2), "bob")));
        }
        last = client
            .write_relationships(batch(updates))
            .await
            .unwrap()
            .into_inner()
            .written_at;
    }
    last
}

/// Checks through `server` with `minimize_latency`: may or may not see a write yet, never an
/// error.
async fn checker(server: &TestServer) {
    let mut client = server.client().await;
    for i in 0..40 {
        let request = common::check(
            ("User", "bob"),
            "read",
            ("Doc", &format!("a-{i}")),
            serde_json::json!({}),
        );
        client.check(request).await.unwrap();
    }
}

fn server_store_config(pg: &postgres::Postgres) -> verdict::config::StoreConfig {
    let dir = bundle();
    store_config(dir.path(), &pg.url(), &[]).store.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_under_concurrent_writes_end_with_the_same_graph() {
    let pg = postgres::Postgres::start();
    let dir = bundle();
    let first = replica(store_config(dir.path(), &pg.url(), &[])).await;
    let second = replica(store_config(dir.path(), &pg.url(), &[])).await;

    // Two writers (one per replica) and checks on both, for a bounded number of rounds.
    let (last_a, last_b, (), ()) = tokio::join!(
        writer(&first, "a"),
        writer(&second, "b"),
        checker(&first),
        checker(&second)
    );
    // Both replicas reach the later of the two last writes, and hold what the database holds.
    let newest = std::cmp::max(last_a, last_b);
    assert!(reads(&first, "alice", "d1", Some(&newest)).await);
    assert!(reads(&second, "alice", "d1", Some(&newest)).await);
    let database = read_all(&first, 1000).await;
    // 80 written, 26 deleted.
    assert_eq!(database.len(), 80 - 26);
    let head: u64 = pg
        .psql("SELECT revision FROM verdict_head")
        .parse()
        .unwrap();
    for server in [&first, &second] {
        assert_eq!(server.snapshots.applied_revision(), Some(head));
        let served = server.snapshots.load().unwrap();
        // The store's tuples plus the bundle's one.
        assert_eq!(served.snapshot.tuple_count(), database.len() + 1);
        for tuple in &database {
            let tuple = verdict_core::relations::parse_tuple_line(tuple)
                .unwrap()
                .unwrap();
            assert!(served.snapshot.tuples().contains(&tuple), "{tuple}");
        }
    }
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_checks_go_on_writes_are_unavailable_and_it_catches_up() {
    let pg = postgres::Postgres::start();
    let dir = bundle();
    let server = replica(store_config(dir.path(), &pg.url(), &[])).await;
    let http = server.http_addr.unwrap();
    let written = relationships(&server)
        .await
        .write_relationships(batch(vec![write(viewer("d1", "bob"))]))
        .await
        .unwrap()
        .into_inner()
        .written_at;
    assert!(reads(&server, "bob", "d1", Some(&written)).await);
    assert_eq!(common::http_get(http, "/readyz").await.0, 200);

    pg.stop();
    // Readiness reports it (the follower's connection drops at once); checks keep the last
    // applied revision.
    let mut ready = 200;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while ready == 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        ready = common::http_get(http, "/readyz").await.0;
    }
    let (status, body) = common::http_get(http, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("relationship store is unreachable"), "{body}");
    for _ in 0..20 {
        assert!(reads(&server, "bob", "d1", None).await);
        assert!(reads(&server, "alice", "d1", None).await);
    }
    let status = relationships(&server)
        .await
        .write_relationships(batch(vec![write(viewer("d1", "carol"))]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // A token the replica already has is still honoured; fully_consistent cannot be.
    assert!(reads(&server, "bob", "d1", Some(&written)).await);
    let mut request = common::check(
        ("User", "bob"),
        "read",
        ("Doc", "d1"),
        serde_json::json!({}),
    );
    request.consistency = Some(Consistency {
        requirement: Some(proto::consistency::Requirement::FullyConsistent(true)),
    });
    let status = server.client().await.check(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    pg.restart();
    // Writes work again (the pool reconnects), and the replica catches up to them.
    let mut client = relationships(&server).await;
    let mut after_restart = None;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while after_restart.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes never recovered"
        );
        match client
            .write_relationships(batch(vec![write(viewer("d1", "carol"))]))
            .await
        {
            Ok(response) => after_restart = Some(response.into_inner().written_at),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let after_restart = after_restart.unwrap();
    assert!(reads(&server, "carol", "d1", Some(&after_restart)).await);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while common::http_get(http, "/readyz").await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_when_replicas_start_together() {
    let pg = postgres::Postgres::start();
    let config = server_store_config(&pg);
    let runs = (0..4).map(|_| {
        let connection = config.connection.clone();
        tokio::spawn(async move { verdict::store::migrate(&connection).await.unwrap() })
    });
    let mut applied = Vec::new();
    for run in runs {
        applied.push(run.await.unwrap().applied);
    }
    applied.sort();
    assert_eq!(applied, [vec![], vec![], vec![], vec![1]]);
    assert_eq!(
        pg.psql("SELECT string_agg(version::text, ',') FROM verdict_schema_migrations"),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_nothing_changes_and_tokens_are_refused() {
    let dir = bundle();
    let server = TestServer::start(dir.path()).await;
    let status = relationships(&server)
        .await
        .write_relationships(batch(vec![write(viewer("d1", "bob"))]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    let mut request = common::check(
        ("User", "alice"),
        "read",
        ("Doc", "d1"),
        serde_json::json!({}),
    );
    let response = server
        .client()
        .await
        .check(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.decision, ALLOW);
    // The version is the bundle's alone, as before.
    assert!(!response.snapshot_version.contains('@'));
    request.consistency =
        at_least_as_fresh(&verdict_core::store::ConsistencyToken::new(1).to_string());
    let status = server.client().await.check(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("no relationship store is configured")
    );
    server.stop().await;
}

/// Runs the `verdict` binary; returns its exit code, stdout and stderr.
fn verdict_cli(args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(args)
        .env_remove("VERDICT_STORE_URL")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn migrate_import_and_export_from_the_command_line() {
    let pg = postgres::Postgres::start();
    let url = pg.url();
    let dir = bundle();
    let policies = dir.path().to_str().unwrap();

    let (code, out, err) = verdict_cli(&["migrate", "--store-url", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("applied migrations [1]"), "{out}");
    // The password-less URL is shown as the target; run again: nothing to do.
    let (code, out, _) = verdict_cli(&["migrate", "--store-url", &url]);
    assert_eq!(code, 0);
    assert!(out.contains("schema up to date (version 1)"), "{out}");

    // A file with bad lines writes nothing and names each line. (Outside the bundle: a
    // `.tuples` file inside it would be the bundle's.)
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("import.tuples");
    std::fs::write(
        &file,
        "# shared documents\nDoc::\"i1\"#viewer@User::\"bob\"\nDoc::\"i1\"#editor@User::\"bob\"\n\
         Doc::\"d1\"#viewer@User::\"alice\"\nDoc::\"i2\"viewer@User::\"bob\"\n",
    )
    .unwrap();
    let (code, _, err) = verdict_cli(&[
        "relationships",
        "import",
        file.to_str().unwrap(),
        "--policies",
        policies,
        "--store-url",
        &url,
    ]);
    assert_eq!(code, 1, "{err}");
    let at = |line: usize| format!("{}:{line}", file.display());
    assert!(
        err.contains(&format!(
            "{}: relation `editor` of `Doc` is not declared",
            at(3)
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}: `Doc::\"d1\"#viewer@User::\"alice\"` is defined by the bundle",
            at(4)
        )),
        "{err}"
    );
    assert!(err.contains(&format!("{}:", at(5))), "{err}");
    assert!(
        err.contains("3 invalid tuple(s); nothing was written"),
        "{err}"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM verdict_relationships"), "0");

    // A good file (with a duplicate line) imports; importing it again changes nothing.
    std::fs::write(
        &file,
        "Doc::\"i1\"#viewer@User::\"bob\"\nDoc::\"i2\"#viewer@Team::\"eng\"#member\n\
         Doc::\"i1\"#viewer@User::\"bob\"\nDoc::\"i3\"#viewer@User::*\n",
    )
    .unwrap();
    for new in [3, 0] {
        let (code, out, err) = verdict_cli(&[
            "relationships",
            "import",
            file.to_str().unwrap(),
            "--policies",
            policies,
            "--store-url",
            &url,
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains(&format!("4 tuple(s) imported, {new} of them new")),
            "{out}"
        );
        assert!(out.contains("written_at vr1_"), "{out}");
    }
    // Only what was new entered the change log.
    assert_eq!(pg.psql("SELECT count(*) FROM verdict_changes"), "3");
    let (code, out, err) = verdict_cli(&["relationships", "export", "--store-url", &url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "Doc::\"i1\"#viewer@User::\"bob\"",
            "Doc::\"i2\"#viewer@Team::\"eng\"#member",
            "Doc::\"i3\"#viewer@User::*",
        ]
    );
    // Without a store URL: a usage error.
    let (code, _, err) = verdict_cli(&["relationships", "export"]);
    assert_eq!(code, 64, "{err}");

    // A large file goes in chunks of 50,000 lines, one revision each, every tuple logged once.
    let many: String = (0..120_000)
        .map(|i| format!("Doc::\"m{i}\"#viewer@User::\"bob\"\n"))
        .collect();
    std::fs::write(&file, many).unwrap();
    let (code, out, err) = verdict_cli(&[
        "relationships",
        "import",
        file.to_str().unwrap(),
        "--policies",
        policies,
        "--store-url",
        &url,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("120000 tuple(s) imported, 120000 of them new"),
        "{out}"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM verdict_relationships"),
        "120003"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM verdict_changes"), "120003");
    assert_eq!(
        pg.psql("SELECT count(DISTINCT revision) FROM verdict_changes"),
        "4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_fell_behind_the_collected_change_log_reloads_the_whole_store() {
    let pg = postgres::Postgres::start();
    // The second replica connects as its own role, so it alone can be cut off.
    pg.psql("CREATE ROLE replica_b LOGIN SUPERUSER");
    let dir = bundle();
    let writer_replica = replica(store_config(dir.path(), &pg.url(), &[])).await;
    let url_b = pg
        .url()
        .replace("postgres://postgres@", "postgres://replica_b@");
    let behind = replica(store_config(dir.path(), &url_b, &[])).await;
    let mut client = relationships(&writer_replica).await;
    let first = client
        .write_relationships(batch(vec![
            write(viewer("g1", "bob")),
            write(viewer("g2", "bob")),
        ]))
        .await
        .unwrap()
        .into_inner()
        .written_at;
    assert!(reads(&behind, "bob", "g1", Some(&first)).await);

    // Cut the second replica off, change the store, and collect the whole log.
    pg.psql("ALTER ROLE replica_b NOLOGIN");
    pg.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'replica_b'",
    );
    let http = behind.http_addr.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while common::http_get(http, "/readyz").await.0 == 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..5 {
        client
            .write_relationships(batch(vec![write(viewer(&format!("g-{i}"), "carol"))]))
            .await
            .unwrap();
    }
    client
        .write_relationships(batch(vec![delete(viewer("g1", "bob"))]))
        .await
        .unwrap();
    let last = client
        .write_relationships(batch(vec![write(viewer("g9", "dave"))]))
        .await
        .unwrap()
        .into_inner()
        .written_at;
    let store = verdict::store::Store::new(server_store_config(&pg)).unwrap();
    let compacted = store.collect_garbage(Duration::ZERO).await.unwrap();
    let applied_before = behind.snapshots.applied_revision().unwrap();
    assert!(
        compacted > applied_before,
        "{compacted} <= {applied_before}"
    );

    // Let it back in: it cannot follow the log from where it is, so it reloads, and agrees.
    pg.psql("ALTER ROLE replica_b LOGIN");
    assert!(reads(&behind, "dave", "g9", Some(&last)).await);
    assert!(!reads(&behind, "bob", "g1", Some(&last)).await);
    assert!(reads(&behind, "bob", "g2", Some(&last)).await);
    assert_eq!(
        behind.snapshots.load().unwrap().snapshot.tuple_count(),
        writer_replica
            .snapshots
            .load()
            .unwrap()
            .snapshot
            .tuple_count()
    );
    behind.stop().await;
    writer_replica.stop().await;
}

/// Measures writes and the time from commit to visible on another replica, and prints them
/// (BENCHMARKS.md). Ignored by default: it measures, it does not test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test --release --test it store:: -- --ignored --nocapture measure"]
async fn measure_write_throughput_and_write_to_visible_latency() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Instant;
    let pg = postgres::Postgres::start();
    let dir = bundle();
    let writer_replica = replica(store_config(dir.path(), &pg.url(), &[])).await;
    // The reader is its own `verdict serve` process, as a second replica is in production:
    // its checks do not share the test's runtime with the writer replica.
    let url = pg.url();
    let reader = common::process::Verdict::start(
        dir.path(),
        &[
            "--store-url",
            &url,
            "--store-poll-interval",
            "200ms",
            "--store-consistency-timeout",
            "20s",
        ],
    );
    let ready = Instant::now();
    while common::process::try_http_get(reader.metrics, "/readyz").map(|(status, _)| status)
        != Some(200)
    {
        assert!(ready.elapsed() < PATIENCE, "the reader never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = relationships(&writer_replica).await;

    let singles = 300;
    let started = Instant::now();
    for i in 0..singles {
        client
            .write_relationships(batch(vec![write(viewer(&format!("s{i}"), "bob"))]))
            .await
            .unwrap();
    }
    let single_rate = f64::from(singles) / started.elapsed().as_secs_f64();

    let batches = 20;
    let started = Instant::now();
    for b in 0..batches {
        let updates = (0..1000)
            .map(|i| write(viewer(&format!("b{b}-{i}"), "bob")))
            .collect();
        client.write_relationships(batch(updates)).await.unwrap();
    }
    let batched_rate = f64::from(batches * 1000) / started.elapsed().as_secs_f64();

    fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
        samples.sort();
        let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
        (at(50), at(99))
    }
    let mut checker = reader.client_async().await;
    // Commit (the write's answer) to visible on the other replica: a check carrying the
    // token answers from a state that includes it.
    let mut visible = async |client: &mut RelationshipsClient<Channel>, round: &str| {
        let mut samples = Vec::new();
        for i in 0..200 {
            let doc = format!("{round}{i}");
            let token = client
                .write_relationships(batch(vec![write(viewer(&doc, "carol"))]))
                .await
                .unwrap()
                .into_inner()
                .written_at;
            let committed = Instant::now();
            let mut request = common::check(
                ("User", "carol"),
                "read",
                ("Doc", &doc),
                serde_json::json!({}),
            );
            request.consistency = at_least_as_fresh(&token);
            let answer = checker.check(request).await.unwrap().into_inner();
            assert_eq!(answer.decision, ALLOW);
            samples.push(committed.elapsed());
        }
        percentiles(samples)
    };
    let small_size = read_all(&writer_replica, 1000).await.len();
    let small = visible(&mut client, "v").await;

    // The store grown tenfold, in batches of 1,000: the time to visible should not follow.
    let grow = 200;
    let started = Instant::now();
    for b in 0..grow {
        let updates = (0..1000)
            .map(|i| write(viewer(&format!("g{b}-{i}"), "dave")))
            .collect();
        client.write_relationships(batch(updates)).await.unwrap();
    }
    let grow_rate = f64::from(grow * 1000) / started.elapsed().as_secs_f64();
    let large_size = read_all(&writer_replica, 1000).await.len();
    let large = visible(&mut client, "w").await;

    // Check latency on the reader, alone and while single writes stream into the store.
    let mut check_latencies = async |count: usize| {
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let request = common::check(
                ("User", "carol"),
                "read",
                ("Doc", "v0"),
                serde_json::json!({}),
            );
            let started = Instant::now();
            let answer = checker.check(request).await.unwrap().into_inner();
            samples.push(started.elapsed());
            assert_eq!(answer.decision, ALLOW);
        }
        percentiles(samples)
    };
    // The reader's own time per `Check` (from its /metrics: the handling histogram's sum and
    // count, and how many took over 250 µs and over 1 ms), between two scrapes: what the
    // replica spends on a check, apart from the transport and the scheduling on shared cores.
    let handling = || {
        let (_, text) = common::process::try_http_get(reader.metrics, "/metrics")
            .expect("the reader's metrics");
        let mut totals = [0.0_f64; 4];
        for line in text.lines().filter(|line| {
            line.starts_with("grpc_server_handling_seconds")
                && line.contains("grpc_method=\"Check\"")
        }) {
            let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            if line.starts_with("grpc_server_handling_seconds_sum") {
                totals[0] += value;
            } else if line.starts_with("grpc_server_handling_seconds_count") {
                totals[1] += value;
            } else if line.contains("le=\"0.00025\"") {
                totals[2] += value;
            } else if line.contains("le=\"0.001\"") {
                totals[3] += value;
            }
        }
        totals
    };
    // And the reader process's CPU time (user + system, from /proc; Linux's 10 ms ticks).
    let reader_pid = reader.child.id();
    let cpu_seconds = move || {
        let stat = std::fs::read_to_string(format!("/proc/{reader_pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    };
    let server_side = |before: ([f64; 4], f64), after: ([f64; 4], f64)| {
        let ((before, cpu_before), (after, cpu_after)) = (before, after);
        let count = after[1] - before[1];
        format!(
            "the reader's own time per check: mean {:.1} µs, {:.2}% over 250 µs, {:.2}% over \
             1 ms; the reader's CPU {:.2} s",
            (after[0] - before[0]) / count * 1e6,
            (count - (after[2] - before[2])) / count * 100.0,
            (count - (after[3] - before[3])) / count * 100.0,
            cpu_after - cpu_before,
        )
    };
    let before = (handling(), cpu_seconds());
    let quiet = check_latencies(10_000).await;
    let quiet_server = server_side(before, (handling(), cpu_seconds()));
    // Single writes streamed in while the checks run: paced at an application's rates (a
    // write every 1/rate s), then as fast as one writer goes.
    let mut streaming_phases = Vec::new();
    for (phase, rate) in [(0, Some(50_u32)), (1, Some(200)), (2, None)] {
        let stop = Arc::new(AtomicBool::new(false));
        let streamed = Arc::new(AtomicU64::new(0));
        let streaming = tokio::spawn({
            let (stop, streamed, mut client) = (
                Arc::clone(&stop),
                Arc::clone(&streamed),
                relationships(&writer_replica).await,
            );
            async move {
                let mut pace = rate.map(|rate| {
                    let mut pace = tokio::time::interval(Duration::from_secs(1) / rate);
                    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    pace
                });
                // Bounded in count as well as by the flag.
                for i in 0..100_000 {
                    if let Some(pace) = pace.as_mut() {
                        pace.tick().await;
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    client
                        .write_relationships(batch(vec![write(viewer(
                            &format!("x{phase}-{i}"),
                            "erin",
                        ))]))
                        .await
                        .unwrap();
                    streamed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let started = Instant::now();
        let before = (handling(), cpu_seconds());
        let busy = check_latencies(10_000).await;
        let busy_server = server_side(before, (handling(), cpu_seconds()));
        let busy_for = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        streaming.await.unwrap();
        let streamed = streamed.load(Ordering::Relaxed);
        streaming_phases.push(format!(
            "p50 {:?}, p99 {:?} while {streamed} single writes streamed in ({:.0} writes/s, {}; \
             {busy_server})",
            busy.0,
            busy.1,
            streamed as f64 / busy_for.as_secs_f64(),
            rate.map_or("unpaced".to_owned(), |rate| format!("paced at {rate}/s")),
        ));
    }
    println!(
        "store: {single_rate:.0} single-tuple writes/s, {batched_rate:.0} tuples/s in batches of \
         1000 ({grow_rate:.0} tuples/s growing the store); commit to visible on another replica \
         p50 {:?}, p99 {:?} at {small_size} store tuples, p50 {:?}, p99 {:?} at {large_size}; \
         check on the other replica p50 {:?}, p99 {:?} alone ({quiet_server}); {}",
        small.0,
        small.1,
        large.0,
        large.1,
        quiet.0,
        quiet.1,
        streaming_phases.join("; "),
    );
    reader.stop();
    writer_replica.stop().await;
}
