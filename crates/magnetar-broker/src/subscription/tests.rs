//! The subscription without a front end: a test codec and test consumers that record what they
//! are handed. Waiting is on deliveries (never on sleeps); "nothing more" is asserted where the
//! permits given allow no more deliveries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use magnetar_metadata::MemoryStore;
use magnetar_storage::{Clock, ManualClock, PayloadFormat};
use tokio::sync::mpsc;

use super::key_shared::{sticky_slot, HashRanges, KeySharedMode};
use super::*;
use crate::broker::{Broker, BrokerConfig};
use crate::names::TopicPartition;
use crate::partition::AppendRequest;

/// Serves payloads as they are; a payload starting with `bad` cannot be served. The key slot is
/// the hash of the payload. With `delayed` set, a payload `at<ms>:...` is due at `<ms>`.
#[derive(Default)]
struct TestCodec {
    unreadable: Mutex<Vec<u64>>,
    delayed: Option<DelayedDelivery>,
}

impl EntryCodec for TestCodec {
    fn prepare(&self, entry: &Entry, key_slot: bool) -> std::result::Result<PreparedEntry, String> {
        if entry.payload.starts_with(b"bad") {
            return Err("refused by the test codec".into());
        }
        Ok(PreparedEntry {
            body: entry.payload.clone(),
            key_slot: if key_slot {
                sticky_slot(&entry.payload)
            } else {
                0
            },
        })
    }

    fn unreadable(&self, index: u64, _error: &str) {
        self.unreadable.lock().unwrap().push(index);
    }

    fn delayed_delivery(&self) -> Option<DelayedDelivery> {
        self.delayed
    }

    fn deliver_at_ms(&self, _entry: &Entry, prepared: &PreparedEntry) -> Option<i64> {
        let text = std::str::from_utf8(&prepared.body).ok()?;
        text.strip_prefix("at")?.split(':').next()?.parse().ok()
    }
}

/// Every test consumer sends to one channel, so the order across consumers is visible.
#[derive(Debug)]
struct TestSink {
    key: ConsumerKey,
    deliveries: mpsc::UnboundedSender<Delivery>,
    active: Mutex<Vec<bool>>,
    closed: AtomicUsize,
}

impl ConsumerSink for TestSink {
    fn deliver(&self, delivery: Delivery) -> DeliveryFuture {
        assert_eq!(delivery.consumer, self.key);
        let _ = self.deliveries.send(delivery);
        Box::pin(async {})
    }

    fn active_changed(&self, active: bool) {
        self.active.lock().unwrap().push(active);
    }

    fn closed(&self) -> DeliveryFuture {
        self.closed.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }
}

