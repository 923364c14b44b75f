//! From a resolved spec's `[data]` section to the document sources and streams a run reads.

use super::{CorpusOptions, DataSpec, Spec};
use crate::data::cargo_corpus::{cargo_home, cargo_sources};
use crate::data::classify::DemoSource;
use crate::data::loaders::{jsonl, text_dir, TextDocument};
use crate::data::parquet::parquet;
use crate::data::text_tasks::InsertSource;
use crate::data::tokenized::{default_cache_dir, tokenize_cached, CorpusSource};
use crate::data::{Document, DocumentSource, NeedleSource, RecallSource, SegmentStream, VariablesSource};
use std::sync::Arc;
use tch::Device;

/// Any of the spec's document sources.
#[derive(Debug, Clone)]
pub enum AnySource {
    Recall(RecallSource),
    Needle(NeedleSource),
    Variables(VariablesSource),
    Demos(DemoSource),
    Corpus(CorpusSource),
    /// A text task inserted into a corpus's text.
    Text(InsertSource),
}

impl DocumentSource for AnySource {
    fn document(&self, row: u64, index: u64) -> Document {
        match self {
            AnySource::Recall(s) => s.document(row, index),
            AnySource::Needle(s) => s.document(row, index),
            AnySource::Variables(s) => s.document(row, index),
            AnySource::Demos(s) => s.document(row, index),
            AnySource::Corpus(s) => s.document(row, index),
            AnySource::Text(s) => s.document(row, index),
        }
    }
    fn vocab_size(&self) -> i64 {
        match self {
            AnySource::Recall(s) => s.vocab_size(),
            AnySource::Needle(s) => s.vocab_size(),
            AnySource::Variables(s) => s.vocab_size(),
            AnySource::Demos(s) => s.vocab_size(),
            AnySource::Corpus(s) => s.vocab_size(),
            AnySource::Text(s) => s.vocab_size(),
        }
    }
    fn exists(&self, row: u64, index: u64) -> bool {
        match self {
            AnySource::Recall(s) => s.exists(row, index),
            AnySource::Needle(s) => s.exists(row, index),
            AnySource::Variables(s) => s.exists(row, index),
            AnySource::Demos(s) => s.exists(row, index),
            AnySource::Corpus(s) => s.exists(row, index),
            AnySource::Text(s) => s.exists(row, index),
        }
    }
}

/// Which part of the data a stream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training documents; generators use the spec's seed, corpora their training part (cycled).
    Train,
    /// Held-out documents; generators use the spec's seed plus the offset, corpora their
    /// held-out part, each document once.
    HeldOut { seed_offset: u64 },
}

/// The document source of `spec` for `split`, with `rows` batch rows.
pub fn source(spec: &Spec, split: Split, rows: usize) -> anyhow::Result<AnySource> {
    // Generators draw held-out documents from another seed.
    let seed = match split {
        Split::Train => spec.seed,
        Split::HeldOut { seed_offset } => spec.seed.wrapping_add(seed_offset),
    };
    let lengths = spec.data.length_filter().unwrap_or_default();
    let (docs, corpus) = match &spec.data {
        DataSpec::Recall(config) => {
            return Ok(AnySource::Recall(RecallSource {
                config: config.clone(),
                seed,
            }));
        }
        DataSpec::Needle(config) => {
            return Ok(AnySource::Needle(NeedleSource {
                config: config.clone(),
                seed,
            }));
        }
        DataSpec::Variables(config) => {
            return Ok(AnySource::Variables(VariablesSource {
                config: config.clone(),
                seed,
            }));
        }
        DataSpec::Demos(config) => return Ok(AnySource::Demos(DemoSource::new(config.clone(), seed))),
        DataSpec::TextDir { path, glob, corpus, .. } => (lengths.keep(text_dir(path, glob)?, path)?, corpus),
        DataSpec::Jsonl {
            path, field, corpus, ..
        } => (lengths.keep(jsonl(path, field)?, path)?, corpus),
        DataSpec::Parquet {
            path,
            text_column,
            id_column,
            corpus,
            ..
        } => (
            lengths.keep(parquet(path, text_column, id_column.as_deref())?, path)?,
            corpus,
        ),
        DataSpec::Cargo { lock, corpus, .. } => {
            let lock = lock.as_ref().expect("resolved specs name the lock file");
            let found = cargo_sources(lock, &cargo_home(), lengths)?;
            tracing::info!(
                documents = found.documents.len(),
                not_unpacked = found.not_unpacked,
                too_short = found.too_short,
                too_long = found.too_long,
                "cargo corpus"
            );
            (found.documents, corpus)
        }
    };
    let part = split_documents(docs, corpus, split)?;
    let tokenized = tokenize_cached(&part, &corpus.tokenizer, &default_cache_dir())?;
    if let Some(insert) = &corpus.insert {
        let tokenizer = Arc::from(corpus.tokenizer.build());
        return Ok(AnySource::Text(InsertSource::new(
            insert.clone(),
            &tokenized,
            tokenizer,
            seed,
        )?));
    }
    Ok(AnySource::Corpus(CorpusSource {
        corpus: Arc::new(tokenized),
        rows: rows as u64,
        cycle: split == Split::Train,
    }))
}

