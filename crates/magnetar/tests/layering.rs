//! The dependency rules of DESIGN.md, checked on `cargo metadata`: wire codecs stay in the
//! front ends, and dependencies point downward only.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Crates that carry a wire protocol or a transport; only the listed crates may use them.
const WIRE_CRATES: &[(&str, &[&str])] = &[
    ("kafka-protocol", &["magnetar-kafka", TESTKIT]),
    ("prost", &["magnetar-pulsar", TESTKIT]),
    // Protobuf as a schema language (issue #21): magnetar-schema compiles registered `.proto`
    // text and reads descriptor sets with protox (and the prost-reflect it re-exports) to check
    // Protobuf compatibility; schema languages belong to the schema crate, as apache-avro and
    // jsonschema do. magnetar-pulsar uses protox only at build time, for PulsarApi.proto. Neither
    // may use prost directly: wire messages stay in magnetar-pulsar.
    ("protox", &["magnetar-pulsar", "magnetar-schema"]),
    ("prost-reflect", &["magnetar-schema"]),
    ("axum", &["magnetar-admin", TESTKIT]),
    ("rdkafka", &["magnetar", "magnetar-perf"]),
];

/// The shared test kit: it may depend on every crate (and wire crate) it starts, and nothing
/// may depend on it except as a dev-dependency, so it never reaches a shipped binary.
const TESTKIT: &str = "magnetar-testkit";

/// Which magnetar crates each magnetar crate may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("magnetar-metadata", &[]),
    // The shared WAL commits its ranges and epochs through the MetadataStore trait (the layer
    // below; DESIGN.md: "the commit records of the data path" live in etcd).
    ("magnetar-storage", &["magnetar-metadata"]),
    (
        "magnetar-broker",
        &["magnetar-metadata", "magnetar-storage"],
    ),
    ("magnetar-coordinator", &["magnetar-broker"]),
    ("magnetar-format", &["magnetar-broker"]),
    ("magnetar-auth", &["magnetar-broker"]),
    // The schema registry core: schemas are metadata (the broker's store and names); the
    // schema languages' crates (apache-avro, jsonschema) stay here, the wire shapes in the
    // front ends above it.
    ("magnetar-schema", &["magnetar-broker"]),
    // Metrics read the broker (partitions, storage stats), the coordinator (group lag) and the
    // schema registry's counters (it sits beside the coordinator, below the front ends); the
    // front ends record into it, so it must not depend on them.
    (
        "magnetar-metrics",
        &["magnetar-broker", "magnetar-coordinator", "magnetar-schema"],
    ),
    (
        "magnetar-kafka",
        &[
            "magnetar-broker",
            "magnetar-coordinator",
            "magnetar-format",
            "magnetar-auth",
            "magnetar-metrics",
        ],
    ),
    (
        "magnetar-pulsar",
        &[
            "magnetar-broker",
            "magnetar-format",
            "magnetar-auth",
            "magnetar-metrics",
            "magnetar-schema",
        ],
    ),
    (
        "magnetar-admin",
        &[
            "magnetar-broker",
            "magnetar-coordinator",
            "magnetar-auth",
            "magnetar-metrics",
            "magnetar-schema",
        ],
    ),
    (
        "magnetar",
        &[
            "magnetar-admin",
            "magnetar-broker",
            "magnetar-kafka",
            "magnetar-metadata",
            "magnetar-pulsar",
            "magnetar-storage",
            "magnetar-coordinator",
            "magnetar-auth",
            "magnetar-format",
            "magnetar-metrics",
            "magnetar-schema",
        ],
    ),
    // The fuzz targets' bodies: a leaf over every crate that decodes untrusted bytes (nothing
    // depends on it); it names no wire crate itself.
    (
        "magnetar-fuzz",
        &[
            "magnetar",
            "magnetar-auth",
            "magnetar-broker",
            "magnetar-format",
            "magnetar-kafka",
            "magnetar-metadata",
            "magnetar-pulsar",
            "magnetar-storage",
        ],
    ),
];

#[test]
fn dependency_edges_follow_the_design() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut edges: BTreeMap<String, BTreeSet<(String, bool)>> = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_string();
        for dep in package["dependencies"].as_array().unwrap() {
            let dev = dep["kind"].as_str() == Some("dev");
            edges
                .entry(name.clone())
                .or_default()
                .insert((dep["name"].as_str().unwrap().to_string(), dev));
        }
    }
    let mut violations = Vec::new();
    for (package, deps) in &edges {
        if deps.iter().any(|(dep, dev)| dep == TESTKIT && !dev) {
            violations.push(format!(
                "{package} -> {TESTKIT}: the test kit is a dev-dependency only"
            ));
        }
        if package == TESTKIT {
            continue;
        }
        let Some((_, allowed)) = ALLOWED.iter().find(|(p, _)| p == package) else {
            if package.starts_with("magnetar") && package != "magnetar-perf" {
                violations.push(format!(
                    "{package} is not in the layering table of this test (add it with its rule)"
                ));
            }
            continue;
        };
        for (dep, dev) in deps {
            if dep.starts_with("magnetar") && !dev && !allowed.contains(&dep.as_str()) {
                violations.push(format!("{package} -> {dep} is not allowed"));
            }
            if let Some((_, users)) = WIRE_CRATES.iter().find(|(w, _)| w == dep) {
                if !users.contains(&package.as_str()) {
                    violations.push(format!("{package} -> {dep}: wire crates stay in {users:?}"));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
    // The test must see the workspace, or it proves nothing.
    assert!(edges.contains_key("magnetar-broker") && edges.contains_key("magnetar-storage"));
    assert!(
        edges.contains_key(TESTKIT),
        "the test kit is in the workspace"
    );
}