struct Fixture {
    broker: Arc<Broker>,
    clock: Arc<ManualClock>,
    log: Arc<PartitionLog>,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    tx: mpsc::UnboundedSender<Delivery>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let broker = Broker::open(
            BrokerConfig::for_data_dir(dir.path().to_path_buf()),
            Arc::new(MemoryStore::new()),
            clock.clone(),
        )
        .await
        .unwrap();
        let topic = broker.parse_topic("subs").unwrap();
        broker
            .create_topic(&topic, Some(1), BTreeMap::new())
            .await
            .unwrap();
        let log = broker
            .partition(&TopicPartition {
                topic,
                partition: 0,
            })
            .await
            .unwrap();
        let (tx, deliveries) = mpsc::unbounded_channel();
        Fixture {
            broker,
            clock,
            log,
            deliveries,
            tx,
            _dir: dir,
        }
    }

    /// Appends one single-message entry with `payload`, event time `timestamp_ms`; returns its
    /// index.
    async fn append(&self, payload: &str, timestamp_ms: i64) -> u64 {
        self.log
            .append(AppendRequest {
                payload: Bytes::copy_from_slice(payload.as_bytes()),
                message_count: 1,
                max_timestamp_ms: timestamp_ms,
                format: PayloadFormat::Pulsar,
                producer: None,
                first_index_at: None,
            })
            .await
            .unwrap()
            .first_index
    }

    fn sink(&self, key: ConsumerKey) -> Arc<TestSink> {
        Arc::new(TestSink {
            key,
            deliveries: self.tx.clone(),
            active: Mutex::new(Vec::new()),
            closed: AtomicUsize::new(0),
        })
    }

    /// Attaches a consumer; runs the dispatcher when this is the first.
    fn attach(
        &self,
        sub: &Arc<Subscription>,
        kind: SubscriptionType,
        key: ConsumerKey,
        priority: i32,
    ) -> std::result::Result<Arc<TestSink>, String> {
        self.attach_with(sub, kind, key, priority, TestCodec::default())
    }

    /// [`Self::attach`] with a codec of the test's own.
    fn attach_with(
        &self,
        sub: &Arc<Subscription>,
        kind: SubscriptionType,
        key: ConsumerKey,
        priority: i32,
        codec: TestCodec,
    ) -> std::result::Result<Arc<TestSink>, String> {
        self.attach_full(sub, kind, key, priority, codec, KeySharedMode::AutoSplit)
    }

    /// [`Self::attach_with`] in a Key_Shared mode.
    fn attach_full(
        &self,
        sub: &Arc<Subscription>,
        kind: SubscriptionType,
        key: ConsumerKey,
        priority: i32,
        codec: TestCodec,
        key_shared: KeySharedMode,
    ) -> std::result::Result<Arc<TestSink>, String> {
        let sink = self.sink(key);
        let dispatcher = sub.add_consumer(
            Consumer {
                key,
                name: format!("c{}", key.1),
                priority,
                key_shared,
                sink: sink.clone(),
            },
            kind,
            Arc::new(codec),
            1000,
        )?;
        if let Some(d) = dispatcher {
            tokio::spawn(d.run(self.broker.clone()));
        }
        Ok(sink)
    }

    async fn next(&mut self) -> Delivery {
        tokio::time::timeout(Duration::from_secs(10), self.deliveries.recv())
            .await
            .expect("a delivery")
            .expect("channel open")
    }

    fn nothing_more(&mut self) {
        assert!(self.deliveries.try_recv().is_err());
    }
}

/// One range to acknowledge.
fn one(range: Range<u64>) -> Vec<Range<u64>> {
    vec![range]
}

const A: ConsumerKey = (1, 1);
const B: ConsumerKey = (1, 2);
const C: ConsumerKey = (2, 1);

#[tokio::test]
async fn exclusive_refuses_a_second_consumer_and_sends_in_order() {
    let mut f = Fixture::new().await;
    for i in 0..3 {
        f.append(&format!("m{i}"), 1000).await;
    }
    let sub = f
        .log
        .open_subscription("s", CursorStart::Earliest)
        .await
        .unwrap();
    f.attach(&sub, SubscriptionType::Exclusive, A, 0).unwrap();
    let refused = f.attach(&sub, SubscriptionType::Exclusive, B, 0);
    assert!(refused.unwrap_err().contains("exclusive"));
    let other_type = f.attach(&sub, SubscriptionType::Shared, B, 0);
    assert!(other_type.unwrap_err().contains("cannot join"));
    sub.add_permits(A, 2);
    for i in 0..2 {
        let d = f.next().await;
        assert_eq!((d.consumer, d.header.first_index), (A, i));
        assert_eq!(d.body, Bytes::from(format!("m{i}")));
        assert_eq!(d.redelivery_count, 0);
    }
    f.nothing_more();
    sub.add_permits(A, 1);
    assert_eq!(f.next().await.header.first_index, 2);
    // The same live object is what the registry hands out.
    assert!(Arc::ptr_eq(&sub, &f.log.subscription("s").unwrap()));
    assert_eq!(f.log.consumers_of("s"), 1);
}

