//! The built-in classification tasks for memory-augmented in-context learning:
//! inputs of made-up words, one of which is a *cue*; each task draws a random mapping
//! from cue words to labels, so only demonstrations with the same cue reveal an input's
//! label. A few local demonstrations cover few cues; thousands in memory cover them all.
//! Deterministic from the task seed; train and test examples come from separate streams.
//!
//! The tasks write their examples in the paper's templates ("Review: {x} Sentiment: {y}. ")
//! over a closed word vocabulary ([`DemoVocab`]: one id per word, like the recall corpus's
//! own vocabulary), so a small model reads a demonstration in 9 tokens rather than 50 bytes.
//! [`DemoSource`] strings demonstrations of one task per document into long documents to
//! train on: a label whose cue was shown earlier in the document is an answer whose source
//! is that earlier label, so "beyond the window" is known here too.

use super::loaders::Example;
use super::recall::mix;
use super::stream::{Answer, Document, DocumentSource};
use crate::tokenizer::{Tokenizer, END_OF_TEXT};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How a demonstration or a query is written: `{prefix}{x}{infix}{y}{suffix}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub prefix: String,
    pub infix: String,
    pub suffix: String,
}

impl Template {
    /// "Review: {x} Sentiment: {y}. " (SST-2, MR, SST-5, MPQA in the paper).
    pub fn review() -> Self {
        Self {
            prefix: "Review: ".into(),
            infix: " Sentiment:".into(),
            suffix: ". ".into(),
        }
    }

    /// "Input: {x} Type: {y}. " (Subj in the paper).
    pub fn input_type() -> Self {
        Self {
            prefix: "Input: ".into(),
            infix: " Type:".into(),
            suffix: ". ".into(),
        }
    }

    /// A full demonstration; the label word follows a space.
    pub fn demonstration(&self, x: &str, label_word: &str) -> String {
        format!("{}{x}{} {label_word}{}", self.prefix, self.infix, self.suffix)
    }

    /// A query: everything up to where the label word would start.
    pub fn query(&self, x: &str) -> String {
        format!("{}{x}{}", self.prefix, self.infix)
    }
}

/// The templates a built-in task can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKind {
    /// "Review: {x} Sentiment: {y}. "
    #[default]
    Review,
    /// "Input: {x} Type: {y}. "
    InputType,
}

impl TemplateKind {
    pub fn template(self) -> Template {
        match self {
            TemplateKind::Review => Template::review(),
            TemplateKind::InputType => Template::input_type(),
        }
    }
}

/// A built-in task's vocabulary of inputs and labels (in a spec: the `demos` corpus's
/// fields of the same names, [`DemoCorpusConfig`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyConfig {
    pub label_words: Vec<String>,
    pub n_cues: usize,
    pub n_fillers: usize,
    pub fillers_per_input: usize,
}

mod defaults {
    pub fn label_words() -> Vec<String> {
        vec!["negative".into(), "positive".into()]
    }
    pub fn n_cues() -> usize {
        64
    }
    pub fn n_fillers() -> usize {
        256
    }
    pub fn fillers_per_input() -> usize {
        4
    }
}

/// Words [`word`] can make per namespace.
const MAX_WORDS: usize = 256;

/// A setting of a built-in task that cannot work.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("`{key}` = {value} is invalid: {allowed}")]
pub struct ClassifyError {
    pub key: &'static str,
    pub value: String,
    pub allowed: String,
}

impl ClassifyConfig {
    pub fn binary() -> Self {
        Self {
            label_words: defaults::label_words(),
            n_cues: defaults::n_cues(),
            n_fillers: defaults::n_fillers(),
            fillers_per_input: defaults::fillers_per_input(),
        }
    }

    pub fn validate(&self) -> Result<(), ClassifyError> {
        let err = |key, value: String, allowed: &str| {
            Err(ClassifyError {
                key,
                value,
                allowed: allowed.to_string(),
            })
        };
        if self.label_words.len() < 2 {
            return err("label_words", format!("{:?}", self.label_words), "at least two words");
        }
        let mut seen = std::collections::BTreeSet::new();
        for w in &self.label_words {
            if w.is_empty() || w.contains(char::is_whitespace) || w.ends_with('.') || !seen.insert(w) {
                return err(
                    "label_words",
                    format!("{:?}", self.label_words),
                    "distinct single words without spaces or a final '.'",
                );
            }
        }
        if !(1..=MAX_WORDS).contains(&self.n_cues) {
            return err("n_cues", self.n_cues.to_string(), "between 1 and 256");
        }
        if !(1..=MAX_WORDS).contains(&self.n_fillers) {
            return err("n_fillers", self.n_fillers.to_string(), "between 1 and 256");
        }
        Ok(())
    }
}

/// A made-up word from syllables, distinct for distinct `i < 256` within a namespace letter.
fn word(namespace: char, i: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "nu", "pe", "ra", "so", "ti", "vu", "ze", "bo", "da", "fi", "gu", "ho", "je",
    ];
    let (a, b) = (i % 16, (i / 16) % 16);
    format!("{namespace}{}{}", SYLLABLES[a], SYLLABLES[b])
}

/// One task instance: its cue → label mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyTask {
    pub config: ClassifyConfig,
    /// Label index of each cue.
    pub cue_labels: Vec<usize>,
    seed: u64,
}

impl ClassifyTask {
    pub fn new(config: ClassifyConfig, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC1A5_5EED);
        let classes = config.label_words.len();
        let cue_labels = (0..config.n_cues).map(|_| rng.random_range(0..classes)).collect();
        Self {
            config,
            cue_labels,
            seed,
        }
    }

    /// The cue word of cue `i`.
    pub fn cue(&self, i: usize) -> String {
        word('q', i)
    }

    /// An example with cue `cue`, its fillers and their order drawn from `rng`.
    fn example_with_cue(&self, rng: &mut ChaCha8Rng, cue: usize) -> Example {
        let c = &self.config;
        let mut words: Vec<String> = (0..c.fillers_per_input)
            .map(|_| word('w', rng.random_range(0..c.n_fillers)))
            .collect();
        let at = rng.random_range(0..=words.len());
        words.insert(at, self.cue(cue));
        Example {
            text: words.join(" "),
            label: c.label_words[self.cue_labels[cue]].clone(),
        }
    }

    fn example(&self, rng: &mut ChaCha8Rng) -> Example {
        let cue = rng.random_range(0..self.config.n_cues);
        self.example_with_cue(rng, cue)
    }

    /// `n` training examples (demonstrations), the same for the same task and `n`.
    pub fn train(&self, n: usize) -> Vec<Example> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x7EA1);
        (0..n).map(|_| self.example(&mut rng)).collect()
    }

    /// `n` test examples, from a stream independent of the training one.
    pub fn test(&self, n: usize) -> Vec<Example> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x7E57);
        (0..n).map(|_| self.example(&mut rng)).collect()
    }
}

/// The closed word vocabulary of the built-in tasks in one template: id 0 for unknown
/// words, then the template's words, the label words, the cues, the fillers, and
/// end-of-text last. Text is split at whitespace, and a final '.' is its own word.
#[derive(Debug, Clone)]
pub struct DemoVocab {
    words: Vec<String>,
    ids: HashMap<String, u32>,
}

const UNKNOWN: &str = "<unk>";

impl DemoVocab {
    pub fn new(config: &ClassifyConfig, template: &Template) -> Self {
        let mut words: Vec<String> = vec![UNKNOWN.to_string()];
        let pieces = [&template.prefix, &template.infix, &template.suffix];
        for piece in pieces {
            words.extend(piece.split_whitespace().flat_map(split_period).map(str::to_string));
        }
        words.extend(config.label_words.iter().cloned());
        words.extend((0..config.n_cues).map(|i| word('q', i)));
        words.extend((0..config.n_fillers).map(|i| word('w', i)));
        let mut ids = HashMap::new();
        words.retain(|w| {
            let fresh = !ids.contains_key(w);
            if fresh {
                ids.insert(w.clone(), ids.len() as u32);
            }
            fresh
        });
        words.push(END_OF_TEXT.to_string());
        Self { words, ids }
    }

    fn id(&self, word: &str) -> u32 {
        self.ids.get(word).copied().unwrap_or(0)
    }
}

/// "positive." → ["positive", "."]; other words stay whole.
fn split_period(word: &str) -> Vec<&str> {
    match word.strip_suffix('.') {
        Some(stem) if !stem.is_empty() => vec![stem, "."],
        _ => vec![word],
    }
}

impl Tokenizer for DemoVocab {
    fn vocab_size(&self) -> usize {
        self.words.len()
    }

    fn end_of_text(&self) -> u32 {
        self.words.len() as u32 - 1
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        text.split_whitespace()
            .flat_map(split_period)
            .map(|w| self.id(w))
            .collect()
    }

    /// Words joined by single spaces, with '.' attached to the word before it.
    fn decode(&self, ids: &[u32]) -> String {
        let mut text = String::new();
        for &id in ids {
            let w = self.words.get(id as usize).map_or(UNKNOWN, String::as_str);
            if !text.is_empty() && w != "." {
                text.push(' ');
            }
            text.push_str(w);
        }
        text
    }
}

/// The `demos` corpus: documents of demonstrations of one built-in task each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoCorpusConfig {
    /// Demonstrations per document (9 tokens each with 4 fillers).
    pub demos_per_doc: usize,
    /// Probability that a demonstration repeats the cue of an earlier one of its document
    /// (chosen uniformly), rather than drawing a cue at random: more answers per document.
    #[serde(default)]
    pub repeat: f64,
    /// Repeat only the cues of the last this many demonstrations (e.g. those within the
    /// local window, for pretraining); default: any earlier one.
    pub repeat_from_last: Option<usize>,
    #[serde(default)]
    pub template: TemplateKind,
    /// Label words, one per class (e.g. negative, positive).
    #[serde(default = "defaults::label_words")]
    pub label_words: Vec<String>,
    /// Distinct cue words (at most 256).
    #[serde(default = "defaults::n_cues")]
    pub n_cues: usize,
    /// Distinct filler words (at most 256).
    #[serde(default = "defaults::n_fillers")]
    pub n_fillers: usize,
    /// Filler words around the cue in one input.
    #[serde(default = "defaults::fillers_per_input")]
    pub fillers_per_input: usize,
}

impl DemoCorpusConfig {
    pub fn task(&self) -> ClassifyConfig {
        ClassifyConfig {
            label_words: self.label_words.clone(),
            n_cues: self.n_cues,
            n_fillers: self.n_fillers,
            fillers_per_input: self.fillers_per_input,
        }
    }

    pub fn vocab(&self) -> DemoVocab {
        DemoVocab::new(&self.task(), &self.template.template())
    }

    pub fn validate(&self) -> Result<(), ClassifyError> {
        self.task().validate()?;
        if self.demos_per_doc == 0 {
            return Err(ClassifyError {
                key: "demos_per_doc",
                value: "0".into(),
                allowed: "at least 1".into(),
            });
        }
        if !(0.0..=1.0).contains(&self.repeat) {
            return Err(ClassifyError {
                key: "repeat",
                value: self.repeat.to_string(),
                allowed: "a probability in [0, 1]".into(),
            });
        }
        if self.repeat_from_last == Some(0) {
            return Err(ClassifyError {
                key: "repeat_from_last",
                value: "0".into(),
                allowed: "at least 1 (or leave it out: any earlier demonstration)".into(),
            });
        }
        Ok(())
    }
}

/// Documents of the `demos` corpus, deterministic from a seed and the (row, index) asked:
/// each is a fresh task (its own cue → label mapping) shown in `demos_per_doc`
/// demonstrations.
#[derive(Debug, Clone)]
pub struct DemoSource {
    pub config: DemoCorpusConfig,
    pub seed: u64,
    vocab: std::sync::Arc<DemoVocab>,
}

impl DemoSource {
    pub fn new(config: DemoCorpusConfig, seed: u64) -> Self {
        let vocab = std::sync::Arc::new(config.vocab());
        Self { config, seed, vocab }
    }
}

impl DocumentSource for DemoSource {
    fn document(&self, row: u64, index: u64) -> Document {
        let doc_seed = mix(self.seed, row, index);
        let task = ClassifyTask::new(self.config.task(), doc_seed);
        let template = self.config.template.template();
        let mut rng = ChaCha8Rng::seed_from_u64(doc_seed ^ 0xD0C5);
        let mut tokens = Vec::new();
        let mut answers = Vec::new();
        let mut cues: Vec<usize> = Vec::new();
        // Position of the label of each cue's latest demonstration.
        let mut last_label: HashMap<usize, usize> = HashMap::new();
        for i in 0..self.config.demos_per_doc {
            let cue = if i > 0 && rng.random::<f64>() < self.config.repeat {
                let from = i - self.config.repeat_from_last.unwrap_or(i).clamp(1, i);
                cues[rng.random_range(from..i)]
            } else {
                rng.random_range(0..self.config.n_cues)
            };
            let example = task.example_with_cue(&mut rng, cue);
            let label_at = tokens.len() + self.vocab.encode(&template.query(&example.text)).len();
            tokens.extend(
                self.vocab
                    .encode(&template.demonstration(&example.text, &example.label)),
            );
            if let Some(&source) = last_label.get(&cue) {
                answers.push(Answer {
                    position: label_at,
                    source,
                });
            }
            last_label.insert(cue, label_at);
            cues.push(cue);
        }
        Document { tokens, answers }
    }

    fn vocab_size(&self) -> i64 {
        self.vocab.vocab_size() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_deterministic_and_labels_follow_the_cue() {
        let task = ClassifyTask::new(ClassifyConfig::binary(), 3);
        assert_eq!(task.train(50), ClassifyTask::new(ClassifyConfig::binary(), 3).train(50));
        assert_ne!(task.train(50), task.test(50));
        assert_ne!(
            task.cue_labels,
            ClassifyTask::new(ClassifyConfig::binary(), 4).cue_labels
        );
        for ex in task.train(200).iter().chain(&task.test(200)) {
            let cues: Vec<usize> = (0..64)
                .filter(|&i| ex.text.split(' ').any(|w| w == task.cue(i)))
                .collect();
            assert_eq!(cues.len(), 1, "exactly one cue in {:?}", ex.text);
            assert_eq!(ex.label, task.config.label_words[task.cue_labels[cues[0]]]);
            assert_eq!(ex.text.split(' ').count(), 5);
        }
        // Both labels occur: the mapping is not degenerate.
        let labels: std::collections::BTreeSet<_> = task.train(200).into_iter().map(|e| e.label).collect();
        assert_eq!(labels.len(), 2);
    }

    fn demos(demos_per_doc: usize, repeat: f64) -> DemoCorpusConfig {
        DemoCorpusConfig {
            demos_per_doc,
            repeat,
            repeat_from_last: None,
            template: TemplateKind::Review,
            label_words: defaults::label_words(),
            n_cues: 16,
            n_fillers: 32,
            fillers_per_input: 4,
        }
    }

    #[test]
    fn the_word_vocabulary_round_trips_demonstrations() {
        let config = demos(1, 0.0);
        let vocab = config.vocab();
        // <unk>, Review:, Sentiment:, ".", 2 labels, 16 cues, 32 fillers, end-of-text.
        assert_eq!(vocab.vocab_size(), 1 + 3 + 2 + 16 + 32 + 1);
        assert_eq!(vocab.end_of_text() as usize, vocab.vocab_size() - 1);
        let task = ClassifyTask::new(config.task(), 5);
        for ex in task.train(20) {
            let text = Template::review().demonstration(&ex.text, &ex.label);
            let ids = vocab.encode(&text);
            assert_eq!(ids.len(), 9, "{text:?}");
            assert!(ids.iter().all(|&id| id > 0), "no unknown word in {text:?}");
            assert_eq!(vocab.decode(&ids), text.trim_end());
            // The label is one token, right after the query.
            let query = vocab.encode(&Template::review().query(&ex.text));
            assert_eq!(vocab.decode(&ids[query.len()..query.len() + 1]), ex.label);
        }
        assert_eq!(vocab.encode("Review: zzz"), vec![vocab.id("Review:"), 0]);
    }

    #[test]
    fn demonstration_documents_are_deterministic_and_answers_repeat_a_cue() {
        let source = DemoSource::new(demos(64, 0.3), 9);
        let doc = source.document(2, 5);
        assert_eq!(doc, source.document(2, 5));
        assert_ne!(doc.tokens, source.document(3, 5).tokens);
        assert_eq!(doc.tokens.len(), 64 * 9);
        assert!(doc.answers.len() > 10, "16 cues in 64 demonstrations repeat");
        let vocab = source.config.vocab();
        let cue_of = |label_at: usize| {
            let demo = &doc.tokens[label_at - 7..label_at - 1];
            let words: Vec<String> = demo.iter().map(|&id| vocab.decode(&[id])).collect();
            words.into_iter().find(|w| w.starts_with('q')).expect("a cue")
        };
        for ans in &doc.answers {
            assert!(ans.source < ans.position);
            assert_eq!(doc.tokens[ans.source], doc.tokens[ans.position], "same cue, same label");
            assert_eq!(cue_of(ans.source), cue_of(ans.position));
        }
        // Always repeating makes every demonstration but the first an answer, all with the
        // first demonstration's cue.
        let all = DemoSource::new(demos(64, 1.0), 9).document(0, 0);
        assert_eq!(all.answers.len(), 63);
        assert!(all.answers.iter().all(|a| all.tokens[a.position] == all.tokens[7]));
        // Repeating only the last 3 keeps repeats within 3 demonstrations (with 256 cues, a
        // fresh draw rarely meets an earlier cue).
        let mut recent = demos(64, 0.9);
        (recent.n_cues, recent.repeat_from_last) = (256, Some(3));
        let doc = DemoSource::new(recent, 9).document(0, 0);
        assert!(doc.answers.len() > 50);
        assert!(doc.answers.iter().all(|a| a.position - a.source <= 3 * 9));
        assert!(doc.answers.iter().any(|a| a.position - a.source > 9));
    }

    #[test]
    fn invalid_task_settings_are_named() {
        let mut c = ClassifyConfig::binary();
        c.n_cues = 300;
        assert_eq!(c.validate().unwrap_err().key, "n_cues");
        c.n_cues = 8;
        c.label_words = vec!["yes".into(), "yes".into()];
        assert_eq!(c.validate().unwrap_err().key, "label_words");
        let mut d = demos(0, 0.0);
        assert_eq!(d.validate().unwrap_err().key, "demos_per_doc");
        d.demos_per_doc = 4;
        d.repeat = 1.5;
        assert_eq!(d.validate().unwrap_err().key, "repeat");
    }

    #[test]
    fn words_are_distinct() {
        let cues: std::collections::BTreeSet<String> = (0..256).map(|i| word('q', i)).collect();
        assert_eq!(cues.len(), 256);
        assert_ne!(word('q', 3), word('w', 3));
    }
}
