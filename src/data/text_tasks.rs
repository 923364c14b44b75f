//! Text forms of the needle and variable-tracking tasks, in RULER's English templates,
//! inserted into a haystack of real text (any text corpus: `cargo`, `text_dir`, `jsonl`) and
//! tokenised by the run's tokenizer, so that a text backbone (GPT-2, the Llama and NeoX
//! families) is measured as the built-in generators measure their own vocabularies.
//!
//! A document of `doc_tokens` tokens is haystack text (the split's documents, concatenated
//! and read from a random place, cycling) with a sentence inserted at a sentence or line
//! boundary every `spacing` tokens or so. Each sentence is one of:
//! - `task = "needle"` (RULER's `niah_multikey`): a needle, "One of the special magic numbers
//!   for {key} is: {value}.", with a key (adjective-noun, never repeated in a document) and a
//!   7-digit value; or a query of one earlier unasked needle, "What is the special magic
//!   number for {key} mentioned in the provided text? The special magic number for {key}
//!   mentioned in the provided text is: {value}.";
//! - `task = "variables"` (RULER's `vt`): an assignment "VAR {X1} = {value}." starting a
//!   chain, a later hop "VAR {X2} = VAR {X1}." of an open chain, or a query of a complete
//!   chain of `hops` assignments: "Question: what is the value of VAR {Xh}? Answer: VAR {Xh} =
//!   {value}." (RULER asks the reverse, which variables hold a value; asking the value keeps
//!   one answer per query, whose evidence is the first hop).
//!
//! The value tokens of a query are its *answer* tokens; their evidence is the value tokens of
//! the needle (or first assignment). A value is tokenised on its own (" 1234567") and the
//! template around it separately, so its tokens are the same in both places whatever the
//! tokenizer; positions and distances are those of the tokens. A query asks the needle
//! (chain) nearest to `position − d`, `d` drawn log-uniformly up to the query's position, so
//! answers lie at every distance.

use super::needle::{log_uniform, nearest};
use super::recall::mix;
use super::stream::{Answer, Document, DocumentSource};
use super::tokenized::TokenizedCorpus;
use crate::tokenizer::Tokenizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Which task's sentences are inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextTask {
    Needle,
    Variables,
}

/// A text corpus's `data.insert` table: the task whose sentences go into its text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsertConfig {
    pub task: TextTask,
    /// Tokens per document.
    pub doc_tokens: usize,
    /// Mean haystack tokens between two inserted sentences.
    #[serde(default = "defaults::spacing")]
    pub spacing: usize,
    /// Share of inserted sentences that are queries.
    #[serde(default = "defaults::query_share")]
    pub query_share: f64,
    /// Assignments per chain (variables only).
    #[serde(default = "defaults::hops")]
    pub hops: u32,
}

mod defaults {
    pub fn spacing() -> usize {
        256
    }
    pub fn query_share() -> f64 {
        0.4
    }
    pub fn hops() -> u32 {
        2
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("data.insert: `{key}` = {value} is invalid: {allowed}")]
pub struct InsertError {
    pub key: &'static str,
    pub value: String,
    pub allowed: String,
}

const ADJECTIVES: [&str; 64] = [
    "amber", "ancient", "bitter", "bold", "brave", "bright", "calm", "clever", "cold", "crimson", "curious", "dark",
    "deep", "distant", "dry", "eager", "early", "empty", "faint", "fierce", "gentle", "gilded", "golden", "grand",
    "green", "grey", "hidden", "hollow", "humble", "icy", "idle", "jolly", "keen", "late", "lazy", "little", "lively",
    "lonely", "loud", "lucky", "merry", "misty", "narrow", "noble", "odd", "pale", "patient", "proud", "quick",
    "quiet", "rapid", "rough", "round", "rusty", "sandy", "silent", "silver", "sleepy", "steady", "stormy", "sunny",
    "tall", "tidy", "wild",
];
const NOUNS: [&str; 64] = [
    "anchor", "apple", "arrow", "badger", "basket", "beacon", "bell", "bridge", "brook", "candle", "canyon", "castle",
    "cedar", "cloud", "comet", "compass", "coral", "crane", "crystal", "desert", "dragon", "eagle", "ember", "falcon",
    "feather", "forest", "fountain", "garden", "glacier", "harbor", "hawk", "island", "lantern", "lemon", "meadow",
    "mirror", "monkey", "mountain", "needle", "ocean", "orchard", "otter", "owl", "pebble", "pepper", "pillar",
    "planet", "pond", "rabbit", "raven", "river", "rocket", "saddle", "shadow", "spider", "spring", "statue",
    "thunder", "tiger", "tower", "valley", "violin", "walrus", "willow",
];

/// Needles' keys: adjective-noun pairs.
fn key_space() -> u64 {
    (ADJECTIVES.len() * NOUNS.len()) as u64
}

fn key_name(i: u64) -> String {
    let n = NOUNS.len() as u64;
    format!("{}-{}", ADJECTIVES[(i / n) as usize], NOUNS[(i % n) as usize])
}

/// The mean tokens of an inserted sentence, for the key-space check (an overestimate of
/// the sentences a document holds).
const SENTENCE_TOKENS: usize = 12;

impl InsertConfig {
    /// Statements per askable fact: one per needle, `hops` per chain of variables.
    pub fn chain_length(&self) -> u32 {
        match self.task {
            TextTask::Needle => 1,
            TextTask::Variables => self.hops,
        }
    }

