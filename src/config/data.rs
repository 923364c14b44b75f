//! The `[data]` section of a spec: where a run's documents come from. [`RawDataSpec`] is the
//! section as written (each kind's keys with their defaults; any other key is an error), and
//! [`DataSpec`] the validated form, with its paths made absolute.

use super::resolver::{Resolver, SpecError};
use crate::data::classify::DemoCorpusConfig;
use crate::data::loaders::LengthFilter;
use crate::data::parquet::parquet_shards;
use crate::data::text_tasks::InsertConfig;
use crate::data::{NeedleConfig, RecallConfig, VariablesConfig};
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
    pub fn cargo_min_bytes() -> usize {
        20_000
    }
    pub fn holdout() -> f64 {
        0.1
    }
}

/// The `[data]` section as a file writes it. Serde's `flatten` would switch
/// `deny_unknown_fields` off, so every corpus kind lists the keys they share itself; a
/// misspelt key is an error naming it and the keys its kind allows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawDataSpec {
    Recall(RecallConfig),
    Needle(NeedleConfig),
    Variables(VariablesConfig),
    Demos(DemoCorpusConfig),
    TextDir {
        path: PathBuf,
        #[serde(default = "defaults::glob")]
        glob: String,
        #[serde(default)]
        min_bytes: usize,
        max_bytes: Option<usize>,
        /// Default: the tokenizer of `backbone.weights` when that is a model directory
        /// with a `tokenizer.json`, else GPT-2's.
        tokenizer: Option<TokenizerKind>,
        #[serde(default = "defaults::holdout")]
        holdout: f64,
        /// A text task whose sentences go into the corpus's text (RULER's needle and
        /// variable-tracking templates; data/text_tasks.rs).
        insert: Option<InsertConfig>,
    },
    Jsonl {
        path: PathBuf,
        #[serde(default = "defaults::field")]
        field: String,
        #[serde(default)]
        min_bytes: usize,
        max_bytes: Option<usize>,
        /// Default: the tokenizer of `backbone.weights` when that is a model directory
        /// with a `tokenizer.json`, else GPT-2's.
        tokenizer: Option<TokenizerKind>,
        #[serde(default = "defaults::holdout")]
        holdout: f64,
        /// A text task whose sentences go into the corpus's text (RULER's needle and
        /// variable-tracking templates; data/text_tasks.rs).
        insert: Option<InsertConfig>,
    },
    Parquet {
        path: PathBuf,
        #[serde(default = "defaults::field")]
        text_column: String,
        id_column: Option<String>,
        #[serde(default)]
        min_bytes: usize,
        max_bytes: Option<usize>,
        /// Default: the tokenizer of `backbone.weights` when that is a model directory
        /// with a `tokenizer.json`, else GPT-2's.
        tokenizer: Option<TokenizerKind>,
        #[serde(default = "defaults::holdout")]
        holdout: f64,
        /// A text task whose sentences go into the corpus's text (data/text_tasks.rs).
        insert: Option<InsertConfig>,
    },
    Cargo {
        lock: Option<PathBuf>,
        #[serde(default = "defaults::cargo_min_bytes")]
        min_bytes: usize,
        max_bytes: Option<usize>,
        /// Default: the tokenizer of `backbone.weights` when that is a model directory
        /// with a `tokenizer.json`, else GPT-2's.
        tokenizer: Option<TokenizerKind>,
        #[serde(default = "defaults::holdout")]
        holdout: f64,
        /// A text task whose sentences go into the corpus's text (RULER's needle and
        /// variable-tracking templates; data/text_tasks.rs).
        insert: Option<InsertConfig>,
    },
}

