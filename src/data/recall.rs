//! The built-in long-range recall corpus: long documents whose later tokens are predictable
//! only from facts stated earlier, possibly far beyond the local window, with the position
//! of every such token and of its source known.
//!
//! A document is a sequence of 4-token cells over its own vocabulary (no tokenizer):
//! - filler: four random filler tokens;
//! - fact: `[v1, v2, v3, key]`: three random values, then a key not yet used in this
//!   document. The values come first so that a model reading the key has them in context:
//!   the key's hidden state (and so its cached key/value) can carry them;
//! - query: `[key, v1, v2, v3]`, once per fact. `v1..v3` of a query are the *answer*
//!   tokens: unpredictable except by finding the fact, which matching the key token finds.
//!
//! Queries ask a random earlier unasked fact (or, with probability `recent_bias`, the most
//! recent one). Random picks make the distance vary, so a model must look the key up by
//! content rather than copy from a fixed offset; short documents keep facts within the local
//! window (pretraining), long ones push most beyond it. Values are drawn afresh per
//! document, so nothing can be memorised across documents.
//!
//! Token ids: 0 = padding, then fillers, keys, values.

use super::stream::{Answer, Document, DocumentSource};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Tokens per cell.
pub const CELL: usize = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecallConfig {
    /// Tokens per document (a multiple of 4).
    pub doc_tokens: usize,
    #[serde(default = "defaults::n_filler")]
    pub n_filler: u32,
    #[serde(default = "defaults::n_keys")]
    pub n_keys: u32,
    #[serde(default = "defaults::n_values")]
    pub n_values: u32,
    /// Probability that a cell states a new fact.
    #[serde(default = "defaults::fact_rate")]
    pub fact_rate: f64,
    /// Probability that a cell queries an earlier fact.
    #[serde(default = "defaults::query_rate")]
    pub query_rate: f64,
    /// Probability that a query asks the most recent unasked fact rather than a random one.
    #[serde(default = "defaults::recent_bias")]
    pub recent_bias: f64,
}

mod defaults {
    pub fn n_filler() -> u32 {
        32
    }
    pub fn n_keys() -> u32 {
        32
    }
    pub fn n_values() -> u32 {
        32
    }
    pub fn fact_rate() -> f64 {
        0.4
    }
    pub fn query_rate() -> f64 {
        0.4
    }
    pub fn recent_bias() -> f64 {
        0.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("recall data: `{key}` = {value} is invalid: {allowed}")]
pub struct RecallError {
    pub key: &'static str,
    pub value: String,
    pub allowed: &'static str,
}

impl RecallConfig {
    pub fn with_doc_tokens(doc_tokens: usize) -> Self {
        Self {
            doc_tokens,
            n_filler: defaults::n_filler(),
            n_keys: defaults::n_keys(),
            n_values: defaults::n_values(),
            fact_rate: defaults::fact_rate(),
            query_rate: defaults::query_rate(),
            recent_bias: defaults::recent_bias(),
        }
    }

    pub fn validate(&self) -> Result<(), RecallError> {
        let err = |key, value: String, allowed| Err(RecallError { key, value, allowed });
        if self.doc_tokens == 0 || !self.doc_tokens.is_multiple_of(CELL) {
            return err("doc_tokens", self.doc_tokens.to_string(), "a positive multiple of 4");
        }
        for (key, n) in [
            ("n_filler", self.n_filler),
            ("n_keys", self.n_keys),
            ("n_values", self.n_values),
        ] {
            if n == 0 {
                return err(key, n.to_string(), "at least 1");
            }
        }
        for (key, p) in [
            ("fact_rate", self.fact_rate),
            ("query_rate", self.query_rate),
            ("recent_bias", self.recent_bias),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return err(key, p.to_string(), "a probability in [0, 1]");
            }
        }
        if self.fact_rate + self.query_rate > 1.0 {
            return err(
                "fact_rate + query_rate",
                (self.fact_rate + self.query_rate).to_string(),
                "at most 1",
            );
        }
        Ok(())
    }

    /// Padding plus fillers, keys and values.
    pub fn vocab_size(&self) -> i64 {
        1 + (self.n_filler + self.n_keys + self.n_values) as i64
    }