#[tokio::test]
async fn shared_round_robins_over_consumers_with_permits() {
    let mut f = Fixture::new().await;
    for i in 0..4 {
        f.append(&format!("m{i}"), 1000).await;
    }
    let sub = f
        .log
        .open_subscription("s", CursorStart::Earliest)
        .await
        .unwrap();
    f.attach(&sub, SubscriptionType::Shared, A, 0).unwrap();
    f.attach(&sub, SubscriptionType::Shared, B, 0).unwrap();
    sub.add_permits(A, 2);
    sub.add_permits(B, 2);
    let mut by_consumer: BTreeMap<ConsumerKey, Vec<u64>> = BTreeMap::new();
    for _ in 0..4 {
        let d = f.next().await;
        by_consumer
            .entry(d.consumer)
            .or_default()
            .push(d.header.first_index);
    }
    f.nothing_more();
    assert_eq!(by_consumer[&A].len(), 2);
    assert_eq!(by_consumer[&B].len(), 2);
    assert_eq!(f.log.consumers_total(), 2);
}

#[tokio::test]
async fn failover_sends_to_the_first_by_priority_and_hands_over_on_leave() {
    let mut f = Fixture::new().await;
    for i in 0..2 {
        f.append(&format!("m{i}"), 1000).await;
    }
    let sub = f
        .log
        .open_subscription("s", CursorStart::Earliest)
        .await
        .unwrap();
    let low = f.attach(&sub, SubscriptionType::Failover, A, 5).unwrap();
    let high = f.attach(&sub, SubscriptionType::Failover, B, 0).unwrap();
    // Partition 0 of one: the first in (priority, name) order is active.
    assert_eq!(high.active.lock().unwrap().last(), Some(&true));
    assert_eq!(low.active.lock().unwrap().last(), Some(&false));
    sub.add_permits(A, 10);
    sub.add_permits(B, 1);
    let d = f.next().await;
    assert_eq!((d.consumer, d.header.first_index), (B, 0));
    f.nothing_more();
    // B leaves with entry 0 unacknowledged: A takes over and gets it again, and entry 1 (which
    // may already be on its way from a read started before B left).
    assert_eq!(sub.remove_consumer(B), 1);
    assert_eq!(low.active.lock().unwrap().last(), Some(&true));
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = f.next().await;
        got.push((d.header.first_index, d.consumer, d.redelivery_count));
    }
    got.sort();
    assert_eq!(got, vec![(0, A, 1), (1, A, 0)]);
}

