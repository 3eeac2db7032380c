//! One function per fuzz target. Each takes the fuzzer's raw bytes, so a saved crash replays
//! exactly (structure-aware targets decode their input with `arbitrary` from those bytes, as
//! `libfuzzer_sys::fuzz_target!` would). Besides "never panics", each checks properties that
//! must hold for every input:
//!
//! - `tuple_line`: a parsed uid prints and re-parses to itself, Cedar parses what it prints to
//!   the same uid, and an error's column lies within the line.
//! - `bundle_dir`: every load error names a file inside the bundle directory; a bundle that
//!   loads answers a request with allow or deny, never a crash.
//! - `check_request`: the real gRPC handler answers every request (raw protobuf bytes or
//!   structure-aware) with a decision or INVALID_ARGUMENT, never another code, and
//!   deny-by-default holds: an allow names the permits that allowed it, a property is allowed
//!   only when the request is and a permit names it; the answer carries the serving snapshot's
//!   version; a batch answers every item, each as a single Check would.
//! - `request_json`: JSON of any shape and depth as context and entity attributes is rejected
//!   with a field name or decided, and JSON nested deeper than the limit is never accepted.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use arbitrary::{Arbitrary, Unstructured};
use prost::Message;
use serde_json::{Map, Value};
use verdict::api::AuthorizationService;
use verdict::api::proto::authorization_server::Authorization;
use verdict::api::proto::{self, batch_check_result};
use verdict::serving::SnapshotHandle;
use verdict_core::relations::{EntityUidText, SubjectText, parse_entity_uid, parse_tuple_line};
use verdict_core::{
    CheckInput, DEFAULT_MAX_JSON_DEPTH, Decision, EntityInput, EntityRef, Limits, LoadOptions,
    Outcome, RequestError, Snapshot,
};

/// The example bundle (`policies/`), embedded: seeds for the bundle target and the snapshot the
/// request targets decide against.
pub const EXAMPLE_BUNDLE: [(&str, &str); 11] = [
    (
        "schema.cedarschema",
        include_str!("../../policies/schema.cedarschema"),
    ),
    (
        "accounts.cedar",
        include_str!("../../policies/accounts.cedar"),
    ),
    ("admin.cedar", include_str!("../../policies/admin.cedar")),
    (
        "documents.cedar",
        include_str!("../../policies/documents.cedar"),
    ),
    ("orders.cedar", include_str!("../../policies/orders.cedar")),
    (
        "profiles.cedar",
        include_str!("../../policies/profiles.cedar"),
    ),
    (
        "documents.tuples",
        include_str!("../../policies/documents.tuples"),
    ),
    ("teams.tuples", include_str!("../../policies/teams.tuples")),
    ("acme.fga", include_str!("../../policies/acme.fga")),
    (
        "documents.entities.json",
        include_str!("../../policies/documents.entities.json"),
    ),
    (
        "people.entities.json",
        include_str!("../../policies/people.entities.json"),
    ),
];

/// Names the structure-aware inputs draw from, so they reach the example's policies and
/// relations instead of bouncing off unknown types.
const TYPES: [&str; 12] = [
    "User",
    "Document",
    "Team",
    "Folder",
    "Order",
    "Api",
    "Role",
    "Tenant",
    "Action",
    "Verdict::Userset",
    "Acme::User",
    "user",
];
const IDS: [&str; 16] = [
    "alice", "bob", "carol", "erin", "mallory", "roadmap", "draft", "salaries", "handbook",
    "admin", "o-1", "eng", "platform", "acme", "", "nobody",
];
const ACTIONS: [&str; 12] = [
    "read",
    "edit",
    "share",
    "delete",
    "readProfile",
    "updateProfile",
    "readOrder",
    "refundOrder",
    "ListUsers",
    "ImpersonateUser",
    "Action::\"AdminOperation\"",
    "Action::\"read\"",
];
const NAMES: [&str; 16] = [
    "scopes",
    "mfa",
    "riskScore",
    "property",
    "email",
    "ssn",
    "status",
    "tenant",
    "customer",
    "amountCents",
    "classification",
    "viewer",
    "owner",
    "suspended",
    "__entity",
    "__extn",
];

