//! The standalone broker as a user starts it: health, version, restart, the data-dir lock.

mod common;

use std::process::Command;

use common::Broker;

#[test]
fn health_and_version_answer() {
    let broker = Broker::start();
    let (status, body) = broker.http_get("/health").unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = broker.http_get("/version").unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["name"], "magnetar");
}

#[test]
fn sigterm_exits_zero_and_restart_keeps_namespaces() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    // First start with another default namespace: bootstrap creates acme/kafka.
    let mut broker = Broker::start_on(
        &data,
        &[
            ("MAGNETAR_KAFKA__TENANT", "acme"),
            ("MAGNETAR_KAFKA__NAMESPACE", "kafka"),
        ],
    );
    let status = broker.stop();
    assert!(status.success(), "{status}");
    // Start again with the defaults, then stop.
    let mut broker = Broker::start_on(&data, &[]);
    assert!(broker.stop().success());
    drop(broker);
    // Both the first start's and the defaults' namespaces are in the metadata store.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use magnetar_metadata::MetadataStore;
        let store = magnetar_metadata::RedbStore::open(&data.join("metadata.redb"))
            .await
            .unwrap();
        let tenants = store.list_children("/admin/policies").await.unwrap();
        assert!(
            tenants.contains(&"acme".to_string()) && tenants.contains(&"public".to_string()),
            "{tenants:?}"
        );
        assert_eq!(
            store.list_children("/admin/policies/acme").await.unwrap(),
            vec!["kafka".to_string()]
        );
        let public = store.list_children("/admin/policies/public").await.unwrap();
        assert_eq!(public, vec!["__kafka".to_string(), "default".to_string()]);
        assert!(store.exists("/admin/clusters/standalone").await.unwrap());
    });
}

#[test]
fn second_broker_on_the_same_data_dir_is_refused() {
    let broker = Broker::start();
    let output = Command::new(common::binary())
        .args([
            "standalone",
            "--kafka-port",
            "0",
            "--pulsar-port",
            "0",
            "--http-port",
            "0",
            "--data-dir",
        ])
        .arg(&broker.data_dir)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use by another magnetar process"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The first one is unharmed.
    assert_eq!(broker.http_get("/health").unwrap().0, 200);
}

#[test]
fn bad_config_and_busy_port_fail_with_one_clear_line() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("m.toml");
    std::fs::write(&file, "version = 1\n[kafka]\nprot = 1\n").unwrap();
    let output = Command::new(common::binary())
        .args(["standalone", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(temp.path().join("d"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("prot") && !stderr.contains("panicked"),
        "{stderr}"
    );

    let broker = Broker::start();
    let port = broker.kafka_addr.rsplit(':').next().unwrap();
    let output = Command::new(common::binary())
        .args([
            "standalone",
            "--pulsar-port",
            "0",
            "--http-port",
            "0",
            "--kafka-port",
            port,
            "--data-dir",
        ])
        .arg(temp.path().join("d2"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot listen for kafka") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn help_documents_every_flag() {
    let output = Command::new(common::binary())
        .args(["standalone", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--config",
        "--data-dir",
        "--bind",
        "--kafka-port",
        "--pulsar-port",
        "--http-port",
        "--advertised-host",
    ] {
        assert!(help.contains(flag), "missing {flag} in:\n{help}");
    }
}
