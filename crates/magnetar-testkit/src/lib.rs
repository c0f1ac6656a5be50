//! The shared test kit of the workspace (issue #15 item 5), a dev-dependency only: nothing
//! depends on it at run time (`crates/magnetar/tests/layering.rs` checks it), and it may depend
//! on every crate it starts.
//!
//! What it offers, so integration tests stop copying their set-up:
//! - [`TestBroker`]: a broker in this process over a [`MemoryStore`](magnetar_metadata::MemoryStore)
//!   and a temporary data dir, with the clock the test chooses (the system clock or a
//!   [`ManualClock`](magnetar_broker::ManualClock)), and its Kafka and Pulsar listeners on
//!   127.0.0.1:0 when asked for.
//! - [`cluster::Cluster`]: several brokers over one shared metadata store and one object store
//!   (cluster mode in one process: shared WAL, bundle ownership).
//! - [`kafka`]: a raw Kafka client (frames encoded and decoded with `kafka-protocol`).
//! - [`pulsar`]: a raw Pulsar client (frames with magnetar-pulsar's own codec).
//! - [`storage`]: a [`SegmentStore`](magnetar_storage::SegmentStore) wrapper with hooks (fail,
//!   count or hold calls) and the tiered-storage helpers.
//! - `admin` (feature `admin`): requests to the admin API's router in process, answers as JSON.
//! - [`wait`]: bounded waits on an observable condition, the replacement for sleeps that
//!   order events.
//!
//! Unit tests inside a crate's `src/` cannot use it (it depends on that crate); they keep their
//! local helpers.

#[cfg(feature = "admin")]
pub mod admin;
pub mod broker;
pub mod cluster;
pub mod kafka;
pub mod pulsar;
pub mod storage;
pub mod wait;

pub use broker::{BrokerBuilder, TestBroker};
pub use wait::{eventually, eventually_within, wait_until, wait_until_blocking, WAIT};
