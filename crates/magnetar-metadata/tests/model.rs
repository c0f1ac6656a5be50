//! Random operation sequences give the same results on each store as on a plain model.
//!
//! The model is written the naive way on purpose (list children by scanning every key), so it
//! checks the stores' seek-based listing and compare-and-set logic rather than repeating them.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use magnetar_metadata::{Expect, MemoryStore, MetadataError, MetadataStore, RedbStore, Versioned};
use proptest::prelude::*;

/// Keys chosen to nest and to share prefixes across segment boundaries.
const KEYS: &[&str] = &[
    "/a", "/a/b", "/a/b/c", "/a/b-c", "/a/c", "/a0", "/b", "/b/a", "/ab/x", "/a/b/c/d",
];
const PATHS: &[&str] = &["/", "/a", "/a/b", "/b", "/ab", "/zz"];

#[derive(Debug, Clone)]
enum Op {
    Get(usize),
    Put(usize, Vec<u8>, Expect),
    Delete(usize, Expect),
    Exists(usize),
    ListChildren(usize),
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Get(Result<Option<Versioned>, MetadataError>),
    Put(Result<u64, MetadataError>),
    Delete(Result<(), MetadataError>),
    Exists(Result<bool, MetadataError>),
    ListChildren(Result<Vec<String>, MetadataError>),
}

fn expect_strategy() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::Any),
        Just(Expect::Absent),
        (0u64..5).prop_map(Expect::Version),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    prop_oneof![
        1 => key.clone().prop_map(Op::Get),
        3 => (key.clone(), proptest::collection::vec(any::<u8>(), 0..8), expect_strategy())
            .prop_map(|(k, v, e)| Op::Put(k, v, e)),
        2 => (key.clone(), expect_strategy()).prop_map(|(k, e)| Op::Delete(k, e)),
        1 => key.prop_map(Op::Exists),
        1 => (0..PATHS.len()).prop_map(Op::ListChildren),
    ]
}

#[derive(Default)]
struct Model {
    entries: BTreeMap<String, (Vec<u8>, u64)>,
}

impl Model {
    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Get(k) => Outcome::Get(Ok(self.entries.get(KEYS[*k]).map(|(v, n)| Versioned {
                value: Bytes::copy_from_slice(v),
                version: *n,
            }))),
            Op::Put(k, value, expect) => {
                let key = KEYS[*k];
                let current = self.entries.get(key).map(|(_, n)| *n);
                let ok = match expect {
                    Expect::Any => true,
                    Expect::Absent => current.is_none(),
                    Expect::Version(n) => current == Some(*n),
                };
                if !ok {
                    return Outcome::Put(Err(MetadataError::BadVersion {
                        key: key.into(),
                        expected: match expect {
                            Expect::Version(n) => Some(*n),
                            _ => None,
                        },
                        actual: current,
                    }));
                }
                let version = current.unwrap_or(0) + 1;
                self.entries.insert(key.into(), (value.clone(), version));
                Outcome::Put(Ok(version))
            }
            Op::Delete(k, expect) => {
                let key = KEYS[*k];
                let Some(current) = self.entries.get(key).map(|(_, n)| *n) else {
                    return Outcome::Delete(Err(MetadataError::NotFound { key: key.into() }));
                };
                let ok = match expect {
                    Expect::Any => true,
                    Expect::Absent => false,
                    Expect::Version(n) => *n == current,
                };
                if !ok {
                    return Outcome::Delete(Err(MetadataError::BadVersion {
                        key: key.into(),
                        expected: match expect {
                            Expect::Version(n) => Some(*n),
                            _ => None,
                        },
                        actual: Some(current),
                    }));
                }
                self.entries.remove(key);
                Outcome::Delete(Ok(()))
            }
            Op::Exists(k) => Outcome::Exists(Ok(self.entries.contains_key(KEYS[*k]))),
            Op::ListChildren(p) => {
                let path = PATHS[*p];
                let dir = if path == "/" {
                    "/".to_string()
                } else {
                    format!("{path}/")
                };
                let children: BTreeSet<String> = self
                    .entries
                    .keys()
                    .filter_map(|key| key.strip_prefix(dir.as_str()))
                    .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
                    .collect();
                Outcome::ListChildren(Ok(children.into_iter().collect()))
            }
        }
    }
}

async fn apply(store: &dyn MetadataStore, op: &Op) -> Outcome {
    match op {
        Op::Get(k) => Outcome::Get(store.get(KEYS[*k]).await),
        Op::Put(k, value, expect) => Outcome::Put(
            store
                .put(KEYS[*k], Bytes::copy_from_slice(value), *expect)
                .await,
        ),
        Op::Delete(k, expect) => Outcome::Delete(store.delete(KEYS[*k], *expect).await),
        Op::Exists(k) => Outcome::Exists(store.exists(KEYS[*k]).await),
        Op::ListChildren(p) => Outcome::ListChildren(store.list_children(PATHS[*p]).await),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn check_against_model(store: &dyn MetadataStore, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        let expected = model.apply(op);
        let actual = apply(store, op).await;
        prop_assert_eq!(actual, expected, "operation {} {:?}", i, op);
    }
    // Final state: every key agrees.
    for (k, _) in KEYS.iter().enumerate() {
        prop_assert_eq!(apply(store, &Op::Get(k)).await, model.apply(&Op::Get(k)));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn memory_store_matches_model(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        runtime().block_on(async {
            let store = MemoryStore::new();
            check_against_model(&store, &ops).await
        })?;
    }
}

proptest! {
    // Every redb write is an fsync; fewer cases keep this fast.
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn redb_store_matches_model(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().expect("temporary directory");
            let store = RedbStore::open(&dir.path().join("metadata.redb")).await.expect("open");
            let result = check_against_model(&store, &ops).await;
            store.close().await.expect("close");
            result
        })?;
    }
}
