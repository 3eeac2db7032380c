//! Verdict's fuzz targets: each `fuzz_targets/<name>.rs` calls [`harness`]`::<name>` with the
//! fuzzer's bytes. The harness is a plain module so that `tests/it/fuzz_regressions.rs` in the main
//! crate runs the same code on every saved crash and seed, without libFuzzer.

pub mod harness;
