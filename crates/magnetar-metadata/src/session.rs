//! Sessions: a lease that the store ends (deleting the keys bound to it) unless this process
//! refreshes it within its TTL, like a ZooKeeper session or an etcd lease.
//!
//! Each store supplies the lease ([`Lease`]: refresh and revoke); this module owns what is
//! common: the keep-alive task and the [`SessionState`] it publishes. Two clocks matter and
//! they are never mixed up:
//! - the store's: when it says the lease is gone, the session is [`SessionState::Expired`] and
//!   its keys are gone;
//! - this process's monotonic clock (`tokio::time::Instant`): when no refresh has succeeded
//!   for `ttl - margin` (see [`fence_margin`]), counted from when that refresh was *sent*, the
//!   session is [`SessionState::Fenced`]: the store may already have ended it, so the owner
//!   must stop acting as one. A later refresh that succeeds makes it `Live` again.
//!
//! Correctness never rests on these timings (the store may keep a lease longer, etcd across
//! its own restarts); it rests on transactions that compare the keys bound to a session or an
//! epoch, which fail once the session is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use crate::MetadataError;

/// Shortest session TTL a store accepts. Below it the keep-alive (every third of the TTL) and
/// the fencing margin leave no room for a round trip.
pub const SESSION_TTL_MIN: Duration = Duration::from_millis(100);

/// Longest session TTL a store accepts (an hour: a dead broker's keys must not linger longer).
pub const SESSION_TTL_MAX: Duration = Duration::from_secs(3600);

/// Smallest fencing margin (see [`fence_margin`]).
pub const FENCE_MARGIN_MIN: Duration = Duration::from_millis(100);

/// The next id of a session of an in-process store (memory, redb). One counter for the whole
/// process, so a [`Session`] left over from a closed store never names a session of another
/// store (or of the same file opened again).
static NEXT_LOCAL_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A new id for a session of an in-process store.
pub(crate) fn next_local_session_id() -> u64 {
    NEXT_LOCAL_SESSION.fetch_add(1, Ordering::Relaxed)
}

/// The identifier of a session in its store (etcd: the lease id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// What a session's owner may assume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// The last refresh succeeded less than `ttl - margin` ago (this process's clock).
    Live,
    /// No refresh succeeded for `ttl - margin`: the store may have ended the session. Stop
    /// acting as an owner; a refresh that succeeds before the store ends it returns to `Live`.
    Fenced,
    /// The store said the session is gone: its bound keys were deleted. Final.
    Expired,
    /// Closed by [`Session::close`]: revoked, its bound keys deleted. Final.
    Closed,
}

/// How long before the TTL runs out a session fences itself: a fifth of the TTL, at least
/// [`FENCE_MARGIN_MIN`], at most half the TTL. The margin covers the delay between the store
/// receiving a refresh and this process sending it (counted from the send) and clock rate
/// differences.
pub fn fence_margin(ttl: Duration) -> Duration {
    (ttl / 5).max(FENCE_MARGIN_MIN).min(ttl / 2)
}

/// Checks a requested TTL against [`SESSION_TTL_MIN`] and [`SESSION_TTL_MAX`].
pub(crate) fn validate_ttl(ttl: Duration) -> Result<(), MetadataError> {
    if !(SESSION_TTL_MIN..=SESSION_TTL_MAX).contains(&ttl) {
        return Err(MetadataError::InvalidTtl {
            ttl_ms: ttl.as_millis().try_into().unwrap_or(u64::MAX),
            min_ms: SESSION_TTL_MIN.as_millis() as u64,
            max_ms: SESSION_TTL_MAX.as_millis() as u64,
        });
    }
    Ok(())
}

/// A store's side of a session.
#[async_trait]
pub(crate) trait Lease: Send + Sync + 'static {
    /// Extends the lease by its TTL: `Ok(true)` when the store still has it, `Ok(false)` when
    /// it is gone (expired or revoked). An error is a failed attempt (retried).
    async fn refresh(&self) -> Result<bool, MetadataError>;

    /// Ends the lease now, deleting its bound keys. A lease already gone is `Ok`.
    async fn revoke(&self) -> Result<(), MetadataError>;
}

