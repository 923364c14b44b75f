//! Memory-augmented in-context learning: prompt templates, the two scoring
//! protocols, and the evaluation that writes demonstrations to memory.
//!
//! - The paper's protocol: take the argmax next token over the whole vocabulary after the
//!   prompt; correct when the gold label word starts with it (after trimming spaces).
//! - Label-word log-likelihood: score each candidate label word by the sum of its tokens'
//!   log-probabilities after the prompt; `acc` takes the best sum, `acc_norm` the best sum
//!   divided by the word's length in characters.
//!
//! Per seed: the memory is reset, m demonstrations are written to it window by window (read
//! then write, as in streaming), and each test query is scored after n local demonstrations
//! with memory read but never written, so every query sees the same memory.

pub mod released;
mod score;

use crate::config::{DataSpec, IclProtocol, IclSpec};
use crate::data::classify::ClassifyTask;
pub use crate::data::classify::Template;
use crate::data::loaders::{task_examples, Delimiter, Example, TaskFormat};
use crate::data::recall::mix;
use crate::methods::MethodModel;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
pub(crate) use score::{accuracies, score_prompts};
pub use score::{score_queries, QueryScore};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Device;

/// One of the paper's five tasks: its template and label words (by label index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPreset {
    pub name: String,
    pub template: Template,
    pub label_words: Vec<String>,
}

/// The paper's tasks with its ICL templates and the label words of the authors' script
/// (eval_longmem_icl.py), by label index: subj's 0 is subjective, as in its files.
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
            label_words: words(&["subjective", "objective"]),
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

/// Built-in tasks draw this many test queries unless told otherwise.
const BUILTIN_TEST_EXAMPLES: usize = 200;

/// Where a task's examples come from.
#[derive(Debug, Clone)]
enum TaskData {
    /// A fresh built-in task per seed.
    Builtin {
        config: crate::data::classify::ClassifyConfig,
        seed: u64,
    },
    /// Examples read from files, labels mapped to label words.
    Files { train: Vec<Example>, test: Vec<Example> },
}

/// A task ready to evaluate: template, label words and examples.
#[derive(Debug, Clone)]
pub struct IclTask {
    pub name: String,
    pub template: Template,
    pub label_words: Vec<String>,
    data: TaskData,
    test_examples: Option<usize>,
}

impl IclTask {
    /// The task `icl` names, for a model trained on `data`, seeded from `seed`.
    pub fn from_spec(icl: &IclSpec, data: &DataSpec, seed: u64) -> anyhow::Result<Self> {
        if icl.task == "builtin" {
            let DataSpec::Demos(demos) = data else {
                bail!("icl.task = \"builtin\" evaluates a model trained on data.kind = \"demos\" (its vocabulary)");
            };
            return Ok(Self {
                name: "builtin".into(),
                template: demos.template.template(),
                label_words: demos.label_words.clone(),
                data: TaskData::Builtin {
                    config: demos.task(),
                    seed,
                },
                test_examples: Some(icl.test_examples.unwrap_or(BUILTIN_TEST_EXAMPLES)),
            });
        }
        let Some(preset) = paper_presets().into_iter().find(|p| p.name == icl.task) else {
            bail!(
                "icl.task = {:?} is not a task: use builtin, sst2, mr, subj, sst5 or mpqa",
                icl.task
            );
        };
        let file = |path: &Option<PathBuf>, key: &str| -> anyhow::Result<Vec<Example>> {
            let Some(path) = path else {
                bail!("icl.{key} is missing: task {} reads its examples from files", icl.task)
            };
            let released = icl.protocol == IclProtocol::Released;
            let format = match preset.name.as_str() {
                "sst2" => TaskFormat::Sst2,
                "sst5" => TaskFormat::Sst5,
                name if released => TaskFormat::LabelFirst {
                    strip_quotes: name == "subj",
                },
                _ => TaskFormat::Table {
                    text_column: icl.text_column.clone(),
                    label_column: icl.label_column.clone(),
                    delimiter: if path.extension().is_some_and(|e| e == "tsv") {
                        Delimiter::Tab
                    } else {
                        Delimiter::Comma
                    },
                },
            };
            let examples = task_examples(path, &format)?;
            examples
                .into_iter()
                .map(|ex| label_word(ex, &preset.label_words, path))
                .collect()
        };
        Ok(Self {
            name: preset.name.clone(),
            template: preset.template.clone(),
            label_words: preset.label_words.clone(),
            data: TaskData::Files {
                train: file(&icl.train_file, "train_file")?,
                test: file(&icl.test_file, "test_file")?,
            },
            test_examples: icl.test_examples,
        })
    }

