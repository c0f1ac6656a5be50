//! The bodies of Magnetar's fuzz targets, one function per decoder that takes untrusted bytes.
//!
//! Why a crate: the cargo-fuzz binaries in `fuzz/` (built outside the workspace, with
//! libFuzzer's instrumentation) and the workspace test `tests/corpus.rs` (which replays every
//! committed corpus and regression input on every CI run, no fuzzer needed) must run the same
//! checks. It is a leaf: it may depend on every crate, and nothing depends on it. Like the
//! binary, it names no wire crate (`kafka-protocol`, `prost`) itself: it goes through the front
//! ends' own decoders and encoders.
//!
//! Every target asserts properties, not only "does not panic" (a failed assertion is a crash to
//! libFuzzer): decode -> encode -> decode round trips where the codec is ours, agreement between
//! a validator and the independent decoder that later reads what it accepted, and limits (no
//! output past the valid prefix, sizes bounded by the input).
//!
//! Main items: [`TARGETS`] and [`run`].

pub mod auth;
pub mod config;
pub mod convert;
pub mod kafka;
pub mod pulsar;
pub mod storage;

/// A fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` binary and the
/// `fuzz/corpus/<name>/` directory) and its body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `fuzz/README.md` lists them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "kafka_request",
        run: kafka::request,
    },
    Target {
        name: "kafka_batch",
        run: kafka::batch,
    },
    Target {
        name: "pulsar_frame",
        run: pulsar::frame,
    },
    Target {
        name: "pulsar_entry",
        run: pulsar::entry,
    },
    Target {
        name: "kafka_to_pulsar",
        run: convert::kafka_to_pulsar,
    },
    Target {
        name: "pulsar_to_kafka",
        run: convert::pulsar_to_kafka,
    },
    Target {
        name: "entry_header",
        run: storage::entry_header,
    },
    Target {
        name: "segment_recovery",
        run: storage::segment_recovery,
    },
    Target {
        name: "sasl",
        run: auth::sasl,
    },
    Target {
        name: "config",
        run: config::config,
    },
];

/// Runs the target called `name` on `data`; `false` if there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match TARGETS.iter().find(|t| t.name == name) {
        Some(t) => {
            (t.run)(data);
            true
        }
        None => false,
    }
}

/// Sets the length and CRC32C fields of a Kafka v2 record batch so that they match its bytes,
/// so the fuzzer gets past the checksum to the records. Shorter inputs are left alone.
pub fn fix_kafka_batch(batch: &mut [u8]) {
    if batch.len() < magnetar_format::kafka::BATCH_HEADER_LEN {
        return;
    }
    let length = u32::try_from(batch.len() - 12).unwrap_or(u32::MAX);
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// A current-thread tokio runtime for the targets that call async code, one per thread.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the fuzz targets");
    }
    RUNTIME.with(|rt| rt.block_on(f))
}
