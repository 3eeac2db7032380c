//! Compiles Verdict's `.proto` files (the repository's `proto/`) into the client's types with
//! protox, a pure-Rust protobuf compiler: building needs no system `protoc`. Client code only.

fn main() -> anyhow::Result<()> {
    let protos = [
        "../proto/verdict/v1/authorization.proto",
        "../proto/verdict/v1/relationships.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["../proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
