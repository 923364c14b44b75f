//! The built-in multi-key needle-in-a-haystack corpus (in the spirit of RULER's
//! `niah_multikey`): key → value needles buried in filler, queried later at distances spread
//! evenly on a log scale from inside the local window to the whole document, so that a
//! long-memory model is measured at every distance up to and beyond its memory.
//!
//! A document is a sequence of cells of `key_tokens + value_tokens` tokens over its own
//! vocabulary (no tokenizer):
//! - filler: random filler tokens;
//! - needle: `[v_1 … v_V, k_1 … k_K]` (`order = "value_first"`, the default): a value of V
//!   random value tokens, then a key of K key tokens not used before in this document. The
//!   key's cached key/value can then carry the values it follows, and a query finds its
//!   needle by matching key tokens directly. `order = "key_first"` states `[k_1 … k_K,
//!   v_1 … v_V]`, RULER's "the value for {key} is: {value}", found as an induction head
//!   finds a copy. Small backbones learn the first far sooner: pretrained 2,000 steps on
//!   64-token documents (2 layers, width 128, 1-token keys from 256 symbols, 3 values),
//!   answer NLL in context fell to 2.74 nats value-first and stayed at 4.07 key-first
//!   (chance: ln 64 = 4.16);
//! - distractor: a needle that is never asked (with probability `distractor_rate`);
//! - query: `[k_1 … k_K, v_1 … v_V]` of one earlier unasked needle; `v_1 … v_V` are the
//!   *answer* tokens, whose evidence is the needle's value tokens.
//!
//! Keys never repeat in a document: the key space, `n_key_symbols^K`, must hold at least
//! twice the needles a document is expected to state (`needle_rate` × cells); should a
//! document ever exhaust it, its remaining needle cells become filler.
//!
//! A query asks the needle nearest to `position − d`, with `d` drawn log-uniformly between
//! one cell and the query's position, and each needle at most once (a second query of the
//! same needle would find its evidence in the first query). Values are drawn afresh per
//! needle, so nothing can be memorised across documents.
//!
//! Token ids: 0 = padding, then fillers, key symbols, value symbols.

use super::recall::mix;
use super::stream::{Answer, Document, DocumentSource};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeedleConfig {
    /// Tokens per document (a multiple of the cell, `key_tokens + value_tokens`).
    pub doc_tokens: usize,
    /// Tokens per key.
    #[serde(default = "defaults::key_tokens")]
    pub key_tokens: u32,
    /// Tokens per value.
    #[serde(default = "defaults::value_tokens")]
    pub value_tokens: u32,
    /// Distinct key tokens.
    #[serde(default = "defaults::n_key_symbols")]
    pub n_key_symbols: u32,
    /// Distinct value tokens.
    #[serde(default = "defaults::n_value_symbols")]
    pub n_value_symbols: u32,
    #[serde(default = "defaults::n_filler")]
    pub n_filler: u32,
    /// Probability that a cell states a needle (distractors included).
    #[serde(default = "defaults::needle_rate")]
    pub needle_rate: f64,
    /// Probability that a needle is a distractor, never asked.
    #[serde(default)]
    pub distractor_rate: f64,
    /// Probability that a cell queries an earlier needle.
    #[serde(default = "defaults::query_rate")]
    pub query_rate: f64,
    /// Where a needle states its key: after its value (the default) or before it (RULER's
    /// order). Left out of the JSON (and so of run ids) at the default.
    #[serde(default, skip_serializing_if = "NeedleOrder::is_default")]
    pub order: NeedleOrder,
}

/// The order of a needle's key and value tokens; queries always ask `[key, value]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeedleOrder {
    #[default]
    ValueFirst,
    KeyFirst,
}

impl NeedleOrder {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

mod defaults {
    pub fn key_tokens() -> u32 {
        2
    }
    pub fn value_tokens() -> u32 {
        2
    }
    pub fn n_key_symbols() -> u32 {
        512
    }
    pub fn n_value_symbols() -> u32 {
        64
    }
    pub fn n_filler() -> u32 {
        64
    }
    pub fn needle_rate() -> f64 {
        0.2
    }
    pub fn query_rate() -> f64 {
        0.1
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("needle data: `{key}` = {value} is invalid: {allowed}")]
pub struct NeedleError {
    pub key: &'static str,
    pub value: String,
    pub allowed: String,
}

impl NeedleConfig {
    pub fn with_doc_tokens(doc_tokens: usize) -> Self {
        Self {
            doc_tokens,
            key_tokens: defaults::key_tokens(),
            value_tokens: defaults::value_tokens(),
            n_key_symbols: defaults::n_key_symbols(),
            n_value_symbols: defaults::n_value_symbols(),
            n_filler: defaults::n_filler(),
            needle_rate: defaults::needle_rate(),
            distractor_rate: 0.0,
            query_rate: defaults::query_rate(),
            order: NeedleOrder::default(),
        }
    }

    /// Tokens per cell.
    pub fn cell(&self) -> usize {
        (self.key_tokens + self.value_tokens) as usize
    }