/// A scratch directory per process, on tmpfs when there is one.
fn scratch_dir() -> &'static Path {
    static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("verdict-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    });
    &DIR
}

/// Loads the example bundle.
fn load_example() -> Snapshot {
    let dir = scratch_dir().join("example");
    std::fs::create_dir_all(&dir).expect("example directory");
    for (name, text) in EXAMPLE_BUNDLE {
        std::fs::write(dir.join(name), text).expect("example file");
    }
    Snapshot::load(&dir, &LoadOptions::default()).expect("the example bundle loads")
}

/// Removes this process's scratch directory (the fuzzers leave theirs: it is small).
pub fn remove_scratch_dir() {
    let _ = std::fs::remove_dir_all(scratch_dir());
}

/// The example bundle, loaded once.
fn example_snapshot() -> &'static Snapshot {
    static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(load_example);
    &SNAPSHOT
}

/// The production limits (the `serve` defaults).
fn default_limits() -> Limits {
    Limits::default()
}

// ---------------------------------------------------------------------------------------------
// tuple_line

/// Every line of the input through the tuple line parser, and the whole input as one uid.
pub fn tuple_line(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        match parse_tuple_line(line) {
            Ok(None) => {
                let rest = line.trim_start();
                assert!(rest.is_empty() || rest.starts_with('#'), "{line:?} skipped");
            }
            Ok(Some(tuple)) => {
                check_uid(&tuple.object);
                match &tuple.subject {
                    SubjectText::Entity(uid) => check_uid(uid),
                    SubjectText::Userset { object, .. } => check_uid(object),
                    SubjectText::Wildcard { .. } => {}
                }
            }
            Err(error) => {
                assert!(
                    error.column >= 1 && error.column <= line.chars().count() + 1,
                    "column {} outside {line:?}",
                    error.column
                );
            }
        }
    }
    if let Ok(uid) = parse_entity_uid(&text) {
        check_uid(&uid);
    }
}

/// A uid prints and re-parses to itself, and Cedar reads the printed form as the same uid.
fn check_uid(uid: &EntityUidText<'_>) {
    let printed = uid.to_string();
    let reparsed = parse_entity_uid(&printed).expect("a printed uid parses");
    assert_eq!(&reparsed, uid, "{printed}");
    let cedar = cedar_policy::EntityUid::from_str(&printed)
        .unwrap_or_else(|e| panic!("Cedar rejects {printed}: {e}"));
    assert_eq!(cedar.type_name().to_string(), uid.entity_type, "{printed}");
    assert_eq!(cedar.id().unescaped(), uid.id, "{printed}");
}

// ---------------------------------------------------------------------------------------------
// bundle_dir

/// A bundle directory: up to a dozen entries.
#[derive(Debug, Arbitrary)]
struct FuzzBundle {
    entries: Vec<FuzzEntry>,
}

#[derive(Debug, Arbitrary)]
struct FuzzEntry {
    /// 0: the bundle root; 1: `sub/`; 2: `sub/deeper/`; 3: `.hidden/`.
    place: u8,
    name: FuzzName,
    content: FuzzContent,
}

#[derive(Debug, Arbitrary)]
enum FuzzName {
    Policies(u8),
    Schema(u8),
    SchemaJson(u8),
    Tuples(u8),
    Entities(u8),
    /// Not a bundle file: ignored.
    Other(u8),
    /// A symlink to the entry's own directory (a cycle) instead of a file.
    LoopLink,
    /// A symlink to a file that does not exist.
    DanglingLink(u8),
}

#[derive(Debug, Arbitrary)]
enum FuzzContent {
    /// Raw bytes, possibly not UTF-8.
    Raw(Vec<u8>),
    /// One of the example's files, edited.
    Example { file: u8, edits: Vec<Edit> },
}

/// A small change to a text: what mutations of valid files look like.
#[derive(Debug, Arbitrary)]
enum Edit {
    Insert {
        at: u16,
        text: String,
    },
    Remove {
        at: u16,
        len: u8,
    },
    Duplicate {
        at: u16,
        len: u8,
    },
    /// A token that parsers treat specially.
    Token {
        at: u16,
        token: u8,
    },
}

