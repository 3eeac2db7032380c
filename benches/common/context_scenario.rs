//! A gateway's request with a context under a schema: what an API gateway sends when it
//! forwards a call (the token's scopes, MFA, the token's age, the tenant, the client's address,
//! the method and path, a request id and the client's name and version). Used to measure what
//! preparing such a request costs (issue 20: protobuf `Struct` → Cedar values).

#![allow(dead_code, reason = "each bench uses its own part")]

use std::path::Path;

use serde_json::{Value, json};
use verdict_core::CheckInput;
use verdict_core::{Limits, LoadOptions, Outcome, Snapshot};

pub const USERS: usize = 50;
pub const DOCUMENTS: usize = 200;
pub const TENANTS: usize = 5;

pub const SCHEMA: &str = r#"
entity Tenant;
entity User { tenant: Tenant };
entity Document { tenant: Tenant };
type Client = { name: String, version: String };
type GatewayContext = {
  scopes: Set<String>,
  mfa: Bool,
  authAgeSeconds: Long,
  tenant: Tenant,
  sourceIp: ipaddr,
  method: String,
  path: String,
  requestId: String,
  client: Client,
  labels?: Set<String>,
};
action read, write appliesTo { principal: User, resource: Document, context: GatewayContext };
"#;

pub const POLICIES: &str = r#"@id("read-in-tenant")
permit (principal, action == Action::"read", resource)
when {
  context.scopes.contains("documents:read") &&
  principal.tenant == resource.tenant && context.tenant == principal.tenant
};

@id("write-with-fresh-mfa")
permit (principal, action == Action::"write", resource)
when {
  context.scopes.contains("documents:write") && context.mfa &&
  context.authAgeSeconds < 900 && principal.tenant == resource.tenant
};

@id("internal-network-only")
forbid (principal, action, resource)
unless { context.sourceIp.isInRange(ip("10.0.0.0/8")) };
"#;

fn tenant(n: usize) -> String {
    format!("t{}", n % TENANTS)
}

/// Writes the bundle into `dir`.
pub fn write_bundle(dir: &Path) {
    std::fs::write(dir.join("schema.cedarschema"), SCHEMA).unwrap();
    std::fs::write(dir.join("policies.cedar"), POLICIES).unwrap();
    let mut entities: Vec<Value> = (0..USERS)
        .map(|u| {
            json!({"uid": {"type": "User", "id": format!("u{u}")},
                   "attrs": {"tenant": {"type": "Tenant", "id": tenant(u)}}, "parents": []})
        })
        .collect();
    entities.extend((0..DOCUMENTS).map(|d| {
        json!({"uid": {"type": "Document", "id": format!("d{d}")},
               "attrs": {"tenant": {"type": "Tenant", "id": tenant(d)}}, "parents": []})
    }));
    std::fs::write(
        dir.join("data.entities.json"),
        serde_json::to_string_pretty(&entities).unwrap(),
    )
    .unwrap();
}

/// `count` requests as JSON (the shape of `CheckInput`), about half of them allowed.
pub fn requests(count: usize) -> Vec<Value> {
    let mut state = 0x00c0_ffee_u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let all_scopes = [
        "documents:read",
        "documents:write",
        "profile:read",
        "orders:read",
        "openid",
        "email",
    ];
    (0..count)
        .map(|i| {
            let user = next(USERS);
            let document = if next(4) == 0 {
                next(DOCUMENTS)
            } else {
                // Mostly in the user's tenant.
                (next(DOCUMENTS / TENANTS) * TENANTS + user % TENANTS) % DOCUMENTS
            };
            let scopes: Vec<&str> = all_scopes
                .iter()
                .copied()
                .filter(|_| next(3) != 0)
                .collect();
            let ip = if next(10) == 0 {
                format!("192.168.{}.{}", next(256), next(256))
            } else {
                format!("10.{}.{}.{}", next(256), next(256), next(256))
            };
            let action = if next(3) == 0 { "write" } else { "read" };
            let mut context = json!({
                "scopes": scopes,
                "mfa": next(2) == 0,
                "authAgeSeconds": next(1800),
                "tenant": {"type": "Tenant", "id": tenant(user)},
                "sourceIp": ip,
                "method": if action == "read" { "GET" } else { "PUT" },
                "path": format!("/v1/documents/d{document}"),
                "requestId": format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                "client": {"name": "web", "version": format!("3.{}.{}", next(10), next(20))},
            });
            if next(2) == 0 {
                context["labels"] = json!(["beta", "eu"]);
            }
            json!({
                "principal": format!("User::\"u{user}\""),
                "action": action,
                "resource": format!("Document::\"d{document}\""),
                "context": context,
            })
        })
        .collect()
}

/// A JSON value as a protobuf `Value`, as a gateway's gRPC client sends it.
pub fn to_proto(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_proto).collect(),
        }),
        Value::Object(fields) => Kind::StructValue(to_struct(fields)),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn to_struct(fields: &serde_json::Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: fields
            .iter()
            .map(|(k, v)| (k.clone(), to_proto(v)))
            .collect(),
    }
}

/// The loaded bundle and its requests, checked to decide both ways.
pub struct Workload {
    pub snapshot: Snapshot,
    pub requests: Vec<Value>,
    pub inputs: Vec<CheckInput>,
}

impl Workload {
    pub fn new(dir: &Path, count: usize) -> Self {
        write_bundle(dir);
        let snapshot = Snapshot::load(dir, &LoadOptions::default()).unwrap();
        let requests = requests(count);
        let inputs: Vec<CheckInput> = requests
            .iter()
            .map(|r| serde_json::from_value(r.clone()).unwrap())
            .collect();
        let allowed = inputs
            .iter()
            .filter(|input| {
                let request = snapshot
                    .prepare((*input).clone(), &Limits::default())
                    .unwrap();
                request.decide().unwrap().outcome == Outcome::Allow
            })
            .count();
        assert!(
            allowed > count / 5 && allowed < count * 4 / 5,
            "{allowed} of {count} allowed"
        );
        Self {
            snapshot,
            requests,
            inputs,
        }
    }
}
