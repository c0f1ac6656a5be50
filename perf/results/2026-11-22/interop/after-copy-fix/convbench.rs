// Throwaway A/B (not committed): conversion cost before/after the copy fix, same process.
use bytes::{BufMut, Bytes, BytesMut};
use magnetar_format::kafka::{decode_batch, encode_batch, write_varlong, Record};
use magnetar_format::pulsar::{entry_messages, entry_to_kafka_batch, kafka_batch_to_entry};
use std::time::Instant;

fn write_bytes(out: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        None => write_varlong(out, -1),
        Some(b) => {
            write_varlong(out, b.len() as i64);
            out.put_slice(b);
        }
    }
}
fn old_encode_batch(base_offset: i64, records: &[Record]) -> Bytes {
    let base_timestamp = records.iter().map(|r| r.timestamp_ms).min().unwrap_or(0);
    let max_timestamp = records.iter().map(|r| r.timestamp_ms).max().unwrap_or(0);
    let mut body = BytesMut::new();
    for (i, r) in records.iter().enumerate() {
        let mut rec = BytesMut::new();
        rec.put_i8(0);
        write_varlong(&mut rec, r.timestamp_ms - base_timestamp);
        write_varlong(&mut rec, i as i64);
        write_bytes(&mut rec, r.key.as_deref());
        write_bytes(&mut rec, r.value.as_deref());
        write_varlong(&mut rec, r.headers.len() as i64);
        for h in &r.headers {
            write_bytes(&mut rec, Some(h.key.as_bytes()));
            write_bytes(&mut rec, h.value.as_deref());
        }
        write_varlong(&mut body, rec.len() as i64);
        body.put_slice(&rec);
    }
    let mut out = BytesMut::with_capacity(61 + body.len());
    out.put_i64(base_offset);
    out.put_i32((61 - 12 + body.len()) as i32);
    out.put_i32(-1);
    out.put_i8(2);
    out.put_u32(0);
    out.put_i16(0);
    out.put_i32(records.len().saturating_sub(1) as i32);
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(-1);
    out.put_i16(-1);
    out.put_i32(-1);
    out.put_i32(records.len() as i32);
    out.put_slice(&body);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}
// old Pulsar->Kafka: payload copied (to_vec), then values copied, then old encoder
fn old_entry_to_kafka_batch(body: &[u8], base: u64) -> Bytes {
    let _copy = std::hint::black_box(body.to_vec());
    let records: Vec<Record> = entry_messages(body)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, m)| magnetar_format::from_pulsar_message(m, i as i32))
        .collect();
    old_encode_batch(base as i64, &records)
}
// old Kafka->Pulsar: the finished body copied once more
fn old_kafka_batch_to_entry(b: &[u8]) -> Bytes {
    let body = kafka_batch_to_entry(b, "kafka", 1, 2).unwrap();
    Bytes::from(std::hint::black_box(body.to_vec()))
}

fn main() {
    let records: Vec<Record> = (0..1000)
        .map(|i| Record {
            offset_delta: i,
            timestamp_ms: 1_700_000_000_000 + i64::from(i),
            key: None,
            value: Some(Bytes::from(vec![i as u8; 1024])),
            headers: vec![],
        })
        .collect();
    let kafka = encode_batch(0, &records);
    assert_eq!(kafka, old_encode_batch(0, &records));
    let pulsar = kafka_batch_to_entry(&kafka, "kafka", 1, 2).unwrap();
    assert_eq!(decode_batch(&entry_to_kafka_batch(&pulsar, 0).unwrap()).unwrap().records, records);
    let iters = 300;
    for round in 0..3 {
        let mut r = vec![];
        for (name, f) in [
            ("P->K old", &(|| { std::hint::black_box(old_entry_to_kafka_batch(&pulsar, 0)); }) as &dyn Fn()),
            ("P->K new", &|| { std::hint::black_box(entry_to_kafka_batch(&pulsar, 0).unwrap()); }),
            ("K->P old", &|| { std::hint::black_box(old_kafka_batch_to_entry(&kafka)); }),
            ("K->P new", &|| { std::hint::black_box(kafka_batch_to_entry(&kafka, "kafka", 1, 2).unwrap()); }),
        ] {
            let t = Instant::now();
            for _ in 0..iters { f(); }
            r.push(format!("{name} {:.3} µs/msg", t.elapsed().as_secs_f64() * 1e6 / (iters as f64 * 1000.0)));
        }
        println!("round {round}: {}", r.join(", "));
    }
}
