//! The library half of the broker binary: only what a harness outside the binary must call.
//! Configuration parsing lives here so that the fuzz targets (`crates/magnetar-fuzz`) can feed
//! it untrusted TOML and properties text; everything else stays private to `main.rs`.

pub mod config;
pub mod remote_store;
