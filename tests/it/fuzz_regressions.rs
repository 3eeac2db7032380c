//! The fuzz targets' harness (`fuzz/src/harness.rs`), run without libFuzzer on every checked-in
//! seed (`fuzz/seeds/<target>/`), every input that once crashed (`fuzz/regressions/<target>/`),
//! and a fixed pseudo-random sweep, so the harness keeps compiling and every crash the fuzzers
//! found stays fixed. The coverage-guided runs themselves are `cargo fuzz` (see
//! docs/security.md and `.ci/fuzz-smoke`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

#[allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "the fuzz harness, shared with the fuzz crate"
)]
#[path = "../../fuzz/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

use prost::Message;
use verdict::api::proto;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file in `fuzz/<kind>/<target>/`, sorted; none if the directory does not exist.
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Deterministic inputs of assorted lengths (xorshift), the same on every run.
fn sweep(count: usize, max_len: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = usize::try_from(next() % max_len as u64).unwrap();
            (0..len).map(|_| next() as u8).collect()
        })
        .collect()
}

fn replay(target: &str, run: fn(&[u8]), sweep_count: usize) -> usize {
    let mut ran = 0;
    for kind in ["seeds", "regressions"] {
        for (path, bytes) in inputs(kind, target) {
            // A panic names the input that caused it.
            let result = std::panic::catch_unwind(|| run(&bytes));
            assert!(result.is_ok(), "{} fails again", path.display());
            ran += 1;
        }
    }
    for bytes in sweep(
        sweep_count,
        512,
        0x9e37_79b9_7f4a_7c15 ^ target.len() as u64,
    ) {
        run(&bytes);
        ran += 1;
    }
    ran
}

#[test]
fn tuple_line_inputs_replay() {
    assert!(!inputs("seeds", "tuple_line").is_empty());
    replay("tuple_line", harness::tuple_line, 5_000);
}

#[test]
fn check_request_inputs_replay() {
    // The seeds are the example's decision tests as protobuf: they must decode, or the fuzzer
    // starts from nothing.
    let seeds = inputs("seeds", "check_request");
    assert!(seeds.len() >= 20, "{} seeds", seeds.len());
    for (path, bytes) in &seeds {
        match bytes[0] {
            0 => {
                let request = proto::CheckRequest::decode(&bytes[1..]).unwrap();
                assert!(request.principal.is_some(), "{}", path.display());
            }
            1 => {
                let batch = proto::BatchCheckRequest::decode(&bytes[1..]).unwrap();
                assert!(!batch.checks.is_empty(), "{}", path.display());
            }
            other => panic!("{}: mode {other}", path.display()),
        }
    }
    replay("check_request", harness::check_request, 2_000);
}

#[test]
fn request_json_inputs_replay() {
    assert!(!inputs("seeds", "request_json").is_empty());
    replay("request_json", harness::request_json, 2_000);
}

#[test]
fn bundle_dir_inputs_replay() {
    replay("bundle_dir", harness::bundle_dir, 200);
    harness::remove_scratch_dir();
}
