//! Suffix-identification examples (ChapterBreak, Sun et al. 2022; the LongMem paper's
//! Table 2): a long context, then candidate continuations of which one is true.
//!
//! - [`read_chapterbreak`] reads the ChapterBreak JSON as distributed:
//!   `{"pg19" | "ao3": {book_id: [{"ctx": …, "pos": …, "negs": [… 5 …]}]}}`. Context and
//!   candidates are tokenised separately; each candidate follows the context directly.
//! - [`builtin_examples`] is the built-in analogue: in a generated document, a span of
//!   answer tokens whose evidence lies beyond the local window is the true continuation of
//!   the document before it; the distractors are other answer spans of the same length from
//!   the same document whose evidence the context also holds beyond the window; no
//!   candidate occurs in the window, and each occurs in the context as often as the true
//!   one, so that only reading the evidence of this span (not recognising text seen
//!   recently or often) tells them apart.

use super::stream::Document;
use crate::tokenizer::Tokenizer;
use rand::seq::{IteratorRandom, SliceRandom};
use rand::Rng;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One example: the true continuation is `candidates[gold]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuffixExample {
    /// `pg19`, `ao3` (a file's sources) or `builtin`.
    pub source: String,
    pub context: Vec<u32>,
    pub candidates: Vec<Vec<u32>>,
    pub gold: usize,
    /// Tokens from the evidence to the end of the context (built in only).
    pub distance: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChapterBreakError {
    #[error("cannot read the ChapterBreak file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "{path} is not ChapterBreak JSON ({{\"pg19\"|\"ao3\": {{book_id: [{{\"ctx\", \"pos\", \"negs\"}}]}}}}): {message}"
    )]
    Format { path: PathBuf, message: String },
    #[error("{path} has no source `{source_name}` (chapterbreak.sources); it has {available:?}")]
    NoSource {
        path: PathBuf,
        source_name: String,
        available: Vec<String>,
    },
    #[error("{path}: {source_name} book {book} example {index} has no negative continuations (`negs` is empty)")]
    NoNegatives {
        path: PathBuf,
        source_name: String,
        book: String,
        index: usize,
    },
}

/// One example as the file has it (other fields are ignored).
#[derive(Debug, Deserialize)]
struct RawExample {
    ctx: String,
    pos: String,
    negs: Vec<String>,
}

/// What to read from a ChapterBreak file.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions<'a> {
    /// Sources to read, in this order (default: every source, sorted).
    pub sources: Option<&'a [String]>,
    /// The first this many examples of each source (books in sorted order).
    pub examples: Option<usize>,
    /// Contexts cut to their last this many tokens.
    pub context_tokens: Option<usize>,
    /// Candidates cut to their first this many tokens.
    pub candidate_tokens: usize,
}

/// Reads and tokenises the examples of a ChapterBreak JSON file; the true suffix is
/// candidate 0, the negatives follow in the file's order.
pub fn read_chapterbreak(
    path: &Path,
    tokenizer: &dyn Tokenizer,
    options: ReadOptions,
) -> Result<Vec<SuffixExample>, ChapterBreakError> {
    let text = std::fs::read_to_string(path).map_err(|source| ChapterBreakError::Read {
        path: path.into(),
        source,
    })?;
    let file: BTreeMap<String, BTreeMap<String, Vec<RawExample>>> =
        serde_json::from_str(&text).map_err(|e| ChapterBreakError::Format {
            path: path.into(),
            message: e.to_string(),
        })?;
    let names: Vec<String> = match options.sources {
        Some(names) => names.to_vec(),
        None => file.keys().cloned().collect(),
    };
    let mut examples = Vec::new();
    for name in names {
        let books = file.get(&name).ok_or_else(|| ChapterBreakError::NoSource {
            path: path.into(),
            source_name: name.clone(),
            available: file.keys().cloned().collect(),
        })?;
        let all = books
            .iter()
            .flat_map(|(book, list)| list.iter().enumerate().map(move |(i, ex)| (book, i, ex)));
        for (book, index, ex) in all.take(options.examples.unwrap_or(usize::MAX)) {
            if ex.negs.is_empty() {
                return Err(ChapterBreakError::NoNegatives {
                    path: path.into(),
                    source_name: name.clone(),
                    book: book.clone(),
                    index,
                });
            }
            let mut context = tokenizer.encode(&ex.ctx);
            if let Some(keep) = options.context_tokens {
                context.drain(..context.len().saturating_sub(keep));
            }
            let candidate = |text: &str| {
                let mut ids = tokenizer.encode(text);
                ids.truncate(options.candidate_tokens);
                ids
            };
            let candidates = std::iter::once(&ex.pos).chain(&ex.negs).map(|t| candidate(t)).collect();
            examples.push(SuffixExample {
                source: name.clone(),
                context,
                candidates,
                gold: 0,
                distance: None,
            });
        }
    }
    Ok(examples)
}

/// A run of consecutive answer tokens: where its first token's evidence is, and where the
/// evidence of all its tokens ends.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
    evidence: usize,
    evidence_end: usize,
}

/// Maximal runs of consecutive answer positions.
fn answer_spans(doc: &Document) -> Vec<Span> {
    let mut answers = doc.answers.clone();
    answers.sort_by_key(|a| a.position);
    let mut spans: Vec<Span> = Vec::new();
    for a in answers {
        match spans.last_mut() {
            Some(s) if s.start + s.len == a.position => {
                s.len += 1;
                s.evidence_end = s.evidence_end.max(a.source + 1);
            }
            _ => spans.push(Span {
                start: a.position,
                len: 1,
                evidence: a.source,
                evidence_end: a.source + 1,
            }),
        }
    }
    spans
}

/// The built-in examples of one document for a local window of `window` tokens: every
/// answer span whose evidence lies wholly before the context's last tokens that share the window
/// with it (`local = window + 1 − span length`, as the scoring keeps) and that has
/// `candidates − 1` distinct same-length distractors, drawn with `rng`, the true one at a
/// random place. A distractor is another answer span whose evidence also lies beyond those
/// last `local` tokens. No candidate's tokens occur in that local part (examples whose
/// truth does are skipped, distractors that do are not drawn), so recency cannot tell the
/// true one; and every candidate occurs in the context as often as the truth does (in the
/// recall corpus once, at its fact: a value already queried occurs twice and is not
/// drawn), so frequency cannot either.
pub fn builtin_examples(doc: &Document, window: usize, candidates: usize, rng: &mut impl Rng) -> Vec<SuffixExample> {
    let spans = answer_spans(doc);
    let tokens = |s: &Span| doc.tokens[s.start..s.start + s.len].to_vec();
    let mut examples = Vec::new();
    for span in spans.iter().filter(|s| s.len <= window) {
        let local = window + 1 - span.len;
        let Some(far_end) = span.start.checked_sub(local) else {
            continue;
        };
        if span.evidence_end > far_end {
            continue;
        }
        let truth = tokens(span);
        let (context, recent) = (&doc.tokens[..span.start], &doc.tokens[far_end..span.start]);
        if occurs(&truth, recent) {
            continue;
        }
        let seen = occurrences(&truth, context);
        let mut others: Vec<Vec<u32>> = Vec::new();
        for s in spans.iter().filter(|s| s.len == span.len && s.evidence_end <= far_end) {
            let t = tokens(s);
            let fair = !occurs(&t, recent) && occurrences(&t, context) == seen;
            if t != truth && fair && !others.contains(&t) {
                others.push(t);
            }
        }
        if others.len() + 1 < candidates {
            continue;
        }
        let mut chosen: Vec<Vec<u32>> = others.into_iter().choose_multiple(rng, candidates - 1);
        chosen.shuffle(rng);
        let gold = rng.random_range(0..candidates);
        chosen.insert(gold, truth);
        examples.push(SuffixExample {
            source: "builtin".into(),
            context: doc.tokens[..span.start].to_vec(),
            candidates: chosen,
            gold,
            distance: Some(span.start - span.evidence),
        });
    }
    examples
}

/// Whether `needle` occurs as a contiguous run in `hay`.
fn occurs(needle: &[u32], hay: &[u32]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// How often `needle` occurs as a contiguous run in `hay`.
fn occurrences(needle: &[u32], hay: &[u32]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

#[cfg(test)]
mod tests;
