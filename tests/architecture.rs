//! The engine and the relations index stay pure: no async runtime, networking, watching,
//! metrics or I/O (DESIGN.md, STYLE.md section 1).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::{Path, PathBuf};

fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn engine_and_relations_do_no_io_and_know_no_transport() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for module in ["engine", "relations"] {
        files.push(src.join(format!("{module}.rs")));
        files.extend(rust_files(&src.join(module)));
    }
    assert!(files.len() > 5, "{files:?}");
    let forbidden = [
        "tokio::",
        "tonic::",
        "notify::",
        "metrics::",
        "std::fs",
        "std::net",
        "crate::api",
        "crate::server",
        "crate::reload",
    ];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may use helpers (tempfiles, proptest); only the code above them counts.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for word in forbidden {
            assert!(!code.contains(word), "{} mentions `{word}`", file.display());
        }
    }
}
