//! The built-in variable-tracking corpus (in the spirit of RULER's multi-hop `vt` task):
//! chains of assignments `X1 = v`, `X2 = X1`, …, `Xh = Xh-1` spread across a document, each
//! chain asked once, later, by its last variable, so that answering needs every hop.
//!
//! A document is a sequence of 4-token cells over its own vocabulary (no tokenizer):
//! - filler: four random filler tokens;
//! - assignment: `[X, =, rhs, ;]`, where `rhs` is a value token (a chain's first hop) or
//!   the chain's previous variable (every later hop). Variables never repeat in a document;
//! - query: `[?, Xh, =, v]` of one complete, unasked chain; `v` is the *answer* token, and
//!   its evidence is the value token of the chain's first assignment (the farthest hop).
//!
//! A new chain starts in a cell with probability `chain_rate`; an open chain (a random one)
//! takes its next hop in a cell with probability `hop_rate`; a complete chain is asked in a
//! cell with probability `query_rate`, the one whose first hop lies nearest to
//! `position − d` with `d` drawn log-uniformly, so answers lie at every distance. A cell
//! whose roll finds nothing to do (no variable left, no open or complete chain) is filler.
//! With `query_rate` below `chain_rate`, complete chains accumulate, and queries reach back
//! through the whole document.
//!
//! Token ids: 0 = padding, then fillers, the three markers `=`, `;`, `?`, values, and last
//! the variables, so that a larger variable space (for longer held-out documents) leaves
//! every other token's id as it was.

use super::needle::{log_uniform, nearest};
use super::recall::{mix, CELL};
use super::stream::{Answer, Document, DocumentSource};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariablesConfig {
    /// Tokens per document (a multiple of 4).
    pub doc_tokens: usize,
    /// Assignments per chain, the first one included (at least 1).
    #[serde(default = "defaults::hops")]
    pub hops: u32,
    /// Distinct variable tokens.
    #[serde(default = "defaults::n_var_symbols")]
    pub n_var_symbols: u32,
    /// Distinct value tokens.
    #[serde(default = "defaults::n_value_symbols")]
    pub n_value_symbols: u32,
    #[serde(default = "defaults::n_filler")]
    pub n_filler: u32,
    /// Probability that a cell starts a new chain.
    #[serde(default = "defaults::chain_rate")]
    pub chain_rate: f64,
    /// Probability that a cell takes an open chain's next hop.
    #[serde(default = "defaults::hop_rate")]
    pub hop_rate: f64,
    /// Probability that a cell asks a complete chain.
    #[serde(default = "defaults::query_rate")]
    pub query_rate: f64,
}

mod defaults {
    pub fn hops() -> u32 {
        2
    }
    pub fn n_var_symbols() -> u32 {
        512
    }
    pub fn n_value_symbols() -> u32 {
        64
    }
    pub fn n_filler() -> u32 {
        64
    }
    pub fn chain_rate() -> f64 {
        0.05
    }
    pub fn hop_rate() -> f64 {
        0.1
    }
    pub fn query_rate() -> f64 {
        0.03
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("variables data: `{key}` = {value} is invalid: {allowed}")]
pub struct VariablesError {
    pub key: &'static str,
    pub value: String,
    pub allowed: String,
}

/// A chain being built or waiting to be asked.
#[derive(Debug, Clone)]
struct Chain {
    /// Its newest variable.
    last: u32,
    /// Its value token.
    value: u32,
    /// Where its first assignment's value token is: the answer's evidence.
    source: usize,
    hops: u32,
}

impl VariablesConfig {
    pub fn with_doc_tokens(doc_tokens: usize) -> Self {
        Self {
            doc_tokens,
            hops: defaults::hops(),
            n_var_symbols: defaults::n_var_symbols(),
            n_value_symbols: defaults::n_value_symbols(),
            n_filler: defaults::n_filler(),
            chain_rate: defaults::chain_rate(),
            hop_rate: defaults::hop_rate(),
            query_rate: defaults::query_rate(),
        }
    }