/// Where a run's documents come from, validated; paths are absolute. Its JSON is part of
/// every run id, so keys added since are left out where unset and existing specs keep
/// their ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataSpec {
    /// The built-in long-range recall corpus (its own vocabulary, no tokenizer).
    Recall(RecallConfig),
    /// The built-in multi-key needle-in-a-haystack corpus (its own vocabulary, no tokenizer).
    Needle(NeedleConfig),
    /// The built-in variable-tracking corpus (its own vocabulary, no tokenizer).
    Variables(VariablesConfig),
    /// The built-in classification tasks' demonstrations, one task per document, in their
    /// own word vocabulary (for in-context learning).
    Demos(DemoCorpusConfig),
    /// A directory of plain-text documents, one per file.
    TextDir {
        path: PathBuf,
        glob: String,
        /// Leave out documents of fewer bytes (0: keep all).
        #[serde(default, skip_serializing_if = "is_zero")]
        min_bytes: usize,
        /// Leave out documents of more bytes (bounds evaluation time).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_bytes: Option<usize>,
        #[serde(flatten)]
        corpus: CorpusOptions,
    },
    /// A JSONL file, one document per line under `field`.
    Jsonl {
        path: PathBuf,
        field: String,
        /// Leave out documents of fewer bytes (0: keep all).
        #[serde(default, skip_serializing_if = "is_zero")]
        min_bytes: usize,
        /// Leave out documents of more bytes (bounds evaluation time).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_bytes: Option<usize>,
        #[serde(flatten)]
        corpus: CorpusOptions,
    },
    /// Parquet shards with a text column (the Hugging Face datasets layout, e.g. PG-19): a
    /// file, a directory (every `*.parquet` below it) or a glob; one document per row.
    Parquet {
        path: PathBuf,
        text_column: String,
        /// Ids (and so the held-out split's order) from this column; default `<shard>:<row>`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id_column: Option<String>,
        #[serde(default, skip_serializing_if = "is_zero")]
        min_bytes: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_bytes: Option<usize>,
        #[serde(flatten)]
        corpus: CorpusOptions,
    },
    /// The sources of the crates pinned in a Cargo.lock (default: this project's).
    Cargo {
        lock: Option<PathBuf>,
        /// Leave out crates with less source than this.
        min_bytes: usize,
        /// Leave out crates with more source than this (bounds evaluation time).
        max_bytes: Option<usize>,
        #[serde(flatten)]
        corpus: CorpusOptions,
    },
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Settings every text corpus shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusOptions {
    pub tokenizer: TokenizerKind,
    /// Fraction of documents (the last ones in id order) held out for evaluation.
    pub holdout: f64,
    /// The text task inserted into the documents, if any; then a document is `doc_tokens`
    /// of the split's text with the task's sentences in it. Left out of the JSON (and so of
    /// run ids) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert: Option<InsertConfig>,
}

impl DataSpec {
    /// Token vocabulary of the data.
    pub fn vocab_size(&self) -> i64 {
        match self {
            DataSpec::Recall(r) => r.vocab_size(),
            DataSpec::Needle(n) => n.vocab_size(),
            DataSpec::Variables(v) => v.vocab_size(),
            DataSpec::Demos(d) => d.vocab().vocab_size() as i64,
            // A model's tokenizer that is not on this machine (planning elsewhere) has no
            // known vocabulary: 0, so that nothing is checked against it.
            corpus => corpus
                .corpus()
                .expect("the other kinds are corpora")
                .tokenizer
                .load()
                .map_or(0, |t| t.vocab_size() as i64),
        }
    }

    /// The settings of a text corpus; `None` for the generators.
    pub fn corpus(&self) -> Option<&CorpusOptions> {
        match self {
            DataSpec::TextDir { corpus, .. }
            | DataSpec::Jsonl { corpus, .. }
            | DataSpec::Parquet { corpus, .. }
            | DataSpec::Cargo { corpus, .. } => Some(corpus),
            DataSpec::Recall(_) | DataSpec::Needle(_) | DataSpec::Variables(_) | DataSpec::Demos(_) => None,
        }
    }

    /// [`DataSpec::corpus`], to change.
    pub fn corpus_mut(&mut self) -> Option<&mut CorpusOptions> {
        match self {
            DataSpec::TextDir { corpus, .. }
            | DataSpec::Jsonl { corpus, .. }
            | DataSpec::Parquet { corpus, .. }
            | DataSpec::Cargo { corpus, .. } => Some(corpus),
            DataSpec::Recall(_) | DataSpec::Needle(_) | DataSpec::Variables(_) | DataSpec::Demos(_) => None,
        }
    }

    /// Whether documents are generated (the built-in generators, and a text task inserted
    /// into a corpus): they depend on the seed and the rows, and never run out.
    pub fn is_generated(&self) -> bool {
        self.corpus().is_none_or(|c| c.insert.is_some())
    }

    /// Whether its documents mark answers whose evidence lies earlier, as the built-in
    /// ChapterBreak analogue needs: the generated ones but the `demos` tasks.
    pub fn has_answers(&self) -> bool {
        self.is_generated() && !matches!(self, DataSpec::Demos(_))
    }

    /// The tokenizer of text data; `None` for the recall, needle and variables corpora
    /// (token ids, no text).
    pub fn tokenizer(&self) -> Option<Box<dyn Tokenizer>> {
        match self {
            DataSpec::Recall(_) | DataSpec::Needle(_) | DataSpec::Variables(_) => None,
            DataSpec::Demos(d) => Some(Box::new(d.vocab())),
            corpus => corpus.corpus().map(|c| c.tokenizer.build()),
        }
    }

