//! The `[chapterbreak]` section: suffix identification (ChapterBreak, the LongMem paper's
//! Table 2), which `longmem eval` runs on the trained model (eval/suffix.rs). A long context
//! streams through memory; each candidate continuation is scored by its log-likelihood.

use super::resolver::{Resolver, SpecError};
use super::DataSpec;
use crate::fsutil::resolve_path;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `[chapterbreak]` section of a spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChapterBreakSpec {
    /// A ChapterBreak JSON file (`{"pg19"|"ao3": {book_id: [{"ctx", "pos", "negs"}]}}`);
    /// absent: the built-in analogue, made from the spec's own generator's held-out
    /// documents (data kinds with answers: recall, needle, variables, `data.insert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The file's sources to score (default: every source it has, e.g. pg19 and ao3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
    /// Examples per source: a file's first this many (default: all); built in, this many
    /// (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<usize>,
    /// A file's contexts are cut to their last this many tokens (default: whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<usize>,
    /// A file's candidates are cut to their first this many tokens.
    #[serde(default = "defaults::candidate_tokens")]
    pub candidate_tokens: usize,
    /// Built in: candidates per example, the true one and same-document distractors
    /// (ChapterBreak has 6: one true suffix and 5 negatives).
    #[serde(default = "defaults::candidates")]
    pub candidates: usize,
}

mod defaults {
    pub fn candidate_tokens() -> usize {
        128
    }
    pub fn candidates() -> usize {
        6
    }
}

/// Built-in examples scored unless `examples` says otherwise.
pub const BUILTIN_EXAMPLES: usize = 200;

/// Validates the section against the data and window, and makes its path absolute.
pub(super) fn resolve_chapterbreak(
    mut cb: ChapterBreakSpec,
    data: &DataSpec,
    window: usize,
    r: &Resolver,
) -> Result<ChapterBreakSpec, SpecError> {
    match cb.file.as_mut() {
        Some(file) => {
            if data.tokenizer_kind().is_none() {
                return Err(r.invalid(
                    "chapterbreak.file",
                    &file.display(),
                    "absent for data.kind = \"recall\", \"needle\" or \"variables\" (token ids without text): \
                     those score the built-in analogue",
                ));
            }
            *file = resolve_path(r.base(), file);
            if r.check_paths() && !file.is_file() {
                return Err(r.invalid(
                    "chapterbreak.file",
                    &file.display(),
                    "an existing ChapterBreak JSON file",
                ));
            }
            if cb.candidate_tokens == 0 || cb.candidate_tokens >= window {
                return Err(r.invalid(
                    "chapterbreak.candidate_tokens",
                    &cb.candidate_tokens,
                    &format!(
                        "1 to {} (fewer than train.segment_len, so context stays in the window)",
                        window - 1
                    ),
                ));
            }
        }
        None if cb.sources.is_some() || cb.context_tokens.is_some() => {
            let key = if cb.sources.is_some() {
                "chapterbreak.sources"
            } else {
                "chapterbreak.context_tokens"
            };
            return Err(r.invalid(
                key,
                &"(set)",
                "absent without chapterbreak.file: it applies to a ChapterBreak file, not the built-in analogue",
            ));
        }
        None if !data.has_answers() => {
            return Err(r.invalid(
                "chapterbreak",
                &"(no file)",
                "a `file` of ChapterBreak JSON, unless the data has answers whose evidence lies earlier \
                 (data.kind = \"recall\", \"needle\", \"variables\", or data.insert)",
            ))
        }
        None => {}
    }
    if cb.candidates < 2 {
        return Err(r.invalid("chapterbreak.candidates", &cb.candidates, "at least 2"));
    }
    if cb.examples == Some(0) {
        return Err(r.invalid("chapterbreak.examples", &0, "at least 1"));
    }
    if cb.context_tokens == Some(0) {
        return Err(r.invalid("chapterbreak.context_tokens", &0, "at least 1"));
    }
    if cb.sources.as_ref().is_some_and(|s| s.is_empty()) {
        return Err(r.invalid("chapterbreak.sources", &"[]", "at least one source, e.g. [\"ao3\"]"));
    }
    Ok(cb)
}