    /// Distinct keys: `n_key_symbols^key_tokens` (saturating).
    pub fn key_space(&self) -> u64 {
        (self.n_key_symbols as u64).saturating_pow(self.key_tokens)
    }

    pub fn validate(&self) -> Result<(), NeedleError> {
        let err = |key, value: String, allowed: String| Err(NeedleError { key, value, allowed });
        for (key, n) in [
            ("key_tokens", self.key_tokens),
            ("value_tokens", self.value_tokens),
            ("n_key_symbols", self.n_key_symbols),
            ("n_value_symbols", self.n_value_symbols),
            ("n_filler", self.n_filler),
        ] {
            if n == 0 {
                return err(key, n.to_string(), "at least 1".into());
            }
        }
        if self.doc_tokens == 0 || !self.doc_tokens.is_multiple_of(self.cell()) {
            return err(
                "doc_tokens",
                self.doc_tokens.to_string(),
                format!(
                    "a positive multiple of the cell, key_tokens + value_tokens = {}",
                    self.cell()
                ),
            );
        }
        let needles = (self.doc_tokens / self.cell()) as f64 * self.needle_rate;
        if (self.key_space() as f64) < 2.0 * needles {
            return err(
                "n_key_symbols",
                self.n_key_symbols.to_string(),
                format!(
                    "a key space n_key_symbols^key_tokens of at least twice the {needles:.0} needles a document \
                     states (needle_rate x cells), so that no key repeats; raise n_key_symbols or key_tokens"
                ),
            );
        }
        for (key, p) in [
            ("needle_rate", self.needle_rate),
            ("distractor_rate", self.distractor_rate),
            ("query_rate", self.query_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return err(key, p.to_string(), "a probability in [0, 1]".into());
            }
        }
        if self.needle_rate + self.query_rate > 1.0 {
            return err(
                "needle_rate + query_rate",
                (self.needle_rate + self.query_rate).to_string(),
                "at most 1".into(),
            );
        }
        Ok(())
    }

    /// Padding plus fillers, key symbols and value symbols.
    pub fn vocab_size(&self) -> i64 {
        1 + (self.n_filler + self.n_key_symbols + self.n_value_symbols) as i64
    }

    fn filler(&self, i: u32) -> u32 {
        1 + i
    }
    fn key_symbol(&self, i: u32) -> u32 {
        1 + self.n_filler + i
    }
    fn value_symbol(&self, i: u32) -> u32 {
        1 + self.n_filler + self.n_key_symbols + i
    }

    /// The key tokens of key number `key` (its digits in base `n_key_symbols`).
    fn key_of(&self, mut key: u64) -> Vec<u32> {
        let base = self.n_key_symbols as u64;
        let mut tokens = vec![0; self.key_tokens as usize];
        for slot in tokens.iter_mut().rev() {
            *slot = self.key_symbol((key % base) as u32);
            key /= base;
        }
        tokens
    }

    /// One document from `rng`.
    pub fn generate(&self, rng: &mut impl Rng) -> Document {
        let (cell, v) = (self.cell(), self.value_tokens as usize);
        let mut tokens = Vec::with_capacity(self.doc_tokens);
        let mut answers = Vec::new();
        let mut used_keys = HashSet::new();
        // Needles stated and not yet asked, by position: their query cell.
        let mut open: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
        while tokens.len() < self.doc_tokens {
            let roll: f64 = rng.random();
            let pos = tokens.len();
            if roll < self.needle_rate && (used_keys.len() as u64) < self.key_space() {
                let key = loop {
                    let k = rng.random_range(0..self.key_space());
                    if used_keys.insert(k) {
                        break k;
                    }
                };
                let value: Vec<u32> = (0..v)
                    .map(|_| self.value_symbol(rng.random_range(0..self.n_value_symbols)))
                    .collect();
                let key = self.key_of(key);
                // The needle's position, recorded for its query, is where its value starts.
                let (first, second, value_at) = match self.order {
                    NeedleOrder::KeyFirst => (&key, &value, pos + key.len()),
                    NeedleOrder::ValueFirst => (&value, &key, pos),
                };
                tokens.extend_from_slice(first);
                tokens.extend_from_slice(second);
                if rng.random::<f64>() >= self.distractor_rate {
                    open.insert(value_at, [key, value].concat());
                }
            } else if roll < self.needle_rate + self.query_rate && !open.is_empty() {
                let needle = nearest(&open, pos.saturating_sub(log_uniform(rng, cell, pos)));
                let query = open.remove(&needle).expect("found among the open needles");
                tokens.extend_from_slice(&query);
                let first_value = pos + self.key_tokens as usize;
                answers.extend((0..v).map(|j| Answer {
                    position: first_value + j,
                    source: needle + j,
                }));
            } else {
                tokens.extend((0..cell).map(|_| self.filler(rng.random_range(0..self.n_filler))));
            }
        }
        Document { tokens, answers }
    }
}

/// A distance drawn log-uniformly from `[low, high]` (`low` when `high ≤ low`).
pub(super) fn log_uniform(rng: &mut impl Rng, low: usize, high: usize) -> usize {
    if high <= low {
        return low;
    }
    let (a, b) = ((low as f64).ln(), (high as f64).ln());
    rng.random_range(a..=b).exp().round() as usize
}

/// The position in `open` (non-empty) nearest to `target`, the earlier one on a tie.
pub(super) fn nearest<V>(open: &BTreeMap<usize, V>, target: usize) -> usize {
    let before = open.range(..=target).next_back().map(|(&p, _)| p);
    let after = open.range(target..).next().map(|(&p, _)| p);
    match (before, after) {
        (Some(b), Some(a)) if a - target < target - b => a,
        (Some(b), _) => b,
        (None, Some(a)) => a,
        (None, None) => unreachable!("open needles are never empty here"),
    }
}

/// Documents of the needle corpus, deterministic from a seed and the (row, index) asked.
#[derive(Debug, Clone)]
pub struct NeedleSource {
    pub config: NeedleConfig,
    pub seed: u64,
}

impl DocumentSource for NeedleSource {
    fn document(&self, row: u64, index: u64) -> Document {
        // Another stream of seeds than the recall corpus's for the same (seed, row, index).
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed ^ 0x6E65_6564_6C65, row, index));
        self.config.generate(&mut rng)
    }

