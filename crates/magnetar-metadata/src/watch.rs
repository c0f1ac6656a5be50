//! Prefix watches over one broadcast channel per store.
//!
//! One bounded broadcast channel carries every event of a store and each [`Watch`] filters by
//! its prefix. Broadcast (rather than a queue per watcher) means a slow watcher never slows the
//! writers or the other watchers: it loses the oldest events and is told so once, exactly where
//! the gap is. The cost is that events outside a watcher's prefix count toward its buffer too.

use tokio::sync::broadcast;

use crate::key::is_at_or_under;
use crate::Event;

/// Why a watch returned no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The watcher fell behind and `missed_events` events of the store (under any prefix) were
    /// dropped. The watch goes on with the oldest retained event; re-read the keys you follow.
    #[error("watch lagged and missed {missed_events} events")]
    Lagged { missed_events: u64 },
    /// The store closed; no more events will come.
    #[error("watch closed because the metadata store closed")]
    Closed,
}

/// An event with the store revision that committed it (0 for backends without revisions).
#[derive(Debug, Clone)]
pub(crate) struct Stamped {
    pub(crate) revision: u64,
    pub(crate) event: Event,
}

/// Changes to keys at or beneath a prefix, in commit order. Dropping it stops the watch.
#[derive(Debug)]
pub struct Watch {
    prefix: String,
    receiver: broadcast::Receiver<Stamped>,
    /// Events of earlier revisions are not reported (a backend whose events arrive after the
    /// call that committed them returned, such as etcd's, sets it to the revision it knew when
    /// the watch started, plus one).
    from_revision: u64,
}

impl Watch {
    fn wanted(&self, stamped: &Stamped) -> bool {
        stamped.revision >= self.from_revision && is_at_or_under(&stamped.event.key, &self.prefix)
    }

    /// The prefix this watch follows.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Waits for the next event under the prefix.
    pub async fn recv(&mut self) -> Result<Event, WatchError> {
        loop {
            match self.receiver.recv().await {
                Ok(stamped) if self.wanted(&stamped) => return Ok(stamped.event),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed_events)) => {
                    return Err(WatchError::Lagged { missed_events })
                }
                Err(broadcast::error::RecvError::Closed) => return Err(WatchError::Closed),
            }
        }
    }

    /// The next buffered event under the prefix, or `None` when there is none yet.
    pub fn try_recv(&mut self) -> Result<Option<Event>, WatchError> {
        loop {
            match self.receiver.try_recv() {
                Ok(stamped) if self.wanted(&stamped) => return Ok(Some(stamped.event)),
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Empty) => return Ok(None),
                Err(broadcast::error::TryRecvError::Lagged(missed_events)) => {
                    return Err(WatchError::Lagged { missed_events })
                }
                Err(broadcast::error::TryRecvError::Closed) => return Err(WatchError::Closed),
            }
        }
    }
}

/// The sending side kept by a store; `None` once the store closed.
#[derive(Debug)]
pub(crate) struct EventHub {
    sender: Option<broadcast::Sender<Stamped>>,
}

impl EventHub {
    pub(crate) fn new(buffer_events: usize) -> Self {
        let (sender, _) = broadcast::channel(buffer_events.max(1));
        Self {
            sender: Some(sender),
        }
    }

    /// Subscribes a watch, or `None` after close.
    pub(crate) fn subscribe(&self, prefix: &str) -> Option<Watch> {
        self.subscribe_from(prefix, 0)
    }

    /// Subscribes a watch that skips events of revisions below `from_revision`.
    pub(crate) fn subscribe_from(&self, prefix: &str, from_revision: u64) -> Option<Watch> {
        self.sender.as_ref().map(|sender| Watch {
            prefix: prefix.to_string(),
            receiver: sender.subscribe(),
            from_revision,
        })
    }

    pub(crate) fn send(&self, event: Event) {
        self.send_at(0, event);
    }

    pub(crate) fn send_at(&self, revision: u64, event: Event) {
        if let Some(sender) = &self.sender {
            // An error only means that nobody watches right now.
            let _ = sender.send(Stamped { revision, event });
        }
    }

    /// Ends every watch once it has drained what was sent before.
    pub(crate) fn close(&mut self) {
        self.sender = None;
    }
}
