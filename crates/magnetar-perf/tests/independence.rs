//! magnetar-perf measures any Kafka-compatible broker, so it must not depend on Magnetar's own
//! crates (the workspace layering test exempts it; this test holds the rule).

#[test]
fn depends_on_no_magnetar_crate() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let offending: Vec<&str> = manifest
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("magnetar") && !l.starts_with("magnetar-perf"))
        .collect();
    assert!(
        offending.is_empty(),
        "magnetar-perf depends on {offending:?}"
    );
}
