//! The author's tools as a user runs them (issue 21): `verdict validate` checks the decision
//! tables and warns about files it does not load, `verdict test` says when a file could not be
//! run. Each run's exit code, stdout and stderr are compared with a golden file under
//! `tests/data/authoring/`; regenerate with `UPDATE_GOLDEN=1`.

use std::process::Command;

/// The bundle the goldens run against: a valid bundle plus a misnamed policy file, a stray
/// file and a decision table with a typo in a key.
const BUNDLE: &str = "tests/data/authoring/bundle";

fn verdict(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("VERDICT_POLICIES")
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .unwrap();
    format!(
        "$ verdict {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        output
            .status
            .code()
            .map_or("signal".to_owned(), |c| c.to_string()),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Compares `got` with the golden file `tests/data/authoring/NAME.txt`.
pub(crate) fn assert_golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/authoring")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(expected, got, "{} differs", path.display());
}

#[test]
fn validate_checks_decision_tables_and_warns_about_files_it_does_not_load() {
    assert_golden("validate", &verdict(&["validate", BUNDLE]));
}

#[test]
fn validate_strict_makes_unloaded_files_errors() {
    assert_golden(
        "validate-strict",
        &verdict(&["validate", "--strict", BUNDLE]),
    );
}

#[test]
fn test_summary_says_a_file_could_not_be_read() {
    assert_golden("test", &verdict(&["test", BUNDLE]));
}

#[test]
fn test_reports_json_with_coverage() {
    assert_golden(
        "test-json",
        &verdict(&["test", BUNDLE, "--output", "json", "--coverage"]),
    );
}

#[test]
fn test_filter_runs_the_matching_cases_and_refuses_a_filter_that_matches_none() {
    assert_golden(
        "test-filter",
        &verdict(&[
            "test",
            BUNDLE,
            "--filter",
            "may read",
            "--filter",
            "nothing-else",
            "-v",
        ]),
    );
    assert_golden(
        "test-filter-none",
        &verdict(&["test", "policies", "--filter", "no such case"]),
    );
}

/// The coverage of the example bundle, as the README shows it.
#[test]
fn test_coverage_of_the_example_bundle() {
    assert_golden(
        "test-coverage-example",
        &verdict(&["test", "policies", "--coverage"]),
    );
}

/// Installs junitparser (PyPI) into `.tools/` once, in a venv of its own.
fn junitparser_python() -> std::path::PathBuf {
    use std::sync::Mutex;
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap();
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/junitparser-5.0.3");
    let python = venv.join("bin/python");
    let ready = venv.join("installed");
    if std::fs::metadata(&ready).is_err() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(status.success(), "python3 -m venv failed");
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "junitparser==5.0.3"])
            .status()
            .unwrap();
        assert!(status.success(), "pip install junitparser failed");
        std::fs::write(&ready, "").unwrap();
    }
    python
}

/// JUnit output as a CI system reads it: parsed by junitparser, a failed case is a failure,
/// an unreadable case file an error, names and lines as written.
#[test]
fn junit_output_is_read_by_junitparser() {
    let output = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["test", BUNDLE, "--output", "junit"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.xml");
    std::fs::write(&report, &output.stdout).unwrap();
    let script = r#"
import json, sys
from junitparser import JUnitXml, Failure, Error
xml = JUnitXml.fromfile(sys.argv[1])
suites = []
for suite in xml:
    cases = []
    for case in suite:
        kinds = [type(r).__name__ for r in case.result]
        cases.append([case.name, kinds])
    suites.append({"name": suite.name, "tests": suite.tests, "failures": suite.failures, "errors": suite.errors, "cases": cases})
print(json.dumps({"tests": xml.tests, "failures": xml.failures, "errors": xml.errors, "suites": suites}))
"#;
    let parsed = Command::new(junitparser_python())
        .arg("-c")
        .arg(script)
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&parsed.stdout).unwrap();
    assert_eq!(
        parsed,
        serde_json::json!({
            "tests": 5, "failures": 1, "errors": 1,
            "suites": [
                {"name": "tests/data/authoring/bundle/tests/documents.yaml", "tests": 4, "failures": 1, "errors": 0,
                 "cases": [["owner may read", []], ["team member may read", []],
                           ["a stranger may not read", []],
                           ["a stranger <eve> & \"friends\" may read (a wrong expectation)", ["Failure"]]]},
                {"name": "tests/data/authoring/bundle/tests/typo.yaml", "tests": 1, "failures": 0, "errors": 1,
                 "cases": [["(read the case file)", ["Error"]]]},
            ]
        })
    );
}

/// `--watch` runs again when a decision table changes.
#[test]
fn test_watch_runs_again_when_a_case_file_changes() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path();
    std::fs::create_dir(bundle.join("tests")).unwrap();
    for name in ["schema.cedarschema", "documents.cedar", "documents.tuples"] {
        std::fs::copy(std::path::Path::new(BUNDLE).join(name), bundle.join(name)).unwrap();
    }
    let cases = bundle.join("tests/cases.yaml");
    let case = |decision: &str| {
        format!(
            "cases:\n  - name: owner may read\n    request: {{principal: User::\"alice\", action: read, resource: Document::\"d1\"}}\n    expect: {{decision: {decision}}}\n"
        )
    };
    std::fs::write(&cases, case("allow")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(["test", "--watch"])
        .arg(bundle)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let next_summary = |lines: &mut std::io::Lines<_>| loop {
        let line: String = lines.next().expect("verdict exited").unwrap();
        if line.contains(" passed, ") {
            return line;
        }
    };
    assert_eq!(next_summary(&mut lines), "1 passed, 0 failed");
    // Change the case only once the watch is set up (a decision table is not in the poll
    // fingerprint, which only backs up the watch for bundle files).
    loop {
        let line = lines.next().expect("verdict exited").unwrap();
        if line.starts_with("watching ") {
            break;
        }
    }
    std::fs::write(&cases, case("deny")).unwrap();
    let second = next_summary(&mut lines);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(second, "0 passed, 1 failed");
}

/// Copies a bundle directory (one level of subdirectories, as the example has) into `to`.
fn copy_bundle(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir(&target).unwrap();
            copy_bundle(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// `verdict fmt` formats the example's policies with Cedar's formatter, after which
/// `fmt --check` is clean and every decision table still passes (formatting changed no
/// meaning); an unparsable file is left alone and reported at file:line:column.
#[test]
fn fmt_formats_policies_without_changing_decisions_and_check_reports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("policies");
    std::fs::create_dir(&bundle).unwrap();
    copy_bundle(std::path::Path::new("policies"), &bundle);
    let bundle_arg = bundle.to_str().unwrap();

    let check = verdict(&["fmt", "--check", bundle_arg]);
    assert!(check.contains("exit: 1\n"), "{check}");
    assert!(
        check.contains("/policies/documents.cedar: not formatted"),
        "{check}"
    );

    let format = verdict(&["fmt", bundle_arg]);
    assert!(format.contains("exit: 0\n"), "{format}");
    assert!(format.contains("formatted "), "{format}");
    let again = verdict(&["fmt", "--check", bundle_arg]);
    assert!(
        again.contains("exit: 0\n--- stdout\n--- stderr\n"),
        "{again}"
    );
    let tests = verdict(&["test", bundle_arg]);
    assert!(
        tests.contains("exit: 0\n--- stdout\n72 passed, 0 failed\n"),
        "{tests}"
    );

    assert_golden(
        "fmt-invalid",
        &verdict(&["fmt", "--check", "tests/data/bad/invalid-cedar"]),
    );
}