/// Told of every refresh attempt of a session: how long it took (from the send to the answer,
/// or to giving up) and whether it succeeded. For metrics; it must not block.
pub type RefreshObserver = Arc<dyn Fn(Duration, bool) + Send + Sync>;

/// A session opened by [`MetadataStore::open_session`](crate::MetadataStore::open_session).
/// Clones share it. A keep-alive task refreshes it every third of its TTL until it is closed,
/// it expires, or the last clone is dropped (a dropped session is not revoked: its keys go
/// when the store's TTL runs out).
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    id: SessionId,
    ttl: Duration,
    lease: Arc<dyn Lease>,
    state: Arc<watch::Sender<SessionState>>,
    /// Set by [`Session::stop_keep_alive_for_test`]: attempts are skipped (and fail).
    paused: Arc<AtomicBool>,
    observer: Arc<Mutex<Option<RefreshObserver>>>,
    keeper: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.keeper.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.id)
            .field("ttl", &self.inner.ttl)
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

impl Session {
    /// Starts the keep-alive of a lease of `ttl` granted by a request sent at `sent`.
    pub(crate) fn start(
        id: SessionId,
        ttl: Duration,
        lease: Arc<dyn Lease>,
        sent: Instant,
    ) -> Self {
        let state = Arc::new(watch::channel(SessionState::Live).0);
        let paused = Arc::new(AtomicBool::new(false));
        let observer: Arc<Mutex<Option<RefreshObserver>>> = Arc::default();
        let keeper = tokio::spawn(keep_alive(
            id,
            Arc::clone(&lease),
            ttl,
            Arc::clone(&state),
            Arc::clone(&paused),
            Arc::clone(&observer),
            sent,
        ));
        Session {
            inner: Arc::new(Inner {
                id,
                ttl,
                lease,
                state,
                paused,
                observer,
                keeper: Mutex::new(Some(keeper)),
            }),
        }
    }

    pub fn id(&self) -> SessionId {
        self.inner.id
    }

    /// The TTL the store granted (etcd counts whole seconds and may raise it to its minimum).
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// Follows the state; the receiver sees every change from now on.
    pub fn state(&self) -> watch::Receiver<SessionState> {
        self.inner.state.subscribe()
    }

    /// The state now.
    pub fn current_state(&self) -> SessionState {
        *self.inner.state.borrow()
    }

    /// Stops the keep-alive and revokes the session: its bound keys are deleted before this
    /// returns (when the store answers). The state becomes `Closed` (an `Expired` session stays
    /// `Expired`). An error means the store did not confirm: the keys go when the TTL runs out.
    /// Closing again is `Ok`.
    pub async fn close(&self) -> Result<(), MetadataError> {
        let task = self
            .inner
            .keeper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(task) = task else {
            return Ok(());
        };
        task.abort();
        set_state(
            &self.inner.state,
            &[SessionState::Live, SessionState::Fenced],
            SessionState::Closed,
        );
        self.inner.lease.revoke().await
    }

    /// Tells `observer` of every refresh attempt from now on (replacing any earlier one).
    pub fn observe_refreshes(&self, observer: RefreshObserver) {
        *self
            .inner
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(observer);
    }

    /// Test hook: the keep-alive stops refreshing (as if the store were unreachable), so the
    /// session fences itself and the store ends it when its TTL runs out.
    #[doc(hidden)]
    pub fn stop_keep_alive_for_test(&self) {
        self.inner.paused.store(true, Ordering::Release);
    }
}

/// Moves the state to `to` when it is one of `from`.
fn set_state(state: &watch::Sender<SessionState>, from: &[SessionState], to: SessionState) {
    state.send_if_modified(|current| {
        if from.contains(current) {
            *current = to;
            true
        } else {
            false
        }
    });
}

