//! Test harness: runs the real `magnetar standalone` binary on free ports with a temporary data
//! dir, waits for `/health`, and kills it at the end (also when the test fails). Used by every
//! integration test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a broker may take to print its listening line and answer `/health`.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);
const STDERR_KEPT_BYTES: usize = 64 * 1024;

pub(crate) struct Broker {
    child: Option<Child>,
    pub kafka_addr: String,
    pub pulsar_addr: String,
    pub http_addr: String,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    stderr: Arc<Mutex<String>>,
}

pub(crate) fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_magnetar"))
}

impl Broker {
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra environment (e.g. `("MAGNETAR_STORAGE__FSYNC", "os")`).
    pub(crate) fn start_with(env: &[(&str, &str)]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut broker = Self {
            child: None,
            kafka_addr: String::new(),
            pulsar_addr: String::new(),
            http_addr: String::new(),
            data_dir,
            _temp: Some(temp),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            stderr: Arc::new(Mutex::new(String::new())),
        };
        broker.launch();
        broker
    }

    /// Starts on an existing data dir (not removed on drop).
    pub(crate) fn start_on(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut broker = Self {
            child: None,
            kafka_addr: String::new(),
            pulsar_addr: String::new(),
            http_addr: String::new(),
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            stderr: Arc::new(Mutex::new(String::new())),
        };
        broker.launch();
        broker
    }

    fn launch(&mut self) {
        let mut child = Command::new(binary())
            .args([
                "standalone",
                "--bind",
                "127.0.0.1",
                "--kafka-port",
                "0",
                "--pulsar-port",
                "0",
                "--http-port",
                "0",
            ])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn magnetar");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("\"event\":\"listening\"") {
                    let _ = tx.send(line);
                }
            }
        });
        let kept = self.stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap();
                kept.push_str(&line);
                kept.push('\n');
                if kept.len() > STDERR_KEPT_BYTES {
                    let cut = kept.len() - STDERR_KEPT_BYTES;
                    let cut = (cut..kept.len())
                        .find(|i| kept.is_char_boundary(*i))
                        .unwrap_or(0);
                    kept.drain(..cut);
                }
            }
        });
        self.child = Some(child);
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => panic!(
                "magnetar did not print its listening line; stderr:\n{}",
                self.stderr_text()
            ),
        };
        let v: serde_json::Value = serde_json::from_str(&line).expect("listening line is JSON");
        self.kafka_addr = v["kafka"].as_str().expect("kafka").to_string();
        self.pulsar_addr = v["pulsar"].as_str().expect("pulsar").to_string();
        self.http_addr = v["http"].as_str().expect("http").to_string();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok((200, _)) = self.http_get("/health") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "/health never answered 200; stderr:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn stderr_text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A minimal HTTP/1.0 GET (no client library needed): returns (status, body).
    pub(crate) fn http_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(&self.http_addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.http_addr
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad response: {response}")))?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub(crate) fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker is running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "magnetar did not stop within 30 s of SIGTERM; stderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: no chance to flush.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Graceful stop and start again on the same data dir (new ports).
    pub(crate) fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "magnetar exited with {status}; stderr:\n{}",
            self.stderr_text()
        );
        self.stderr.lock().unwrap().clear();
        self.launch();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- magnetar stderr (tail) ----\n{}", self.stderr_text());
        }
        self.kill9();
    }
}