const TOKENS: [&str; 16] = [
    "\"",
    "\\",
    "::",
    "#",
    "@",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\n",
    "*",
    "__entity",
    "\u{feff}",
    "\0",
    "when { principal in resource.viewer };",
];

/// The nearest char boundary at or before `at % (len + 1)`.
fn boundary(text: &str, at: u16) -> usize {
    let mut at = usize::from(at) % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &mut String, edit: &Edit) {
    match edit {
        Edit::Insert { at, text: inserted } => {
            let at = boundary(text, *at);
            text.insert_str(at, inserted);
        }
        Edit::Remove { at, len } => {
            let start = boundary(text, *at);
            let end = boundary(
                text,
                (start + usize::from(*len)).min(usize::from(u16::MAX)) as u16,
            )
            .max(start);
            text.replace_range(start..end, "");
        }
        Edit::Duplicate { at, len } => {
            let start = boundary(text, *at);
            let mut end = (start + usize::from(*len)).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let copy = text[start..end].to_owned();
            text.insert_str(start, &copy);
        }
        Edit::Token { at, token } => {
            let at = boundary(text, *at);
            text.insert_str(at, TOKENS[usize::from(*token) % TOKENS.len()]);
        }
    }
}

/// Writes random directory contents and loads them as a bundle.
pub fn bundle_dir(data: &[u8]) {
    let Ok(bundle) = FuzzBundle::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let dir = scratch_dir().join(format!("bundle-{:?}", std::thread::current().id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub/deeper")).expect("bundle directory");
    std::fs::create_dir_all(dir.join(".hidden")).expect("bundle directory");
    for entry in bundle.entries.iter().take(12) {
        let place = match entry.place % 4 {
            0 => dir.clone(),
            1 => dir.join("sub"),
            2 => dir.join("sub/deeper"),
            _ => dir.join(".hidden"),
        };
        let file = |stem: &str, n: u8, suffix: &str| place.join(format!("{stem}{n}{suffix}"));
        let path = match entry.name {
            FuzzName::Policies(n) => file("p", n, ".cedar"),
            FuzzName::Schema(n) => file("s", n, ".cedarschema"),
            FuzzName::SchemaJson(n) => file("s", n, ".cedarschema.json"),
            FuzzName::Tuples(n) => file("t", n, ".tuples"),
            FuzzName::Entities(n) => file("e", n, ".entities.json"),
            FuzzName::Other(n) => file("o", n, ".txt"),
            FuzzName::LoopLink => {
                let _ = std::os::unix::fs::symlink(".", place.join("loop"));
                continue;
            }
            FuzzName::DanglingLink(n) => {
                let _ = std::os::unix::fs::symlink("missing", file("d", n, ".cedar"));
                continue;
            }
        };
        let bytes = match &entry.content {
            FuzzContent::Raw(bytes) => bytes.clone(),
            FuzzContent::Example { file, edits } => {
                let mut text = EXAMPLE_BUNDLE[usize::from(*file) % EXAMPLE_BUNDLE.len()]
                    .1
                    .to_owned();
                for edit in edits.iter().take(16) {
                    apply(&mut text, edit);
                }
                text.into_bytes()
            }
        };
        std::fs::write(&path, bytes).expect("bundle file");
    }
    match Snapshot::load(&dir, &LoadOptions::default()) {
        Err(invalid) => {
            for error in invalid.errors() {
                assert!(
                    error.path.starts_with(&dir),
                    "an error outside the bundle: {error}"
                );
                assert!(!error.message.is_empty() && !error.message.contains('\n'));
            }
        }
        Ok(snapshot) => {
            let input = CheckInput {
                principal: entity_ref("User", "alice"),
                action: "read".to_owned(),
                resource: entity_ref("Document", "roadmap"),
                context: Map::new(),
                entities: Vec::new(),
                properties: vec!["title".to_owned()],
                verified_principal: None,
            };
            if let Ok(request) = snapshot.prepare(input, &default_limits())
                && let Ok(decision) = request.decide()
            {
                check_decision(&decision);
            }
        }
    }
}

fn entity_ref(entity_type: &str, id: &str) -> EntityRef {
    EntityRef {
        entity_type: entity_type.to_owned(),
        id: id.to_owned(),
    }
}

/// Deny by default, as the engine reports it.
fn check_decision(decision: &Decision) {
    if decision.outcome == Outcome::Allow {
        assert!(!decision.determining_policies.is_empty(), "{decision:?}");
        assert!(!decision.relation_depth_exceeded, "{decision:?}");
    }
    for property in &decision.properties {
        if property.outcome == Outcome::Allow {
            assert_eq!(decision.outcome, Outcome::Allow, "{decision:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// check_request

/// A `CheckRequest` built from the example's vocabulary.
#[derive(Debug, Arbitrary)]
struct FuzzCheck {
    principal: Option<FuzzRef>,
    action: FuzzString,
    resource: Option<FuzzRef>,
    context: Option<Vec<(FuzzString, FuzzValue)>>,
    entities: Vec<FuzzEntity>,
    properties: Vec<FuzzString>,
}

#[derive(Debug, Arbitrary)]
struct FuzzRef {
    entity_type: FuzzString,
    id: FuzzString,
}

#[derive(Debug, Arbitrary)]
struct FuzzEntity {
    uid: Option<FuzzRef>,
    attrs: Option<Vec<(FuzzString, FuzzValue)>>,
    parents: Vec<FuzzRef>,
}

/// Mostly names the bundle knows; sometimes anything.
#[derive(Debug, Arbitrary)]
enum FuzzString {
    Type(u8),
    Id(u8),
    Action(u8),
    Name(u8),
    Any(String),
    /// A long string, to reach the length limits.
    Long(u16),
}

impl FuzzString {
    fn get(&self) -> String {
        let pick = |list: &[&str], i: &u8| list[usize::from(*i) % list.len()].to_owned();
        match self {
            Self::Type(i) => pick(&TYPES, i),
            Self::Id(i) => pick(&IDS, i),
            Self::Action(i) => pick(&ACTIONS, i),
            Self::Name(i) => pick(&NAMES, i),
            Self::Any(s) => s.clone(),
            Self::Long(n) => "x".repeat(usize::from(*n)),
        }
    }
}

/// A JSON-like value; `Nested` wraps a value in many lists at once, to reach the depth limit.
#[derive(Debug, Arbitrary)]
enum FuzzValue {
    Null,
    Bool(bool),
    Number(f64),
    Integer(i64),
    String(FuzzString),
    List(Vec<FuzzValue>),
    Record(Vec<(FuzzString, FuzzValue)>),
    Nested {
        depth: u8,
        inner: Box<FuzzValue>,
    },
    EntityRef {
        entity_type: FuzzString,
        id: FuzzString,
    },
    Extension {
        function: u8,
        arg: FuzzString,
    },
}

/// Values nested deeper than this in one input are cut short: prost itself never decodes more
/// than 100 levels, so deeper trees cannot reach the server (and would only test the harness).
const MAX_FUZZ_DEPTH: usize = 100;

impl FuzzValue {
    fn to_json(&self, depth: usize) -> Value {
        if depth >= MAX_FUZZ_DEPTH {
            return Value::Null;
        }
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Number(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
            Self::Integer(n) => Value::from(*n),
            Self::String(s) => Value::String(s.get()),
            Self::List(items) => Value::Array(
                items
                    .iter()
                    .take(16)
                    .map(|v| v.to_json(depth + 1))
                    .collect(),
            ),
            Self::Record(fields) => Value::Object(record(fields, depth + 1)),
            Self::Nested {
                depth: extra,
                inner,
            } => {
                let extra = usize::from(*extra).min(MAX_FUZZ_DEPTH - depth);
                let mut value = inner.to_json(depth + extra);
                for _ in 0..extra {
                    value = Value::Array(vec![value]);
                }
                value
            }
            Self::EntityRef { entity_type, id } => serde_json::json!({
                "__entity": {"type": entity_type.get(), "id": id.get()}
            }),
            Self::Extension { function, arg } => {
                let functions = ["decimal", "ip", "datetime", "duration", "unknown"];
                serde_json::json!({
                    "__extn": {
                        "fn": functions[usize::from(*function) % functions.len()],
                        "arg": arg.get()
                    }
                })
            }
        }
    }
}

fn record(fields: &[(FuzzString, FuzzValue)], depth: usize) -> Map<String, Value> {
    fields
        .iter()
        .take(16)
        .map(|(k, v)| (k.get(), v.to_json(depth)))
        .collect()
}

/// JSON to protobuf `Value`, as a client library would send it.
fn to_proto_value(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_proto_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_proto_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn to_proto_struct(map: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), to_proto_value(v)))
            .collect(),
    }
}

fn proto_ref(r: &FuzzRef) -> proto::EntityRef {
    proto::EntityRef {
        r#type: r.entity_type.get(),
        id: r.id.get(),
    }
}

impl FuzzCheck {
    fn to_proto(&self) -> proto::CheckRequest {
        proto::CheckRequest {
            contextual_tuples: Default::default(),
            principal: self.principal.as_ref().map(proto_ref),
            action: self.action.get(),
            resource: self.resource.as_ref().map(proto_ref),
            context: self
                .context
                .as_ref()
                .map(|fields| to_proto_struct(&record(fields, 1))),
            entities: self
                .entities
                .iter()
                .take(24)
                .map(|e| proto::Entity {
                    uid: e.uid.as_ref().map(proto_ref),
                    attrs: e.attrs.as_ref().map(|f| to_proto_struct(&record(f, 1))),
                    parents: e.parents.iter().take(8).map(proto_ref).collect(),
                })
                .collect(),
            properties: self
                .properties
                .iter()
                .take(24)
                .map(FuzzString::get)
                .collect(),
            token: String::new(),
            consistency: None,
        }
    }
}

/// The service under test, and the version of the snapshot it serves.
fn service_and_version() -> &'static (AuthorizationService, String) {
    static SERVICE: LazyLock<(AuthorizationService, String)> = LazyLock::new(|| {
        let snapshot = load_example();
        let version = snapshot.version().to_owned();
        let snapshots = Arc::new(SnapshotHandle::with(snapshot));
        (
            AuthorizationService::new(snapshots, default_limits()),
            version,
        )
    });
    &SERVICE
}

fn service() -> &'static AuthorizationService {
    &service_and_version().0
}

fn service_version() -> &'static str {
    &service_and_version().1
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    });
    &RUNTIME
}

