//! Bounded waits on an observable condition. A test waits for what it needs to have happened
//! (a state, a count, a file), never for a time it hopes is long enough.
//!
//! Deadlines are on tokio's clock, so under paused time (`start_paused = true`) a wait advances
//! virtual time instead of spinning.

use std::time::Duration;

/// The default bound of a wait: generous, since it is only reached when the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `cond` holds, checking it every 10 ms for at most [`WAIT`]; panics naming
/// `what` otherwise.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    eventually_within(what, WAIT, async || cond()).await;
}

/// [`wait_until`] for an async condition (`async || ...` or `|| async { ... }`).
pub async fn eventually(what: &str, cond: impl AsyncFnMut() -> bool) {
    eventually_within(what, WAIT, cond).await;
}

/// [`eventually`] with its own bound.
pub async fn eventually_within(what: &str, timeout: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until`] for tests outside a runtime (blocking the thread between checks).
pub fn wait_until_blocking(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_when_the_condition_holds() {
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        wait_until("the third check", || {
            calls += 1;
            calls == 3
        })
        .await;
        assert_eq!(calls, 3);
        assert_eq!(started.elapsed(), POLL * 2);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 1s waiting for: never")]
    async fn a_wait_is_bounded() {
        eventually_within("never", Duration::from_secs(1), async || false).await;
    }
}
