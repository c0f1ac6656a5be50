//! Types generated from the vendored `proto/PulsarApi.proto` (Apache Pulsar's wire protocol).
#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/pulsar.proto.rs"));
