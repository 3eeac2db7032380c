//! Every broken bundle under `tests/data/bad/` is rejected with exactly the messages in its
//! `expected.txt` (file:line:column each). Regenerate with `UPDATE_GOLDEN=1 cargo test`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::{Path, PathBuf};

use verdict_core::{LoadOptions, Snapshot};

fn cases() -> Vec<PathBuf> {
    let root = Path::new("tests/data/bad");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn each_broken_bundle_reports_its_golden_errors() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dirs = cases();
    assert!(
        dirs.len() >= 7,
        "expected the bad-bundle cases, found {dirs:?}"
    );
    let mut mismatches = Vec::new();
    for dir in dirs {
        let error = match Snapshot::load(&dir, &LoadOptions::default()) {
            Ok(_) => panic!("{} loaded, but it is broken", dir.display()),
            Err(error) => error.to_string() + "\n",
        };
        let golden = dir.join("expected.txt");
        if update {
            std::fs::write(&golden, &error).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", golden.display()));
        if expected != error {
            mismatches.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{error}",
                dir.display()
            ));
        }
        // Every message names a file inside the case, with a line where the problem has one.
        for line in error.lines() {
            assert!(line.starts_with(&dir.display().to_string()), "{line}");
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn unreadable_files_are_reported_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ok.cedar"),
        "permit (principal, action, resource);",
    )
    .unwrap();
    // A dangling symlink (a ConfigMap key whose target vanished) and a file that is not text.
    std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("dangling.cedar")).unwrap();
    std::fs::write(dir.path().join("binary.tuples"), [0xff, 0xfe, 0x00, 0x41]).unwrap();
    let error = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap_err();
    let text = error.to_string();
    let root = dir.path().display().to_string();
    assert_eq!(
        text,
        format!(
            "{root}/binary.tuples: cannot read: not valid utf-8 text\n{root}/dangling.cedar: cannot read: no such file or directory"
        )
    );
}

#[test]
fn a_missing_bundle_directory_is_one_clear_error() {
    let error = Snapshot::load(
        Path::new("tests/data/no-such-bundle"),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "tests/data/no-such-bundle: cannot read bundle directory: no such file or directory"
    );
}

#[test]
fn a_broken_file_among_good_ones_rejects_the_whole_bundle() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    assert!(Snapshot::load(dir.path(), &LoadOptions::default()).is_ok());
    std::fs::write(
        dir.path().join("extra.tuples"),
        "Team::\"eng\"#member@@User::\"x\"\n",
    )
    .unwrap();
    let error = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap_err();
    assert_eq!(error.errors().len(), 1);
    assert_eq!(error.errors()[0].line, Some(1));
    assert_eq!(error.errors()[0].column, Some(20));
}

/// Issue 15: an error quotes at most a short excerpt of the file, whatever the file holds.
#[test]
fn errors_quote_only_a_short_excerpt_of_the_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ok.cedar"),
        "permit (principal, action, resource);",
    )
    .unwrap();
    let secret = format!("S{}", "ecret".repeat(200));
    std::fs::write(
        dir.path().join("leak.tuples"),
        format!("{secret}:x:0:0:root:/root:/bin/bash\n"),
    )
    .unwrap();
    let error = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap_err();
    let message = &error.errors()[0];
    assert_eq!(message.path, dir.path().join("leak.tuples"));
    assert_eq!(message.line, Some(1));
    let quoted = message
        .message
        .split('`')
        .skip(1)
        .step_by(2)
        .find(|quoted| quoted.starts_with('S'))
        .unwrap();
    assert_eq!(quoted.chars().count(), 41, "{message}");
    assert!(quoted.ends_with('…'), "{message}");
    assert!(message.message.len() < 200, "{message}");
}
