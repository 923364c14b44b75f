//! The `[data]` section of a spec: where a run's documents come from, validated and with
//! its paths made absolute.

use super::resolver::{Resolver, SpecError};
use crate::data::classify::DemoCorpusConfig;
use crate::data::RecallConfig;
use crate::fsutil::resolve_path;
use crate::tokenizer::{Tokenizer, TokenizerKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod defaults {
    pub fn glob() -> String {
        "**/*.txt".into()
    }
    pub fn field() -> String {
        "text".into()
    }
    pub fn min_bytes() -> usize {
        20_000
    }
    pub fn tokenizer() -> crate::tokenizer::TokenizerKind {
        crate::tokenizer::TokenizerKind::Gpt2
    }
    pub fn holdout() -> f64 {
        0.1
    }
}

/// Where a run's documents come from. Paths in a file are relative to the spec file; in a
/// resolved spec they are absolute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataSpec {
    /// The built-in long-range recall corpus (its own vocabulary, no tokenizer).
    Recall(RecallConfig),
    /// The built-in classification tasks' demonstrations, one task per document, in their
    /// own word vocabulary (for in-context learning).
    Demos(DemoCorpusConfig),
    /// A directory of plain-text documents, one per file.
    TextDir {
        path: PathBuf,
        #[serde(default = "defaults::glob")]
        glob: String,
        #[serde(flatten)]
        corpus: CorpusOptions,
    },
    /// A JSONL file, one document per line under `field`.
    Jsonl {
        path: PathBuf,
        #[serde(default = "defaults::field")]
        field: String,
        #[serde(flatten)]
        corpus: CorpusOptions,
    },
    /// The sources of the crates pinned in a Cargo.lock (default: this project's).
    Cargo {
        lock: Option<PathBuf>,
        #[serde(default = "defaults::min_bytes")]
        min_bytes: usize,
        /// Leave out crates with more source than this (bounds evaluation time).
        max_bytes: Option<usize>,
        #[serde(flatten)]
        corpus: CorpusOptions,
    },
}

/// Settings every text corpus shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusOptions {
    #[serde(default = "defaults::tokenizer")]
    pub tokenizer: TokenizerKind,
    /// Fraction of documents (the last ones in id order) held out for evaluation.
    #[serde(default = "defaults::holdout")]
    pub holdout: f64,
}

impl DataSpec {
    /// Token vocabulary of the data.
    pub fn vocab_size(&self) -> i64 {
        match self {
            DataSpec::Recall(r) => r.vocab_size(),
            _ => self.tokenizer().expect("text data has a tokenizer").vocab_size() as i64,
        }
    }

    /// The tokenizer of text data; `None` for the recall corpus (token ids, no text).
    pub fn tokenizer(&self) -> Option<Box<dyn Tokenizer>> {
        match self {
            DataSpec::Recall(_) => None,
            DataSpec::Demos(d) => Some(Box::new(d.vocab())),
            DataSpec::TextDir { corpus, .. } | DataSpec::Jsonl { corpus, .. } | DataSpec::Cargo { corpus, .. } => {
                Some(corpus.tokenizer.build())
            }
        }
    }
}

/// Validates the data section and makes its paths absolute.
pub(super) fn resolve_data(data: DataSpec, r: &Resolver) -> Result<DataSpec, SpecError> {
    let (base, check_paths) = (r.base(), r.check_paths());
    let invalid = |key: &str, value: &dyn std::fmt::Display, allowed: &str| r.invalid(key, value, allowed);
    let holdout = |corpus: &CorpusOptions| {
        if (0.0..1.0).contains(&corpus.holdout) {
            Ok(())
        } else {
            Err(invalid("data.holdout", &corpus.holdout, "a fraction in [0, 1)"))
        }
    };
    Ok(match data {
        DataSpec::Recall(r) => {
            r.validate()
                .map_err(|e| invalid(&format!("data.{}", e.key), &e.value, e.allowed))?;
            DataSpec::Recall(r)
        }
        DataSpec::Demos(d) => {
            d.validate()
                .map_err(|e| invalid(&format!("data.{}", e.key), &e.value, &e.allowed))?;
            DataSpec::Demos(d)
        }
        DataSpec::TextDir { path, glob, corpus } => {
            holdout(&corpus)?;
            let path = resolve_path(base, &path);
            if check_paths && !path.is_dir() {
                return Err(invalid(
                    "data.path",
                    &path.display(),
                    "an existing directory of text documents",
                ));
            }
            DataSpec::TextDir { path, glob, corpus }
        }
        DataSpec::Jsonl { path, field, corpus } => {
            holdout(&corpus)?;
            let path = resolve_path(base, &path);
            if check_paths && !path.is_file() {
                return Err(invalid("data.path", &path.display(), "an existing JSONL file"));
            }
            DataSpec::Jsonl { path, field, corpus }
        }
        DataSpec::Cargo {
            lock,
            min_bytes,
            max_bytes,
            corpus,
        } => {
            holdout(&corpus)?;
            if let Some(max) = max_bytes.filter(|&max| max < min_bytes) {
                return Err(invalid(
                    "data.max_bytes",
                    &max,
                    &format!("at least data.min_bytes = {min_bytes}"),
                ));
            }
            let lock = lock.map_or_else(
                || Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"),
                |l| resolve_path(base, &l),
            );
            if check_paths && !lock.is_file() {
                return Err(invalid("data.lock", &lock.display(), "an existing Cargo.lock"));
            }
            DataSpec::Cargo {
                lock: Some(lock),
                min_bytes,
                max_bytes,
                corpus,
            }
        }
    })
}