    /// The tokenizer setting of a text corpus; `None` for the generators.
    pub fn tokenizer_kind(&self) -> Option<&TokenizerKind> {
        self.corpus().map(|c| &c.tokenizer)
    }

    /// The length limits of a corpus's documents; `None` for the generators.
    pub fn length_filter(&self) -> Option<LengthFilter> {
        match *self {
            DataSpec::Recall(_) | DataSpec::Needle(_) | DataSpec::Variables(_) | DataSpec::Demos(_) => None,
            DataSpec::TextDir {
                min_bytes, max_bytes, ..
            }
            | DataSpec::Jsonl {
                min_bytes, max_bytes, ..
            }
            | DataSpec::Parquet {
                min_bytes, max_bytes, ..
            }
            | DataSpec::Cargo {
                min_bytes, max_bytes, ..
            } => Some(LengthFilter { min_bytes, max_bytes }),
        }
    }
}

/// The invalid-key error of the spec being resolved: key, value given, what is allowed.
type Invalid<'a> = &'a dyn Fn(&str, &dyn std::fmt::Display, &str) -> SpecError;

/// A corpus's tokenizer from the one its section gives, if any.
type TokenizerOf<'a> = &'a dyn Fn(Option<TokenizerKind>) -> Result<TokenizerKind, SpecError>;

/// Validates the data section and makes its paths absolute. `model_dir` is the backbone's
/// Hugging Face model directory, whose `tokenizer.json` text corpora default to.
pub(super) fn resolve_data(data: RawDataSpec, model_dir: Option<&Path>, r: &Resolver) -> Result<DataSpec, SpecError> {
    let (base, check_paths) = (r.base(), r.check_paths());
    let invalid: Invalid = &|key: &str, value: &dyn std::fmt::Display, allowed: &str| r.invalid(key, value, allowed);
    Ok(match data {
        RawDataSpec::Recall(r) => {
            r.validate()
                .map_err(|e| invalid(&format!("data.{}", e.key), &e.value, e.allowed))?;
            DataSpec::Recall(r)
        }
        RawDataSpec::Needle(n) => {
            n.validate()
                .map_err(|e| invalid(&format!("data.{}", e.key), &e.value, &e.allowed))?;
            DataSpec::Needle(n)
        }
        RawDataSpec::Variables(v) => {
            v.validate()
                .map_err(|e| invalid(&format!("data.{}", e.key), &e.value, &e.allowed))?;
            DataSpec::Variables(v)
        }
        RawDataSpec::Demos(d) => {
            d.validate()
                .map_err(|e| invalid(&format!("data.{}", e.key), &e.value, &e.allowed))?;
            DataSpec::Demos(d)
        }
        corpus => {
            let model_tokenizer = model_dir
                .filter(|dir| dir.join("tokenizer.json").is_file() || !dir.exists())
                .map(|dir| TokenizerKind::Hf(dir.to_path_buf()));
            let tokenizer_of = |given| corpus_tokenizer(given, base, check_paths, model_tokenizer.clone(), invalid);
            resolve_corpus(corpus, base, check_paths, &tokenizer_of, invalid)?
        }
    })
}

/// What resolving a corpus kind needs: where paths are relative to, whether they must
/// exist, the tokenizer choice and the error constructor.
struct CorpusContext<'a> {
    base: &'a Path,
    check_paths: bool,
    tokenizer_of: TokenizerOf<'a>,
    invalid: Invalid<'a>,
}

impl CorpusContext<'_> {
    fn options(
        &self,
        tokenizer: Option<TokenizerKind>,
        holdout: f64,
        insert: Option<InsertConfig>,
        lengths: (usize, Option<usize>),
    ) -> Result<CorpusOptions, SpecError> {
        corpus_options((self.tokenizer_of)(tokenizer)?, holdout, insert, lengths, self.invalid)
    }

    /// `path` where it is found (`ok`) or paths are not checked, else the error for `key`.
    fn found(&self, key: &str, path: PathBuf, ok: bool, allowed: &str) -> Result<PathBuf, SpecError> {
        match self.check_paths && !ok {
            true => Err((self.invalid)(key, &path.display(), allowed)),
            false => Ok(path),
        }
    }
}

