//! Which chunks a query reads, at evaluation time: the exact top K/c (what every model is
//! trained with), or one of two bounds that tell whether a weak result comes from retrieval
//! or from reading what was retrieved: **oracle** (the chunk holding each query's evidence
//! is put into its retrieved set, in place of the lowest-scoring one) and **random** (K/c
//! distinct chunks drawn uniformly from those in memory).

use super::{BankError, BankSharing, MemoryBank};
use crate::data::recall::mix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tch::{Device, Kind, Tensor};

/// How the retrieved chunks are chosen (an evaluation point's `eval.retrieval`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Retrieval {
    /// The top K/c chunks by inner product with the query.
    #[default]
    Exact,
    /// The exact set with each query's evidence chunk in it, where memory holds it.
    Oracle,
    /// K/c distinct chunks at random from those in memory.
    Random,
}

impl std::fmt::Display for Retrieval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Retrieval::Exact => "exact",
            Retrieval::Oracle => "oracle",
            Retrieval::Random => "random",
        })
    }
}

/// The bank's retrieval policy, with what it needs.
#[derive(Debug, Default)]
pub enum Policy {
    #[default]
    Exact,
    /// `evidence` `[B, T]` int64: the stream chunk index holding each query token's evidence
    /// (its target's source position / c), −1 where it has none.
    Oracle { evidence: Tensor },
    /// Draws from `seed` and a count of the searches so far, so that a run is repeatable.
    Random { seed: u64, searches: AtomicU64 },
}

impl MemoryBank {
    /// Sets how the next retrievals choose their chunks. The oracle needs a bank per stream
    /// (a shared bank's chunk indices are not any one row's).
    pub fn set_policy(&mut self, policy: Policy) -> Result<(), BankError> {
        if matches!(policy, Policy::Oracle { .. }) && self.config.sharing == BankSharing::Shared {
            return Err(BankError::Policy(
                "the oracle bound needs memory.sharing = \"per-stream\"",
            ));
        }
        self.policy = policy;
        Ok(())
    }

    /// The `kc` chunk slots and scores `[B, H, T, kc]` each query `[B, H, T, d]` reads under
    /// the bank's policy, as [`MemoryBank::search`] returns them (random picks search nothing).
    pub(super) fn choose(&self, queries: &Tensor, kc: i64) -> (Tensor, Tensor) {
        match &self.policy {
            Policy::Exact => self.search(queries, kc),
            Policy::Oracle { evidence } => {
                let (slots, top) = self.search(queries, kc);
                self.oracle(slots, top, evidence)
            }
            Policy::Random { seed, searches } => {
                let draw = searches.fetch_add(1, Ordering::Relaxed);
                let (b, h, t, _) = queries.size4().expect("queries must be [B, H, T, d]");
                self.random([b, h, t, kc], queries.device(), mix(*seed, draw, 0x7261_6E64))
            }
        }
    }

    /// For each row, its stream's valid slots and the slot of each chunk index it holds.
    fn slots_of_row(&self, row: usize) -> (Vec<i64>, Vec<i64>) {
        let stream = self.stream_of_row(row) as i64;
        let host = |t: Tensor| t.to_device(Device::Cpu);
        let valid = Vec::<bool>::try_from(host(self.valid.get(stream))).expect("[N] bool");
        let index = Vec::<i64>::try_from(host(self.chunk_index.get(stream))).expect("[N] int64");
        let slots = (0..valid.len() as i64).filter(|&s| valid[s as usize]).collect();
        (slots, index)
    }

    fn oracle(&self, slots: Tensor, top: Tensor, evidence: &Tensor) -> (Tensor, Tensor) {
        let device = slots.device();
        let (b, h, t, kc) = slots.size4().expect("slots must be [B, H, T, kc]");
        let (b, h, t, kc) = (b as usize, h as usize, t as usize, kc as usize);
        let mut slots = Vec::<i64>::try_from(slots.to_device(Device::Cpu).view([-1])).expect("slots");
        let mut top = Vec::<f32>::try_from(top.to_device(Device::Cpu).to_kind(Kind::Float).view([-1])).expect("scores");
        let evidence = Vec::<i64>::try_from(evidence.to_device(Device::Cpu).view([-1])).expect("[B, T] evidence");
        assert_eq!(evidence.len(), b * t, "oracle evidence must be [B, T]");
        for row in 0..b {
            let wanted = &evidence[row * t..(row + 1) * t];
            if wanted.iter().all(|&e| e < 0) {
                continue;
            }
            let (valid, index) = self.slots_of_row(row);
            let slot_of: HashMap<i64, i64> = valid.iter().map(|&s| (index[s as usize], s)).collect();
            for (ti, e) in wanted.iter().enumerate() {
                let Some(&slot) = slot_of.get(e) else {
                    continue; // no evidence, or evicted, or not yet written
                };
                for head in 0..h {
                    let at = ((row * h + head) * t + ti) * kc;
                    let set = &mut slots[at..at + kc];
                    if !set.contains(&slot) {
                        set[kc - 1] = slot;
                        // Any finite score marks the pair valid; scores do not weight retrieval.
                        top[at + kc - 1] = if top[at].is_finite() { top[at] } else { 0.0 };
                    }
                }
            }
        }
        let shape = [b as i64, h as i64, t as i64, kc as i64];
        (
            Tensor::from_slice(&slots).view(shape).to_device(device),
            Tensor::from_slice(&top).view(shape).to_device(device),
        )
    }

