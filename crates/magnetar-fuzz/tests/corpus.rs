//! Replays every committed fuzz input through the fuzz targets' bodies, so CI checks the
//! targets' properties on the seed corpus (captured from real clients) and on every minimized
//! crash in `fuzz/regressions/` without building libFuzzer.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir/<target>/`, sorted; none when the directory does not exist.
fn inputs(dir: &Path, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read a corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let dir = fuzz_dir().join(kind);
    let mut count = 0;
    for target in magnetar_fuzz::TARGETS {
        for file in inputs(&dir, target.name) {
            let data = std::fs::read(&file).expect("read a corpus file");
            eprintln!("{}", file.display());
            (target.run)(&data);
            count += 1;
        }
    }
    // Every directory names a target: a typo would silently replay nothing.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries {
            let name = entry.expect("read the fuzz directory").file_name();
            let name = name.to_string_lossy();
            assert!(
                magnetar_fuzz::TARGETS.iter().any(|t| t.name == name),
                "{kind}/{name} is not a fuzz target"
            );
        }
    }
    count
}

#[test]
fn every_target_has_a_fuzz_binary_and_a_seed_corpus() {
    for target in magnetar_fuzz::TARGETS {
        let binary = fuzz_dir().join(format!("fuzz_targets/{}.rs", target.name));
        let source = std::fs::read_to_string(&binary)
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        assert!(
            source.contains(&format!("magnetar_fuzz::run(\"{}\"", target.name)),
            "{} does not run its target",
            binary.display()
        );
        assert!(
            !inputs(&fuzz_dir().join("corpus"), target.name).is_empty(),
            "no seed corpus for {}",
            target.name
        );
    }
}

#[test]
fn seed_corpus_replays() {
    let n = replay("corpus");
    assert!(n >= magnetar_fuzz::TARGETS.len(), "only {n} corpus inputs");
}

#[test]
fn regressions_replay() {
    replay("regressions");
}
