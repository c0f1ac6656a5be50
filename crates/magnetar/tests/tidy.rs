//! Shape rules beside `layering.rs` (issue #15 item 7), checked on the source tree:
//! - the error mappers at each edge name every variant: no `_ =>` arm in them, so a new domain
//!   error forces a decision at every boundary;
//! - the managed ledger is reached only through the broker: no `.ledger()` call outside
//!   `magnetar-broker/src`;
//! - files over 800 lines and functions over 150 lines are reported (printed, not failed: a
//!   list to shrink, run with `--nocapture` to see it).

use std::path::{Path, PathBuf};

/// The files whose matches map one error type onto another.
const ERROR_MAPPERS: &[&str] = &[
    "crates/magnetar-broker/src/error.rs",
    "crates/magnetar-kafka/src/error_code.rs",
    "crates/magnetar-pulsar/src/error.rs",
    "crates/magnetar-admin/src/error.rs",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Source lines without `//` comments (a crude strip: enough for the patterns checked here).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| {
        let code = match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        };
        (i + 1, code)
    })
}

#[test]
fn error_mappers_have_no_catch_all_arm() {
    let root = workspace();
    let mut found = Vec::new();
    for file in ERROR_MAPPERS {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        // Only the non-test part: tests may match loosely.
        let body = text.split("#[cfg(test)]").next().unwrap_or(&text);
        for (line, code) in code_lines(body) {
            if code.trim_start().starts_with("_ =>") {
                found.push(format!("{file}:{line}: {}", code.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "catch-all arms in error mappers (name every variant instead):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_ledger_is_reached_only_through_the_broker() {
    let root = workspace();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    let broker_src = root.join("crates/magnetar-broker/src");
    let mut found = Vec::new();
    for path in files {
        if path.starts_with(&broker_src) || path.ends_with("magnetar/tests/tidy.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (line, code) in code_lines(&text) {
            if code.contains(".ledger()") {
                found.push(format!(
                    "{}:{line}",
                    path.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "`.ledger()` outside magnetar-broker (use PartitionLog's or Subscription's methods):\n{}",
        found.join("\n")
    );
}

/// Reports (does not fail on) long files and long functions.
#[test]
fn report_long_files_and_functions() {
    let root = workspace();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    files.sort();
    let mut long_files = Vec::new();
    let mut long_fns = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let rel = path.strip_prefix(&root).unwrap().display().to_string();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() > 800 {
            long_files.push(format!("{rel}: {} lines", lines.len()));
        }
        // A function starts at a line whose trimmed text begins with a fn keyword form and ends
        // at the first later line with the same indentation that is exactly `}`.
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "async fn ",
                "pub async fn ",
            ]
            .iter()
            .chain(["pub(crate) async fn ", "pub(super) fn "].iter())
            .any(|p| t.starts_with(p));
            if !is_fn || l.trim_end().ends_with(';') {
                continue;
            }
            let indent = l.len() - t.len();
            let close = format!("{}}}", " ".repeat(indent));
            if let Some(len) = lines[i + 1..].iter().position(|x| *x == close) {
                if len + 2 > 150 {
                    let after_fn = t.split_once("fn ").map_or(t, |(_, rest)| rest);
                    let name = after_fn.split(['(', '<']).next().unwrap_or(after_fn);
                    long_fns.push(format!("{rel}:{}: {name} ({} lines)", i + 1, len + 2));
                }
            }
        }
    }
    println!("files over 800 lines ({}):", long_files.len());
    for f in &long_files {
        println!("  {f}");
    }
    println!("functions over 150 lines ({}):", long_fns.len());
    for f in &long_fns {
        println!("  {f}");
    }
    // The scan itself must have seen the tree.
    assert!(files.len() > 100, "only {} Rust files found", files.len());
}