    pub fn validate(&self) -> Result<(), InsertError> {
        let err = |key, value: String, allowed: String| Err(InsertError { key, value, allowed });
        if self.doc_tokens == 0 {
            return err("doc_tokens", "0".into(), "at least 1".into());
        }
        if self.spacing < 2 {
            return err("spacing", self.spacing.to_string(), "at least 2 tokens".into());
        }
        if !(0.0..1.0).contains(&self.query_share) {
            return err(
                "query_share",
                self.query_share.to_string(),
                "a fraction in [0, 1)".into(),
            );
        }
        if self.hops == 0 {
            return err("hops", "0".into(), "at least 1".into());
        }
        let needles = self.doc_tokens / (self.spacing / 2 + SENTENCE_TOKENS) + 1;
        if self.task == TextTask::Needle && key_space() < 2 * needles as u64 {
            return err(
                "spacing",
                self.spacing.to_string(),
                format!(
                    "wide enough that a document of {} tokens states at most half the {} keys (at most {needles} \
                     sentences here); raise spacing or shorten doc_tokens",
                    self.doc_tokens,
                    key_space()
                ),
            );
        }
        Ok(())
    }
}

/// The haystack: a split's text as one token stream, with the places after which a
/// sentence may be inserted (tokens ending a sentence or a line).
#[derive(Debug)]
pub struct Haystack {
    tokens: Vec<u32>,
    boundary: Vec<bool>,
}

impl Haystack {
    pub fn new(corpus: &TokenizedCorpus, tokenizer: &dyn Tokenizer) -> Self {
        // Per vocabulary id: (ends a line, ends in a period, starts with whitespace).
        let kinds: Vec<(bool, bool, bool)> = (0..tokenizer.vocab_size() as u32)
            .map(|id| {
                let text = tokenizer.decode(&[id]);
                let ws = text.starts_with(char::is_whitespace);
                (text.ends_with('\n'), text.ends_with('.'), ws)
            })
            .collect();
        let kind = |t: u32| kinds.get(t as usize).copied().unwrap_or_default();
        let tokens: Vec<u32> = corpus.docs.concat();
        // A period ends a sentence only before whitespace ("0.342" and "REPORT.md" go on).
        let boundary = (0..tokens.len())
            .map(|i| {
                let (line, period, _) = kind(tokens[i]);
                let next_ws = tokens.get(i + 1).is_none_or(|&n| kind(n).2);
                line || (period && next_ws)
            })
            .collect();
        Self { tokens, boundary }
    }
}

/// How every inserted sentence ends: it is a line of its own.
const END: &str = ".\n";

/// A sentence's tokens and where its value starts in them (`None`: no value).
struct Sentence {
    tokens: Vec<u32>,
    value_at: Option<usize>,
    value_len: usize,
}

/// A template's text around one value: `before`, the value, `after`.
fn sentence(tokenizer: &dyn Tokenizer, before: &str, value: Option<&str>, after: &str) -> Sentence {
    let mut tokens = tokenizer.encode(before);
    let (value_at, value_len) = match value {
        Some(v) => {
            let ids = tokenizer.encode(&format!(" {v}"));
            let at = tokens.len();
            tokens.extend_from_slice(&ids);
            (Some(at), ids.len())
        }
        None => (None, 0),
    };
    tokens.extend(tokenizer.encode(after));
    Sentence {
        tokens,
        value_at,
        value_len,
    }
}

/// A needle or a chain waiting to be asked: its name (key or newest variable), its value's
/// text and where the value's tokens are (the evidence).
#[derive(Debug, Clone)]
struct Fact {
    name: String,
    value: String,
    source: usize,
    hops: u32,
}

/// One document being written.
struct Writer<'a> {
    config: &'a InsertConfig,
    haystack: &'a Haystack,
    tokenizer: &'a dyn Tokenizer,
    tokens: Vec<u32>,
    answers: Vec<Answer>,
    cursor: usize,
    used: HashSet<String>,
    /// Needles (complete chains) not yet asked, by evidence position.
    open: BTreeMap<usize, Fact>,
    /// Chains still taking hops.
    growing: Vec<Fact>,
}

