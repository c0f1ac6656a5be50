//! Replays every committed fuzz input through the fuzz targets' bodies, so CI checks the
//! targets' properties on the seed corpus (captured from real clients) and on every minimized
//! crash in `fuzz/regressions/` without building libFuzzer; and runs a short seeded mutation
//! run of every target (deterministic: the same inputs on every run, so a failure reproduces).

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

/// A small deterministic generator (xorshift64*), so the mutation run is the same every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four libFuzzer-style edits: flip a bit, set a byte to an edge value, insert or
/// remove bytes, duplicate a slice.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len());
        match rng.below(5) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.below(8),
            1 if !out.is_empty() => out[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            2 => out.insert(at.min(out.len()), rng.next() as u8),
            3 if !out.is_empty() => {
                let n = 1 + rng.below(8).min(out.len() - at - 1);
                out.drain(at..at + n);
            }
            _ if !out.is_empty() => {
                let n = 1 + rng.below(16).min(out.len() - at - 1);
                let slice = out[at..at + n].to_vec();
                let to = rng.below(out.len());
                out.splice(to..to, slice);
            }
            _ => out.push(rng.next() as u8),
        }
    }
    out
}

/// Mutations per seed file (`MAGNETAR_FUZZ_MUTATIONS`, default 32: a few seconds in all).
fn mutations() -> usize {
    std::env::var("MAGNETAR_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

#[test]
fn seeded_mutation_run() {
    let per_seed = mutations();
    let corpus = fuzz_dir().join("corpus");
    let mut runs = 0;
    for target in magnetar_fuzz::TARGETS {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.name.len() as u64);
        for file in inputs(&corpus, target.name) {
            let seed = std::fs::read(&file).expect("read a corpus file");
            for _ in 0..per_seed {
                let input = mutate(&mut rng, &seed);
                let outcome = std::panic::catch_unwind(|| (target.run)(&input));
                if let Err(panic) = outcome {
                    eprintln!(
                        "{} failed on a mutation of {}; input (hex): {}",
                        target.name,
                        file.display(),
                        input.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    );
                    std::panic::resume_unwind(panic);
                }
                runs += 1;
            }
        }
    }
    eprintln!("{runs} mutated inputs");
}
