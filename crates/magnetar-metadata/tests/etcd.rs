//! The conformance suite on a real etcd (Debian's `etcd-server`, 3.4; `.ci/run` installs it),
//! started by each test with [`magnetar_metadata::testkit::Etcd`] and killed at the end;
//! and what an unreachable etcd does to calls. Built with the `etcd` feature only.
#![cfg(feature = "etcd")]

use std::time::{Duration, Instant};

use bytes::Bytes;
use magnetar_metadata::testkit::Etcd;
use magnetar_metadata::{
    conformance, EtcdOptions, EtcdStore, Expect, MetadataError, MetadataStore, SessionState, Txn,
    TxnOp,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_passes_every_conformance_check() {
    let etcd = Etcd::start();
    let store = etcd.store("/magnetar").await;
    conformance::run_all(&store).await;
    // Another root on the same etcd sees none of it.
    let other = etcd.store("/other").await;
    assert!(other.list_children("/").await.unwrap().is_empty());
    other.close().await.unwrap();
    conformance::close_ends_everything(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_keeps_keys_and_versions_across_reconnects() {
    let etcd = Etcd::start();
    let store = etcd.store("/magnetar").await;
    conformance::write_before_reopen(&store).await;
    store.close().await.unwrap();
    drop(store);
    let store = etcd.store("/magnetar").await;
    conformance::check_after_reopen(&store).await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_etcd_see_each_other_and_compare_and_set_across_them() {
    let etcd = Etcd::start();
    let (a, b) = (etcd.store("/magnetar").await, etcd.store("/magnetar").await);
    let mut watch = b.watch("/owners").unwrap();
    assert_eq!(
        a.put(
            "/owners/p0",
            Bytes::from_static(b"broker-a"),
            Expect::Absent
        )
        .await,
        Ok(1)
    );
    // b loses the race to own the same key, and learns who has it.
    assert!(matches!(
        b.put(
            "/owners/p0",
            Bytes::from_static(b"broker-b"),
            Expect::Absent
        )
        .await,
        Err(MetadataError::BadVersion {
            actual: Some(1),
            ..
        })
    ));
    let event = tokio::time::timeout(Duration::from_secs(10), watch.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((event.key.as_str(), event.version), ("/owners/p0", 1));
    assert_eq!(
        b.get("/owners/p0").await.unwrap().unwrap().value,
        Bytes::from_static(b"broker-a")
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_etcd_is_a_storage_error_within_the_deadline_not_a_hang() {
    let mut etcd = Etcd::start();
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.client_url().to_string()],
        root: "/magnetar".into(),
        request_timeout: Duration::from_millis(500),
    })
    .await
    .unwrap();
    store
        .put("/k", Bytes::from_static(b"v"), Expect::Any)
        .await
        .unwrap();
    etcd.kill();
    for result in [
        store.get("/k").await.map(|_| ()),
        store
            .put("/k", Bytes::from_static(b"w"), Expect::Any)
            .await
            .map(|_| ()),
        store.delete("/k", Expect::Any).await,
    ] {
        assert!(
            matches!(&result, Err(MetadataError::Storage(m)) if m.contains("etcd")),
            "{result:?}"
        );
    }
    // Connecting to nothing fails too, with the endpoint named.
    let err = EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.client_url().to_string()],
        root: "/magnetar".into(),
        request_timeout: Duration::from_millis(500),
    })
    .await
    .unwrap_err();
    assert!(matches!(err, MetadataError::Storage(_)), "{err:?}");
    store.close().await.unwrap();
}

/// The checks added with transactions and sessions, each on its own etcd (they also run in
/// `etcd_passes_every_conformance_check`, all on one).
macro_rules! etcd_checks {
    ($($check:ident),* $(,)?) => {
        mod each {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let etcd = Etcd::start();
                    let store = etcd.store("/magnetar").await;
                    conformance::$check(&store).await;
                    store.close().await.unwrap();
                }
            )*
        }
    };
}

etcd_checks!(
    txn_applies_all_or_nothing,
    txn_watch_sees_each_change,
    txn_limits,
    txn_large_values,
    txn_epoch_fencing,
    session_bound_keys_vanish_on_close,
    session_expiry_deletes_bound_keys,
);

