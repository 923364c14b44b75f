//! Memory-augmented in-context learning (DESIGN.md §3): prompt templates and the two
//! scoring protocols. (The evaluation procedure that writes demonstrations to memory builds
//! on these.)
//!
//! - The paper's protocol: take the argmax next token over the whole vocabulary after the
//!   prompt; correct when the gold label word starts with it (after trimming spaces).
//! - Label-word log-likelihood: score each candidate label word by the sum of its tokens'
//!   log-probabilities after the prompt; `acc` takes the best sum, `acc_norm` the best sum
//!   divided by the word's length in characters.

use crate::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};

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

/// One of the paper's five tasks: its template and label words (by label index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPreset {
    pub name: String,
    pub template: Template,
    pub label_words: Vec<String>,
}

/// The paper's tasks with the templates of DESIGN.md §3. The label words are this
/// project's choice (the brief does not fix them).
pub fn paper_presets() -> Vec<TaskPreset> {
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect();
    vec![
        TaskPreset {
            name: "sst2".into(),
            template: Template::review(),
            label_words: words(&["negative", "positive"]),
        },
        TaskPreset {
            name: "mr".into(),
            template: Template::review(),
            label_words: words(&["negative", "positive"]),
        },
        TaskPreset {
            name: "subj".into(),
            template: Template::input_type(),
            label_words: words(&["objective", "subjective"]),
        },
        TaskPreset {
            name: "sst5".into(),
            template: Template::review(),
            label_words: words(&["terrible", "bad", "okay", "good", "great"]),
        },
        TaskPreset {
            name: "mpqa".into(),
            template: Template::review(),
            label_words: words(&["negative", "positive"]),
        },
    ]
}

/// The paper's protocol on the next-token logits `[V]` after the query: correct when the
/// gold label word starts with the (trimmed, non-empty) argmax token.
pub fn paper_argmax_correct(next_logits: &[f32], gold_word: &str, tokenizer: &dyn Tokenizer) -> bool {
    let Some((best, _)) = next_logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) else {
        return false;
    };
    let text = tokenizer.decode(&[best as u32]);
    let piece = text.trim();
    !piece.is_empty() && gold_word.starts_with(piece)
}

/// Label-word log-likelihood: `scores[i]` is the summed log-probability of label word i's
/// tokens after the prompt. Returns (acc choice, acc_norm choice): the best raw sum, and the
/// best sum per character of the word.
pub fn loglik_choices(scores: &[f64], label_words: &[String]) -> (usize, usize) {
    assert_eq!(scores.len(), label_words.len(), "one score per label word");
    let argmax = |values: Vec<f64>| {
        values
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .expect("at least one label")
    };
    let raw = argmax(scores.to_vec());
    let norm = argmax(
        scores
            .iter()
            .zip(label_words)
            .map(|(s, w)| s / w.chars().count().max(1) as f64)
            .collect(),
    );
    (raw, norm)
}

/// Mean and (population) standard deviation, e.g. of accuracies over seeds.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::TokenizerKind;

    #[test]
    fn templates_match_the_paper() {
        let t = Template::review();
        assert_eq!(
            t.demonstration("a gem", "positive"),
            "Review: a gem Sentiment: positive. "
        );
        assert_eq!(t.query("a gem"), "Review: a gem Sentiment:");
        assert_eq!(
            Template::input_type().demonstration("x", "objective"),
            "Input: x Type: objective. "
        );
        let names: Vec<String> = paper_presets().into_iter().map(|p| p.name).collect();
        assert_eq!(names, vec!["sst2", "mr", "subj", "sst5", "mpqa"]);
    }

    #[test]
    fn paper_protocol_on_hand_made_logits() {
        let tok = TokenizerKind::Gpt2.build();
        let vocab = tok.vocab_size();
        let with_best = |text: &str| {
            let ids = tok.encode(text);
            let mut logits = vec![0.0f32; vocab];
            logits[ids[0] as usize] = 10.0;
            logits
        };
        // " positive" is one GPT-2 token; " pos" a prefix of it.
        assert!(paper_argmax_correct(&with_best(" positive"), "positive", tok.as_ref()));
        assert!(paper_argmax_correct(&with_best(" pos"), "positive", tok.as_ref()));
        assert!(!paper_argmax_correct(&with_best(" negative"), "positive", tok.as_ref()));
        // Whitespace alone is never a match.
        assert!(!paper_argmax_correct(&with_best(" "), "positive", tok.as_ref()));
    }

    #[test]
    fn loglik_protocols_on_hand_made_scores() {
        let words: Vec<String> = ["bad", "terrible"].iter().map(|s| s.to_string()).collect();
        // Raw sums prefer "bad" (-3 > -6); per character "terrible" wins (-0.75 > -1).
        assert_eq!(loglik_choices(&[-3.0, -6.0], &words), (0, 1));
        assert_eq!(loglik_choices(&[-1.0, -9.0], &words), (0, 0));
        let (mean, std) = mean_std(&[0.5, 0.7, 0.6]);
        assert!((mean - 0.6).abs() < 1e-12 && (std - (0.02f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