/// The last `holdout` fraction of the documents, in id order, is held out (at least one
/// when the fraction is positive); the rest trains.
fn split_documents(
    mut docs: Vec<TextDocument>,
    corpus: &CorpusOptions,
    split: Split,
) -> anyhow::Result<Vec<TextDocument>> {
    docs.sort_by(|a, b| a.id.cmp(&b.id));
    let held = ((docs.len() as f64 * corpus.holdout).ceil() as usize).min(docs.len());
    let train = docs.len() - held;
    let part: Vec<TextDocument> = match split {
        Split::Train => docs.into_iter().take(train).collect(),
        Split::HeldOut { .. } => docs.into_iter().skip(train).collect(),
    };
    if part.is_empty() {
        let which = if matches!(split, Split::Train) {
            "training"
        } else {
            "held-out"
        };
        anyhow::bail!(
            "the corpus leaves no {which} documents with data.holdout = {}; adjust it",
            corpus.holdout
        );
    }
    Ok(part)
}

/// The training stream: `batch_size` rows over the training documents.
pub fn train_stream(spec: &Spec, device: Device) -> anyhow::Result<SegmentStream<AnySource>> {
    let source = source(spec, Split::Train, spec.batch_size)?;
    Ok(SegmentStream::new(source, spec.batch_size, spec.segment_len, device))
}

/// What an evaluation reads: the held-out source with `rows` batch rows, and how many
/// documents per row to stream. A generator never runs out: `documents` per row (default
/// 8), drawn from the spec's seed plus `seed_offset`; so does a text task inserted into a
/// corpus's held-out text. A corpus: its first `documents`
/// held-out documents in id order (default all), each read once; the count per row is then
/// the most any row has.
pub fn held_out(
    spec: &Spec,
    seed_offset: u64,
    rows: usize,
    documents: Option<u64>,
) -> anyhow::Result<(AnySource, u64)> {
    let source = match (source(spec, Split::HeldOut { seed_offset }, rows)?, documents) {
        (AnySource::Corpus(corpus), Some(n)) => AnySource::Corpus(corpus.first_documents(n)),
        (source, _) => source,
    };
    let per_row = match source {
        AnySource::Corpus(_) => first_missing(&source, rows),
        AnySource::Recall(_)
        | AnySource::Needle(_)
        | AnySource::Variables(_)
        | AnySource::Demos(_)
        | AnySource::Text(_) => documents.unwrap_or(8),
    };
    Ok((source, per_row))
}

/// The number of documents per row after which no row has any (finite sources); a cap.
fn first_missing<S: DocumentSource>(source: &S, rows: usize) -> u64 {
    let mut n = 0u64;
    while (0..rows as u64).any(|row| source.exists(row, n)) && n < 1 << 20 {
        n += 1;
    }
    n
}