/// Fences a live session.
fn fence(id: SessionId, state: &watch::Sender<SessionState>) {
    tracing::warn!(
        session = %id,
        "session fenced: no refresh succeeded within its ttl minus the margin"
    );
    set_state(state, &[SessionState::Live], SessionState::Fenced);
}

fn is_live(state: &watch::Sender<SessionState>) -> bool {
    *state.borrow() == SessionState::Live
}

/// Waits until `until`, fencing the session if `fence_at` comes first.
async fn wait_fencing(
    id: SessionId,
    until: Instant,
    fence_at: Instant,
    state: &watch::Sender<SessionState>,
) {
    loop {
        tokio::select! {
            () = sleep_until(until) => return,
            () = sleep_until(fence_at), if is_live(state) => fence(id, state),
        }
    }
}

/// Refreshes the lease every `ttl / 3` (after a failed attempt: every `ttl / 10`), fencing the
/// session when no refresh sent in the last `ttl - margin` succeeded.
async fn keep_alive(
    id: SessionId,
    lease: Arc<dyn Lease>,
    ttl: Duration,
    state: Arc<watch::Sender<SessionState>>,
    paused: Arc<AtomicBool>,
    observer: Arc<Mutex<Option<RefreshObserver>>>,
    granted: Instant,
) {
    let interval = ttl / 3;
    let retry = (ttl / 10).max(Duration::from_millis(10));
    let fence_after = ttl - fence_margin(ttl);
    let mut fence_at = granted + fence_after;
    let mut next = granted + interval;
    // Failed attempts since the last success: the first is a warning, the rest are noise.
    let mut failures = 0u64;
    loop {
        wait_fencing(id, next, fence_at, &state).await;
        let sent = Instant::now();
        let result = if paused.load(Ordering::Acquire) {
            Err(MetadataError::Storage(
                "keep-alive stopped for a test".into(),
            ))
        } else {
            // A hung attempt must not delay fencing: the attempt races the fencing deadline
            // and is given up after an interval.
            let attempt = tokio::time::timeout(interval, lease.refresh());
            tokio::pin!(attempt);
            loop {
                tokio::select! {
                    result = &mut attempt => {
                        break result.unwrap_or_else(|_| {
                            Err(MetadataError::Storage("session refresh timed out".into()))
                        });
                    }
                    () = sleep_until(fence_at), if is_live(&state) => fence(id, &state),
                }
            }
        };
        let observe = observer.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(observe) = observe {
            observe(sent.elapsed(), matches!(result, Ok(true)));
        }
        match result {
            Ok(true) => {
                if failures > 0 {
                    tracing::info!(session = %id, failures, "session refreshed again");
                    failures = 0;
                }
                fence_at = sent + fence_after;
                next = sent + interval;
                if Instant::now() < fence_at {
                    set_state(&state, &[SessionState::Fenced], SessionState::Live);
                }
            }
            Ok(false) => {
                tracing::warn!(session = %id, "session expired: the store ended it");
                set_state(
                    &state,
                    &[SessionState::Live, SessionState::Fenced],
                    SessionState::Expired,
                );
                return;
            }
            Err(MetadataError::Closed) => {
                // The store closed: nobody refreshes this session any more.
                set_state(
                    &state,
                    &[SessionState::Live, SessionState::Fenced],
                    SessionState::Closed,
                );
                return;
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(
                        session = %id,
                        error = %e,
                        "session refresh failed; retrying"
                    );
                } else {
                    tracing::debug!(
                        session = %id,
                        error = %e,
                        failures,
                        "session refresh failed again"
                    );
                }
                failures += 1;
                next = Instant::now() + retry;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A lease whose refreshes answer from a script (then keep succeeding).
    struct Scripted {
        answers: Mutex<VecDeque<Result<bool, MetadataError>>>,
        revoked: AtomicBool,
    }

    #[async_trait]
    impl Lease for Scripted {
        async fn refresh(&self) -> Result<bool, MetadataError> {
            let answer = self.answers.lock().unwrap().pop_front();
            answer.unwrap_or(Ok(true))
        }

        async fn revoke(&self) -> Result<(), MetadataError> {
            self.revoked.store(true, Ordering::Release);
            Ok(())
        }
    }

    fn scripted(answers: Vec<Result<bool, MetadataError>>) -> Arc<Scripted> {
        Arc::new(Scripted {
            answers: Mutex::new(answers.into()),
            revoked: AtomicBool::new(false),
        })
    }

    fn failure() -> Result<bool, MetadataError> {
        Err(MetadataError::Storage("unreachable".into()))
    }

    #[test]
    fn margins() {
        assert_eq!(
            fence_margin(Duration::from_secs(10)),
            Duration::from_secs(2)
        );
        assert_eq!(
            fence_margin(Duration::from_millis(300)),
            Duration::from_millis(100)
        );
        assert_eq!(
            fence_margin(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
        assert!(validate_ttl(Duration::from_millis(99)).is_err());
        assert!(validate_ttl(Duration::from_secs(3601)).is_err());
        assert!(validate_ttl(Duration::from_secs(30)).is_ok());
    }

    /// Refreshes fail from the start: fenced at `ttl - margin` after the grant, live again
    /// after a refresh succeeds, expired when the store says so.
    #[tokio::test(start_paused = true)]
    async fn fences_on_its_own_clock_recovers_then_expires() {
        let ttl = Duration::from_secs(10);
        // Attempts at 3.33 s, then every 1 s: 7 failures reach past 8 s (ttl - 2 s margin).
        let mut answers: Vec<_> = (0..7).map(|_| failure()).collect();
        answers.push(Ok(true));
        answers.push(Ok(false));
        let lease = scripted(answers);
        let start = Instant::now();
        let session = Session::start(SessionId(7), ttl, lease.clone(), start);
        let mut state = session.state();
        assert_eq!(*state.borrow(), SessionState::Live);
        state.changed().await.unwrap();
        assert_eq!(*state.borrow_and_update(), SessionState::Fenced);
        assert_eq!(start.elapsed(), Duration::from_secs(8));
        state.changed().await.unwrap();
        assert_eq!(*state.borrow_and_update(), SessionState::Live);
        state.changed().await.unwrap();
        assert_eq!(*state.borrow_and_update(), SessionState::Expired);
        // Closing an expired session keeps it expired (and revokes, harmlessly).
        session.close().await.unwrap();
        assert_eq!(session.current_state(), SessionState::Expired);
        assert!(lease.revoked.load(Ordering::Acquire));
    }

    /// A refresh that hangs does not delay fencing.
    #[tokio::test(start_paused = true)]
    async fn a_hung_refresh_still_fences() {
        struct Hung;
        #[async_trait]
        impl Lease for Hung {
            async fn refresh(&self) -> Result<bool, MetadataError> {
                std::future::pending().await
            }
            async fn revoke(&self) -> Result<(), MetadataError> {
                Ok(())
            }
        }
        let ttl = Duration::from_secs(3);
        let start = Instant::now();
        let session = Session::start(SessionId(1), ttl, Arc::new(Hung), start);
        let mut state = session.state();
        state.changed().await.unwrap();
        assert_eq!(*state.borrow(), SessionState::Fenced);
        assert!(
            start.elapsed() <= ttl - fence_margin(ttl),
            "{:?}",
            start.elapsed()
        );
        session.close().await.unwrap();
        assert_eq!(session.current_state(), SessionState::Closed);
        assert_eq!(session.close().await, Ok(()));
    }

    /// Refreshes that keep succeeding keep the session live; close makes it `Closed`.
    #[tokio::test(start_paused = true)]
    async fn steady_refreshes_stay_live() {
        let lease = scripted(Vec::new());
        let session = Session::start(
            SessionId(2),
            Duration::from_secs(1),
            lease.clone(),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(session.current_state(), SessionState::Live);
        session.close().await.unwrap();
        assert_eq!(session.current_state(), SessionState::Closed);
        assert!(lease.revoked.load(Ordering::Acquire));
    }
}
