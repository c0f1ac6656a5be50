//! The conformance suite every [`MetadataStore`] backend must pass.
//!
//! Each check is an async function taking `&dyn MetadataStore` and panicking (like a test) when
//! the store misbehaves. Each works in its own subtree under `/conformance/`, so the checks can
//! run one per fresh store (as `tests/conformance.rs` does) or all on one store with
//! [`run_all`] (handy for a backend that is expensive to start, such as etcd). Checks that end
//! or need a reopen of the store ([`close_ends_everything`], [`write_before_reopen`] and
//! [`check_after_reopen`]) are not part of [`run_all`].
//!
//! Always compiled (it needs only tokio and bytes) so another crate's tests can call it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;

use crate::{
    Event, EventKind, Expect, MetadataError, MetadataStore, Session, SessionState, Txn, TxnOp,
    TxnOutcome, WatchError, TXN_OPS_MAX, TXN_SIZE_BYTES_MAX, VALUE_SIZE_BYTES_MAX,
};

/// How long a check waits for a watch event that must come.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// Runs every check that leaves the store open.
pub async fn run_all(store: &dyn MetadataStore) {
    put_get_and_versions(store).await;
    compare_and_set(store).await;
    concurrent_creators_one_wins(store).await;
    concurrent_increments_lose_nothing(store).await;
    delete_with_expectations(store).await;
    list_children_sorted_and_nested(store).await;
    watch_sees_changes_under_prefix_only(store).await;
    invalid_keys_rejected(store).await;
    value_size_limit(store).await;
    txn_applies_all_or_nothing(store).await;
    txn_watch_sees_each_change(store).await;
    txn_limits(store).await;
    txn_large_values(store).await;
    txn_epoch_fencing(store).await;
    session_bound_keys_vanish_on_close(store).await;
    session_expiry_deletes_bound_keys(store).await;
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn value_at(store: &dyn MetadataStore, key: &str) -> Option<(String, u64)> {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .map(|v| (String::from_utf8_lossy(&v.value).into_owned(), v.version))
}

/// Create gives version 1, each put adds 1, get returns the last value, an empty value is a
/// value, and a missing key is `None`.
pub async fn put_get_and_versions(store: &dyn MetadataStore) {
    let key = "/conformance/put-get/k";
    assert_eq!(value_at(store, key).await, None);
    assert!(!store.exists(key).await.expect("exists"));
    assert_eq!(store.put(key, bytes("one"), Expect::Any).await, Ok(1));
    assert!(store.exists(key).await.expect("exists"));
    assert_eq!(value_at(store, key).await, Some(("one".into(), 1)));
    assert_eq!(store.put(key, bytes("two"), Expect::Any).await, Ok(2));
    assert_eq!(store.put(key, bytes("three"), Expect::Any).await, Ok(3));
    assert_eq!(value_at(store, key).await, Some(("three".into(), 3)));

    let empty = "/conformance/put-get/empty";
    assert_eq!(store.put(empty, Bytes::new(), Expect::Absent).await, Ok(1));
    assert_eq!(value_at(store, empty).await, Some((String::new(), 1)));

    // A parent key and its children are independent keys.
    let parent = "/conformance/put-get";
    assert_eq!(value_at(store, parent).await, None);
    assert!(!store.exists(parent).await.expect("exists"));
    assert_eq!(store.put(parent, bytes("p"), Expect::Absent).await, Ok(1));
    assert_eq!(value_at(store, key).await, Some(("three".into(), 3)));
}

/// `Expect::Absent` and `Expect::Version` succeed when they hold and fail with `BadVersion`
/// (leaving the value alone) when they do not.
pub async fn compare_and_set(store: &dyn MetadataStore) {
    let key = "/conformance/cas/k";
    assert_eq!(
        store.put(key, bytes("x"), Expect::Version(1)).await,
        Err(MetadataError::BadVersion {
            key: key.into(),
            expected: Some(1),
            actual: None
        }),
        "version expectation on a missing key"
    );
    assert_eq!(value_at(store, key).await, None);
    assert_eq!(store.put(key, bytes("a"), Expect::Absent).await, Ok(1));
    assert_eq!(
        store.put(key, bytes("b"), Expect::Absent).await,
        Err(MetadataError::BadVersion {
            key: key.into(),
            expected: None,
            actual: Some(1)
        }),
        "create over an existing key"
    );
    assert_eq!(store.put(key, bytes("b"), Expect::Version(1)).await, Ok(2));
    assert_eq!(
        store.put(key, bytes("c"), Expect::Version(1)).await,
        Err(MetadataError::BadVersion {
            key: key.into(),
            expected: Some(1),
            actual: Some(2)
        }),
        "stale version"
    );
    assert_eq!(
        store.put(key, bytes("c"), Expect::Version(3)).await,
        Err(MetadataError::BadVersion {
            key: key.into(),
            expected: Some(3),
            actual: Some(2)
        }),
        "future version"
    );
    assert_eq!(value_at(store, key).await, Some(("b".into(), 2)));
    assert_eq!(store.put(key, bytes("c"), Expect::Version(2)).await, Ok(3));
    assert_eq!(value_at(store, key).await, Some(("c".into(), 3)));
}

/// Two concurrent creators of one key: exactly one wins, the other gets `BadVersion`, and the
/// stored value is the winner's.
pub async fn concurrent_creators_one_wins(store: &dyn MetadataStore) {
    for round in 0..10 {
        let key = format!("/conformance/create-race/k{round}");
        let (first, second) = tokio::join!(
            store.put(&key, bytes("first"), Expect::Absent),
            store.put(&key, bytes("second"), Expect::Absent),
        );
        let winner = match (&first, &second) {
            (
                Ok(1),
                Err(MetadataError::BadVersion {
                    actual: Some(1), ..
                }),
            ) => "first",
            (
                Err(MetadataError::BadVersion {
                    actual: Some(1), ..
                }),
                Ok(1),
            ) => "second",
            other => panic!("{key}: exactly one creator must win, got {other:?}"),
        };
        assert_eq!(value_at(store, &key).await, Some((winner.into(), 1)));
    }
}

/// Two workers increment one counter with read, compare-and-set, retry: no increment is lost,
/// and the version counts every successful put.
pub async fn concurrent_increments_lose_nothing(store: &dyn MetadataStore) {
    const INCREMENTS_PER_WORKER: u64 = 10;
    let key = "/conformance/increment/counter";
    assert_eq!(store.put(key, bytes("0"), Expect::Absent).await, Ok(1));
    let worker = || async {
        let mut retries = 0u64;
        for _ in 0..INCREMENTS_PER_WORKER {
            loop {
                let current = store.get(key).await.expect("get").expect("counter exists");
                let count: u64 = std::str::from_utf8(&current.value)
                    .expect("utf-8")
                    .parse()
                    .expect("a number");
                let next = bytes(&(count + 1).to_string());
                match store.put(key, next, Expect::Version(current.version)).await {
                    Ok(version) => {
                        assert_eq!(version, current.version + 1);
                        break;
                    }
                    Err(MetadataError::BadVersion { .. }) => retries += 1,
                    Err(e) => panic!("increment {key}: {e}"),
                }
            }
        }
        retries
    };
    tokio::join!(worker(), worker());
    let total = 2 * INCREMENTS_PER_WORKER;
    assert_eq!(
        value_at(store, key).await,
        Some((total.to_string(), total + 1))
    );
}

/// Delete honours its expectation, is `NotFound` on a missing key for every expectation, leaves
/// keys beneath alone, and a key created again starts at version 1.
pub async fn delete_with_expectations(store: &dyn MetadataStore) {
    let key = "/conformance/delete/k";
    let child = "/conformance/delete/k/child";
    for expect in [Expect::Any, Expect::Absent, Expect::Version(1)] {
        assert_eq!(
            store.delete(key, expect).await,
            Err(MetadataError::NotFound { key: key.into() }),
            "delete of a missing key with {expect:?}"
        );
    }
    assert_eq!(store.put(key, bytes("a"), Expect::Absent).await, Ok(1));
    assert_eq!(store.put(key, bytes("b"), Expect::Any).await, Ok(2));
    assert_eq!(store.put(child, bytes("c"), Expect::Absent).await, Ok(1));
    assert_eq!(
        store.delete(key, Expect::Version(1)).await,
        Err(MetadataError::BadVersion {
            key: key.into(),
            expected: Some(1),
            actual: Some(2)
        })
    );
    assert!(matches!(
        store.delete(key, Expect::Absent).await,
        Err(MetadataError::BadVersion { .. })
    ));
    assert_eq!(value_at(store, key).await, Some(("b".into(), 2)));
    assert_eq!(store.delete(key, Expect::Version(2)).await, Ok(()));
    assert_eq!(value_at(store, key).await, None);
    assert!(!store.exists(key).await.expect("exists"));
    assert_eq!(value_at(store, child).await, Some(("c".into(), 1)));
    assert_eq!(
        store.delete(key, Expect::Any).await,
        Err(MetadataError::NotFound { key: key.into() })
    );
    assert_eq!(store.put(key, bytes("again"), Expect::Absent).await, Ok(1));
    assert_eq!(store.delete(key, Expect::Any).await, Ok(()));
    assert_eq!(store.delete(child, Expect::Any).await, Ok(()));
    assert_eq!(
        store.list_children("/conformance/delete").await,
        Ok(Vec::<String>::new())
    );
}

/// Children are names, sorted bytewise, unique, implied by deeper keys, and only direct ones.
pub async fn list_children_sorted_and_nested(store: &dyn MetadataStore) {
    let base = "/conformance/list";
    assert_eq!(store.list_children(base).await, Ok(Vec::<String>::new()));
    for key in [
        "zeta",
        "alpha",
        "b/deep/deeper",
        "b",
        "b-c",
        "b/x",
        "a0",
        "B",
        "é",
        "alpha/one",
    ] {
        let key = format!("{base}/{key}");
        store
            .put(&key, bytes("v"), Expect::Absent)
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
    store
        .put("/conformance/listing", bytes("v"), Expect::Absent)
        .await
        .expect("put a sibling that shares the prefix");
    assert_eq!(
        store.list_children(base).await.expect("list"),
        ["B", "a0", "alpha", "b", "b-c", "zeta", "é"]
    );
    assert_eq!(
        store
            .list_children(&format!("{base}/b"))
            .await
            .expect("list"),
        ["deep", "x"]
    );
    assert_eq!(
        store
            .list_children(&format!("{base}/b/deep"))
            .await
            .expect("list"),
        ["deeper"]
    );
    assert_eq!(
        store.list_children(&format!("{base}/zeta")).await,
        Ok(Vec::<String>::new())
    );
    assert_eq!(
        store.list_children(&format!("{base}/missing")).await,
        Ok(Vec::<String>::new())
    );
    let root = store.list_children("/").await.expect("list the root");
    assert!(root.iter().any(|name| name == "conformance"), "{root:?}");
    let conformance = store.list_children("/conformance").await.expect("list");
    assert!(
        conformance.iter().any(|name| name == "list"),
        "{conformance:?}"
    );
    assert!(
        conformance.iter().any(|name| name == "listing"),
        "{conformance:?}"
    );
    assert!(
        conformance.windows(2).all(|w| w[0] < w[1]),
        "{conformance:?}"
    );
}

async fn next_event(watch: &mut crate::Watch) -> Event {
    match timeout(EVENT_WAIT, watch.recv()).await {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => panic!("watch {}: {e}", watch.prefix()),
        Err(_) => panic!("watch {}: no event within {EVENT_WAIT:?}", watch.prefix()),
    }
}

/// A watch reports create, modify and delete of keys at or under its prefix, in order, and
/// nothing outside it (including siblings that share the prefix's characters).
pub async fn watch_sees_changes_under_prefix_only(store: &dyn MetadataStore) {
    let prefix = "/conformance/watch/in";
    let mut watch = store.watch(prefix).expect("watch");
    let mut all = store.watch("/").expect("watch the root");
    let event = |key: &str, kind, version| Event {
        key: key.to_string(),
        kind,
        version,
    };

    store
        .put("/conformance/watch/out", bytes("x"), Expect::Any)
        .await
        .expect("put");
    store
        .put("/conformance/watch/inner", bytes("x"), Expect::Any)
        .await
        .expect("put");
    store
        .put(prefix, bytes("x"), Expect::Any)
        .await
        .expect("put");
    let key = "/conformance/watch/in/a/b";
    store
        .put(key, bytes("1"), Expect::Absent)
        .await
        .expect("put");
    store
        .put(key, bytes("2"), Expect::Version(1))
        .await
        .expect("put");
    // Failed operations are not changes.
    assert!(store
        .put(key, bytes("3"), Expect::Version(1))
        .await
        .is_err());
    assert!(store.delete(key, Expect::Version(1)).await.is_err());
    store.delete(key, Expect::Version(2)).await.expect("delete");

    assert_eq!(
        next_event(&mut watch).await,
        event(prefix, EventKind::Created, 1)
    );
    assert_eq!(
        next_event(&mut watch).await,
        event(key, EventKind::Created, 1)
    );
    assert_eq!(
        next_event(&mut watch).await,
        event(key, EventKind::Modified, 2)
    );
    assert_eq!(
        next_event(&mut watch).await,
        event(key, EventKind::Deleted, 2)
    );
    assert_eq!(watch.try_recv(), Ok(None), "nothing else under {prefix}");

    // The root watch saw everything, in commit order.
    let keys: Vec<String> = [
        "/conformance/watch/out",
        "/conformance/watch/inner",
        prefix,
        key,
        key,
        key,
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    let mut seen = Vec::new();
    for _ in 0..keys.len() {
        seen.push(next_event(&mut all).await.key);
    }
    assert_eq!(seen, keys);

    // A watch sees only what happens after it starts.
    let mut late = store.watch(prefix).expect("watch");
    assert_eq!(late.try_recv(), Ok(None));
    store.delete(prefix, Expect::Any).await.expect("delete");
    assert_eq!(
        next_event(&mut late).await,
        event(prefix, EventKind::Deleted, 1)
    );
}

/// Every operation rejects a malformed key with `InvalidKey` and changes nothing.
pub async fn invalid_keys_rejected(store: &dyn MetadataStore) {
    let too_long = format!("/conformance/{}", "x".repeat(crate::KEY_LENGTH_BYTES_MAX));
    let bad_keys = [
        "",
        "/",
        "conformance/relative",
        "/conformance/trailing/",
        "/conformance//empty",
        "/conformance/./dot",
        "/conformance/../dotdot",
        "/conformance/nul\0byte",
        too_long.as_str(),
    ];
    let invalid = |result: Result<(), MetadataError>, what: &str, key: &str| match result {
        Err(MetadataError::InvalidKey { .. }) => {}
        other => panic!("{what} {key:?}: expected an invalid key error, got {other:?}"),
    };
    for key in bad_keys {
        invalid(store.get(key).await.map(drop), "get", key);
        invalid(
            store.put(key, bytes("v"), Expect::Any).await.map(drop),
            "put",
            key,
        );
        invalid(store.delete(key, Expect::Any).await, "delete", key);
        invalid(store.exists(key).await.map(drop), "exists", key);
        if key != "/" {
            invalid(
                store.list_children(key).await.map(drop),
                "list_children",
                key,
            );
            invalid(store.watch(key).map(drop), "watch", key);
        }
    }
    assert_eq!(
        store.list_children("/conformance/relative").await,
        Ok(Vec::<String>::new())
    );
}

/// A value of exactly [`VALUE_SIZE_BYTES_MAX`] bytes is stored; one byte more is
/// `ValueTooLarge` and stores nothing.
pub async fn value_size_limit(store: &dyn MetadataStore) {
    let key = "/conformance/size/k";
    let largest = Bytes::from(vec![7u8; VALUE_SIZE_BYTES_MAX]);
    assert_eq!(store.put(key, largest.clone(), Expect::Absent).await, Ok(1));
    let stored = store.get(key).await.expect("get").expect("stored");
    assert_eq!(stored.value, largest);
    let too_large = Bytes::from(vec![7u8; VALUE_SIZE_BYTES_MAX + 1]);
    assert_eq!(
        store.put(key, too_large, Expect::Any).await,
        Err(MetadataError::ValueTooLarge {
            key: key.into(),
            size: VALUE_SIZE_BYTES_MAX + 1,
            max: VALUE_SIZE_BYTES_MAX
        })
    );
    assert_eq!(
        store.get(key).await.expect("get").expect("stored").version,
        1
    );
}

/// After close every operation is `Closed`, open watches end after what they already had, open
/// sessions are no longer kept alive (`Closed`), and closing again is fine. Closes `store`.
pub async fn close_ends_everything(store: &dyn MetadataStore) {
    let key = "/conformance/close/k";
    let mut watch = store.watch("/conformance/close").expect("watch");
    let session = store
        .open_session(SESSION_TTL)
        .await
        .expect("open a session");
    store
        .put(key, bytes("v"), Expect::Absent)
        .await
        .expect("put");
    store.close().await.expect("close");
    assert_eq!(
        next_event(&mut watch).await.kind,
        EventKind::Created,
        "events sent before close are delivered"
    );
    assert_eq!(
        timeout(EVENT_WAIT, watch.recv()).await.expect("watch ends"),
        Err(WatchError::Closed)
    );
    assert_eq!(store.get(key).await, Err(MetadataError::Closed));
    assert_eq!(
        store.put(key, bytes("v"), Expect::Any).await,
        Err(MetadataError::Closed)
    );
    assert_eq!(
        store.delete(key, Expect::Any).await,
        Err(MetadataError::Closed)
    );
    assert_eq!(store.exists(key).await, Err(MetadataError::Closed));
    assert_eq!(store.list_children("/").await, Err(MetadataError::Closed));
    assert!(matches!(store.watch("/"), Err(MetadataError::Closed)));
    assert!(matches!(
        store.open_session(Duration::from_secs(10)).await,
        Err(MetadataError::Closed)
    ));
    // A closed store keeps no session alive.
    wait_for_state(&session, SessionState::Closed, SESSION_TTL + EVENT_WAIT).await;
    assert_eq!(store.close().await, Ok(()));
}

/// For persistent backends, first half of the reopen check: writes keys with several versions,
/// including a deleted one. Close the store, open it again, then call [`check_after_reopen`].
pub async fn write_before_reopen(store: &dyn MetadataStore) {
    let base = "/conformance/reopen";
    assert_eq!(
        store
            .put(&format!("{base}/a"), bytes("a1"), Expect::Absent)
            .await,
        Ok(1)
    );
    assert_eq!(
        store
            .put(&format!("{base}/a"), bytes("a2"), Expect::Version(1))
            .await,
        Ok(2)
    );
    assert_eq!(
        store
            .put(&format!("{base}/a"), bytes("a3"), Expect::Version(2))
            .await,
        Ok(3)
    );
    assert_eq!(
        store
            .put(&format!("{base}/b/c"), bytes("c1"), Expect::Absent)
            .await,
        Ok(1)
    );
    assert_eq!(
        store
            .put(&format!("{base}/gone"), bytes("g"), Expect::Absent)
            .await,
        Ok(1)
    );
    assert_eq!(
        store.delete(&format!("{base}/gone"), Expect::Any).await,
        Ok(())
    );
}

/// Second half of the reopen check: values, versions and deletions survived, and
/// compare-and-set continues from the stored versions.
pub async fn check_after_reopen(store: &dyn MetadataStore) {
    let base = "/conformance/reopen";
    assert_eq!(
        value_at(store, &format!("{base}/a")).await,
        Some(("a3".into(), 3))
    );
    assert_eq!(
        value_at(store, &format!("{base}/b/c")).await,
        Some(("c1".into(), 1))
    );
    assert_eq!(value_at(store, &format!("{base}/gone")).await, None);
    assert_eq!(store.list_children(base).await.expect("list"), ["a", "b"]);
    assert!(matches!(
        store
            .put(&format!("{base}/a"), bytes("x"), Expect::Version(2))
            .await,
        Err(MetadataError::BadVersion {
            actual: Some(3),
            ..
        })
    ));
    assert_eq!(
        store
            .put(&format!("{base}/a"), bytes("a4"), Expect::Version(3))
            .await,
        Ok(4)
    );
}

fn outcome(versions: &[Option<u64>]) -> Result<TxnOutcome, MetadataError> {
    Ok(TxnOutcome {
        versions: versions.to_vec(),
    })
}

/// When every compare holds every operation is applied and the outcome gives, per operation,
/// the version a put stored (1 on create, n+1 on modify) or the version a deleted key had
/// (`None` when it was absent). When a compare fails nothing is applied and `BadVersion` names
/// the first failing compare, in order.
pub async fn txn_applies_all_or_nothing(store: &dyn MetadataStore) {
    let base = "/conformance/txn";
    let (a, b, c, new, missing) = (
        format!("{base}/a"),
        format!("{base}/b"),
        format!("{base}/c"),
        format!("{base}/new"),
        format!("{base}/missing"),
    );
    assert_eq!(store.put(&a, bytes("a1"), Expect::Absent).await, Ok(1));
    assert_eq!(store.put(&b, bytes("b1"), Expect::Absent).await, Ok(1));
    assert_eq!(store.put(&b, bytes("b2"), Expect::Any).await, Ok(2));
    assert_eq!(store.put(&c, bytes("c1"), Expect::Absent).await, Ok(1));

    // An empty transaction commits nothing and succeeds.
    assert_eq!(store.txn(Txn::new()).await, outcome(&[]));

    // Everything holds: modify, create, delete, delete of an absent key.
    let txn = Txn::new()
        .when(&a, Expect::Version(1))
        .when(&new, Expect::Absent)
        .when(&c, Expect::Any)
        .then(TxnOp::put(&a, bytes("a2")))
        .then(TxnOp::put(&new, bytes("n1")))
        .then(TxnOp::delete(&b))
        .then(TxnOp::delete(&missing));
    assert_eq!(
        store.txn(txn).await,
        outcome(&[Some(2), Some(1), Some(2), None])
    );
    assert_eq!(value_at(store, &a).await, Some(("a2".into(), 2)));
    assert_eq!(value_at(store, &new).await, Some(("n1".into(), 1)));
    assert_eq!(value_at(store, &b).await, None);
    assert_eq!(value_at(store, &missing).await, None);

    // Operations without compares are applied unconditionally.
    assert_eq!(
        store
            .txn(Txn::new().then(TxnOp::put(&c, bytes("c2"))))
            .await,
        outcome(&[Some(2)])
    );

    // The first failing compare is named, even when a later one fails too; nothing changes.
    let changes = || {
        Txn::new()
            .then(TxnOp::put(&a, bytes("lost")))
            .then(TxnOp::put(&missing, bytes("lost")))
            .then(TxnOp::delete(&c))
    };
    let failing = [
        (
            changes()
                .when(&a, Expect::Version(2))
                .when(&new, Expect::Absent)
                .when(&a, Expect::Version(7)),
            MetadataError::BadVersion {
                key: new.clone(),
                expected: None,
                actual: Some(1),
            },
        ),
        (
            changes()
                .when(&c, Expect::Any)
                .when(&missing, Expect::Version(1))
                .when(&new, Expect::Absent),
            MetadataError::BadVersion {
                key: missing.clone(),
                expected: Some(1),
                actual: None,
            },
        ),
        (
            changes()
                .when(&missing, Expect::Absent)
                .when(&a, Expect::Version(1)),
            MetadataError::BadVersion {
                key: a.clone(),
                expected: Some(1),
                actual: Some(2),
            },
        ),
        (
            changes().when(&b, Expect::Version(2)),
            MetadataError::BadVersion {
                key: b.clone(),
                expected: Some(2),
                actual: None,
            },
        ),
    ];
    for (txn, error) in failing {
        assert_eq!(store.txn(txn.clone()).await, Err(error), "{txn:?}");
        assert_eq!(value_at(store, &a).await, Some(("a2".into(), 2)));
        assert_eq!(value_at(store, &missing).await, None);
        assert_eq!(value_at(store, &c).await, Some(("c2".into(), 2)));
    }

    // The versions continue from what the transactions stored.
    assert_eq!(store.put(&a, bytes("a3"), Expect::Version(2)).await, Ok(3));
    assert_eq!(store.put(&b, bytes("b1"), Expect::Absent).await, Ok(1));
}

/// A committed transaction sends one event per changed key (a delete of an absent key changes
/// nothing); a refused one sends none.
pub async fn txn_watch_sees_each_change(store: &dyn MetadataStore) {
    let base = "/conformance/txn-watch";
    let (old, gone, new, marker) = (
        format!("{base}/old"),
        format!("{base}/gone"),
        format!("{base}/new"),
        format!("{base}/marker"),
    );
    assert_eq!(store.put(&old, bytes("1"), Expect::Absent).await, Ok(1));
    assert_eq!(store.put(&gone, bytes("1"), Expect::Absent).await, Ok(1));
    let mut watch = store.watch(base).expect("watch");
    let refused = Txn::new()
        .when(&new, Expect::Version(1))
        .then(TxnOp::put(&new, bytes("x")))
        .then(TxnOp::delete(&old));
    assert!(matches!(
        store.txn(refused).await,
        Err(MetadataError::BadVersion { .. })
    ));
    let txn = Txn::new()
        .when(&old, Expect::Version(1))
        .then(TxnOp::put(&old, bytes("2")))
        .then(TxnOp::put(&new, bytes("1")))
        .then(TxnOp::delete(&gone))
        .then(TxnOp::delete(format!("{base}/never")));
    assert_eq!(
        store.txn(txn).await,
        outcome(&[Some(2), Some(1), Some(1), None])
    );
    store
        .put(&marker, bytes("m"), Expect::Absent)
        .await
        .expect("put");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event(&mut watch).await);
    }
    seen.sort_by(|x, y| x.key.cmp(&y.key));
    let event = |key: &str, kind, version| Event {
        key: key.to_string(),
        kind,
        version,
    };
    assert_eq!(
        seen,
        [
            event(&gone, EventKind::Deleted, 1),
            event(&new, EventKind::Created, 1),
            event(&old, EventKind::Modified, 2),
        ]
    );
    assert_eq!(
        next_event(&mut watch).await,
        event(&marker, EventKind::Created, 1),
        "the refused transaction sent nothing and the committed one nothing more"
    );
}

/// [`TXN_OPS_MAX`] compares and operations are accepted, one more of either is `TxnTooLarge`;
/// [`TXN_SIZE_BYTES_MAX`] bytes of keys and values are accepted, one more is
/// `TxnSizeTooLarge`; two operations on one key, an invalid key or a too-large value are
/// refused before anything is applied.
pub async fn txn_limits(store: &dyn MetadataStore) {
    let base = "/conformance/txn-limits";
    let key = |i: usize| format!("{base}/k{i}");
    let full = (0..TXN_OPS_MAX).fold(Txn::new(), |txn, i| {
        txn.when(key(i), Expect::Absent)
            .then(TxnOp::put(key(i), bytes("v")))
    });
    let too_many_compares = full.clone().when(key(TXN_OPS_MAX), Expect::Absent);
    let too_many_ops = full.clone().then(TxnOp::put(key(TXN_OPS_MAX), bytes("v")));
    assert_eq!(
        store.txn(too_many_compares).await,
        Err(MetadataError::TxnTooLarge {
            compares: TXN_OPS_MAX + 1,
            ops: TXN_OPS_MAX,
            max: TXN_OPS_MAX
        })
    );
    assert_eq!(
        store.txn(too_many_ops).await,
        Err(MetadataError::TxnTooLarge {
            compares: TXN_OPS_MAX,
            ops: TXN_OPS_MAX + 1,
            max: TXN_OPS_MAX
        })
    );
    assert_eq!(store.list_children(base).await, Ok(Vec::<String>::new()));
    assert_eq!(
        store.txn(full).await,
        outcome(&[Some(1); TXN_OPS_MAX]),
        "exactly the maximum is accepted"
    );
    assert_eq!(
        store.list_children(base).await.expect("list").len(),
        TXN_OPS_MAX
    );

    let probe = format!("{base}/probe");
    let refused = [
        Txn::new()
            .then(TxnOp::put(&probe, bytes("v")))
            .then(TxnOp::delete(&probe)),
        Txn::new()
            .then(TxnOp::put(&probe, bytes("v")))
            .then(TxnOp::put(&probe, bytes("w"))),
        Txn::new()
            .when(format!("{base}//bad"), Expect::Absent)
            .then(TxnOp::put(&probe, bytes("v"))),
        Txn::new()
            .then(TxnOp::put(&probe, bytes("v")))
            .then(TxnOp::put(format!("{base}/bad/"), bytes("v"))),
        Txn::new()
            .then(TxnOp::put(&probe, bytes("v")))
            .then(TxnOp::delete("relative")),
    ];
    for txn in refused {
        match store.txn(txn.clone()).await {
            Err(MetadataError::InvalidKey { .. }) => {}
            other => panic!("{txn:?}: expected an invalid key error, got {other:?}"),
        }
    }
    let too_large = Txn::new()
        .then(TxnOp::put(&probe, bytes("v")))
        .then(TxnOp::put(
            format!("{base}/large"),
            Bytes::from(vec![0u8; VALUE_SIZE_BYTES_MAX + 1]),
        ));
    assert_eq!(
        store.txn(too_large).await,
        Err(MetadataError::ValueTooLarge {
            key: format!("{base}/large"),
            size: VALUE_SIZE_BYTES_MAX + 1,
            max: VALUE_SIZE_BYTES_MAX
        })
    );
    assert_eq!(value_at(store, &probe).await, None, "nothing was applied");
    assert_eq!(value_at(store, &format!("{base}/large")).await, None);

    // Bytes: exactly TXN_SIZE_BYTES_MAX of long keys (compared and put) and values commits on
    // every store; one byte more is refused.
    let long_key = |i: usize| format!("{base}/size/{i:04}{}", "k".repeat(970));
    let keys: usize = (0..TXN_OPS_MAX).map(|i| 2 * long_key(i).len()).sum();
    let values = TXN_SIZE_BYTES_MAX - keys;
    let sized = |extra: usize| {
        (0..TXN_OPS_MAX).fold(Txn::new(), |txn, i| {
            let value = match i {
                0 => vec![1u8; VALUE_SIZE_BYTES_MAX],
                1 => vec![2u8; values - VALUE_SIZE_BYTES_MAX + extra],
                _ => Vec::new(),
            };
            txn.when(long_key(i), Expect::Absent)
                .then(TxnOp::put(long_key(i), value))
        })
    };
    assert_eq!(sized(1).size_bytes(), TXN_SIZE_BYTES_MAX + 1);
    assert_eq!(
        store.txn(sized(1)).await,
        Err(MetadataError::TxnSizeTooLarge {
            size_bytes: TXN_SIZE_BYTES_MAX + 1,
            max_bytes: TXN_SIZE_BYTES_MAX
        })
    );
    assert_eq!(
        store.list_children(&format!("{base}/size")).await,
        Ok(Vec::<String>::new())
    );
    assert_eq!(
        store.txn(sized(0)).await,
        outcome(&[Some(1); TXN_OPS_MAX]),
        "exactly the maximum size is accepted"
    );
}

/// Transactions over keys holding large values: the replies (versions of the keys changed, or
/// of the compares that failed) do not carry the values, so a transaction that replaces or
/// compares several values of [`VALUE_SIZE_BYTES_MAX`] bytes works like any other.
pub async fn txn_large_values(store: &dyn MetadataStore) {
    const KEYS: usize = 6;
    let base = "/conformance/txn-large";
    let key = |i: usize| format!("{base}/k{i}");
    let large = Bytes::from(vec![9u8; VALUE_SIZE_BYTES_MAX]);
    for i in 0..KEYS {
        assert_eq!(
            store.put(&key(i), large.clone(), Expect::Absent).await,
            Ok(1)
        );
    }
    let failing = (0..KEYS)
        .fold(Txn::new(), |txn, i| txn.when(key(i), Expect::Version(1)))
        .when(format!("{base}/k0"), Expect::Absent)
        .then(TxnOp::put(format!("{base}/other"), bytes("x")));
    assert_eq!(
        store.txn(failing).await,
        Err(MetadataError::BadVersion {
            key: key(0),
            expected: None,
            actual: Some(1)
        })
    );
    let replace = (0..KEYS).fold(Txn::new(), |txn, i| {
        txn.when(key(i), Expect::Version(1))
            .then(TxnOp::put(key(i), bytes("small")))
    });
    assert_eq!(store.txn(replace).await, outcome(&[Some(2); KEYS]));
    for i in 0..KEYS {
        assert_eq!(
            store.put(&key(i), large.clone(), Expect::Version(2)).await,
            Ok(3)
        );
    }
    // One commit deleting them all: its events (each with the large record it removed, on
    // etcd) still reach a watcher, and the watch goes on.
    let mut watch = store.watch(base).expect("watch");
    let delete = (0..KEYS).fold(Txn::new(), |txn, i| txn.then(TxnOp::delete(key(i))));
    assert_eq!(store.txn(delete).await, outcome(&[Some(3); KEYS]));
    assert_eq!(store.list_children(base).await, Ok(Vec::<String>::new()));
    let marker = format!("{base}/marker");
    store
        .put(&marker, bytes("m"), Expect::Absent)
        .await
        .expect("put");
    for i in 0..KEYS {
        let event = next_event(&mut watch).await;
        assert_eq!(
            (event.key, event.kind, event.version),
            (key(i), EventKind::Deleted, 3)
        );
    }
    assert_eq!(next_event(&mut watch).await.key, marker);
}

/// One writer of the fencing race: each round it reads the epoch, yields (so that writers on
/// one task interleave), then tries to bump it and create a key of its own; a writer that lost
/// retries with its stale version, which must fail too. Returns the epoch versions it created
/// with the name of its key.
async fn fencing_writer(
    store: &dyn MetadataStore,
    base: &str,
    id: usize,
    rounds: usize,
) -> Vec<(u64, String)> {
    let epoch = format!("{base}/epoch");
    let mut won = Vec::new();
    for round in 0..rounds {
        let seen = store
            .get(&epoch)
            .await
            .expect("get")
            .expect("the epoch exists")
            .version;
        tokio::task::yield_now().await;
        let attempt = |try_: usize| {
            Txn::new()
                .when(&epoch, Expect::Version(seen))
                .then(TxnOp::put(&epoch, bytes(&id.to_string())))
                .then(TxnOp::put(
                    format!("{base}/w/{id}-{round}-{try_}"),
                    bytes(&seen.to_string()),
                ))
        };
        match store.txn(attempt(0)).await {
            Ok(outcome) => {
                assert_eq!(outcome.versions, [Some(seen + 1), Some(1)]);
                won.push((seen + 1, format!("{id}-{round}-0")));
            }
            Err(MetadataError::BadVersion {
                key,
                expected,
                actual,
            }) => {
                assert_eq!(key, epoch);
                assert_eq!(expected, Some(seen));
                assert!(actual > Some(seen), "{actual:?} after {seen}");
                // Fenced: the stale epoch never matches again.
                assert!(matches!(
                    store.txn(attempt(1)).await,
                    Err(MetadataError::BadVersion { .. })
                ));
            }
            Err(e) => panic!("writer {id}: {e}"),
        }
    }
    won
}

/// Checks the outcome of a fencing race: one winner per epoch version, the epoch's version
/// counts the wins, and only the winners' keys exist.
async fn check_fencing_race(store: &dyn MetadataStore, base: &str, mut won: Vec<(u64, String)>) {
    won.sort();
    let versions: Vec<u64> = won.iter().map(|(v, _)| *v).collect();
    let expected: Vec<u64> = (2..2 + won.len() as u64).collect();
    assert_eq!(versions, expected, "one winner per epoch version");
    assert_eq!(
        store
            .get(&format!("{base}/epoch"))
            .await
            .expect("get")
            .expect("epoch")
            .version,
        1 + won.len() as u64
    );
    let mut created = store
        .list_children(&format!("{base}/w"))
        .await
        .expect("list");
    created.sort();
    let mut names: Vec<String> = won.into_iter().map(|(_, name)| name).collect();
    names.sort();
    assert_eq!(created, names, "only the winners' keys exist");
}

/// Writers race transactions that compare a shared epoch key's version, bump it and create a
/// key of their own: exactly one wins per epoch version, and a writer whose compare failed
/// stays fenced (a retry with its stale version never applies). The writers are futures of
/// one task here; [`txn_epoch_fencing_across_tasks`] runs them as tasks.
pub async fn txn_epoch_fencing(store: &dyn MetadataStore) {
    let base = "/conformance/txn-fencing";
    assert_eq!(
        store
            .put(&format!("{base}/epoch"), bytes("0"), Expect::Absent)
            .await,
        Ok(1)
    );
    let (w0, w1, w2, w3) = tokio::join!(
        fencing_writer(store, base, 0, 8),
        fencing_writer(store, base, 1, 8),
        fencing_writer(store, base, 2, 8),
        fencing_writer(store, base, 3, 8),
    );
    let won = [w0, w1, w2, w3].into_iter().flatten().collect();
    check_fencing_race(store, base, won).await;
}

/// [`txn_epoch_fencing`] with eight writers spawned as tasks (in parallel on a multi-threaded
/// runtime).
pub async fn txn_epoch_fencing_across_tasks(store: Arc<dyn MetadataStore>) {
    const WRITERS: usize = 8;
    let base = "/conformance/txn-fencing-tasks";
    assert_eq!(
        store
            .put(&format!("{base}/epoch"), bytes("0"), Expect::Absent)
            .await,
        Ok(1)
    );
    let mut writers = tokio::task::JoinSet::new();
    for id in 0..WRITERS {
        let store = Arc::clone(&store);
        writers.spawn(async move { fencing_writer(store.as_ref(), base, id, 8).await });
    }
    let mut won = Vec::new();
    while let Some(result) = writers.join_next().await {
        won.extend(result.expect("writer task"));
    }
    check_fencing_race(store.as_ref(), base, won).await;
}

/// TTL of the sessions the checks let expire: short, but above etcd's minimum (which it would
/// round up to anyway).
const SESSION_TTL: Duration = Duration::from_secs(2);

/// Waits (bounded) until `session` is in state `want`.
pub async fn wait_for_state(session: &Session, want: SessionState, within: Duration) {
    let mut state = session.state();
    let reached = timeout(within, state.wait_for(|state| *state == want))
        .await
        .map(|result| result.is_ok());
    match reached {
        Ok(true) => {}
        Ok(false) => panic!("session {}: state channel closed", session.id()),
        Err(_) => panic!(
            "session {}: not {want:?} within {within:?}, still {:?}",
            session.id(),
            session.current_state()
        ),
    }
}

/// The broker's ownership claim (compare the owner key absent and the epoch's version, put
/// the owner key bound to the session, bump the epoch) applies nothing when a compare fails
/// and everything when they hold; closing the session deletes its bound keys before `close`
/// returns (watchers see them deleted), leaves its other keys, and refuses later puts into it.
/// A put without a session unbinds a key.
pub async fn session_bound_keys_vanish_on_close(store: &dyn MetadataStore) {
    let base = "/conformance/session-close";
    let (owner, epoch, rebound, late) = (
        format!("{base}/owner"),
        format!("{base}/epoch"),
        format!("{base}/rebound"),
        format!("{base}/late"),
    );
    assert!(matches!(
        store.open_session(Duration::from_millis(10)).await,
        Err(MetadataError::InvalidTtl { .. })
    ));
    assert_eq!(store.put(&epoch, bytes("0"), Expect::Absent).await, Ok(1));
    let mut watch = store.watch(base).expect("watch");
    let session = store
        .open_session(Duration::from_secs(30))
        .await
        .expect("open a session");
    assert_eq!(session.current_state(), SessionState::Live);
    assert!(
        session.ttl() >= Duration::from_secs(30),
        "{:?}",
        session.ttl()
    );
    let claim = |epoch_version: u64| {
        Txn::new()
            .when(&owner, Expect::Absent)
            .when(&epoch, Expect::Version(epoch_version))
            .then(TxnOp::put_in_session(&owner, bytes("me"), session.id()))
            .then(TxnOp::put(&epoch, bytes("1")))
    };
    assert_eq!(
        store.txn(claim(7)).await,
        Err(MetadataError::BadVersion {
            key: epoch.clone(),
            expected: Some(7),
            actual: Some(1)
        })
    );
    assert_eq!(
        value_at(store, &owner).await,
        None,
        "a refused claim binds nothing"
    );
    assert_eq!(store.txn(claim(1)).await, outcome(&[Some(1), Some(2)]));
    assert_eq!(value_at(store, &owner).await, Some(("me".into(), 1)));
    assert_eq!(
        store
            .txn(Txn::new().then(TxnOp::put_in_session(&rebound, bytes("x"), session.id())))
            .await,
        outcome(&[Some(1)])
    );
    assert_eq!(
        store.put(&rebound, bytes("y"), Expect::Version(1)).await,
        Ok(2)
    );

    session.close().await.expect("close the session");
    assert_eq!(session.current_state(), SessionState::Closed);
    assert_eq!(
        value_at(store, &owner).await,
        None,
        "bound keys go at close"
    );
    assert_eq!(value_at(store, &epoch).await, Some(("1".into(), 2)));
    assert_eq!(
        value_at(store, &rebound).await,
        Some(("y".into(), 2)),
        "a put without the session unbound the key"
    );
    assert_eq!(
        store
            .txn(Txn::new().then(TxnOp::put_in_session(&late, bytes("x"), session.id())))
            .await,
        Err(MetadataError::SessionExpired {
            session: session.id()
        })
    );
    assert_eq!(value_at(store, &late).await, None);
    assert_eq!(session.close().await, Ok(()), "closing again");

    let mut seen = Vec::new();
    for _ in 0..5 {
        let event = next_event(&mut watch).await;
        seen.push((event.key, event.kind, event.version));
    }
    assert_eq!(
        seen.last(),
        Some(&(owner.clone(), EventKind::Deleted, 1)),
        "{seen:?}"
    );
    seen.sort();
    let mut expected = vec![
        (owner.clone(), EventKind::Created, 1),
        (owner.clone(), EventKind::Deleted, 1),
        (epoch.clone(), EventKind::Modified, 2),
        (rebound.clone(), EventKind::Created, 1),
        (rebound.clone(), EventKind::Modified, 2),
    ];
    expected.sort();
    assert_eq!(seen, expected);
}

/// A session that is no longer refreshed fences itself within its TTL (on this process's
/// clock), then the store ends it: its bound keys are deleted (watchers see it), its other
/// keys stay, and a put into it is refused.
pub async fn session_expiry_deletes_bound_keys(store: &dyn MetadataStore) {
    let base = "/conformance/session-expiry";
    let (owner, plain, late) = (
        format!("{base}/owner"),
        format!("{base}/plain"),
        format!("{base}/late"),
    );
    let mut watch = store.watch(base).expect("watch");
    let session = store
        .open_session(SESSION_TTL)
        .await
        .expect("open a session");
    let ttl = session.ttl();
    let txn = Txn::new()
        .then(TxnOp::put_in_session(&owner, bytes("me"), session.id()))
        .then(TxnOp::put(&plain, bytes("p")));
    assert_eq!(store.txn(txn).await, outcome(&[Some(1), Some(1)]));
    session.stop_keep_alive_for_test();
    wait_for_state(&session, SessionState::Fenced, ttl + Duration::from_secs(5)).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = match timeout(ttl + EVENT_WAIT, watch.recv()).await {
            Ok(Ok(event)) => event,
            other => panic!("watch {base}: {other:?}"),
        };
        seen.push((event.key, event.kind));
    }
    assert_eq!(
        seen,
        [
            (owner.clone(), EventKind::Created),
            (plain.clone(), EventKind::Created),
            (owner.clone(), EventKind::Deleted),
        ]
    );
    assert_eq!(value_at(store, &owner).await, None);
    assert_eq!(value_at(store, &plain).await, Some(("p".into(), 1)));
    assert_eq!(
        store
            .txn(Txn::new().then(TxnOp::put_in_session(&late, bytes("x"), session.id())))
            .await,
        Err(MetadataError::SessionExpired {
            session: session.id()
        })
    );
    assert_eq!(value_at(store, &late).await, None);
    session.close().await.expect("closing an expired session");
}
