//! Generates the Rust types and gRPC stubs for `proto/raft_server.proto`. protox parses the
//! file in Rust, so no `protoc` is needed on any machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // compile_fds cannot see the .proto inputs itself, so declare them.
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["raft_server.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Malformed bytes are the caller's fault: see src/codec.rs.
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
