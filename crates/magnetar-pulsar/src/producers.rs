//! Producer registrations per partition and Pulsar's producer access modes (PIP-68).
//!
//! - `Shared`: producers coexist; refused with `ProducerBusy` while an exclusive producer holds
//!   the partition or waits for it.
//! - `Exclusive`: granted only when no other producer is attached or waiting; otherwise
//!   refused with `ProducerFenced` (what Pulsar answers; clients do not retry it).
//! - `ExclusiveWithFencing`: closes every attached producer (CLOSE_PRODUCER to its connection;
//!   its later SENDs fail) and fails every waiting one, then takes the partition.
//! - `WaitForExclusive`: when the partition is taken, PRODUCER_SUCCESS with `producer_ready =
//!   false` at once, and a second one with `producer_ready = true` when it is granted (in
//!   arrival order, as soon as no producer is attached). At most [`WAITING_PRODUCERS_MAX`]
//!   wait per partition.
//!
//! Each grant of an exclusive mode moves the partition's *topic epoch* forward (or to the
//! epoch a reconnecting producer presents), answered in PRODUCER_SUCCESS; a producer that
//! comes back with an older epoch was fenced in between and is refused with `ProducerFenced`.
//! Epochs live in this broker's memory: they start again at 0 when the broker restarts
//! (Pulsar keeps them in the topic's ledger properties), so a producer fenced before a restart
//! is only refused while another exclusive producer holds the partition.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use magnetar_broker::TopicPartition;
use tokio::sync::{mpsc, oneshot};

use crate::frame;
use crate::proto::base_command::Type;
use crate::proto::{BaseCommand, CommandCloseProducer, ProducerAccessMode};

/// Producers waiting for exclusive access to one partition, at most.
pub const WAITING_PRODUCERS_MAX: usize = 1_000;

const READY: u8 = 0;
const WAITING: u8 = 1;
const FENCED: u8 = 2;
const CLOSED: u8 = 3;

/// One producer's link back to its connection: whether it may send, and how to close it.
#[derive(Debug, Clone)]
pub struct ProducerLink {
    state: Arc<AtomicU8>,
    out: mpsc::Sender<Bytes>,
    producer_id: u64,
}

impl ProducerLink {
    pub fn new(out: mpsc::Sender<Bytes>, producer_id: u64) -> Self {
        ProducerLink {
            state: Arc::new(AtomicU8::new(READY)),
            out,
            producer_id,
        }
    }

    /// True once another producer fenced this one out.
    pub fn is_fenced(&self) -> bool {
        self.state.load(Ordering::Acquire) == FENCED
    }

    /// True while the producer waits for exclusive access.
    pub fn is_waiting(&self) -> bool {
        self.state.load(Ordering::Acquire) == WAITING
    }

