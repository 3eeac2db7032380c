//! OpenFGA's own test suites (`assets/tests/*.yaml` in the openfga/openfga repository) run
//! through Verdict: every check, list-objects and list-users assertion of every stage whose
//! model and tuples use no conditions, asked of a snapshot loaded from that stage's model and
//! tuples, as a bundle would be.
//!
//! The project does not carry the suites' text, and no registry this project may use
//! publishes them (docs/relations.md names the packages checked), so the test runs only when
//! pointed at a copy of the folder, and is ignored otherwise:
//!
//! ```sh
//! VERDICT_OPENFGA_TESTS=/path/to/openfga/assets/tests \
//!     cargo test -p verdict-core --test openfga_suites -- --ignored --nocapture
//! ```
//!
//! How a stage maps to Verdict: its model is the bundle's `model.fga`; its tuples, with those
//! of the stages before it (OpenFGA keeps a store's tuples across model writes), are the
//! bundle's tuples, less those the stage's model no longer allows (OpenFGA ignores such a tuple
//! when it reads; Verdict would refuse it when loading). An assertion that expects an error
//! (`errorCode`) passes when Verdict refuses the question or reports the depth bound.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;
use verdict_core::relations::{ModelSource, RelationModel, parse_tuple_line};
use verdict_core::{EntityRef, LoadOptions, RelationSubject, Snapshot};

/// `user:anne` → `user::"anne"`, `group:g#member` → `group::"g"#member`, `user:*` → `user::*`.
fn to_verdict(fga: &str) -> String {
    let (object, relation) = match fga.split_once('#') {
        Some((o, r)) => (o, Some(r)),
        None => (fga, None),
    };
    let Some((t, id)) = object.split_once(':') else {
        // Not an OpenFGA object at all: let Verdict's parser refuse it.
        return fga.to_owned();
    };
    let uid = if id == "*" {
        format!("{t}::*")
    } else {
        format!("{t}::{}", serde_json::Value::String(id.to_owned()))
    };
    match relation {
        Some(r) => format!("{uid}#{r}"),
        None => uid,
    }
}