impl Writer<'_> {
    /// Haystack tokens: about `spacing`, then on to the next boundary (at most 64 more).
    fn haystack_run(&mut self, rng: &mut impl Rng) {
        let s = self.config.spacing;
        let gap = rng.random_range(s / 2..=s + s / 2);
        let hay = &self.haystack;
        for i in 0.. {
            if self.tokens.len() >= self.config.doc_tokens {
                break;
            }
            let at = self.cursor % hay.tokens.len();
            self.tokens.push(hay.tokens[at]);
            self.cursor += 1;
            if i + 1 >= gap && (hay.boundary[at] || i + 1 >= gap + 64) {
                break;
            }
        }
    }

    /// A name not used before in this document.
    fn fresh_name(&mut self, rng: &mut impl Rng) -> Option<String> {
        for _ in 0..1000 {
            let name = match self.config.task {
                TextTask::Needle => key_name(rng.random_range(0..key_space())),
                TextTask::Variables => (0..5).map(|_| rng.random_range(b'A'..=b'Z') as char).collect(),
            };
            if self.used.insert(name.clone()) {
                return Some(name);
            }
        }
        None
    }

    /// The next inserted sentence, with the fact it states or the query it answers.
    fn next_sentence(&mut self, rng: &mut impl Rng) -> Option<(Sentence, Event)> {
        let pos = self.tokens.len();
        if rng.random::<f64>() < self.config.query_share && !self.open.is_empty() {
            let at = nearest(&self.open, pos.saturating_sub(log_uniform(rng, 1, pos)));
            let fact = self.open[&at].clone();
            let s = match self.config.task {
                TextTask::Needle => {
                    let before = format!(
                        " What is the special magic number for {0} mentioned in the provided text? The special \
                         magic number for {0} mentioned in the provided text is:",
                        fact.name
                    );
                    sentence(self.tokenizer, &before, Some(&fact.value), END)
                }
                TextTask::Variables => {
                    let before = format!(" Question: what is the value of VAR {0}? Answer: VAR {0} =", fact.name);
                    sentence(self.tokenizer, &before, Some(&fact.value), END)
                }
            };
            return Some((s, Event::Query(at)));
        }
        let hop = self.config.task == TextTask::Variables
            && !self.growing.is_empty()
            && rng.random::<f64>() >= 1.0 / self.config.hops as f64;
        let name = self.fresh_name(rng)?;
        if hop {
            let i = rng.random_range(0..self.growing.len());
            let s = sentence(
                self.tokenizer,
                &format!(" VAR {name} = VAR {}", self.growing[i].name),
                None,
                END,
            );
            return Some((s, Event::Hop(i, name)));
        }
        let value = rng.random_range(1_000_000..10_000_000u32).to_string();
        let before = match self.config.task {
            TextTask::Needle => format!(" One of the special magic numbers for {name} is:"),
            TextTask::Variables => format!(" VAR {name} ="),
        };
        let s = sentence(self.tokenizer, &before, Some(&value), END);
        Some((s, Event::State(name, value)))
    }

    /// Appends `s` and records what it states or answers.
    fn write(&mut self, s: Sentence, event: Event) {
        let pos = self.tokens.len();
        self.tokens.extend_from_slice(&s.tokens);
        match event {
            Event::Query(at) => {
                let fact = self.open.remove(&at).expect("asked among the open facts");
                let first = pos + s.value_at.expect("queries end in their value");
                self.answers.extend((0..s.value_len).map(|j| Answer {
                    position: first + j,
                    source: fact.source + j,
                }));
            }
            Event::State(name, value) => {
                let fact = Fact {
                    name,
                    value,
                    source: pos + s.value_at.expect("statements hold their value"),
                    hops: 1,
                };
                self.add(fact);
            }
            Event::Hop(i, name) => {
                let mut fact = self.growing.swap_remove(i);
                fact.name = name;
                fact.hops += 1;
                self.add(fact);
            }
        }
    }

    /// A complete fact becomes askable; a chain short of its hops keeps growing.
    fn add(&mut self, fact: Fact) {
        if fact.hops >= self.config.chain_length() {
            self.open.insert(fact.source, fact);
        } else {
            self.growing.push(fact);
        }
    }
}