/// The only code a request may be refused with while a snapshot serves: anything else
/// (INTERNAL above all) is a bug.
fn check_refusal(status: &tonic::Status) {
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "refused with {status:?}"
    );
    assert!(!status.message().is_empty());
}

fn check_response(response: &proto::CheckResponse) {
    let allow = proto::Decision::Allow as i32;
    assert_ne!(response.decision, proto::Decision::Unspecified as i32);
    assert_eq!(response.snapshot_version, service_version());
    if response.decision == allow {
        assert!(!response.determining_policies.is_empty(), "{response:?}");
        assert!(!response.relation_depth_exceeded, "{response:?}");
    }
    for property in &response.properties {
        if property.decision == allow {
            assert_eq!(response.decision, allow, "{response:?}");
            assert!(!property.determining_policies.is_empty(), "{response:?}");
        }
    }
}

/// A `CheckRequest` (or `BatchCheckRequest`) through the real gRPC handler: the first byte picks
/// raw protobuf bytes or a structure-aware request.
pub fn check_request(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let service = service();
    match mode % 4 {
        0 => {
            if let Ok(request) = proto::CheckRequest::decode(rest) {
                check_one(service, request);
            }
        }
        1 => {
            if let Ok(batch) = proto::BatchCheckRequest::decode(rest) {
                check_batch(service, batch);
            }
        }
        2 => {
            if let Ok(check) = FuzzCheck::arbitrary_take_rest(Unstructured::new(rest)) {
                check_one(service, check.to_proto());
            }
        }
        _ => {
            if let Ok(checks) = Vec::<FuzzCheck>::arbitrary_take_rest(Unstructured::new(rest)) {
                let checks = checks.iter().map(FuzzCheck::to_proto).collect();
                check_batch(
                    service,
                    proto::BatchCheckRequest {
                        checks,
                        consistency: None,
                    },
                );
            }
        }
    }
}