/// `user::"anne"` and the like back to OpenFGA's text.
fn to_openfga(subject: &RelationSubject) -> String {
    match subject {
        RelationSubject::Entity(e) => format!("{}:{}", e.entity_type, e.id),
        RelationSubject::Userset(e, relation) => format!("{}:{}#{relation}", e.entity_type, e.id),
        RelationSubject::Wildcard(t) => format!("{t}:*"),
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// A tuple as `(user, relation, object)`, with whether it carries a condition.
fn tuple_of(value: &Value) -> (String, String, String, bool) {
    (
        text(&value["user"]).to_owned(),
        text(&value["relation"]).to_owned(),
        text(&value["object"]).to_owned(),
        !value["condition"].is_null(),
    )
}

fn verdict_line((user, relation, object, _): &(String, String, String, bool)) -> String {
    format!("{}#{relation}@{}", to_verdict(object), to_verdict(user))
}

fn entity_ref(fga: &str) -> EntityRef {
    let (t, id) = fga.split_once(':').unwrap_or((fga, ""));
    EntityRef::new(t, id)
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_sequence()
        .map(|items| items.iter().map(|v| text(v).to_owned()).collect())
        .unwrap_or_default()
}

/// What one assertion came to.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
    /// Assertions of stages that use conditions: out of scope.
    conditional: usize,
    /// Assertions of stages whose model or tuples Verdict refuses to load, with why.
    not_loaded: Vec<String>,
}

/// Loads one stage as a bundle: `model.fga` and the tuples its model allows.
fn load_stage(model: &str, tuples: &[(String, String, String, bool)]) -> Result<Snapshot, String> {
    let path = PathBuf::from("model.fga");
    let parsed = RelationModel::build(&[ModelSource {
        path: &path,
        text: model,
    }])
    .map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?
    .ok_or("no model")?;
    let mut lines = String::new();
    for tuple in tuples {
        let line = verdict_line(tuple);
        let Ok(Some(parsed_tuple)) = parse_tuple_line(&line) else {
            return Err(format!("tuple `{line}` does not parse"));
        };
        if parsed.check_tuple(&parsed_tuple).is_ok() {
            let _ = writeln!(lines, "{line}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.fga"), model).unwrap();
    std::fs::write(dir.path().join("suite.tuples"), lines).unwrap();
    // A bundle needs a policy; the relation questions never read it.
    std::fs::write(
        dir.path().join("suite.cedar"),
        "permit (principal, action == Action::\"none\", resource);",
    )
    .unwrap();
    // OpenFGA's default resolution depth (`--resolve-node-limit`, 25) in place of Verdict's
    // (32): the suites test where it stops.
    let options = LoadOptions {
        max_relation_depth: 25,
        ..LoadOptions::default()
    };
    Snapshot::load(dir.path(), &options).map_err(|e| e.to_string())
}

fn run_stage(
    name: &str,
    stage: &Value,
    tuples: &[(String, String, String, bool)],
    tally: &mut Tally,
) {
    let assertions = |key: &str| stage[key].as_sequence().cloned().unwrap_or_default();
    let checks = assertions("checkAssertions");
    let list_objects = assertions("listObjectsAssertions");
    let list_users = assertions("listUsersAssertions");
    let count = checks.len() + list_objects.len() + list_users.len();
    let model = text(&stage["model"]);
    let conditional = model.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("condition ") || l.contains(" with ")
    }) || tuples.iter().any(|t| t.3)
        || [&checks, &list_objects, &list_users]
            .iter()
            .any(|list| list.iter().any(|a| !a["context"].is_null()));
    if conditional {
        tally.conditional += count;
        return;
    }
    let snapshot = match load_stage(model, tuples) {
        Ok(snapshot) => snapshot,
        Err(error) => {
            tally
                .not_loaded
                .push(format!("{name}: {count} assertions: {error}"));
            return;
        }
    };
    let contextual = |assertion: &Value| -> Vec<String> {
        assertion["contextualTuples"]
            .as_sequence()
            .map(|items| items.iter().map(|t| verdict_line(&tuple_of(t))).collect())
            .unwrap_or_default()
    };
    let record = |tally: &mut Tally, ok: bool, what: String| {
        if ok {
            tally.passed += 1;
        } else {
            tally.failed.push(format!("{name}: {what}"));
        }
    };
    for assertion in &checks {
        let (user, relation, object, _) = tuple_of(&assertion["tuple"]);
        let expects_error = !assertion["errorCode"].is_null();
        let expected = assertion["expectation"].as_bool().unwrap_or(false);
        let answer = snapshot
            .with_contextual_tuples(contextual(assertion))
            .map_err(|e| e.to_string())
            .and_then(|view| {
                let subject = RelationSubject::parse(&to_verdict(&user))?;
                view.check_relation(&entity_ref(&object), &relation, &subject)
                    .map_err(|e| e.to_string())
            });
        let (ok, got) = match &answer {
            Err(error) => (expects_error, format!("error {error}")),
            Ok(a) if a.relation_depth_exceeded => (expects_error, "depth exceeded".to_owned()),
            Ok(a) => (
                !expects_error && a.allowed == expected,
                a.allowed.to_string(),
            ),
        };
        record(
            tally,
            ok,
            format!(
                "Check({user}, {relation}, {object}): expected {}, verdict {got}",
                if expects_error {
                    "an error".to_owned()
                } else {
                    expected.to_string()
                }
            ),
        );
    }
    for assertion in &list_objects {
        let request = &assertion["request"];
        let (user, relation, object_type) = (
            text(&request["user"]),
            text(&request["relation"]),
            text(&request["type"]),
        );
        let expects_error = !assertion["errorCode"].is_null();
        let expected = strings(&assertion["expectation"]);
        let answer = snapshot
            .with_contextual_tuples(contextual(assertion))
            .map_err(|e| e.to_string())
            .and_then(|view| {
                let subject = RelationSubject::parse(&to_verdict(user))?;
                let (mut got, mut cursor, mut exceeded) = (BTreeSet::new(), None::<String>, false);
                loop {
                    let page = view
                        .lookup_resources(&subject, relation, object_type, 1_000, cursor.as_deref())
                        .map_err(|e| e.to_string())?;
                    exceeded |= page.relation_depth_exceeded;
                    got.extend(page.ids.iter().map(|id| format!("{object_type}:{id}")));
                    match page.next_cursor {
                        Some(next) => cursor = Some(next.as_str().to_owned()),
                        None => break Ok((got, exceeded)),
                    }
                }
            });
        let (ok, got) = match &answer {
            Err(error) => (expects_error, format!("error {error}")),
            Ok((_, true)) => (expects_error, "depth exceeded".to_owned()),
            Ok((got, false)) => (!expects_error && *got == expected, format!("{got:?}")),
        };
        record(
            tally,
            ok,
            format!(
                "ListObjects({user}, {relation}, {object_type}): expected {expected:?}, verdict {got}"
            ),
        );
    }
    for assertion in &list_users {
        let request = &assertion["request"];
        let (object, relation) = (text(&request["object"]), text(&request["relation"]));
        let filter = request["filters"]
            .as_sequence()
            .and_then(|f| f.first())
            .map(text)
            .unwrap_or_default();
        let (filter_type, filter_relation) = match filter.split_once('#') {
            Some((t, r)) => (t, Some(r)),
            None => (filter, None),
        };
        let expects_error = !assertion["errorCode"].is_null();
        let expected = strings(&assertion["expectation"]);
        let answer = snapshot
            .with_contextual_tuples(contextual(assertion))
            .map_err(|e| e.to_string())
            .and_then(|view| {
                let (mut got, mut cursor, mut exceeded) = (BTreeSet::new(), None::<String>, false);
                loop {
                    let page = view
                        .lookup_subjects(
                            &entity_ref(object),
                            relation,
                            (filter_type, filter_relation),
                            1_000,
                            cursor.as_deref(),
                        )
                        .map_err(|e| e.to_string())?;
                    exceeded |= page.relation_depth_exceeded;
                    got.extend(page.subjects.iter().map(to_openfga));
                    match page.next_cursor {
                        Some(next) => cursor = Some(next.as_str().to_owned()),
                        None => break Ok((got, exceeded)),
                    }
                }
            });
        let (ok, got) = match &answer {
            Err(error) => (expects_error, format!("error {error}")),
            Ok((_, true)) => (expects_error, "depth exceeded".to_owned()),
            Ok((got, false)) => (!expects_error && *got == expected, format!("{got:?}")),
        };
        record(
            tally,
            ok,
            format!(
                "ListUsers({object}, {relation}, {filter}): expected {expected:?}, verdict {got}"
            ),
        );
    }
}