    fn filler(&self, i: u32) -> u32 {
        1 + i
    }
    fn key(&self, i: u32) -> u32 {
        1 + self.n_filler + i
    }
    fn value(&self, i: u32) -> u32 {
        1 + self.n_filler + self.n_keys + i
    }

    /// One document from `rng`.
    pub fn generate(&self, rng: &mut impl Rng) -> Document {
        let mut tokens = Vec::with_capacity(self.doc_tokens);
        let mut answers = Vec::new();
        // Unused keys, shuffled; facts stated but not yet asked: (position, cell tokens).
        let mut keys: Vec<u32> = (0..self.n_keys).collect();
        for i in (1..keys.len()).rev() {
            keys.swap(i, rng.random_range(0..=i));
        }
        let mut open: Vec<(usize, [u32; CELL])> = Vec::new();
        while tokens.len() < self.doc_tokens {
            let roll: f64 = rng.random();
            let pos = tokens.len();
            if roll < self.fact_rate && !keys.is_empty() {
                let key = keys.pop().expect("checked non-empty");
                let mut query = [self.key(key), 0, 0, 0];
                for slot in &mut query[1..] {
                    *slot = self.value(rng.random_range(0..self.n_values));
                }
                tokens.extend_from_slice(&[query[1], query[2], query[3], query[0]]);
                open.push((pos, query));
            } else if roll < self.fact_rate + self.query_rate && !open.is_empty() {
                let pick = if rng.random::<f64>() < self.recent_bias {
                    open.len() - 1
                } else {
                    rng.random_range(0..open.len())
                };
                let (fact, query) = open.remove(pick);
                tokens.extend_from_slice(&query);
                for j in 1..CELL {
                    // v_j sits at fact + j − 1 in `[v1, v2, v3, key]`.
                    answers.push(Answer {
                        position: pos + j,
                        source: fact + j - 1,
                    });
                }
            } else {
                for _ in 0..CELL {
                    tokens.push(self.filler(rng.random_range(0..self.n_filler)));
                }
            }
        }
        Document { tokens, answers }
    }
}

/// Documents of the recall corpus, deterministic from a seed and the (row, index) asked.
#[derive(Debug, Clone)]
pub struct RecallSource {
    pub config: RecallConfig,
    pub seed: u64,
}

impl DocumentSource for RecallSource {
    fn document(&self, row: u64, index: u64) -> Document {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed, row, index));
        self.config.generate(&mut rng)
    }

    fn vocab_size(&self) -> i64 {
        self.config.vocab_size()
    }
}

/// A well-spread 64-bit seed from three integers (SplitMix64 finaliser).
pub fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_deterministic_and_answers_point_at_their_facts() {
        let source = RecallSource {
            config: RecallConfig::with_doc_tokens(512),
            seed: 3,
        };
        let a = source.document(1, 7);
        assert_eq!(a.tokens, source.document(1, 7).tokens);
        assert_ne!(a.tokens, source.document(2, 7).tokens);
        assert_ne!(a.tokens, source.document(1, 8).tokens);
        assert_eq!(a.tokens.len(), 512);
        assert!(!a.answers.is_empty());
        let vocab = source.vocab_size() as u32;
        assert!(a.tokens.iter().all(|&t| t > 0 && t < vocab));
        for ans in &a.answers {
            assert!(ans.source < ans.position);
            assert_eq!(a.tokens[ans.source], a.tokens[ans.position]);
            // The query opens with the key that closes the fact.
            let (fact_cell, query_cell) = (ans.source / CELL * CELL, ans.position / CELL * CELL);
            assert_eq!(a.tokens[fact_cell + CELL - 1], a.tokens[query_cell]);
        }
    }

    #[test]
    fn invalid_settings_are_named() {
        let mut c = RecallConfig::with_doc_tokens(30);
        assert_eq!(c.validate().unwrap_err().key, "doc_tokens");
        c.doc_tokens = 32;
        c.fact_rate = 0.7;
        c.query_rate = 0.5;
        assert!(c.validate().unwrap_err().to_string().contains("fact_rate + query_rate"));
    }
}
