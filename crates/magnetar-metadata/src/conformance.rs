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

use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;

use crate::{
    Event, EventKind, Expect, MetadataError, MetadataStore, WatchError, VALUE_SIZE_BYTES_MAX,
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

/// After close every operation is `Closed`, open watches end after what they already had, and
/// closing again is fine. Closes `store`.
pub async fn close_ends_everything(store: &dyn MetadataStore) {
    let key = "/conformance/close/k";
    let mut watch = store.watch("/conformance/close").expect("watch");
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
