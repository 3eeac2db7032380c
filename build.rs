//! Compiles `proto/` into Rust with protox (a pure-Rust protobuf compiler), so building needs no
//! system `protoc`. The encoded descriptor set is kept for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> anyhow::Result<()> {
    let protos = [
        "proto/verdict/v1/authorization.proto",
        "proto/verdict/v1/relationships.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("verdict_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;

    // The commit for verdict_build_info: $VERDICT_GIT_COMMIT (container builds have no .git),
    // else git, else "unknown".
    println!("cargo:rerun-if-env-changed=VERDICT_GIT_COMMIT");
    let from_env = std::env::var("VERDICT_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric()));
    let commit = from_env
        .or_else(|| {
            std::process::Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|out| out.status.success())
                .and_then(|out| String::from_utf8(out.stdout).ok())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=VERDICT_GIT_COMMIT={commit}");
    for path in [".git/HEAD", ".git/refs/heads"] {
        if std::fs::metadata(path).is_ok() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Ok(())
}