    /// True once the broker closed the producer because its partition closed (unloaded, moved
    /// to another broker, deleted): the client reconnects through a lookup and sends again
    /// what was not acknowledged.
    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }

    /// Marks the producer fenced and tells its client (CLOSE_PRODUCER, as a broker-initiated
    /// close: request id `u64::MAX`). The client reconnects and is refused.
    fn fence(&self) {
        self.state.store(FENCED, Ordering::Release);
        // A full queue means a client that does not read: its SENDs fail from now on anyway.
        let _ = self.out.try_send(self.close_frame());
    }

    /// Closes the producer because its partition closed (see [`ProducerLink::is_closed`]):
    /// CLOSE_PRODUCER to its client, waiting for room in the connection's queue. A fenced
    /// producer stays fenced.
    pub async fn close_by_broker(&self) {
        if self
            .state
            .compare_exchange(READY, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
            && self
                .state
                .compare_exchange(WAITING, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let _ = self.out.send(self.close_frame()).await;
    }

    fn close_frame(&self) -> Bytes {
        frame::encode(&BaseCommand {
            r#type: Type::CloseProducer as i32,
            close_producer: Some(CommandCloseProducer {
                producer_id: self.producer_id,
                request_id: u64::MAX,
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

/// Why a registration was refused: the Pulsar error to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `ProducerBusy` (retriable).
    Busy(String),
    /// `ProducerFenced` (final).
    Fenced(String),
}

/// What a registration got.
#[derive(Debug)]
pub enum Granted {
    /// Attached now; `epoch` is the topic epoch for exclusive modes.
    Ready {
        registration: u64,
        epoch: Option<u64>,
    },
    /// Queued (WaitForExclusive): `ready` resolves with the epoch when granted, or with the
    /// refusal when fenced out while waiting; it is dropped if the producer goes away first.
    Queued {
        registration: u64,
        ready: oneshot::Receiver<Result<u64, Refused>>,
    },
}

struct Waiter {
    registration: u64,
    link: ProducerLink,
    epoch: Option<u64>,
    ready: oneshot::Sender<Result<u64, Refused>>,
}

#[derive(Default)]
struct Slots {
    shared: HashMap<u64, ProducerLink>,
    exclusive: Option<(u64, ProducerLink)>,
    waiting: VecDeque<Waiter>,
    /// Topic epoch: moves forward with every exclusive grant.
    epoch: u64,
}

impl Slots {
    fn attached(&self) -> usize {
        self.shared.len() + usize::from(self.exclusive.is_some())
    }

    fn is_empty(&self) -> bool {
        self.attached() == 0 && self.waiting.is_empty() && self.epoch == 0
    }

    /// The epoch a new exclusive holder gets: the one it presents, or the next.
    fn grant_epoch(&mut self, presented: Option<u64>) -> u64 {
        self.epoch = match presented {
            Some(e) => e.max(self.epoch),
            None => self.epoch + 1,
        };
        self.epoch
    }

    fn stale(&self, presented: Option<u64>) -> Option<Refused> {
        match presented {
            Some(e) if e < self.epoch => Some(Refused::Fenced(format!(
                "topic epoch has already moved: current {}, producer's {e}",
                self.epoch
            ))),
            _ => None,
        }
    }

    /// Hands the partition to the first waiter still there, once nobody is attached.
    fn promote(&mut self) {
        while self.attached() == 0 {
            let Some(w) = self.waiting.pop_front() else {
                return;
            };
            if w.ready.is_closed() {
                continue;
            }
            let epoch = self.grant_epoch(w.epoch);
            w.link.state.store(READY, Ordering::Release);
            self.exclusive = Some((w.registration, w.link));
            let _ = w.ready.send(Ok(epoch));
        }
    }
}

/// Registrations of all partitions served here.
#[derive(Default)]
pub struct ProducerRegistry {
    slots: Mutex<HashMap<TopicPartition, Slots>>,
    next: AtomicU64,
}

/// One registration request.
pub struct Registration<'a> {
    pub partition: &'a TopicPartition,
    pub mode: ProducerAccessMode,
    /// The namespace's maxProducersPerTopic (0 or `None`: no limit).
    pub max: Option<u32>,
    /// The epoch a reconnecting exclusive producer presents.
    pub epoch: Option<u64>,
    pub link: ProducerLink,
}

impl ProducerRegistry {
    pub fn register(&self, r: Registration<'_>) -> Result<Granted, Refused> {
        let mut all = self
            .slots
            .lock()
            .map_err(|_| Refused::Busy("shutting down".into()))?;
        let tp = r.partition;
        let slots = all.entry(tp.clone()).or_default();
        if let Some(max) = r.max.filter(|m| *m > 0) {
            if slots.attached() >= max as usize {
                return Err(Refused::Busy(format!(
                    "Topic reached max producers limit ({max})"
                )));
            }
        }
        let registration = self.next.fetch_add(1, Ordering::Relaxed);
        let busy = slots.attached() > 0 || !slots.waiting.is_empty();
        match r.mode {
            ProducerAccessMode::Shared => {
                if slots.exclusive.is_some() || !slots.waiting.is_empty() {
                    return Err(Refused::Busy(format!(
                        "topic {tp} has an exclusive producer"
                    )));
                }
                slots.shared.insert(registration, r.link);
                Ok(Granted::Ready {
                    registration,
                    epoch: None,
                })
            }
            ProducerAccessMode::Exclusive => {
                if slots.exclusive.is_some() || !slots.waiting.is_empty() {
                    return Err(Refused::Fenced(format!(
                        "topic {tp} has an existing exclusive producer"
                    )));
                }
                if !slots.shared.is_empty() {
                    return Err(Refused::Fenced(format!(
                        "topic {tp} has existing shared producers"
                    )));
                }
                if let Some(refused) = slots.stale(r.epoch) {
                    return Err(refused);
                }
                let epoch = slots.grant_epoch(r.epoch);
                slots.exclusive = Some((registration, r.link));
                Ok(Granted::Ready {
                    registration,
                    epoch: Some(epoch),
                })
            }
            ProducerAccessMode::ExclusiveWithFencing => {
                if let Some(refused) = slots.stale(r.epoch) {
                    return Err(refused);
                }
                for w in slots.waiting.drain(..) {
                    w.link.state.store(FENCED, Ordering::Release);
                    let _ = w.ready.send(Err(Refused::Fenced("fenced out".into())));
                }
                for (_, link) in slots.shared.drain() {
                    link.fence();
                }
                if let Some((_, link)) = slots.exclusive.take() {
                    link.fence();
                }
                let epoch = slots.grant_epoch(r.epoch);
                slots.exclusive = Some((registration, r.link));
                Ok(Granted::Ready {
                    registration,
                    epoch: Some(epoch),
                })
            }
            ProducerAccessMode::WaitForExclusive => {
                if !busy {
                    if let Some(refused) = slots.stale(r.epoch) {
                        return Err(refused);
                    }
                    let epoch = slots.grant_epoch(r.epoch);
                    slots.exclusive = Some((registration, r.link));
                    return Ok(Granted::Ready {
                        registration,
                        epoch: Some(epoch),
                    });
                }
                if slots.waiting.len() >= WAITING_PRODUCERS_MAX {
                    return Err(Refused::Busy(format!(
                        "topic {tp} has {WAITING_PRODUCERS_MAX} producers waiting for exclusive access"
                    )));
                }
                let (tx, rx) = oneshot::channel();
                r.link.state.store(WAITING, Ordering::Release);
                slots.waiting.push_back(Waiter {
                    registration,
                    link: r.link,
                    epoch: r.epoch,
                    ready: tx,
                });
                Ok(Granted::Queued {
                    registration,
                    ready: rx,
                })
            }
        }
    }

    /// Gives a registration back (producer closed, fenced, or its connection ended); the first
    /// waiting producer gets the partition once nobody is attached.
    pub fn unregister(&self, tp: &TopicPartition, registration: u64) {
        let Ok(mut all) = self.slots.lock() else {
            return;
        };
        let Some(slots) = all.get_mut(tp) else { return };
        if slots.exclusive.as_ref().map(|(r, _)| *r) == Some(registration) {
            slots.exclusive = None;
        } else if slots.shared.remove(&registration).is_none() {
            slots.waiting.retain(|w| w.registration != registration);
        }
        slots.promote();
        if slots.is_empty() {
            all.remove(tp);
        }
    }

    /// Producers attached to `tp` (exclusive or shared), not counting waiting ones.
    #[cfg(test)]
    fn attached(&self, tp: &TopicPartition) -> usize {
        self.slots
            .lock()
            .unwrap()
            .get(tp)
            .map_or(0, Slots::attached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magnetar_broker::TopicName;

    fn tp() -> TopicPartition {
        TopicPartition {
            topic: TopicName::parse(
                "persistent://public/default/t",
                &magnetar_broker::NamespaceName::parse("public/default").unwrap(),
            )
            .unwrap(),
            partition: 0,
        }
    }

    fn link(id: u64) -> (ProducerLink, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(4);
        (ProducerLink::new(tx, id), rx)
    }

    fn reg(
        r: &ProducerRegistry,
        mode: ProducerAccessMode,
        epoch: Option<u64>,
        l: &ProducerLink,
    ) -> Result<Granted, Refused> {
        let tp = tp();
        r.register(Registration {
            partition: &tp,
            mode,
            max: None,
            epoch,
            link: l.clone(),
        })
    }

    fn ready(g: Result<Granted, Refused>) -> (u64, Option<u64>) {
        match g {
            Ok(Granted::Ready {
                registration,
                epoch,
            }) => (registration, epoch),
            other => panic!("expected ready, got {other:?}"),
        }
    }

    fn closed_producer(rx: &mut mpsc::Receiver<Bytes>) -> Option<u64> {
        let mut bytes = bytes::BytesMut::from(&rx.try_recv().ok()?[..]);
        let f = frame::decode(&mut bytes, 1 << 20).unwrap().unwrap();
        assert_eq!(f.command.r#type, Type::CloseProducer as i32);
        f.command.close_producer.map(|c| c.producer_id)
    }

    #[test]
    fn exclusive_refuses_others_with_the_right_error() {
        let r = ProducerRegistry::default();
        let (a, _) = link(1);
        let (b, _) = link(2);
        let (first, epoch) = ready(reg(&r, ProducerAccessMode::Exclusive, None, &a));
        assert_eq!(epoch, Some(1));
        assert!(matches!(
            reg(&r, ProducerAccessMode::Exclusive, None, &b),
            Err(Refused::Fenced(_))
        ));
        assert!(matches!(
            reg(&r, ProducerAccessMode::Shared, None, &b),
            Err(Refused::Busy(_))
        ));
        r.unregister(&tp(), first);
        let (second, epoch) = ready(reg(&r, ProducerAccessMode::Exclusive, None, &b));
        assert_eq!(epoch, Some(2), "each exclusive grant moves the epoch");
        // A producer coming back with the epoch it had before someone else took the topic.
        r.unregister(&tp(), second);
        assert!(matches!(
            reg(&r, ProducerAccessMode::Exclusive, Some(1), &a),
            Err(Refused::Fenced(m)) if m.contains("epoch")
        ));
    }

    #[test]
    fn exclusive_is_refused_while_shared_producers_are_attached() {
        let r = ProducerRegistry::default();
        let (a, _) = link(1);
        let (b, _) = link(2);
        let (s, _) = ready(reg(&r, ProducerAccessMode::Shared, None, &a));
        ready(reg(&r, ProducerAccessMode::Shared, None, &a));
        assert!(matches!(
            reg(&r, ProducerAccessMode::Exclusive, None, &b),
            Err(Refused::Fenced(m)) if m.contains("shared")
        ));
        r.unregister(&tp(), s);
        assert_eq!(r.attached(&tp()), 1);
    }

    #[test]
    fn fencing_closes_attached_producers_and_fails_waiters() {
        let r = ProducerRegistry::default();
        let (a, mut a_rx) = link(11);
        let (w, _) = link(12);
        let (f, _) = link(13);
        ready(reg(&r, ProducerAccessMode::Exclusive, None, &a));
        let Ok(Granted::Queued {
            ready: mut waiting, ..
        }) = reg(&r, ProducerAccessMode::WaitForExclusive, None, &w)
        else {
            panic!("queued")
        };
        assert!(w.is_waiting());
        let (_, epoch) = ready(reg(&r, ProducerAccessMode::ExclusiveWithFencing, None, &f));
        assert_eq!(epoch, Some(2));
        assert!(a.is_fenced());
        assert_eq!(closed_producer(&mut a_rx), Some(11));
        assert!(matches!(waiting.try_recv(), Ok(Err(Refused::Fenced(_)))));
        assert!(w.is_fenced());
        assert_eq!(r.attached(&tp()), 1);
        // The fenced producer's late unregister does not free the new holder's slot.
        r.unregister(&tp(), 0);
        assert_eq!(r.attached(&tp()), 1);
    }

    #[test]
    fn waiters_are_granted_in_order_when_the_topic_frees_up() {
        let r = ProducerRegistry::default();
        let (s, _) = link(1);
        let (w1, _) = link(2);
        let (w2, _) = link(3);
        let (shared, _) = ready(reg(&r, ProducerAccessMode::Shared, None, &s));
        let Ok(Granted::Queued {
            registration: r1,
            ready: mut first,
        }) = reg(&r, ProducerAccessMode::WaitForExclusive, None, &w1)
        else {
            panic!("queued")
        };
        let Ok(Granted::Queued {
            ready: mut second, ..
        }) = reg(&r, ProducerAccessMode::WaitForExclusive, None, &w2)
        else {
            panic!("queued")
        };
        // Nobody new gets in while producers wait.
        assert!(matches!(
            reg(&r, ProducerAccessMode::Shared, None, &s),
            Err(Refused::Busy(_))
        ));
        assert!(first.try_recv().is_err());
        r.unregister(&tp(), shared);
        assert_eq!(first.try_recv().unwrap(), Ok(1));
        assert!(!w1.is_waiting());
        assert!(second.try_recv().is_err());
        r.unregister(&tp(), r1);
        assert_eq!(second.try_recv().unwrap(), Ok(2));
    }

    #[test]
    fn a_waiter_that_left_is_skipped_and_the_queue_is_bounded() {
        let r = ProducerRegistry::default();
        let (a, _) = link(1);
        let (holder, _) = ready(reg(&r, ProducerAccessMode::Exclusive, None, &a));
        let mut kept = Vec::new();
        for i in 0..WAITING_PRODUCERS_MAX {
            let (l, _) = link(100 + i as u64);
            match reg(&r, ProducerAccessMode::WaitForExclusive, None, &l) {
                Ok(Granted::Queued {
                    registration,
                    ready,
                }) => kept.push((registration, ready)),
                other => panic!("{other:?}"),
            }
        }
        let (l, _) = link(9);
        assert!(matches!(
            reg(&r, ProducerAccessMode::WaitForExclusive, None, &l),
            Err(Refused::Busy(_))
        ));
        // The first waiter unregisters (its connection closed), the second's receiver is gone.
        let (gone, _) = kept.remove(0);
        r.unregister(&tp(), gone);
        drop(kept.remove(0));
        r.unregister(&tp(), holder);
        assert_eq!(kept[0].1.try_recv().unwrap(), Ok(2));
    }

    #[test]
    fn max_producers_counts_attached_producers() {
        let r = ProducerRegistry::default();
        let (a, _) = link(1);
        let tp = tp();
        let reg_max = |l: &ProducerLink| {
            r.register(Registration {
                partition: &tp,
                mode: ProducerAccessMode::Shared,
                max: Some(1),
                epoch: None,
                link: l.clone(),
            })
        };
        ready(reg_max(&a));
        assert!(matches!(reg_max(&a), Err(Refused::Busy(m)) if m.contains("limit")));
    }
}