    fn vocab_size(&self) -> i64 {
        self.config.vocab_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The evidence of every answer recomputed from the tokens alone: the query cell's key,
    /// found by scanning the document for the one earlier needle cell with that key.
    fn evidence_from_text(config: &NeedleConfig, doc: &Document, answer: &Answer) -> usize {
        let (cell, k) = (config.cell(), config.key_tokens as usize);
        let query = answer.position / cell * cell;
        let key = &doc.tokens[query..query + k];
        let is_key = |t: u32| t > config.n_filler && t <= config.n_filler + config.n_key_symbols;
        // Where a needle cell holds its key and its value.
        let (key_at, value_at) = match config.order {
            NeedleOrder::KeyFirst => (0, k),
            NeedleOrder::ValueFirst => (cell - k, 0),
        };
        let needles: Vec<usize> = (0..query / cell)
            .map(|c| c * cell)
            .filter(|&start| {
                let cells = &doc.tokens[start..start + cell];
                // Value-first, a needle cell does not start with a key, as a query cell does;
                // key-first, the needle is the one earlier cell with this key (asked once).
                (config.order == NeedleOrder::KeyFirst || !is_key(cells[0])) && &cells[key_at..key_at + k] == key
            })
            .collect();
        assert_eq!(needles.len(), 1, "exactly one needle holds the key {key:?}");
        let values = needles[0] + value_at;
        // The needle's values, in order, are the query's.
        assert_eq!(
            doc.tokens[values..values + cell - k],
            doc.tokens[query + k..query + cell]
        );
        values + (answer.position - query - k)
    }

    #[test]
    fn documents_are_deterministic_and_evidence_positions_are_right() {
        for order in [NeedleOrder::KeyFirst, NeedleOrder::ValueFirst] {
            let mut config = NeedleConfig::with_doc_tokens(4096);
            config.distractor_rate = 0.3;
            config.order = order;
            let source = NeedleSource {
                config: config.clone(),
                seed: 5,
            };
            let a = crate::data::checked_document(&source, 4096, 100);
            for answer in &a.answers {
                assert_eq!(evidence_from_text(&config, &a, answer), answer.source, "{order:?}");
            }
            // Each needle is asked at most once.
            let sources: HashSet<usize> = a.answers.iter().map(|x| x.source).collect();
            assert_eq!(sources.len(), a.answers.len());
        }
    }

    #[test]
    fn distances_cover_every_scale_up_to_the_document() {
        let config = NeedleConfig::with_doc_tokens(131_072);
        let doc = NeedleSource { config, seed: 1 }.document(0, 0);
        let distances: Vec<usize> = doc.answers.iter().map(|a| a.position - a.source).collect();
        // Log-uniform: answers in every factor-4 band from 4 tokens to 64k.
        for band in 1..8 {
            let (lo, hi) = (4usize.pow(band), 4usize.pow(band + 1));
            let n = distances.iter().filter(|&&d| d >= lo && d < hi).count();
            assert!(n >= 100, "{n} answers at distances {lo}..{hi}");
        }
        assert!(distances.iter().any(|&d| d > 65_536));
    }

    #[test]
    fn documents_reach_the_longest_lengths_and_settings_are_checked() {
        let config = NeedleConfig::with_doc_tokens(262_144);
        assert!(config.validate().is_ok());
        assert_eq!(NeedleSource { config, seed: 2 }.document(0, 0).tokens.len(), 262_144);
        let mut small_keys = NeedleConfig::with_doc_tokens(262_144);
        small_keys.n_key_symbols = 100;
        let err = small_keys.validate().unwrap_err();
        assert_eq!(err.key, "n_key_symbols");
        assert!(err.allowed.contains("no key repeats"), "{err}");
        assert_eq!(
            NeedleConfig::with_doc_tokens(30).validate().unwrap_err().key,
            "doc_tokens"
        );
    }
}
