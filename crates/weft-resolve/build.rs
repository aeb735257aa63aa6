//! Generates the `weft.resolve.v1` messages and service from `proto/` without a system
//! `protoc`: protox parses the proto file, tonic-prost-build writes the Rust code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/weft/resolve/v1/resolve.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        // Served and dialled over weft's own hyper setup: no tonic transport (and no axum).
        .build_transport(false)
        .btree_map(".weft.resolve.v1.EndpointMeta.labels")
        .compile_fds(fds)?;
    Ok(())
}
