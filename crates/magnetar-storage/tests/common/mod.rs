//! What the kill -9 tests share: a child process running one ignored test of the same binary
//! (its "child role"), killed with SIGKILL at a random moment while the parent collects what it
//! printed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A small xorshift generator; no extra dependency.
pub(crate) struct Random(u64);

impl Random {
    /// Seeded from the clock.
    pub(crate) fn from_clock() -> Random {
        Random(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1,
        )
    }

    /// A number in `lo..hi`.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

/// Runs the ignored test `child_test` of this test binary with `env_key` set to `dir`, kills
/// it with SIGKILL after `run_for`, and returns the lines it printed before.
pub(crate) fn run_child_until_killed(
    child_test: &str,
    env_key: &str,
    dir: &std::path::Path,
    run_for: Duration,
    round: usize,
) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", child_test, "--nocapture", "--include-ignored"])
        .env(env_key, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let deadline = Instant::now() + run_for;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("child exited early in round {round}: {status}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    reader.join().unwrap()
}