enum Event {
    /// A query of the open fact whose evidence is at this position.
    Query(usize),
    /// A needle or first assignment: name and value.
    State(String, String),
    /// The next hop of growing chain i, under a new name.
    Hop(usize, String),
}

/// One document of `config`'s task over `haystack`.
pub fn generate(config: &InsertConfig, haystack: &Haystack, tokenizer: &dyn Tokenizer, rng: &mut impl Rng) -> Document {
    let mut tokens = Vec::with_capacity(config.doc_tokens);
    tokens.extend_from_slice(tokenizer.begin_of_text());
    let mut w = Writer {
        config,
        haystack,
        tokenizer,
        tokens,
        answers: Vec::new(),
        cursor: rng.random_range(0..haystack.tokens.len()),
        used: HashSet::new(),
        open: BTreeMap::new(),
        growing: Vec::new(),
    };
    while w.tokens.len() < config.doc_tokens {
        w.haystack_run(rng);
        let Some((s, event)) = w.next_sentence(rng) else {
            continue;
        };
        if w.tokens.len() + s.tokens.len() <= config.doc_tokens {
            w.write(s, event);
        }
    }
    w.tokens.truncate(config.doc_tokens);
    Document {
        tokens: w.tokens,
        answers: w.answers,
    }
}

/// Documents of a text task over a corpus's text, deterministic from a seed and the
/// (row, index) asked.
#[derive(Clone)]
pub struct InsertSource {
    pub config: InsertConfig,
    pub haystack: Arc<Haystack>,
    pub tokenizer: Arc<dyn Tokenizer>,
    pub vocab_size: i64,
    pub seed: u64,
}

impl std::fmt::Debug for InsertSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsertSource")
            .field("config", &self.config)
            .field("haystack_tokens", &self.haystack.tokens.len())
            .field("seed", &self.seed)
            .finish()
    }
}

impl InsertSource {
    /// The source over `corpus` (its split's text); an empty corpus cannot be a haystack.
    pub fn new(
        config: InsertConfig,
        corpus: &TokenizedCorpus,
        tokenizer: Arc<dyn Tokenizer>,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let haystack = Haystack::new(corpus, tokenizer.as_ref());
        if haystack.tokens.is_empty() {
            anyhow::bail!("data.insert needs haystack text, and the corpus's documents hold no tokens");
        }
        Ok(Self {
            config,
            haystack: Arc::new(haystack),
            tokenizer,
            vocab_size: corpus.vocab_size,
            seed,
        })
    }
}

impl DocumentSource for InsertSource {
    fn document(&self, row: u64, index: u64) -> Document {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed ^ 0x7465_7874, row, index));
        generate(&self.config, &self.haystack, self.tokenizer.as_ref(), &mut rng)
    }

    fn vocab_size(&self) -> i64 {
        self.vocab_size
    }
}

#[cfg(test)]
mod tests;