#[tokio::test]
async fn key_shared_sends_each_key_to_the_owner_of_its_slice() {
    let mut f = Fixture::new().await;
    let keys: Vec<String> = (0..12).map(|i| format!("key-{i}")).collect();
    for k in &keys {
        f.append(k, 1000).await;
    }
    let sub = f
        .log
        .open_subscription("s", CursorStart::Earliest)
        .await
        .unwrap();
    f.attach(&sub, SubscriptionType::KeyShared, A, 0).unwrap();
    f.attach(&sub, SubscriptionType::KeyShared, B, 0).unwrap();
    let mut ranges = HashRanges::default();
    ranges.add(A).unwrap();
    ranges.add(B).unwrap();
    let expected: Vec<ConsumerKey> = keys
        .iter()
        .map(|k| ranges.select(sticky_slot(k.as_bytes())).unwrap())
        .collect();
    // Both keys' owners appear among these keys, or the test says nothing.
    assert!(expected.contains(&A) && expected.contains(&B));
    sub.add_permits(A, 100);
    sub.add_permits(B, 100);
    let mut got = Vec::new();
    for _ in 0..keys.len() {
        let d = f.next().await;
        got.push((d.header.first_index, d.consumer));
    }
    got.sort();
    let want: Vec<(u64, ConsumerKey)> = (0..keys.len() as u64).zip(expected).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn key_shared_sticky_sends_only_declared_slots_and_parks_the_rest_until_a_consumer_declares_them(
) {
    let mut f = Fixture::new().await;
    let keys: Vec<String> = (0..16).map(|i| format!("key-{i}")).collect();
    let slot = |k: &String| sticky_slot(k.as_bytes());
    let half = super::key_shared::HASH_RANGE_SIZE / 2;
    // A declares the lower half only; keys of the upper half wait for B.
    let (low, high): (Vec<u64>, Vec<u64>) =
        (0..keys.len() as u64).partition(|i| slot(&keys[*i as usize]) < half);
    assert!(!low.is_empty() && !high.is_empty(), "keys of both halves");
    for k in &keys {
        f.append(k, 1000).await;
    }
    let sub = f
        .log
        .open_subscription("s", CursorStart::Earliest)
        .await
        .unwrap();
    let sticky = |ranges: Vec<(u32, u32)>| KeySharedMode::Sticky(ranges);
    f.attach_full(
        &sub,
        SubscriptionType::KeyShared,
        A,
        0,
        TestCodec::default(),
        sticky(vec![(0, half - 1)]),
    )
    .unwrap();
    // Another mode, or an overlapping range, is refused.
    assert!(f.attach(&sub, SubscriptionType::KeyShared, C, 0).is_err());
    assert!(f
        .attach_full(
            &sub,
            SubscriptionType::KeyShared,
            C,
            0,
            TestCodec::default(),
            sticky(vec![(half - 1, half + 10)]),
        )
        .is_err());
    sub.add_permits(A, 100);
    let mut got = Vec::new();
    for _ in 0..low.len() {
        let d = f.next().await;
        assert_eq!(d.consumer, A);
        got.push(d.header.first_index);
    }
    got.sort();
    assert_eq!(got, low);
    // A later entry of the lower half is not held up behind the parked ones.
    let later = f.append(&keys[low[0] as usize], 1000).await;
    assert_eq!(f.next().await.header.first_index, later);
    f.nothing_more();

    f.attach_full(
        &sub,
        SubscriptionType::KeyShared,
        B,
        0,
        TestCodec::default(),
        sticky(vec![(half, super::key_shared::HASH_RANGE_SIZE - 1)]),
    )
    .unwrap();
    sub.add_permits(B, 100);
    let mut got = Vec::new();
    for _ in 0..high.len() {
        let d = f.next().await;
        assert_eq!(d.consumer, B);
        got.push(d.header.first_index);
    }
    got.sort();
    assert_eq!(got, high);
}

#[tokio::test]
async fn redelivery_and_acks() {
    let mut f = Fixture::new().await;
    for i in 0..3 {
        f.append(&format!("m{i}"), 1000).await;
    }
    let sub = f
        .log
        .open_subscription("s", CursorStart::Earliest)
        .await
        .unwrap();
    f.attach(&sub, SubscriptionType::Shared, A, 0).unwrap();
    sub.add_permits(A, 3);
    for i in 0..3 {
        assert_eq!(f.next().await.header.first_index, i);
    }
    sub.ack(one(1..2)).await.unwrap();
    assert_eq!(sub.backlog(), 2);
    // Asked for again: the two unacknowledged entries come back, counted.
    sub.add_permits(A, 2);
    sub.redeliver(A, &[]);
    let mut again = [f.next().await, f.next().await];
    again.sort_by_key(|d| d.header.first_index);
    assert_eq!(
        again
            .iter()
            .map(|d| (d.header.first_index, d.redelivery_count))
            .collect::<Vec<_>>(),
        vec![(0, 1), (2, 1)]
    );
    f.nothing_more();
    sub.ack_cumulative(2).await.unwrap();
    assert_eq!(sub.backlog(), 0);
    // Durable: the storage cursor has it too.
    let stored = f.log.subscription_cursors();
    assert_eq!(stored[0].1.mark_delete_index, 3);
}

#[tokio::test]
async fn reset_while_consumers_are_attached_continues_from_the_new_position() {
    let mut f = Fixture::new().await;
    // Publish times from the manual clock; event times one minute apart.
    for i in 0..4i64 {
        f.clock.set_ms(2_000_000 + i * 1000);
        f.append(&format!("m{i}"), 60_000 * (i + 1)).await;
    }
    let sub = f
        .log
        .open_subscription("s", CursorStart::Earliest)
        .await
        .unwrap();
    f.attach(&sub, SubscriptionType::Exclusive, A, 0).unwrap();
    sub.add_permits(A, 4);
    for i in 0..4 {
        let d = f.next().await;
        assert_eq!(d.header.first_index, i);
        assert_eq!(d.header.publish_time_ms, 2_000_000 + i as i64 * 1000);
    }
    sub.ack_cumulative(3).await.unwrap();
    assert_eq!(sub.backlog(), 0);
    // Back to the first entry whose event time is at or after 150 s: entry 2.
    sub.add_permits(A, 10);
    assert_eq!(sub.reset_to_time(150_000).await.unwrap(), 2);
    assert_eq!(sub.cursor().mark_delete_index, 2);
    assert_eq!(sub.backlog(), 2);
    for i in 2..4 {
        let d = f.next().await;
        assert_eq!(
            (d.consumer, d.header.first_index, d.redelivery_count),
            (A, i, 0)
        );
    }
    // And to an index, clamped into the partition.
    assert_eq!(sub.reset(0).await.unwrap(), 0);
    for i in 0..4 {
        assert_eq!(f.next().await.header.first_index, i);
    }
    f.nothing_more();
    assert_eq!(sub.reset(99).await.unwrap(), 4);
    assert_eq!(
        f.log.subscription("s").unwrap().cursor().mark_delete_index,
        4
    );
}

#[tokio::test]
async fn skip_clear_backlog_and_delete_without_consumers() {
    let f = Fixture::new().await;
    for i in 0..10 {
        f.append(&format!("m{i}"), 1000).await;
    }
    assert!(f
        .log
        .create_subscription("s", CursorStart::Earliest)
        .await
        .unwrap());
    assert!(!f
        .log
        .create_subscription("s", CursorStart::Latest)
        .await
        .unwrap());
    let sub = f.log.subscription("s").unwrap();
    sub.ack(one(2..4)).await.unwrap();
    // Skipping 3 unacknowledged messages from 0 acknowledges 0, 1 and 4.
    sub.skip(3).await.unwrap();
    assert_eq!(sub.cursor().mark_delete_index, 5);
    assert_eq!(sub.backlog(), 5);
    sub.skip(100).await.unwrap();
    assert_eq!(sub.backlog(), 0);
    sub.reset_to(CursorStart::Earliest).await.unwrap();
    assert_eq!(sub.backlog(), 10);
    sub.clear_backlog().await.unwrap();
    assert_eq!(sub.backlog(), 0);
    drop(sub);
    // Every change reached the storage cursor: a new object over it agrees.
    assert_eq!(
        f.log.subscription("s").unwrap().cursor().mark_delete_index,
        10
    );
    assert_eq!(f.log.subscription_names(), vec!["s".to_string()]);
    assert!(f.log.delete_subscription("s").await.unwrap());
    assert!(f.log.subscription("s").is_none());
    assert!(!f.log.has_subscription("s"));
}

#[tokio::test]
async fn unreadable_entries_are_passed_and_acknowledged() {
    let mut f = Fixture::new().await;
    f.append("m0", 1000).await;
    f.append("bad1", 1000).await;
    f.append("m2", 1000).await;
    let sub = f
        .log
        .open_subscription("s", CursorStart::Earliest)
        .await
        .unwrap();
    let codec = Arc::new(TestCodec::default());
    let sink = f.sink(A);
    let dispatcher = sub
        .add_consumer(
            Consumer {
                key: A,
                name: "a".into(),
                priority: 0,
                key_shared: Default::default(),
                sink,
            },
            SubscriptionType::Exclusive,
            codec.clone(),
            1000,
        )
        .unwrap()
        .unwrap();
    tokio::spawn(dispatcher.run(f.broker.clone()));
    sub.add_permits(A, 10);
    assert_eq!(f.next().await.header.first_index, 0);
    assert_eq!(f.next().await.header.first_index, 2);
    assert_eq!(*codec.unreadable.lock().unwrap(), vec![1]);
    sub.ack(vec![0..1, 2..3]).await.unwrap();
    // The dispatcher acknowledges the passed entry after handing out the others.
    tokio::time::timeout(Duration::from_secs(10), async {
        while sub.cursor().mark_delete_index != 3 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the unreadable entry acknowledged");
}

#[tokio::test]
async fn readers_are_private_and_close_detaches_everyone() {
    let mut f = Fixture::new().await;
    for i in 0..3 {
        f.append(&format!("m{i}"), 1000).await;
    }
    let r1 = f.log.open_reader("r", 1);
    let r2 = f.log.open_reader("r", 0);
    assert!(!Arc::ptr_eq(&r1, &r2));
    assert!(!f.log.has_subscription("r"));
    f.attach(&r1, SubscriptionType::Exclusive, A, 0).unwrap();
    f.attach(&r2, SubscriptionType::Exclusive, C, 0).unwrap();
    assert_eq!(f.log.consumers_total(), 2);
    r1.add_permits(A, 1);
    let d = f.next().await;
    assert_eq!((d.consumer, d.header.first_index), (A, 1));
    // A reader acknowledges in memory only.
    r1.ack(one(1..2)).await.unwrap();
    assert_eq!(r1.cursor().mark_delete_index, 2);
    assert!(f.log.subscription_cursors().is_empty());

    let shared = f
        .log
        .open_subscription("s", CursorStart::Earliest)
        .await
        .unwrap();
    let a = f.attach(&shared, SubscriptionType::Shared, A, 0).unwrap();
    let b = f.attach(&shared, SubscriptionType::Shared, B, 0).unwrap();
    let mut closed = shared.close().await;
    closed.sort();
    assert_eq!(closed, vec![A, B]);
    assert_eq!(a.closed.load(Ordering::SeqCst), 1);
    assert_eq!(b.closed.load(Ordering::SeqCst), 1);
    assert_eq!(shared.consumer_count(), 0);
    assert_eq!(shared.kind(), None);
    // Closed, it takes consumers of another type, with a dispatcher of their own.
    f.attach(&shared, SubscriptionType::Exclusive, A, 0)
        .unwrap();
    shared.add_permits(A, 1);
    let d = f.next().await;
    assert_eq!((d.consumer, d.header.first_index), (A, 0));
}

/// A codec with delayed delivery on: the dispatcher looks at the clock every millisecond, at
/// most `tracked_max` entries are held.
fn delaying(tracked_max: usize) -> TestCodec {
    TestCodec {
        delayed: Some(DelayedDelivery {
            tick_ms: 1,
            tracked_max,
        }),
        ..TestCodec::default()
    }
}

/// Yields to the dispatcher until `done` holds (a condition, not a timed sleep).
async fn until(done: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the condition holds");
}

#[tokio::test]
async fn shared_holds_delayed_entries_until_due_and_releases_them_in_order() {
    let mut f = Fixture::new().await;
    let now = f.clock.now_ms();
    f.append(&format!("at{}:late", now + 500), 1000).await;
    f.append(&format!("at{}:early", now + 300), 1000).await;
    f.append("plain", 1000).await;
    f.append(&format!("at{}:late-too", now + 500), 1000).await;
    f.append(&format!("at{}:past", now - 1), 1000).await;
    let sub = f
        .log
        .open_subscription("s", CursorStart::Earliest)
        .await
        .unwrap();
    f.attach_with(&sub, SubscriptionType::Shared, A, 0, delaying(100))
        .unwrap();
    sub.add_permits(A, 10);
    // The entries not due wait; those after them (and one already due) go first.
    assert_eq!(f.next().await.header.first_index, 2);
    assert_eq!(f.next().await.header.first_index, 4);
    until(|| sub.delayed_entries() == 3).await;
    f.nothing_more();
    assert_eq!(f.log.delayed_entries_of("s"), 3);
    // Acknowledging what came after does not move the mark-delete position past a held entry.
    sub.ack(vec![2..3, 4..5]).await.unwrap();
    assert_eq!(sub.cursor().mark_delete_index, 0);

    f.clock.advance_ms(300);
    let d = f.next().await;
    assert_eq!((d.header.first_index, d.redelivery_count), (1, 0));
    assert_eq!(d.body, Bytes::from(format!("at{}:early", now + 300)));
    sub.ack(one(1..2)).await.unwrap();
    assert_eq!(sub.cursor().mark_delete_index, 0);
    f.clock.advance_ms(200);
    // Due together: in index order.
    assert_eq!(f.next().await.header.first_index, 0);
    assert_eq!(f.next().await.header.first_index, 3);
    assert_eq!(sub.delayed_entries(), 0);
    sub.ack(vec![0..1, 3..4]).await.unwrap();
    assert_eq!(sub.cursor().mark_delete_index, 5);
    f.nothing_more();
}

#[tokio::test]
async fn exclusive_and_failover_ignore_the_delay() {
    let mut f = Fixture::new().await;
    let now = f.clock.now_ms();
    f.append(&format!("at{}:later", now + 60_000), 1000).await;
    f.append("plain", 1000).await;
    for (name, kind) in [
        ("e", SubscriptionType::Exclusive),
        ("f", SubscriptionType::Failover),
    ] {
        let sub = f
            .log
            .open_subscription(name, CursorStart::Earliest)
            .await
            .unwrap();
        f.attach_with(&sub, kind, A, 0, delaying(100)).unwrap();
        sub.add_permits(A, 10);
        assert_eq!(f.next().await.header.first_index, 0, "{kind:?}");
        assert_eq!(f.next().await.header.first_index, 1, "{kind:?}");
        assert_eq!(sub.delayed_entries(), 0);
        sub.remove_consumer(A);
    }
    // Without the codec's delayed delivery, Shared ignores it too.
    let sub = f
        .log
        .open_subscription("s", CursorStart::Earliest)
        .await
        .unwrap();
    f.attach(&sub, SubscriptionType::Shared, A, 0).unwrap();
    sub.add_permits(A, 10);
    assert_eq!(f.next().await.header.first_index, 0);
    assert_eq!(f.next().await.header.first_index, 1);
}

#[tokio::test]
async fn key_shared_holds_delayed_entries_too() {
    let mut f = Fixture::new().await;
    let now = f.clock.now_ms();
    f.append(&format!("at{}:later", now + 1_000), 1000).await;
    f.append("plain", 1000).await;
    let sub = f
        .log
        .open_subscription("s", CursorStart::Earliest)
        .await
        .unwrap();
    f.attach_with(&sub, SubscriptionType::KeyShared, A, 0, delaying(100))
        .unwrap();
    sub.add_permits(A, 10);
    assert_eq!(f.next().await.header.first_index, 1);
    f.clock.advance_ms(1_000);
    assert_eq!(f.next().await.header.first_index, 0);
}

#[tokio::test]
async fn a_full_tracker_stops_reading_until_held_entries_are_due() {
    let mut f = Fixture::new().await;
    let now = f.clock.now_ms();
    f.append(&format!("at{}:a", now + 100), 1000).await;
    f.append(&format!("at{}:b", now + 200), 1000).await;
    f.append("plain", 1000).await;
    let sub = f
        .log
        .open_subscription("s", CursorStart::Earliest)
        .await
        .unwrap();
    f.attach_with(&sub, SubscriptionType::Shared, A, 0, delaying(1))
        .unwrap();
    sub.add_permits(A, 10);
    until(|| sub.delayed_entries() == 1).await;
    // One entry held fills the tracker: nothing after it is read (nor lost).
    f.nothing_more();
    f.clock.advance_ms(100);
    assert_eq!(f.next().await.header.first_index, 0);
    // Reading resumes: the next held entry takes the freed place, the plain one follows it.
    assert_eq!(f.next().await.header.first_index, 2);
    assert_eq!(sub.delayed_entries(), 1);
    f.clock.advance_ms(100);
    assert_eq!(f.next().await.header.first_index, 1);
    f.nothing_more();
}