/// [`resolve_data`] for the corpus kinds: their shared settings checked, their file found.
fn resolve_corpus(
    data: RawDataSpec,
    base: &Path,
    check_paths: bool,
    tokenizer_of: TokenizerOf,
    invalid: Invalid,
) -> Result<DataSpec, SpecError> {
    let cx = CorpusContext {
        base,
        check_paths,
        tokenizer_of,
        invalid,
    };
    Ok(match data {
        RawDataSpec::TextDir {
            path,
            glob,
            min_bytes,
            max_bytes,
            tokenizer,
            holdout,
            insert,
        } => {
            let corpus = cx.options(tokenizer, holdout, insert, (min_bytes, max_bytes))?;
            let path = resolve_path(base, &path);
            let path = cx.found(
                "data.path",
                path.clone(),
                path.is_dir(),
                "an existing directory of text documents",
            )?;
            DataSpec::TextDir {
                path,
                glob,
                min_bytes,
                max_bytes,
                corpus,
            }
        }
        RawDataSpec::Jsonl {
            path,
            field,
            min_bytes,
            max_bytes,
            tokenizer,
            holdout,
            insert,
        } => {
            let corpus = cx.options(tokenizer, holdout, insert, (min_bytes, max_bytes))?;
            let path = resolve_path(base, &path);
            let path = cx.found("data.path", path.clone(), path.is_file(), "an existing JSONL file")?;
            DataSpec::Jsonl {
                path,
                field,
                min_bytes,
                max_bytes,
                corpus,
            }
        }
        other => resolve_shards_or_crates(other, &cx)?,
    })
}

/// [`resolve_corpus`] for Parquet shards and the cargo corpus.
fn resolve_shards_or_crates(data: RawDataSpec, cx: &CorpusContext) -> Result<DataSpec, SpecError> {
    let (base, check_paths) = (cx.base, cx.check_paths);
    Ok(match data {
        RawDataSpec::Parquet {
            path,
            text_column,
            id_column,
            min_bytes,
            max_bytes,
            tokenizer,
            holdout,
            insert,
        } => {
            let corpus = cx.options(tokenizer, holdout, insert, (min_bytes, max_bytes))?;
            let path = resolve_path(base, &path);
            let problem = match check_paths {
                true => parquet_shards(&path).err().map(|e| e.to_string()),
                false => None,
            };
            let allowed = format!(
                "a Parquet file, a directory of them or a glob matching some ({})",
                problem.as_deref().unwrap_or_default()
            );
            let path = cx.found("data.path", path, problem.is_none(), &allowed)?;
            DataSpec::Parquet {
                path,
                text_column,
                id_column,
                min_bytes,
                max_bytes,
                corpus,
            }
        }
        RawDataSpec::Cargo {
            lock,
            min_bytes,
            max_bytes,
            tokenizer,
            holdout,
            insert,
        } => {
            let corpus = cx.options(tokenizer, holdout, insert, (min_bytes, max_bytes))?;
            let lock = lock.map_or_else(
                || Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"),
                |l| resolve_path(base, &l),
            );
            let lock = cx.found("data.lock", lock.clone(), lock.is_file(), "an existing Cargo.lock")?;
            DataSpec::Cargo {
                lock: Some(lock),
                min_bytes,
                max_bytes,
                corpus,
            }
        }
        _generator => unreachable!("generators are no corpus"),
    })
}

/// A corpus's tokenizer: the one given (made absolute), else the model directory's, else
/// GPT-2's; a Hugging Face one must load when paths are checked.
fn corpus_tokenizer(
    given: Option<TokenizerKind>,
    base: &Path,
    check_paths: bool,
    model_tokenizer: Option<TokenizerKind>,
    invalid: Invalid,
) -> Result<TokenizerKind, SpecError> {
    let tokenizer = given
        .map(|t| t.resolved(base))
        .or(model_tokenizer)
        .unwrap_or(TokenizerKind::Gpt2);
    if let (TokenizerKind::Hf(path) | TokenizerKind::FairseqDict(path), true) = (&tokenizer, check_paths) {
        if let Err(e) = tokenizer.load() {
            return Err(invalid("data.tokenizer", &path.display(), &e.to_string()));
        }
    }
    Ok(tokenizer)
}

/// Validates the settings every corpus kind shares: the held-out fraction, the inserted
/// task and the length limits.
fn corpus_options(
    tokenizer: TokenizerKind,
    holdout: f64,
    insert: Option<InsertConfig>,
    (min_bytes, max_bytes): (usize, Option<usize>),
    invalid: Invalid,
) -> Result<CorpusOptions, SpecError> {
    if let Some(e) = insert.as_ref().and_then(|i| i.validate().err()) {
        return Err(invalid(&format!("data.insert.{}", e.key), &e.value, &e.allowed));
    }
    if !(0.0..1.0).contains(&holdout) {
        return Err(invalid("data.holdout", &holdout, "a fraction in [0, 1)"));
    }
    if let Some(max) = max_bytes.filter(|&max| max < min_bytes) {
        return Err(invalid(
            "data.max_bytes",
            &max,
            &format!("at least data.min_bytes = {min_bytes}"),
        ));
    }
    Ok(CorpusOptions {
        tokenizer,
        holdout,
        insert,
    })
}
