//! The direct context reader against Cedar's own: random context types under a schema (every
//! kind of attribute type, nested, required or optional, entity types plain, enumerated and
//! namespaced, the four extension types), random contexts for them (mostly of the declared
//! shape, some with one value changed: a wrong type, an escape, an extra or missing attribute,
//! an invalid extension string, a number out of range). Wherever the reader returns a context,
//! Cedar's `Context::from_json_value` and `Request::new` under the schema must accept the JSON
//! and build an equal context; wherever the JSON is of the declared shape and Cedar accepts it,
//! the reader must read it (so the comparison covers the forms callers send).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::fmt::Write as _;
use std::str::FromStr;

use cedar_policy::{Context, EntityUid, Request, Schema};
use serde_json::{Map, Value, json};

use super::ContextTypes;

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

#[derive(Debug, Clone)]
enum Ty {
    Bool,
    Long,
    String,
    Set(Box<Ty>),
    Record(Vec<(String, Ty, bool)>),
    Entity(&'static str),
    Extension(&'static str),
}

const ENTITY_TYPES: [&str; 4] = ["Tenant", "User", "Color", "Acme::Team"];
const EXTENSION_TYPES: [&str; 4] = ["ipaddr", "decimal", "datetime", "duration"];
const ATTRIBUTE_NAMES: [&str; 7] = ["a", "b", "scopes", "ip", "tenant", "type", "id"];

const SCHEMA_PREFIX: &str = r#"
entity Tenant;
entity User;
entity Color enum ["red", "blue"];
namespace Acme { entity Team; }
"#;

fn gen_type(rng: &mut Rng, depth: usize) -> Ty {
    let kinds = if depth == 0 { 5 } else { 7 };
    match rng.below(kinds) {
        0 => Ty::Bool,
        1 => Ty::Long,
        2 => Ty::String,
        3 => Ty::Entity(rng.pick(&ENTITY_TYPES)),
        4 => Ty::Extension(rng.pick(&EXTENSION_TYPES)),
        5 => Ty::Set(Box::new(gen_type(rng, depth - 1))),
        _ => gen_record(rng, depth - 1),
    }
}

fn gen_record(rng: &mut Rng, depth: usize) -> Ty {
    let mut names: Vec<&str> = ATTRIBUTE_NAMES.to_vec();
    let count = rng.below(5);
    let mut attrs = Vec::new();
    for _ in 0..count {
        let name = names.remove(rng.below(names.len()));
        attrs.push((name.to_owned(), gen_type(rng, depth), rng.chance(60)));
    }
    Ty::Record(attrs)
}

fn schema_type(ty: &Ty, out: &mut String) {
    match ty {
        Ty::Bool => out.push_str("Bool"),
        Ty::Long => out.push_str("Long"),
        Ty::String => out.push_str("String"),
        Ty::Set(element) => {
            out.push_str("Set<");
            schema_type(element, out);
            out.push('>');
        }
        Ty::Record(attrs) => {
            out.push('{');
            for (name, ty, required) in attrs {
                write!(out, "\"{name}\"{}: ", if *required { "" } else { "?" }).unwrap();
                schema_type(ty, out);
                out.push_str(", ");
            }
            out.push('}');
        }
        Ty::Entity(name) | Ty::Extension(name) => out.push_str(name),
    }
}

/// A value unlike the declared one, or a form the reader leaves to Cedar.
fn odd_value(rng: &mut Rng) -> Value {
    let odd = [
        json!(true),
        json!(7),
        json!(-9_223_372_036_854_775_808_i64),
        json!(18_446_744_073_709_551_615_u64),
        json!("x"),
        json!([]),
        json!([1, "a"]),
        json!({}),
        json!(null),
        json!({"type": "Tenant", "id": "t"}),
        json!({"type": "User", "id": "u"}),
        json!({"type": "Tenant", "id": "t", "extra": 1}),
        json!({"type": "Tenant"}),
        json!({"type": "Tenant", "id": 3}),
        json!({"type": " Tenant", "id": "t"}),
        json!({"__entity": {"type": "Tenant", "id": "t"}}),
        json!({"__extn": {"fn": "ip", "arg": "10.0.0.1"}}),
        json!({"__extn": {"fn": "unknown", "arg": "u"}}),
        json!({"fn": "decimal", "arg": "1.5"}),
        json!({"__expr": "1"}),
        json!("10.0.0.1"),
        json!("1.5"),
        json!("not an address"),
    ];
    rng.pick(&odd)
}

/// A value of type `ty`; `plain` is cleared when the value is not of the declared shape (a
/// changed value) or names an enumerated entity (left to Cedar by design).
fn gen_value(rng: &mut Rng, ty: &Ty, plain: &mut bool) -> Value {
    if rng.chance(4) {
        *plain = false;
        return odd_value(rng);
    }
    match ty {
        Ty::Bool => json!(rng.chance(50)),
        Ty::Long => json!(rng.pick(&[0_i64, 1, -1, 42, i64::MAX, i64::MIN])),
        Ty::String => json!(rng.pick(&["", "a", "documents:read", "__entity", "é€"])),
        Ty::Set(element) => {
            let n = rng.below(4);
            Value::Array((0..n).map(|_| gen_value(rng, element, plain)).collect())
        }
        Ty::Record(attrs) => {
            let mut out = Map::new();
            for (name, ty, required) in attrs {
                if *required || rng.chance(50) {
                    out.insert(name.clone(), gen_value(rng, ty, plain));
                }
            }
            if rng.chance(3) {
                *plain = false;
                out.insert(rng.pick(&["extra", "__extn", "a"]).to_owned(), json!(1));
            }
            if rng.chance(3) && !out.is_empty() {
                *plain = false;
                let key = out.keys().next().unwrap().clone();
                out.remove(&key);
            }
            Value::Object(out)
        }
        Ty::Entity(name) => {
            if *name == "Color" {
                *plain = false;
            }
            json!({"type": name, "id": rng.pick(&["red", "t", "", "\"q\""])})
        }
        Ty::Extension(name) => {
            let text = match *name {
                "ipaddr" => ["10.0.0.1", "192.168.0.0/16", "::1", "999.1.1.1"],
                "decimal" => ["1.5", "-0.0001", "922337203685477.5807", "1.23456"],
                "datetime" => ["2024-10-15", "2024-10-15T11:35:00Z", "2024-13-01", "x"],
                _ => ["1h30m", "-2d", "0ms", "1x"],
            };
            json!(rng.pick(&text))
        }
    }
}

fn uid(text: &str) -> EntityUid {
    EntityUid::from_str(text).unwrap()
}

#[test]
fn the_reader_builds_what_cedar_builds_under_a_schema() {
    let (principal, action, resource) = (
        uid(r#"User::"p""#),
        uid(r#"Action::"act""#),
        uid(r#"Tenant::"r""#),
    );
    let (mut read, mut plain_accepted) = (0, 0);
    const CASES: u64 = 3_000;
    for seed in 1..=CASES {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let ty = gen_record(&mut rng, 3);
        let mut text = String::new();
        schema_type(&ty, &mut text);
        let schema_text = format!(
            "{SCHEMA_PREFIX}action act appliesTo {{ principal: User, resource: Tenant, context: {text} }};"
        );
        let schema = Schema::from_cedarschema_str(&schema_text)
            .unwrap_or_else(|e| panic!("seed {seed}: {e:?}\n{schema_text}"))
            .0;
        let types = ContextTypes::build(Some(&schema));
        let mut plain = true;
        let Value::Object(fields) = gen_value(&mut rng, &ty, &mut plain) else {
            continue; // the top level was changed into something that is no record
        };
        let ours = types.read(&fields, &action);
        let theirs =
            Context::from_json_value(Value::Object(fields.clone()), Some((&schema, &action)))
                .map_err(|e| format!("{e:?}"))
                .and_then(|context| {
                    Request::new(
                        principal.clone(),
                        action.clone(),
                        resource.clone(),
                        context.clone(),
                        Some(&schema),
                    )
                    .map(|_| context)
                    .map_err(|e| format!("{e:?}"))
                });
        let case = || {
            format!(
                "seed {seed}\nschema: {schema_text}\ncontext: {}",
                Value::Object(fields.clone())
            )
        };
        match (&ours, &theirs) {
            (Some(ours), Ok(theirs)) => {
                assert_eq!(ours, theirs.as_ref(), "{}", case());
                read += 1;
            }
            (Some(_), Err(e)) => panic!("the reader accepted what Cedar refuses ({e})\n{}", case()),
            (None, Ok(_)) if plain => {
                panic!("the reader left a plain context to Cedar\n{}", case())
            }
            (None, _) => {}
        }
        if plain && theirs.is_ok() {
            plain_accepted += 1;
        }
    }
    // Most generated contexts are of the declared shape: the comparison is not vacuous.
    assert!(
        read > CASES as usize / 4,
        "only {read} of {CASES} read directly"
    );
    // Every plain context Cedar accepts was read directly (the match above); there must be
    // many of them, or the forms callers send would go untested.
    assert!(
        plain_accepted > CASES as usize / 4,
        "only {plain_accepted} of {CASES} contexts were plain and accepted by Cedar"
    );
}

fn gen_untyped(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 5 } else { 8 }) {
        0 => json!(rng.chance(50)),
        1 => json!(rng.pick(&[0_i64, -5, i64::MAX])),
        2 => json!(rng.pick(&["", "x", "10.0.0.1"])),
        3 => odd_value(rng),
        4 => json!({"type": "User", "id": "u"}),
        5 => Value::Array(
            (0..rng.below(3))
                .map(|_| gen_untyped(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut out = Map::new();
            for _ in 0..rng.below(4) {
                let name = rng.pick(&ATTRIBUTE_NAMES).to_owned();
                out.insert(name, gen_untyped(rng, depth - 1));
            }
            Value::Object(out)
        }
    }
}

#[test]
fn the_reader_builds_what_cedar_builds_without_a_schema() {
    let types = ContextTypes::build(None);
    let action = uid(r#"Action::"act""#);
    let mut read = 0;
    const CASES: u64 = 3_000;
    for seed in 1..=CASES {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
        let mut fields = Map::new();
        for _ in 0..rng.below(5) {
            let name = rng.pick(&ATTRIBUTE_NAMES).to_owned();
            fields.insert(name, gen_untyped(&mut rng, 3));
        }
        let ours = types.read(&fields, &action);
        let theirs = Context::from_json_value(Value::Object(fields.clone()), None);
        match (&ours, &theirs) {
            (Some(ours), Ok(theirs)) => {
                assert_eq!(
                    ours,
                    theirs.as_ref(),
                    "seed {seed}: {}",
                    Value::Object(fields)
                );
                read += 1;
            }
            (Some(_), Err(e)) => panic!(
                "seed {seed}: the reader accepted what Cedar refuses ({e:?}): {}",
                Value::Object(fields)
            ),
            (None, _) => {}
        }
    }
    assert!(
        read > CASES as usize / 4,
        "only {read} of {CASES} read directly"
    );
}
