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
