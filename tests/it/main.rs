//! Every integration test, in one binary: one link of the server and its dependencies instead of
//! one per file (`cargo test --test it`, or `cargo test --test it grpc::` for one file's tests).
//! Each module was a test crate of its own; the harness they share is in `tests/common/` and
//! `tests/envoy/harness.rs`, where the benchmarks also find it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, and the harness they share"
)]

mod architecture;
mod auth;
mod authoring;
mod authzen;
mod bad_bundles;
mod cli;
mod clients;
mod config_file;

#[path = "../common/mod.rs"]
mod common;
mod decision_tables;
mod differential;
mod envoy;
mod envoy_config;
#[allow(dead_code, reason = "the benchmarks use the parts the tests do not")]
#[path = "../envoy/harness.rs"]
mod envoy_harness;
mod ext_authz;
mod fuzz_regressions;
mod grpc;
mod helm;
mod hostile_clients;
mod http_api;
mod limits;
mod observability;
mod otel;
mod policy_scope;
mod readme;
mod relations_api;
mod reload;
mod shutdown;
mod slice;
mod stock_clients;
mod store;
mod tls;
mod tokens;