    pub fn validate(&self) -> Result<(), VariablesError> {
        let err = |key, value: String, allowed: &str| {
            Err(VariablesError {
                key,
                value,
                allowed: allowed.into(),
            })
        };
        for (key, n) in [
            ("hops", self.hops),
            ("n_var_symbols", self.n_var_symbols),
            ("n_value_symbols", self.n_value_symbols),
            ("n_filler", self.n_filler),
        ] {
            if n == 0 {
                return err(key, n.to_string(), "at least 1");
            }
        }
        if self.doc_tokens == 0 || !self.doc_tokens.is_multiple_of(CELL) {
            return err("doc_tokens", self.doc_tokens.to_string(), "a positive multiple of 4");
        }
        let mut total = 0.0;
        for (key, p) in [
            ("chain_rate", self.chain_rate),
            ("hop_rate", self.hop_rate),
            ("query_rate", self.query_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return err(key, p.to_string(), "a probability in [0, 1]");
            }
            total += p;
        }
        if total > 1.0 {
            return err("chain_rate + hop_rate + query_rate", total.to_string(), "at most 1");
        }
        if self.hop_rate < self.chain_rate * (self.hops - 1) as f64 {
            return err(
                "hop_rate",
                self.hop_rate.to_string(),
                &format!(
                    "at least chain_rate x (hops - 1) = {}, so that chains complete as fast as they start",
                    self.chain_rate * (self.hops - 1) as f64
                ),
            );
        }
        // Every hop names a new variable: at most one per assignment cell.
        let cells = (self.doc_tokens / CELL) as f64;
        let variables = cells * (self.chain_rate + self.hop_rate).min(self.chain_rate * self.hops as f64);
        if (self.n_var_symbols as f64) < 2.0 * variables {
            return err(
                "n_var_symbols",
                self.n_var_symbols.to_string(),
                &format!(
                    "at least twice the {variables:.0} variables a document is expected to assign (variables \
                     never repeat: once they run out, no chain starts or grows); raise n_var_symbols or lower \
                     chain_rate"
                ),
            );
        }
        Ok(())
    }

    /// Padding, fillers, the markers `=`, `;`, `?`, values and variables.
    pub fn vocab_size(&self) -> i64 {
        1 + (self.n_filler + 3 + self.n_value_symbols + self.n_var_symbols) as i64
    }

    fn filler(&self, i: u32) -> u32 {
        1 + i
    }
    /// Marker 0 is `=`, 1 is `;`, 2 is `?`.
    fn marker(&self, i: u32) -> u32 {
        1 + self.n_filler + i
    }
    fn value(&self, i: u32) -> u32 {
        1 + self.n_filler + 3 + i
    }
    fn variable(&self, i: u32) -> u32 {
        1 + self.n_filler + 3 + self.n_value_symbols + i
    }