fn check_one(service: &AuthorizationService, request: proto::CheckRequest) {
    let answer = runtime().block_on(service.check(tonic::Request::new(request)));
    match answer {
        Ok(response) => check_response(response.get_ref()),
        Err(status) => check_refusal(&status),
    }
}

fn check_batch(service: &AuthorizationService, batch: proto::BatchCheckRequest) {
    let count = batch.checks.len();
    // Small batches are also decided one by one: each item must match its single Check.
    let singles = (count <= 4).then(|| batch.checks.clone());
    let answer = runtime().block_on(service.batch_check(tonic::Request::new(batch)));
    match answer {
        Ok(response) => {
            assert_eq!(response.get_ref().results.len(), count);
            assert_eq!(response.get_ref().snapshot_version, service_version());
            for result in &response.get_ref().results {
                match &result.result {
                    Some(batch_check_result::Result::Response(r)) => check_response(r),
                    Some(batch_check_result::Result::Error(e)) => {
                        check_refusal(&tonic::Status::new(tonic::Code::from(e.code), &e.message));
                    }
                    None => panic!("a batch item without a result"),
                }
            }
            for (single, result) in singles
                .into_iter()
                .flatten()
                .zip(&response.get_ref().results)
            {
                let alone = runtime().block_on(service.check(tonic::Request::new(single)));
                match (&result.result, alone) {
                    (Some(batch_check_result::Result::Response(r)), Ok(alone)) => {
                        assert_eq!(r, alone.get_ref(), "a batch item differs from its Check");
                    }
                    (Some(batch_check_result::Result::Error(e)), Err(status)) => {
                        assert_eq!(e.code, status.code() as i32);
                    }
                    (batched, alone) => {
                        panic!("batch item {batched:?} but alone {alone:?}")
                    }
                }
            }
        }
        Err(status) => check_refusal(&status),
    }
}