    /// `n` training examples drawn without replacement for seed `s` from stream `stream`
    /// (independent streams give independent draws, which may overlap): the released
    /// protocol's sampling. File tasks only.
    pub fn draw(&self, s: u64, stream: u64, n: usize) -> anyhow::Result<Vec<Example>> {
        let (train, _) = self.files()?;
        if n > train.len() {
            bail!(
                "task {} draws {n} demonstrations but its train_file has {}",
                self.name,
                train.len()
            );
        }
        let mut rng = ChaCha8Rng::seed_from_u64(mix(s, 0x1C1, 2 + stream));
        Ok(rand::seq::index::sample(&mut rng, train.len(), n)
            .into_iter()
            .map(|i| train[i].clone())
            .collect())
    }

    /// A file task's test queries: the first `icl.test_examples` (default all).
    pub fn test_queries(&self) -> anyhow::Result<Vec<Example>> {
        let (_, test) = self.files()?;
        Ok(self.first_tests(test))
    }

    fn files(&self) -> anyhow::Result<(&[Example], &[Example])> {
        match &self.data {
            TaskData::Files { train, test } => Ok((train, test)),
            TaskData::Builtin { .. } => bail!("the released ICL protocol evaluates file tasks, not the built-in one"),
        }
    }

    fn first_tests(&self, test: &[Example]) -> Vec<Example> {
        test[..self.test_examples.unwrap_or(test.len()).min(test.len())].to_vec()
    }

    /// Seed `s`'s `demos` demonstrations (drawn without replacement) and its test queries.
    pub fn sample(&self, s: u64, demos: usize) -> anyhow::Result<(Vec<Example>, Vec<Example>)> {
        match &self.data {
            TaskData::Builtin { config, seed } => {
                let task = ClassifyTask::new(config.clone(), mix(*seed, s, 0x1C1));
                Ok((
                    task.train(demos),
                    task.test(self.test_examples.unwrap_or(BUILTIN_TEST_EXAMPLES)),
                ))
            }
            TaskData::Files { train, test } => {
                if demos > train.len() {
                    bail!(
                        "task {} needs {demos} demonstrations (the most local_shots plus the most memory_shots) \
                         but its train_file has {}; lower icl.memory_shots",
                        self.name,
                        train.len()
                    );
                }
                let mut order: Vec<usize> = (0..train.len()).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(s, 0x1C1, 1)));
                let demos = order[..demos].iter().map(|&i| train[i].clone()).collect();
                Ok((demos, self.first_tests(test)))
            }
        }
    }
}

/// A file's label as a label word: an index (`0`, `1`, …) or the word itself.
fn label_word(ex: Example, words: &[String], path: &Path) -> anyhow::Result<Example> {
    let word = match ex.label.trim().parse::<usize>() {
        Ok(i) if i < words.len() => words[i].clone(),
        _ if words.contains(&ex.label) => ex.label.clone(),
        _ => bail!(
            "{}: label {:?} is neither an index below {} nor one of {:?}",
            path.display(),
            ex.label,
            words.len(),
            words
        ),
    };
    Ok(Example {
        text: ex.text,
        label: word,
    })
}

/// One seed's accuracy at one (local, memory) setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IclRow {
    pub task: String,
    pub seed: u64,
    pub local_shots: usize,
    pub memory_shots: usize,
    /// Tokens written to memory, and how many of them it can retrieve (whole chunks, at most
    /// its capacity).
    pub memory_tokens_written: usize,
    pub memory_tokens_kept: usize,
    pub examples: usize,
    /// The paper's argmax protocol.
    pub acc_paper: f64,
    /// Label-word log-likelihood, raw and per character.
    pub acc: f64,
    pub acc_norm: f64,
}

/// Mean and standard deviation over seeds at one (local, memory) setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IclSummary {
    pub task: String,
    pub local_shots: usize,
    pub memory_shots: usize,
    pub seeds: usize,
    pub acc_paper_mean: f64,
    pub acc_paper_std: f64,
    pub acc_mean: f64,
    pub acc_std: f64,
    pub acc_norm_mean: f64,
    pub acc_norm_std: f64,
}

