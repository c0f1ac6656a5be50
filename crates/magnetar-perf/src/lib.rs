//! magnetar-perf: an OpenMessaging-Benchmark-style benchmark for any Kafka-compatible broker.
//!
//! It owns the workload and driver files (OMB's YAML shapes), the fixed-rate send schedule,
//! latency histograms, the JSON result, the HTML report and `compare`. It talks to brokers
//! only through a real Kafka client (librdkafka via the `rdkafka` crate), and must not depend
//! on any other magnetar crate: it measures Magnetar and whatever users run today alike.
//!
//! Main types: [`workload::Workload`], [`driver::Driver`], [`schedule::RateSchedule`],
//! [`runner::run`] which returns a [`result::RunResult`], [`report::html`] and
//! [`result::compare`].
//!
//! Measurement model: every payload starts with the message's intended send time (from the
//! schedule) and its actual send time. Publish latency is send to acknowledgement; end-to-end
//! latency is send to receipt (OMB's definition) and, separately, intended send time to receipt;
//! send delay is intended to actual send, which is where a stalled producer shows up instead of
//! silently lowering the load (coordinated omission). Consumers use manual partition assignment
//! and track their own positions, so no consumer-group protocol is needed.

pub mod clock;
pub mod driver;
pub mod payload;
pub mod process;
pub mod report;
pub mod result;
pub mod runner;
pub mod schedule;
pub mod scrape;
pub mod stats;
pub mod workload;