// ---------------------------------------------------------------------------------------------
// request_json

/// JSON as context and entity attributes, straight into the engine: the first byte picks JSON
/// text (any bytes) or a structure-aware value.
pub fn request_json(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let value = if mode % 2 == 0 {
        match serde_json::from_slice::<Value>(rest) {
            Ok(value) => value,
            Err(_) => return,
        }
    } else {
        match FuzzValue::arbitrary_take_rest(Unstructured::new(rest)) {
            Ok(value) => value.to_json(0),
            Err(_) => return,
        }
    };
    // The value's own fields, and the whole value under `scopes` (inserted last, so the
    // context always holds the value at its full depth).
    let attrs = match &value {
        Value::Object(map) => map.clone(),
        other => Map::from_iter([("data".to_owned(), other.clone())]),
    };
    let mut context = attrs.clone();
    context.insert("scopes".to_owned(), value.clone());
    let input = CheckInput {
        principal: entity_ref("User", "bob"),
        action: "read".to_owned(),
        resource: entity_ref("Document", "draft"),
        context,
        entities: vec![EntityInput {
            uid: entity_ref("Document", "draft"),
            attrs,
            parents: vec![entity_ref("Folder", "root")],
        }],
        properties: vec!["title".to_owned()],
        verified_principal: None,
    };
    let snapshot = example_snapshot();
    let too_deep = depth(&value) > DEFAULT_MAX_JSON_DEPTH;
    match snapshot.prepare(input, &default_limits()) {
        Ok(_) if too_deep => panic!("JSON nested {} deep was accepted", depth(&value)),
        Err(RequestError::TooDeep { field }) => assert!(
            field.starts_with("context") || field.starts_with("entities[0]"),
            "a depth error without its field: {field}"
        ),
        Err(
            ref error @ (RequestError::Invalid { ref field, .. }
            | RequestError::TooLarge { ref field, .. }),
        ) if field.is_empty() => panic!("an error without its field: {error}"),
        Err(error) => assert!(!error.to_string().is_empty()),
        Ok(request) => {
            if let Ok(decision) = request.decide() {
                check_decision(&decision);
            }
        }
    }
}

/// Nesting depth: 0 for a scalar, one more than the deepest item for a list or record.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
