//! The load bench's side of `benches/h2load.sh`, the third-party cross-check of its unary
//! `Check` numbers with h2load (nghttp2), which sends one prebuilt request body over and over.
//!
//! - `--h2load-setup DIR` writes the owner scenario's bundle into `DIR/bundle` and two unary
//!   `Check` requests as gRPC frames (a zero byte, the big-endian length, the protobuf):
//!   `DIR/deny.grpc` (a user who neither owns the document nor is an admin) and
//!   `DIR/allow.grpc` (its owner).
//! - `--h2load-verify ADDR FILE allow|deny|ok` sends FILE's request to ADDR through tonic and
//!   exits non-zero unless the status is OK and, for `allow`/`deny`, the decision is that one:
//!   h2load counts any HTTP 200 as a success whatever the `grpc-status` trailer says.

use std::net::SocketAddr;
use std::path::Path;

use prost::Message as _;
use verdict::api::proto;

use super::owner_scenario::{checks, expected, write_bundle};
use super::verdict_check;

/// `--h2load-setup DIR`.
pub fn setup(dir: &Path) {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    write_bundle(&bundle);
    let all = checks(10_000);
    for (name, want) in [("deny.grpc", false), ("allow.grpc", true)] {
        let check = all
            .iter()
            .find(|c| expected(c.user, c.action, c.document) == want)
            .expect("the scenario has both decisions");
        let body = verdict_check(*check).encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(&body);
        std::fs::write(dir.join(name), frame).unwrap();
    }
    println!("wrote {}/bundle, deny.grpc and allow.grpc", dir.display());
}

/// `--h2load-verify ADDR FILE allow|deny|ok`.
pub fn verify(addr: SocketAddr, file: &Path, want: &str) {
    let frame = std::fs::read(file).unwrap();
    let request = proto::CheckRequest::decode(frame.get(5..).unwrap_or_default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = runtime.block_on(async {
        let mut client =
            proto::authorization_client::AuthorizationClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
        client.check(request).await
    });
    let answer = match answer {
        Ok(answer) => answer.into_inner(),
        Err(status) => panic!("{}: {status}", file.display()),
    };
    let allowed = answer.decision == proto::Decision::Allow as i32;
    match want {
        "ok" => {}
        "allow" => assert!(allowed, "{}: {answer:?}", file.display()),
        "deny" => assert!(!allowed, "{}: {answer:?}", file.display()),
        other => panic!("expected allow, deny or ok, not {other}"),
    }
    println!(
        "{addr}: {} answered OK, {}",
        file.display(),
        if allowed { "allow" } else { "deny" }
    );
}
