//! Generates the Pulsar protocol types from the vendored `proto/PulsarApi.proto` with protox
//! (a pure-Rust protobuf compiler), so no `protoc` binary is needed.

fn main() {
    println!("cargo:rerun-if-changed=proto/PulsarApi.proto");
    let descriptors = match protox::compile(["proto/PulsarApi.proto"], ["proto"]) {
        Ok(d) => d,
        Err(e) => panic!("cannot compile PulsarApi.proto: {e}"),
    };
    if let Err(e) = prost_build::Config::new().compile_fds(descriptors) {
        panic!("cannot generate Rust types from PulsarApi.proto: {e}");
    }
}
