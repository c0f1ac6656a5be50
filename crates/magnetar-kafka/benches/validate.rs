//! The CPU cost of produce validation (`magnetar_kafka::validate`): one batch of 16 records of
//! 1 KiB each, uncompressed and per codec, encoded by kafka-protocol as a client would. The
//! throughput is over the records' uncompressed bytes, so the codecs compare on what they
//! decompress; for compressed batches almost all the time is decompression.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use magnetar_kafka::validate::{validate_batch, Limits};

fn batch(compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..16)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 1,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("key-{i}"))),
            // Text-like, compressible about as much as typical JSON payloads.
            value: Some(Bytes::from(
                format!("{{\"id\":{i},\"name\":\"user-{i}\",\"score\":{}}}", i * 37)
                    .repeat(32)
                    .into_bytes()
                    .into_iter()
                    .take(1024)
                    .collect::<Vec<u8>>(),
            )),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode");
    buf.freeze()
}

fn validate(c: &mut Criterion) {
    let limits = Limits::default();
    let uncompressed = batch(Compression::None).len() as u64;
    let mut g = c.benchmark_group("validate 16 x 1 KiB");
    g.throughput(Throughput::Bytes(uncompressed));
    for (name, codec) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let bytes = batch(codec);
        validate_batch(&bytes, &limits).expect("valid");
        g.bench_function(format!("{name} ({} bytes)", bytes.len()), |b| {
            b.iter(|| validate_batch(std::hint::black_box(&bytes), &limits))
        });
    }
    g.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
