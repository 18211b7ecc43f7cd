//! Compiles the vendored Prometheus remote protocol definitions with a pure-Rust
//! protobuf compiler (protox), so a fresh machine builds with cargo alone.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/types.proto",
        "proto/remote.proto",
        "proto/write_v2.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new()
        .bytes([".prometheus.Chunk.data"])
        .compile_fds(descriptors)?;
    Ok(())
}
