//! Property-based fuzzing of every parser that eats outside bytes, with a small hand-rolled
//! generator (no crate: `proptest` would add ~25 crates to the dev build for what a xorshift
//! and a mutator do here).
//!
//! Each target runs a fixed number of cases from a fixed seed, so CI is deterministic:
//! `OZ_FUZZ_CASES` scales the count (default [`DEFAULT_CASES`]) and `OZ_FUZZ_SEED` picks another
//! seed; `benches/fuzz.rs` runs the long campaigns. A failing case prints its seed and input, so
//! it can be replayed and kept as a regression test.
//!
//! `kube` covers the Kubernetes inputs: kubeconfig files, exec credential plugin output, and
//! watch events and API objects as the watch cache and the outcome classifier see them.

// Truncating random numbers to bytes and lengths is what a generator does.
#![allow(clippy::cast_possible_truncation)]

mod codec;
mod kube;
mod parsers;
mod redactor;

use std::panic::{AssertUnwindSafe, catch_unwind};

pub const DEFAULT_CASES: u64 = 2000;

/// xorshift64*: tiny, fast, good enough to drive mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// A string of `len` characters from `alphabet`.
    pub fn string(&mut self, alphabet: &str, len: usize) -> String {
        let chars: Vec<char> = alphabet.chars().collect();
        (0..len).map(|_| *self.pick(&chars)).collect()
    }

    /// A string of `min..=max` characters from `alphabet`.
    pub fn text(&mut self, alphabet: &str, min: usize, max: usize) -> String {
        let len = min + self.below(max - min + 1);
        self.string(alphabet, len)
    }

    /// Random split points of `len` bytes into pieces (each at least 1 byte, except for len 0).
    pub fn splits(&mut self, len: usize) -> Vec<usize> {
        let mut cuts = vec![0];
        let mut at = 0;
        while at < len {
            let max = if self.chance(4) { 64 } else { 4 };
            at += 1 + self.below(max);
            cuts.push(at.min(len));
        }
        cuts
    }
}

/// Applies 1-4 random mutations: bit flips, byte changes, insertions (random or from
/// `tokens`), deletions, duplications, truncation.
pub fn mutate(rng: &mut Rng, input: &[u8], tokens: &[&[u8]]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let ins = if tokens.is_empty() || rng.chance(2) {
                    rng.bytes(8)
                } else {
                    rng.pick(tokens).to_vec()
                };
                v.splice(i..i, ins);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let j = (i + 1 + rng.below(16)).min(len);
                v.drain(i..j);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let j = (i + 1 + rng.below(32)).min(len);
                let dup = v[i..j].to_vec();
                v.splice(j..j, dup);
            }
            5 => v.truncate(rng.below(len + 1)),
            _ => {}
        }
    }
    v
}

pub fn cases() -> u64 {
    std::env::var("OZ_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

pub fn seed() -> u64 {
    std::env::var("OZ_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0a2_f022)
}

/// Runs `cases()` cases of `target`, each with its own derived seed; a panic (a crash, or a
/// failed property assertion) is reported with the case's seed and then re-raised.
pub fn run(name: &str, target: impl Fn(&mut Rng)) {
    let base = seed() ^ fnv(name);
    for case in 0..cases() {
        let case_seed = base.wrapping_add(case.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut rng = Rng::new(case_seed);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&mut rng))) {
            eprintln!(
                "fuzz target {name}: case {case} failed; replay with OZ_FUZZ_SEED and this case \
                 seed {case_seed:#x}"
            );
            std::panic::resume_unwind(panic);
        }
    }
}

/// A stable per-target seed offset, so targets do not share their random streams.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Shows an input that broke a property.
pub fn show(input: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(input))
}
