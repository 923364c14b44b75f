//! The result files an evaluation writes into its run directory, one type per file, which
//! `longmem eval` writes and `longmem report` reads back, so the two cannot drift apart:
//! [`EvalResult`] is `eval*.json` (the long-text evaluation), [`IclResult`] is `icl*.json`
//! (in-context learning), [`SuffixResult`] is `chapterbreak*.json` (suffix identification). The file names are [`super::result_file_name`]'s.

use super::cost::CostReport;
use super::icl::{IclRow, IclSummary};
use super::perplexity::NllTotals;
use crate::config::{ChapterBreakSpec, IclSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `eval.json` (or `eval-window<N>.json`, `eval-nomemory.json`, `eval-M…-c…-k….json`): the
/// long-text evaluation of one trained run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub method: String,
    /// Local window the evaluation ran with ("far" is always relative to the spec's).
    pub window: usize,
    /// Memory gates closed (the no-memory ablation).
    pub memory_gates_closed: bool,
    /// The retrieval bound the evaluation ran with; absent for exact retrieval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<crate::memory::Retrieval>,
    /// Held-out documents per batch row: as asked (generators), or the most any row reads
    /// (corpora, whose first `documents` held-out documents are read, each once).
    pub documents_per_row: u64,
    /// The summed NLLs and counts every metric is computed from.
    pub totals: NllTotals,
    /// `totals.perplexity()`, for readers of the file.
    #[serde(deserialize_with = "super::json::nan_if_null")]
    pub perplexity: f64,
    /// `totals.far_mean()`: NaN (`null` in the file) without far answers.
    #[serde(deserialize_with = "super::json::nan_if_null")]
    pub far_nll: f64,
    /// `totals.near_mean()`: NaN (`null` in the file) without near answers.
    #[serde(deserialize_with = "super::json::nan_if_null")]
    pub near_nll: f64,
    /// `totals.hit_rate_any_head()`, for memory methods.
    pub far_hit_rate_any_head: Option<f64>,
    pub cost: CostReport,
    /// σ(g_h) per head of the memory layer's gate, for memory methods.
    pub memory_gates: Option<Vec<f64>>,
    /// The memory the evaluation ran with, for memory methods.
    pub memory: Option<MemorySettings>,
}

/// `icl.json` (`icl-nomemory.json` with the gates closed): in-context learning with
/// demonstrations in the prompt and in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IclResult {
    pub method: String,
    pub memory_gates_closed: bool,
    /// Local window: a prompt plus its label fits in it.
    pub window: usize,
    /// The spec's `[icl]` section the evaluation ran.
    pub settings: IclSpec,
    /// The memory the evaluation ran with, for memory methods.
    pub memory: Option<MemorySettings>,
    /// Mean and standard deviation over seeds, per (local, memory) setting.
    pub summary: Vec<IclSummary>,
    /// One row per seed and setting.
    pub rows: Vec<IclRow>,
}

/// `chapterbreak.json`: suffix identification, per source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuffixResult {
    pub method: String,
    pub memory_gates_closed: bool,
    /// Local window: the context's last tokens and a candidate fit in it.
    pub window: usize,
    /// The spec's `[chapterbreak]` section the evaluation ran.
    pub settings: ChapterBreakSpec,
    /// The memory the evaluation ran with, for memory methods.
    pub memory: Option<MemorySettings>,
    pub sources: Vec<SourceAccuracy>,
}

/// Suffix-identification accuracy on one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceAccuracy {
    pub source: String,
    pub examples: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// 1 / candidates, averaged over examples.
    pub chance: f64,
    /// Context tokens per example, mean.
    pub mean_context_tokens: f64,
    /// Tokens from the evidence to the end of the context, mean (built in only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_distance: Option<f64>,
}

impl SuffixResult {
    /// Reads a `chapterbreak*.json`.
    pub fn read(path: &Path) -> Result<Self, ResultError> {
        read_json(path)
    }

    /// Writes it as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), ResultError> {
        write_json(path, self)
    }
}

/// Memory size M, chunk size c and retrieved tokens K (evaluation-time settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySettings {
    pub size: i64,
    pub chunk: i64,
    pub top_k: i64,
}

/// A result file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl EvalResult {
    /// Reads an `eval*.json`.
    pub fn read(path: &Path) -> Result<Self, ResultError> {
        read_json(path)
    }

    /// Writes it as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), ResultError> {
        write_json(path, self)
    }
}

impl IclResult {
    /// Reads an `icl*.json`.
    pub fn read(path: &Path) -> Result<Self, ResultError> {
        read_json(path)
    }

    /// Writes it as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), ResultError> {
        write_json(path, self)
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ResultError> {
    let text = std::fs::read_to_string(path).map_err(|source| ResultError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ResultError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ResultError> {
    crate::fsutil::write_json_atomic(path, value).map_err(|source| ResultError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files written before the result types were shared (by `longmem eval` at commit
    /// 7d5551d): a memory method's `eval-M…` file, a corpus's plain `eval.json` (no near or
    /// far answers: `null` means), and a memory method's `icl.json`.
    const EVAL_MEMORY: &str = include_str!("../../tests/fixtures/results/eval-M16-c4-k8.json");
    const EVAL_PLAIN_CORPUS: &str = include_str!("../../tests/fixtures/results/eval-plain-corpus.json");
    const ICL: &str = include_str!("../../tests/fixtures/results/icl.json");

    #[test]
    fn committed_eval_files_read_back_and_write_out_unchanged() {
        for text in [EVAL_MEMORY, EVAL_PLAIN_CORPUS] {
            let result: EvalResult = serde_json::from_str(text).unwrap();
            // Byte for byte: the same field names, order, layout and numbers.
            assert_eq!(serde_json::to_string_pretty(&result).unwrap() + "\n", text);
        }
        let memory: EvalResult = serde_json::from_str(EVAL_MEMORY).unwrap();
        assert_eq!(
            memory.memory,
            Some(MemorySettings {
                size: 16,
                chunk: 4,
                top_k: 8
            })
        );
        assert_eq!(memory.totals.by_length.len(), 1);
        assert_eq!(memory.cost.latency_us_per_position.len(), 5);
        let corpus: EvalResult = serde_json::from_str(EVAL_PLAIN_CORPUS).unwrap();
        assert!(corpus.far_nll.is_nan() && corpus.near_nll.is_nan());
        assert_eq!((corpus.memory, corpus.far_hit_rate_any_head), (None, None));
    }

    #[test]
    fn a_committed_icl_file_reads_back_and_writes_out_unchanged() {
        let result: IclResult = serde_json::from_str(ICL).unwrap();
        let written = serde_json::to_string_pretty(&result).unwrap() + "\n";
        assert_eq!(written, ICL);
        assert_eq!(result.rows.len(), 4);
        assert_eq!(result.settings.memory_shots, vec![0, 8]);
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let err = EvalResult::read(Path::new("/no/such/eval.json")).unwrap_err();
        assert_eq!(err.to_string(), "reading /no/such/eval.json");
    }
}