fn run_file(path: &Path, tally: &mut Tally) {
    let suite: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for test in suite["tests"].as_sequence().unwrap() {
        let name = text(&test["name"]);
        let mut tuples = Vec::new();
        for (i, stage) in test["stages"].as_sequence().unwrap().iter().enumerate() {
            if let Some(written) = stage["tuples"].as_sequence() {
                tuples.extend(written.iter().map(tuple_of));
            }
            run_stage(&format!("{name} (stage {i})"), stage, &tuples, tally);
        }
    }
}

#[test]
#[ignore = "needs a copy of OpenFGA's assets/tests (VERDICT_OPENFGA_TESTS): no registry carries them"]
fn openfga_suites_pass() {
    let dir = std::env::var("VERDICT_OPENFGA_TESTS")
        .expect("VERDICT_OPENFGA_TESTS names the folder of OpenFGA's test suites");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no suite in {dir}");
    let mut tally = Tally::default();
    for file in &files {
        run_file(file, &mut tally);
    }
    let not_loaded: usize = tally
        .not_loaded
        .iter()
        .map(|s| {
            s.split_once(": ")
                .and_then(|(_, rest)| rest.split(' ').next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0)
        })
        .sum();
    eprintln!(
        "{} files: {} assertions pass, {} fail, {} in stages with conditions (not asked), {} in stages Verdict does not load",
        files.len(),
        tally.passed,
        tally.failed.len(),
        tally.conditional,
        not_loaded
    );
    for line in &tally.not_loaded {
        eprintln!("not loaded: {line}");
    }
    for line in &tally.failed {
        eprintln!("FAILED {line}");
    }
    assert!(tally.passed > 0, "no assertion was asked");
    assert!(
        tally.failed.is_empty(),
        "{} assertions fail (listed above)",
        tally.failed.len()
    );
}
