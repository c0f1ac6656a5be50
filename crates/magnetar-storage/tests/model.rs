//! Model test: random appends, rolls and reopens against a plain vector of entries.

use std::sync::Arc;

use bytes::Bytes;
use magnetar_storage::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        count: u32,
        len: usize,
    },
    Reopen,
    Read {
        at: u16,
        max_bytes: u16,
        max_entries: u8,
    },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u32..5, 0usize..400).prop_map(|(count, len)| Op::Append { count, len }),
        1 => Just(Op::Reopen),
        3 => (any::<u16>(), any::<u16>(), 1u8..20).prop_map(|(at, max_bytes, max_entries)| Op::Read { at, max_bytes, max_entries }),
    ]
}

fn payload(first: u64, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (first as usize * 31 + i) as u8)
            .collect::<Vec<u8>>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn ledger_matches_model(ops in proptest::collection::vec(arb_op(), 1..60), segment_bytes in 60u64..3000, interval in 1u32..600) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = LedgerConfig { segment_bytes, index_interval_bytes: interval, fsync: FsyncPolicy::Os, ..LedgerConfig::default() };
        rt.block_on(async {
            let mut ledger = ManagedLedger::open(dir.path(), config.clone(), Arc::new(SystemClock)).unwrap();
            let mut model: Vec<(u64, u32, usize)> = Vec::new();
            let mut end = 0u64;
            for op in ops {
                match op {
                    Op::Append { count, len } => {
                        let (first, _) = ledger.append(NewEntry {
                            payload: payload(end, len),
                            message_count: count,
                            max_timestamp_ms: end as i64,
                            format: PayloadFormat::Pulsar,
                            producer: None,
                            first_index_at: None,
                        }).await.unwrap();
                        assert_eq!(first, end);
                        model.push((first, count, len));
                        end += u64::from(count);
                    }
                    Op::Reopen => {
                        ledger.close().await.unwrap();
                        drop(ledger);
                        ledger = ManagedLedger::open(dir.path(), config.clone(), Arc::new(SystemClock)).unwrap();
                    }
                    Op::Read { at, max_bytes, max_entries } => {
                        let from = if end == 0 { 0 } else { u64::from(at) % (end + 1) };
                        let got = ledger.read(from, usize::from(max_bytes), usize::from(max_entries)).await.unwrap();
                        let start = model.iter().position(|e| from < e.0 + u64::from(e.1)).unwrap_or(model.len());
                        if start == model.len() {
                            assert!(got.is_empty());
                            continue;
                        }
                        assert!(!got.is_empty() && got.len() <= usize::from(max_entries));
                        let used: usize = got.iter().map(|e| e.header.encoded_len() as usize).sum();
                        assert!(got.len() == 1 || used <= usize::from(max_bytes));
                        for (e, m) in got.iter().zip(&model[start..]) {
                            assert_eq!((e.header.first_index, e.header.message_count), (m.0, m.1));
                            assert_eq!(&e.payload, &payload(m.0, m.2));
                        }
                    }
                }
                assert_eq!(ledger.end_index(), end);
            }
            let s = ledger.stats();
            assert_eq!(s.segments.iter().map(|x| x.entries).sum::<u64>(), model.len() as u64);
        });
    }
}
