//! The built-in classification tasks for memory-augmented in-context learning (DESIGN.md
//! §4): inputs of made-up words, one of which is a *cue*; each task draws a random mapping
//! from cue words to labels, so only demonstrations with the same cue reveal an input's
//! label. A few local demonstrations cover few cues; thousands in memory cover them all.
//! Deterministic from the task seed; train and test examples come from separate streams.

use super::loaders::Example;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyConfig {
    /// Label words, one per class (e.g. negative, positive).
    pub label_words: Vec<String>,
    /// Distinct cue words.
    pub n_cues: usize,
    /// Distinct filler words.
    pub n_fillers: usize,
    /// Filler words around the cue in one input.
    pub fillers_per_input: usize,
}

impl ClassifyConfig {
    pub fn binary() -> Self {
        Self {
            label_words: vec!["negative".into(), "positive".into()],
            n_cues: 64,
            n_fillers: 256,
            fillers_per_input: 4,
        }
    }
}

/// A made-up word from syllables, distinct for distinct `i` within a namespace letter.
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

    fn example(&self, rng: &mut ChaCha8Rng) -> Example {
        let c = &self.config;
        let cue = rng.random_range(0..c.n_cues);
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

    #[test]
    fn words_are_distinct() {
        let cues: std::collections::BTreeSet<String> = (0..256).map(|i| word('q', i)).collect();
        assert_eq!(cues.len(), 256);
        assert_ne!(word('q', 3), word('w', 3));
    }
}