/// Evaluates `task` on `learner` (whose memory, if any, is reset per seed and setting).
/// `window` bounds a prompt plus its label; a batch has the bank's `rows`.
pub fn evaluate(
    learner: &mut dyn MethodModel,
    tokenizer: &dyn Tokenizer,
    task: &IclTask,
    icl: &IclSpec,
    window: usize,
    rows: usize,
    device: Device,
) -> anyhow::Result<(Vec<IclRow>, Vec<IclSummary>)> {
    let memory_shots = memory_shots(learner, icl);
    let most_local = icl.local_shots.iter().copied().max().unwrap_or(0);
    let most_memory = memory_shots.iter().copied().max().unwrap_or(0);
    let mut results = Vec::new();
    for s in 0..icl.seeds {
        let (demos, tests) = task.sample(s, most_local + most_memory)?;
        for &m in &memory_shots {
            for &n in &icl.local_shots {
                // The same local demonstrations whatever the memory holds; memory takes
                // demonstrations the prompt does not show.
                let local = &demos[..n];
                let memory = &demos[most_local..most_local + m];
                let (written, kept) = fill_memory(learner, tokenizer, task, memory, window, rows, device);
                let queries = score_queries(learner, tokenizer, task, local, &tests, window, rows, device)
                    .with_context(|| format!("icl.local_shots = {n}"))?;
                let scores = accuracies(&queries, &tests, task, tokenizer)?;
                results.push(IclRow {
                    task: task.name.clone(),
                    seed: s,
                    local_shots: n,
                    memory_shots: m,
                    memory_tokens_written: written,
                    memory_tokens_kept: kept,
                    examples: tests.len(),
                    acc_paper: scores.0,
                    acc: scores.1,
                    acc_norm: scores.2,
                });
            }
        }
    }
    let summaries = summarize(&results, &memory_shots, &icl.local_shots, &task.name);
    Ok((results, summaries))
}

/// The memory settings evaluated: `icl.memory_shots`, or for a model without memory one
/// setting, none.
pub(crate) fn memory_shots(learner: &dyn MethodModel, icl: &IclSpec) -> Vec<usize> {
    match learner.bank() {
        Some(_) => icl.memory_shots.clone(),
        None => vec![0],
    }
}

/// Mean and standard deviation over seeds of `rows` at each (memory, local) setting.
pub(crate) fn summarize(rows: &[IclRow], memory_shots: &[usize], local_shots: &[usize], task: &str) -> Vec<IclSummary> {
    let mut summaries = Vec::new();
    for &m in memory_shots {
        for &n in local_shots {
            let group: Vec<&IclRow> = rows
                .iter()
                .filter(|r| r.local_shots == n && r.memory_shots == m)
                .collect();
            let stat = |f: fn(&IclRow) -> f64| mean_std(&group.iter().map(|r| f(r)).collect::<Vec<_>>());
            let (paper, paper_std) = stat(|r| r.acc_paper);
            let (acc, acc_std) = stat(|r| r.acc);
            let (norm, norm_std) = stat(|r| r.acc_norm);
            summaries.push(IclSummary {
                task: task.to_string(),
                local_shots: n,
                memory_shots: m,
                seeds: group.len(),
                acc_paper_mean: paper,
                acc_paper_std: paper_std,
                acc_mean: acc,
                acc_std,
                acc_norm_mean: norm,
                acc_norm_std: norm_std,
            });
        }
    }
    summaries
}

/// Resets the memory and writes `demos` to it in windows, the same text in every row.
/// Returns the tokens written and the tokens memory can retrieve afterwards.
fn fill_memory(
    learner: &mut dyn MethodModel,
    tokenizer: &dyn Tokenizer,
    task: &IclTask,
    demos: &[Example],
    window: usize,
    rows: usize,
    device: Device,
) -> (usize, usize) {
    let tokens: Vec<u32> = demos
        .iter()
        .flat_map(|ex| tokenizer.encode(&task.template.demonstration(&ex.text, &ex.label)))
        .collect();
    crate::eval::score::write_memory(learner, &tokens, window, false, rows, device)
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