/// A TCP proxy on 127.0.0.1 in front of one address that can cut every connection (and drop
/// new ones at once) until restored. Its tasks end when it is dropped.
struct Proxy {
    url: String,
    up: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let up = tokio::sync::watch::channel(true).0;
        let mut state = up.subscribe();
        let task = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                while pipes.try_join_next().is_some() {}
                if !*state.borrow_and_update() {
                    continue;
                }
                let target = target.clone();
                let mut state = state.clone();
                pipes.spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { url, up, task }
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keep-alive loss for real: with the connection to etcd cut, the session fences itself on
/// its own clock while etcd lets the lease run out and deletes the bound key (seen through a
/// second, direct store); once the connection is back, the keep-alive learns the lease is
/// gone (`Expired`) and a put into the session is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cut_off_from_etcd_fences_then_expires() {
    let etcd = Etcd::start();
    let proxy = Proxy::start(etcd.client_url().trim_start_matches("http://").to_string()).await;
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: vec![proxy.url.clone()],
        root: "/magnetar".into(),
        request_timeout: Duration::from_secs(1),
    })
    .await
    .unwrap();
    let direct = etcd.store("/magnetar").await;
    let session = store.open_session(Duration::from_secs(2)).await.unwrap();
    let ttl = session.ttl();
    let txn = Txn::new()
        .when("/owners/b0", Expect::Absent)
        .then(TxnOp::put_in_session(
            "/owners/b0",
            "broker-a",
            session.id(),
        ));
    store.txn(txn).await.unwrap();
    // Kept alive well past its TTL while connected. Time is the subject (the lease's TTL on a
    // real etcd), so this waits for it to pass; it orders nothing.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(session.current_state(), SessionState::Live);
    assert!(direct.exists("/owners/b0").await.unwrap());

    proxy.cut();
    conformance::wait_for_state(&session, SessionState::Fenced, ttl + Duration::from_secs(3)).await;
    let deadline = Instant::now() + ttl + Duration::from_secs(20);
    while direct.exists("/owners/b0").await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "the lease did not expire on etcd"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        session.current_state(),
        SessionState::Fenced,
        "nothing refreshed it while cut off"
    );

    proxy.restore();
    conformance::wait_for_state(&session, SessionState::Expired, Duration::from_secs(30)).await;
    assert_eq!(
        store
            .txn(Txn::new().then(TxnOp::put_in_session("/owners/b0", "again", session.id())))
            .await,
        Err(MetadataError::SessionExpired {
            session: session.id()
        })
    );
    assert!(!direct.exists("/owners/b0").await.unwrap());
    session.close().await.unwrap();
    store.close().await.unwrap();
    direct.close().await.unwrap();
}

/// Two brokers on one etcd: the second waits (on a watch) for the first one's bound owner key
/// to go, then claims with the epoch it read; the first one's stale claim then fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_moves_when_the_owner_closes_its_session() {
    let etcd = Etcd::start();
    let (a, b) = (etcd.store("/magnetar").await, etcd.store("/magnetar").await);
    let claim = |session, epoch_version| {
        Txn::new()
            .when("/bundles/x/owner", Expect::Absent)
            .when("/bundles/x/epoch", Expect::Version(epoch_version))
            .then(TxnOp::put_in_session("/bundles/x/owner", "me", session))
            .then(TxnOp::put("/bundles/x/epoch", "e"))
    };
    a.put("/bundles/x/epoch", Bytes::from_static(b"e"), Expect::Absent)
        .await
        .unwrap();
    let (sa, sb) = (
        a.open_session(Duration::from_secs(10)).await.unwrap(),
        b.open_session(Duration::from_secs(10)).await.unwrap(),
    );
    assert_eq!(
        a.txn(claim(sa.id(), 1)).await.unwrap().versions,
        [Some(1), Some(2)]
    );
    assert!(matches!(
        b.txn(claim(sb.id(), 2)).await,
        Err(MetadataError::BadVersion {
            actual: Some(1),
            ..
        })
    ));
    let mut watch = b.watch("/bundles/x/owner").unwrap();
    sa.close().await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.kind, magnetar_metadata::EventKind::Deleted);
    assert_eq!(
        b.txn(claim(sb.id(), 2)).await.unwrap().versions,
        [Some(1), Some(3)]
    );
    // a's next claim, with the epoch it knew, is fenced.
    assert!(matches!(
        a.txn(claim(sa.id(), 2)).await,
        Err(MetadataError::BadVersion { .. })
    ));
    sb.close().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_txn_epoch_fencing_across_tasks() {
    let etcd = Etcd::start();
    let store = std::sync::Arc::new(etcd.store("/magnetar").await);
    conformance::txn_epoch_fencing_across_tasks(store.clone()).await;
    store.close().await.unwrap();
}