    fn random(&self, shape: [i64; 4], device: Device, seed: u64) -> (Tensor, Tensor) {
        let [b, h, t, kc] = shape.map(|x| x as usize);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut slots = vec![0i64; b * h * t * kc];
        let mut top = vec![f32::NEG_INFINITY; b * h * t * kc];
        for row in 0..b {
            let (valid, _) = self.slots_of_row(row);
            for query in 0..h * t {
                let at = (row * h * t + query) * kc;
                let picks = distinct(&mut rng, valid.len(), kc);
                for (j, pick) in picks.into_iter().enumerate() {
                    slots[at + j] = valid[pick];
                    top[at + j] = 0.0;
                }
            }
        }
        let shape = [b as i64, h as i64, t as i64, kc as i64];
        (
            Tensor::from_slice(&slots).view(shape).to_device(device),
            Tensor::from_slice(&top).view(shape).to_device(device),
        )
    }
}

/// `min(k, n)` distinct indices below `n`, uniformly (Floyd's algorithm).
fn distinct(rng: &mut impl Rng, n: usize, k: usize) -> Vec<usize> {
    let k = k.min(n);
    let mut picked = Vec::with_capacity(k);
    for j in n - k..n {
        let x = rng.random_range(0..=j);
        picked.push(if picked.contains(&x) { j } else { x });
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bank(capacity: i64, written: i64) -> MemoryBank {
        super::super::random_bank(2, 4, capacity, written)
    }

    #[test]
    fn random_retrieval_never_returns_an_invalid_slot() {
        // Partly filled (5 chunks: fewer than K/c = 3 is not reached, more than 3 are there),
        // nearly empty (2 chunks < K/c) and wrapped around the ring (written 40 > 16 slots).
        for (capacity, written) in [(32, 10), (32, 4), (32, 80)] {
            let mut bank = bank(capacity, written);
            bank.set_policy(Policy::Random {
                seed: 3,
                searches: AtomicU64::new(0),
            })
            .unwrap();
            let queries = Tensor::randn([2, 2, 16, 4], (Kind::Float, Device::Cpu));
            let got = bank.retrieve(&queries, 6).unwrap();
            let chunks = bank.chunks_for_row(0);
            let index = Vec::<i64>::try_from(got.chunk_index.view([-1])).unwrap();
            let written_chunks = written / 2;
            let valid = index.iter().filter(|&&i| i >= 0).count();
            assert_eq!(
                valid as i64,
                2 * 2 * 16 * chunks.min(3),
                "M={capacity}, written={written}"
            );
            // Every valid pick is a chunk still in memory, and the picks of a query differ.
            assert!(index
                .iter()
                .all(|&i| i < 0 || (i >= written_chunks - chunks && i < written_chunks)));
            for set in index.chunks(3) {
                let mut real: Vec<i64> = set.iter().copied().filter(|&i| i >= 0).collect();
                real.sort();
                real.dedup();
                assert_eq!(real.len() as i64, chunks.min(3));
            }
            // Random picks do not follow the queries: another draw differs.
            let again = bank.retrieve(&queries, 6).unwrap().chunk_index;
            if chunks > 3 {
                assert!(!again.equal(&got.chunk_index));
            }
        }
    }

    #[test]
    fn the_oracle_puts_the_evidence_chunk_into_every_heads_set() {
        let mut bank = bank(32, 24); // 12 chunks, indices 0..12
        let queries = Tensor::randn([2, 2, 3, 4], (Kind::Float, Device::Cpu));
        let exact = bank.retrieve(&queries, 6).unwrap().chunk_index;
        // Row 0 asks chunks 5, none and 11; row 1 chunk 0 and two that are not in memory.
        let evidence = Tensor::from_slice(&[5i64, -1, 11, 0, 12, 40]).view([2, 3]);
        bank.set_policy(Policy::Oracle {
            evidence: evidence.shallow_clone(),
        })
        .unwrap();
        let oracle = bank.retrieve(&queries, 6).unwrap().chunk_index;
        let e = Vec::<i64>::try_from(evidence.view([-1])).unwrap();
        for row in 0..2 {
            for head in 0..2 {
                for t in 0..3 {
                    let set = Vec::<i64>::try_from(oracle.get(row).get(head).get(t)).unwrap();
                    let before = Vec::<i64>::try_from(exact.get(row).get(head).get(t)).unwrap();
                    let wanted = e[row as usize * 3 + t as usize];
                    if (0..12).contains(&wanted) {
                        assert!(set.contains(&wanted), "row {row} head {head} t {t}: {set:?}");
                        // The two best exact chunks stay.
                        assert_eq!(&set[..2], &before[..2]);
                    } else {
                        assert_eq!(set, before, "nothing to add");
                    }
                }
            }
        }
    }
}