    /// One document from `rng`.
    pub fn generate(&self, rng: &mut impl Rng) -> Document {
        let (eq, end, ask) = (self.marker(0), self.marker(1), self.marker(2));
        let mut tokens = Vec::with_capacity(self.doc_tokens);
        let mut answers = Vec::new();
        let mut next_variable = 0u32;
        // A random order of the variables, so that chains do not use neighbouring symbols.
        let mut order: Vec<u32> = (0..self.n_var_symbols).collect();
        order.shuffle(rng);
        let mut open: Vec<Chain> = Vec::new();
        // Complete chains not yet asked, by the position of their evidence.
        let mut complete: BTreeMap<usize, Chain> = BTreeMap::new();
        // A cell's roll below `chain_band` starts a chain, then up to `hop_band` takes a hop,
        // then up to `query_band` asks a chain.
        let (chain_band, hop_band) = (self.chain_rate, self.chain_rate + self.hop_rate);
        let query_band = hop_band + self.query_rate;
        while tokens.len() < self.doc_tokens {
            let pos = tokens.len();
            let roll: f64 = rng.random();
            let fresh = next_variable < self.n_var_symbols;
            if roll < chain_band && fresh {
                let (x, v) = (
                    self.variable(order[next_variable as usize]),
                    self.value(rng.random_range(0..self.n_value_symbols)),
                );
                next_variable += 1;
                tokens.extend([x, eq, v, end]);
                let chain = Chain {
                    last: x,
                    value: v,
                    source: pos + 2,
                    hops: 1,
                };
                if chain.hops == self.hops {
                    complete.insert(chain.source, chain);
                } else {
                    open.push(chain);
                }
            } else if (chain_band..hop_band).contains(&roll) && fresh && !open.is_empty() {
                let i = rng.random_range(0..open.len());
                let x = self.variable(order[next_variable as usize]);
                next_variable += 1;
                tokens.extend([x, eq, open[i].last, end]);
                open[i].last = x;
                open[i].hops += 1;
                if open[i].hops == self.hops {
                    let chain = open.swap_remove(i);
                    complete.insert(chain.source, chain);
                }
            } else if (hop_band..query_band).contains(&roll) && !complete.is_empty() {
                let target = pos.saturating_sub(log_uniform(rng, CELL, pos));
                let chain = complete
                    .remove(&nearest(&complete, target))
                    .expect("found among the complete chains");
                tokens.extend([ask, chain.last, eq, chain.value]);
                answers.push(Answer {
                    position: pos + 3,
                    source: chain.source,
                });
            } else {
                tokens.extend((0..CELL).map(|_| self.filler(rng.random_range(0..self.n_filler))));
            }
        }
        Document { tokens, answers }
    }
}

/// Documents of the variable-tracking corpus, deterministic from a seed and the (row, index).
#[derive(Debug, Clone)]
pub struct VariablesSource {
    pub config: VariablesConfig,
    pub seed: u64,
}

impl DocumentSource for VariablesSource {
    fn document(&self, row: u64, index: u64) -> Document {
        // Another stream of seeds than the other generators' for the same (seed, row, index).
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed ^ 0x7661_7269_6162, row, index));
        self.config.generate(&mut rng)
    }

    fn vocab_size(&self) -> i64 {
        self.config.vocab_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer's chain followed back from the query through the text alone: each hop's
    /// variable is found in the one earlier assignment that defines it.
    fn root_from_text(config: &VariablesConfig, doc: &Document, answer: &Answer) -> (usize, u32) {
        let eq = config.marker(0);
        let defining = |x: u32, before: usize| -> usize {
            let found: Vec<usize> = (0..before / CELL)
                .map(|c| c * CELL)
                .filter(|&s| doc.tokens[s] == x && doc.tokens[s + 1] == eq)
                .collect();
            assert_eq!(found.len(), 1, "variable {x} is assigned exactly once");
            found[0]
        };
        let query = answer.position - 3;
        let (mut x, mut at, mut hops) = (doc.tokens[query + 1], query, 0);
        loop {
            at = defining(x, at);
            hops += 1;
            let rhs = doc.tokens[at + 2];
            if rhs >= config.value(0) && rhs < config.variable(0) {
                return (at + 2, hops);
            }
            x = rhs;
        }
    }

    #[test]
    fn every_answer_needs_every_hop_and_its_evidence_is_the_chains_value() {
        for hops in [1, 2, 4] {
            let mut config = VariablesConfig::with_doc_tokens(16_384);
            config.hops = hops;
            config.hop_rate = 0.05 * hops as f64;
            config.n_var_symbols = 4096;
            assert!(config.validate().is_ok());
            let source = VariablesSource {
                config: config.clone(),
                seed: 3,
            };
            let doc = crate::data::checked_document(&source, 16_384, 50);
            for answer in &doc.answers {
                let (root, chain) = root_from_text(&config, &doc, answer);
                assert_eq!(root, answer.source, "hops {hops}");
                assert_eq!(chain, hops, "the query's chain has every hop");
            }
        }
    }

    #[test]
    fn distances_spread_over_the_document_and_settings_are_checked() {
        let mut config = VariablesConfig::with_doc_tokens(131_072);
        config.n_var_symbols = 16_384;
        let doc = VariablesSource { config, seed: 1 }.document(0, 0);
        let distances: Vec<usize> = doc.answers.iter().map(|a| a.position - a.source).collect();
        for band in 3..8 {
            let (lo, hi) = (4usize.pow(band), 4usize.pow(band + 1));
            let n = distances.iter().filter(|&&d| d >= lo && d < hi).count();
            assert!(n >= 20, "{n} answers at distances {lo}..{hi}");
        }
        let few = VariablesConfig::with_doc_tokens(131_072);
        assert_eq!(few.validate().unwrap_err().key, "n_var_symbols");
        let mut zero = VariablesConfig::with_doc_tokens(64);
        zero.hops = 0;
        assert_eq!(zero.validate().unwrap_err().key, "hops");
        assert_eq!(
            VariablesConfig::with_doc_tokens(30).validate().unwrap_err().key,
            "doc_tokens"
        );
    }
}
