//! The example bundle's decision tables (`policies/tests/*.yaml`), the same files
//! `verdict test policies` runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use verdict_core::cases;
use verdict_core::{LoadOptions, Snapshot};

#[test]
fn example_bundle_decision_tables_pass() {
    let dir = common::example_bundle();
    let snapshot = Snapshot::load(&dir, &LoadOptions::default()).unwrap();
    let files = cases::discover(&dir).unwrap();
    assert!(files.len() >= 4, "{files:?}");
    let mut total = 0;
    let mut failures = Vec::new();
    for file in files {
        for result in cases::run_file(&snapshot, &file).unwrap() {
            total += 1;
            if let Some(why) = result.failure {
                failures.push(format!(
                    "{}:{}: {}: {why}",
                    result.path.display(),
                    result.line,
                    result.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(total >= 40, "only {total} cases");
}

#[test]
fn a_wrong_expectation_fails_and_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.yaml");
    std::fs::write(
        &path,
        "cases:\n  - name: right\n    request: {principal: User::\"bob\", action: ListUsers, resource: Api::\"admin\"}\n    expect: {decision: deny}\n  - name: wrong\n    request: {principal: User::\"erin\", action: ListUsers, resource: Api::\"admin\"}\n    expect: {decision: deny, reasons: [admin-api-admins]}\n",
    )
    .unwrap();
    let snapshot = Snapshot::load(&common::example_bundle(), &LoadOptions::default()).unwrap();
    let results = cases::run_file(&snapshot, &path).unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].failure, None);
    assert_eq!(results[1].line, 5);
    assert_eq!(
        results[1].failure.as_deref(),
        Some("expected deny; got allow (determining: [admin-api-admins], errors: 0)")
    );
}

#[test]
fn a_malformed_case_file_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "cases:\n  - name: x\n    request: {principal: User::\"bob\"}\n    expect: {}\n",
    )
    .unwrap();
    let snapshot = Snapshot::load(&common::example_bundle(), &LoadOptions::default()).unwrap();
    let error = cases::run_file(&snapshot, &path).unwrap_err();
    assert_eq!(error.line, Some(3));
    assert!(error.message.contains("missing field `action`"), "{error}");
}
