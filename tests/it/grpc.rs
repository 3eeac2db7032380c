//! The real server on an ephemeral loopback port, called with real gRPC clients.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use std::path::Path;

use common::{ALLOW, DENY, TestServer, check, entity, example_bundle, test_config, to_struct};
use serde_json::json;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use verdict::api::proto;

fn read_scope() -> serde_json::Value {
    json!({"scopes": ["documents:read"]})
}

#[tokio::test]
async fn check_answers_with_reasons_and_the_snapshot_version() {
    let server = TestServer::start(&example_bundle()).await;
    let mut client = server.client().await;
    let version = server
        .snapshots
        .load()
        .unwrap()
        .snapshot
        .version()
        .to_owned();

    let allowed = client
        .check(check(
            ("User", "bob"),
            "read",
            ("Document", "roadmap"),
            read_scope(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(allowed.decision, ALLOW);
    assert_eq!(allowed.determining_policies, ["document-read"]);
    assert!(allowed.errors.is_empty());
    assert_eq!(allowed.snapshot_version, version);
    assert!(!allowed.relation_depth_exceeded);

    let denied = client
        .check(check(
            ("User", "dave"),
            "read",
            ("Document", "roadmap"),
            read_scope(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied.decision, DENY);
    assert!(denied.determining_policies.is_empty());

    let mut profile = check(("User", "carol"), "readProfile", ("User", "bob"), json!({}));
    profile.properties = vec!["email".into(), "ssn".into()];
    let profile = client.check(profile).await.unwrap().into_inner();
    assert_eq!(profile.decision, ALLOW);
    let properties: Vec<_> = profile
        .properties
        .iter()
        .map(|p| (p.name.as_str(), p.decision))
        .collect();
    assert_eq!(properties, [("email", ALLOW), ("ssn", DENY)]);
    server.stop().await;
}

#[tokio::test]
async fn request_supplied_entities_are_merged_for_that_request_only() {
    let server = TestServer::start(&example_bundle()).await;
    let mut client = server.client().await;
    let mut request = check(("User", "bob"), "readOrder", ("Order", "o-1"), json!({}));
    request.entities = vec![proto::Entity {
        uid: Some(entity("Order", "o-1")),
        attrs: Some(to_struct(json!({
            "tenant": {"type": "Tenant", "id": "acme"},
            "customer": {"type": "User", "id": "bob"},
            "amountCents": 1200,
            "status": "paid",
        }))),
        parents: Vec::new(),
    }];
    let answer = client.check(request.clone()).await.unwrap().into_inner();
    assert_eq!(answer.decision, ALLOW);
    assert_eq!(answer.determining_policies, ["order-read-customer"]);

    // The next request without the entity does not see it.
    request.entities.clear();
    let answer = client.check(request).await.unwrap().into_inner();
    assert_eq!(answer.decision, DENY);
    server.stop().await;
}

#[tokio::test]
async fn batch_check_answers_every_item_in_order_from_one_snapshot() {
    let server = TestServer::start(&example_bundle()).await;
    let mut client = server.client().await;
    let mut bad = check(
        ("User", "bob"),
        "read",
        ("Document", "roadmap"),
        read_scope(),
    );
    bad.principal = None;
    let small = proto::BatchCheckRequest {
        checks: vec![
            check(
                ("User", "bob"),
                "read",
                ("Document", "roadmap"),
                read_scope(),
            ),
            bad,
            check(
                ("User", "dave"),
                "read",
                ("Document", "roadmap"),
                read_scope(),
            ),
        ],
        consistency: None,
    };
    let answer = client.batch_check(small).await.unwrap().into_inner();
    assert_eq!(answer.results.len(), 3);
    use proto::batch_check_result::Result as Item;
    match &answer.results[0].result {
        Some(Item::Response(r)) => assert_eq!(r.decision, ALLOW),
        other => panic!("unexpected {other:?}"),
    }
    match &answer.results[1].result {
        Some(Item::Error(e)) => {
            assert_eq!(e.code, Code::InvalidArgument as i32);
            assert_eq!(e.message, "checks[1].principal: required field is missing");
        }
        other => panic!("unexpected {other:?}"),
    }
    match &answer.results[2].result {
        Some(Item::Response(r)) => assert_eq!(r.decision, DENY),
        other => panic!("unexpected {other:?}"),
    }

    // A large batch is decided in parallel; answers still come back in request order.
    let people = ["bob", "dave", "alice", "frank"];
    let expected = [ALLOW, DENY, ALLOW, DENY];
    let checks = (0..100)
        .map(|i| {
            check(
                ("User", people[i % 4]),
                "read",
                ("Document", "roadmap"),
                read_scope(),
            )
        })
        .collect();
    let answer = client
        .batch_check(proto::BatchCheckRequest {
            checks,
            consistency: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.results.len(), 100);
    for (i, result) in answer.results.iter().enumerate() {
        match &result.result {
            Some(Item::Response(r)) => {
                assert_eq!(r.decision, expected[i % 4], "item {i}");
                assert_eq!(r.snapshot_version, answer.snapshot_version);
            }
            other => panic!("item {i}: unexpected {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn status_health_and_reflection_answer_stock_clients() {
    let server = TestServer::start(&example_bundle()).await;
    let mut client = server.client().await;
    let status = client
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let served = server.snapshots.load().unwrap();
    let snapshot = &served.snapshot;
    assert_eq!(status.snapshot_version, snapshot.version());
    assert_eq!(status.policies, snapshot.policy_count() as u64);
    assert_eq!(status.tuples, snapshot.tuple_count() as u64);
    assert_eq!(status.entities, snapshot.entity_count() as u64);
    assert!(status.policies > 10 && status.tuples > 10 && status.entities > 10);
    assert!(status.schema);
    assert!(status.loaded_at.is_some());
    assert!(status.last_load_error.is_none());

    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "verdict.v1.Authorization"] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.status,
            ServingStatus::Serving as i32,
            "service `{service}`"
        );
    }

    let listed = list_services_v1(&server).await;
    for wanted in [
        "verdict.v1.Authorization",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            listed.iter().any(|s| s == wanted),
            "{wanted} not in {listed:?}"
        );
    }
    let listed = list_services_v1alpha(&server).await;
    assert!(
        listed.iter().any(|s| s == "verdict.v1.Authorization"),
        "{listed:?}"
    );
    server.stop().await;
}

async fn list_services_v1(server: &TestServer) -> Vec<String> {
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
    let response = stream.message().await.unwrap().unwrap();
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn list_services_v1alpha(server: &TestServer) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
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
    let response = stream.message().await.unwrap().unwrap();
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Sends `request` and expects INVALID_ARGUMENT with exactly `message`; then checks that the
/// server still answers a valid request.
async fn assert_invalid(server: &TestServer, request: proto::CheckRequest, message: &str) {
    let mut client = server.client().await;
    let status = client.check(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), message);
    let next = client
        .check(check(
            ("User", "bob"),
            "read",
            ("Document", "roadmap"),
            read_scope(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.decision, ALLOW);
}

#[tokio::test]
async fn malformed_requests_get_invalid_argument_and_the_server_keeps_answering() {
    let mut config = test_config(&example_bundle());
    config.limits.max_message_bytes = 64 * 1024;
    let server = TestServer::start_with(config).await;
    let good = || {
        check(
            ("User", "bob"),
            "read",
            ("Document", "roadmap"),
            read_scope(),
        )
    };

    let mut r = good();
    r.principal = Some(entity("", "bob"));
    assert_invalid(&server, r, "principal.type: must not be empty").await;

    let mut r = good();
    r.resource = Some(entity("Document", ""));
    assert_invalid(&server, r, "resource.id: must not be empty").await;

    let mut r = good();
    r.principal = None;
    assert_invalid(&server, r, "principal: required field is missing").await;

    let mut r = good();
    r.principal = Some(entity("User name", "bob"));
    assert_invalid(
        &server,
        r,
        "principal.type: `User name` is not a Cedar entity type (identifiers joined by `::`)",
    )
    .await;

    let r = check(
        ("User", "bob"),
        "read",
        ("Document", "roadmap"),
        json!({"scopes": ["documents:read"], "riskScore": 0.25}),
    );
    assert_invalid(
        &server,
        r,
        "context.riskScore: `0.25` is not an integer; Cedar has no floating-point numbers (pass a decimal as a string)",
    )
    .await;

    let r = check(
        ("User", "bob"),
        "publish",
        ("Document", "roadmap"),
        read_scope(),
    );
    assert_invalid(
        &server,
        r,
        "action: `Action::\"publish\"` is not declared in the schema",
    )
    .await;

    let r = check(("User", "bob"), "", ("Document", "roadmap"), read_scope());
    assert_invalid(&server, r, "action: must not be empty").await;

    let r = check(
        ("User", "bob"),
        "read",
        ("Document", "roadmap"),
        json!({"scopes": "documents:read"}),
    );
    let mut client = server.client().await;
    let status = client.check(r).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("context: "),
        "{}",
        status.message()
    );

    // Over the per-request counts.
    let mut r = good();
    r.properties = (0..101).map(|i| format!("p{i}")).collect();
    assert_invalid(
        &server,
        r,
        "properties: 101 properties exceed the limit of 100",
    )
    .await;
    let mut r = good();
    r.entities = (0..101)
        .map(|i| proto::Entity {
            uid: Some(entity("Thing", &format!("t{i}"))),
            attrs: None,
            parents: Vec::new(),
        })
        .collect();
    assert_invalid(&server, r, "entities: 101 entities exceed the limit of 100").await;
    let mut r = good();
    r.entities = vec![proto::Entity {
        uid: Some(entity("Thing", "t")),
        attrs: None,
        parents: (0..33).map(|i| entity("Group", &format!("g{i}"))).collect(),
    }];
    assert_invalid(
        &server,
        r,
        "entities[0].parents: 33 parents exceed the limit of 32",
    )
    .await;

    // Over the batch limit.
    let checks = (0..101).map(|_| good()).collect();
    let status = client
        .batch_check(proto::BatchCheckRequest {
            checks,
            consistency: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "checks: 101 checks exceed the batch limit of 100"
    );

    // Over the message size limit.
    let huge = check(
        ("User", "bob"),
        "read",
        ("Document", "roadmap"),
        json!({"scopes": ["x".repeat(100 * 1024)]}),
    );
    let status = client.check(huge).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("request message is ")
            && status
                .message()
                .ends_with("bytes, over the limit of 65536 bytes"),
        "{}",
        status.message()
    );
    let next = client.check(good()).await.unwrap().into_inner();
    assert_eq!(next.decision, ALLOW);
    server.stop().await;
}

#[tokio::test]
async fn without_a_snapshot_checks_are_unavailable_and_health_is_not_serving() {
    let mut config = test_config(Path::new("/nonexistent/verdict-bundle"));
    config.start_without_bundle = true;
    let server = TestServer::start_with(config).await;
    let mut client = server.client().await;
    let status = client
        .check(check(
            ("User", "bob"),
            "read",
            ("Document", "roadmap"),
            read_scope(),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let status = client
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.snapshot_version.is_empty());

    let mut health = HealthClient::new(server.channel().await);
    let answer = health
        .check(HealthCheckRequest {
            service: "verdict.v1.Authorization".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status, ServingStatus::NotServing as i32);
    server.stop().await;
}

#[tokio::test]
async fn a_relation_chain_deeper_than_the_bound_denies_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.cedar"),
        "@id(\"members-read\")\npermit (principal, action == Action::\"read\", resource is Doc) when { principal in resource.viewer };\n",
    )
    .unwrap();
    let mut tuples = String::from("Doc::\"d\"#viewer@Team::\"t0\"#member\n");
    for i in 0..10 {
        tuples.push_str(&format!(
            "Team::\"t{i}\"#member@Team::\"t{}\"#member\n",
            i + 1
        ));
    }
    tuples.push_str("Team::\"t10\"#member@User::\"deep\"\n");
    std::fs::write(dir.path().join("chain.tuples"), tuples).unwrap();

    let mut config = test_config(dir.path());
    config.limits.max_relation_depth = 4;
    let shallow = TestServer::start_with(config).await;
    let answer = shallow
        .client()
        .await
        .check(check(("User", "deep"), "read", ("Doc", "d"), json!({})))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.decision, DENY);
    assert!(answer.relation_depth_exceeded);
    shallow.stop().await;

    let deep = TestServer::start(dir.path()).await;
    let answer = deep
        .client()
        .await
        .check(check(("User", "deep"), "read", ("Doc", "d"), json!({})))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.decision, ALLOW);
    assert!(!answer.relation_depth_exceeded);
    deep.stop().await;
}
