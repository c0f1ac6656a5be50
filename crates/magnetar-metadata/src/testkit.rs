//! A real etcd for tests (feature `etcd`): one member on free loopback ports in a temporary
//! directory, killed and removed on drop. Shared by this crate's `tests/etcd.rs` and by the
//! crates above that run their own scenarios on etcd (the broker's ownership tests), so the
//! harness is not copied. Needs the `etcd` binary on `PATH` (Debian's `etcd-server`, 3.4).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{EtcdOptions, EtcdStore};

/// How long a started etcd may take to become healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// One etcd member on 127.0.0.1, killed on drop (its directory removed).
pub struct Etcd {
    child: Child,
    client_url: String,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind a free loopback port")
}

/// A fresh directory under the system temp directory (no dependency on `tempfile`).
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "magnetar-etcd-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a temporary directory for etcd");
    dir
}

impl Etcd {
    /// Starts etcd, again on other ports when it exits while starting (the free ports were
    /// picked by binding and releasing them, so a test running alongside can take one first).
    pub fn start() -> Etcd {
        const ATTEMPTS: usize = 3;
        let mut log = String::new();
        for _ in 0..ATTEMPTS {
            match Etcd::try_start() {
                Ok(etcd) => return etcd,
                Err(output) => log = output,
            }
        }
        panic!("etcd exited while starting, {ATTEMPTS} times; last output:\n{log}");
    }

    /// Starts etcd and waits until it is healthy; its output when it exited first.
    fn try_start() -> Result<Etcd, String> {
        let dir = fresh_dir();
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log_path = dir.join("etcd.log");
        let log = std::fs::File::create(&log_path).expect("create the etcd log file");
        let child = Command::new("etcd")
            .args([
                "--name",
                "m1",
                "--data-dir",
                &dir.join("data").to_string_lossy(),
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("m1={peer_url}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd not found: install Debian's etcd-server (.ci/run does)");
        let mut etcd = Etcd {
            child,
            client_url,
            dir,
        };
        let deadline = Instant::now() + HEALTHY_WITHIN;
        while !healthy(client) {
            assert!(
                Instant::now() < deadline,
                "etcd was not healthy within {HEALTHY_WITHIN:?}"
            );
            if etcd.child.try_wait().ok().flatten().is_some() {
                let output = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = output.lines().rev().take(5).collect();
                return Err(tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(etcd)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// A store on this etcd under `root`.
    pub async fn store(&self, root: &str) -> EtcdStore {
        EtcdStore::connect(EtcdOptions {
            endpoints: vec![self.client_url.clone()],
            root: root.into(),
            request_timeout: Duration::from_secs(5),
        })
        .await
        .expect("connect to etcd")
    }

    /// Kills the member now (to see what an unreachable etcd does to calls).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcd's `/health` says `"health":"true"` (it has a leader and answers).
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("\"health\":\"true\"")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
