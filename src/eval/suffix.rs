//! Suffix identification (ChapterBreak): per example, the memory is reset, the context but
//! its last tokens is written to memory window by window (read then write, as in
//! streaming), and each candidate is scored by its summed log-probability after the
//! context's last tokens, memory read but not written. Correct when the true candidate
//! scores highest (ties go to the first). A model without memory sees the last tokens only.

use super::result::SourceAccuracy;
use super::score::{continuation_logp, for_each_read_only, write_memory};
use crate::config::{ChapterBreakSpec, Spec, BUILTIN_EXAMPLES};
use crate::data::chapterbreak::{builtin_examples, read_chapterbreak, ReadOptions, SuffixExample};
use crate::data::DocumentSource;
use crate::methods::MethodModel;
use anyhow::{bail, Context};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Device;

/// The examples `cb` names for `spec`: read from its file, or built from `spec`'s held-out
/// documents (seeded from the spec's seed plus `seed_offset`).
pub fn examples(spec: &Spec, cb: &ChapterBreakSpec, seed_offset: u64) -> anyhow::Result<Vec<SuffixExample>> {
    if let Some(file) = &cb.file {
        let tokenizer = spec
            .data
            .tokenizer()
            .expect("specs with a chapterbreak file have text data");
        let options = ReadOptions {
            sources: cb.sources.as_deref(),
            examples: cb.examples,
            context_tokens: cb.context_tokens,
            candidate_tokens: cb.candidate_tokens,
        };
        return Ok(read_chapterbreak(file, tokenizer.as_ref(), options)?);
    }
    let wanted = cb.examples.unwrap_or(BUILTIN_EXAMPLES);
    let (source, _) = crate::config::held_out(spec, seed_offset, 1, None)?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed.wrapping_add(seed_offset));
    let mut found = Vec::new();
    // Documents of row 0 in turn, until enough examples; a generator never runs out, but
    // a corpus with inserted tasks does.
    for index in 0..10_000u64 {
        if found.len() >= wanted || !source.exists(0, index) {
            break;
        }
        let doc = source.document(0, index);
        found.extend(builtin_examples(&doc, spec.segment_len, cb.candidates, &mut rng));
    }
    found.truncate(wanted);
    if found.is_empty() {
        bail!(
            "the held-out documents have no answer span with {} distinct same-length distractors and evidence \
             beyond the window; lower chapterbreak.candidates or lengthen data.doc_tokens",
            cb.candidates - 1
        );
    }
    Ok(found)
}

/// Context tokens that stay in the window beside a candidate of `longest` tokens (its last
/// token is only a target); `builtin_examples` keeps the same count.
fn local_tokens(window: usize, longest: usize) -> usize {
    window + 1 - longest
}

/// Accuracy per source (in the order sources first appear) of `learner` on `examples`.
pub fn evaluate(
    learner: &mut dyn MethodModel,
    examples: &[SuffixExample],
    window: usize,
    rows: usize,
    device: Device,
) -> anyhow::Result<Vec<SourceAccuracy>> {
    let mut right = Vec::with_capacity(examples.len());
    for (i, ex) in examples.iter().enumerate() {
        let scores = score(learner, ex, window, rows, device).with_context(|| format!("{} example {i}", ex.source))?;
        let best = (0..scores.len())
            .reduce(|a, b| if scores[b] > scores[a] { b } else { a })
            .expect("at least two candidates");
        right.push(best == ex.gold);
    }
    let mut names: Vec<&str> = Vec::new();
    for ex in examples {
        if !names.contains(&ex.source.as_str()) {
            names.push(&ex.source);
        }
    }
    Ok(names
        .into_iter()
        .map(|name| {
            let of: Vec<(&SuffixExample, bool)> = examples
                .iter()
                .zip(right.iter().copied())
                .filter(|(ex, _)| ex.source == name)
                .collect();
            let n = of.len() as f64;
            let mean = |f: &dyn Fn(&SuffixExample) -> f64| of.iter().map(|(ex, _)| f(ex)).sum::<f64>() / n;
            let correct = of.iter().filter(|(_, r)| *r).count();
            let distances: Vec<f64> = of.iter().filter_map(|(ex, _)| ex.distance).map(|d| d as f64).collect();
            SourceAccuracy {
                source: name.to_string(),
                examples: of.len(),
                correct,
                accuracy: correct as f64 / n,
                chance: mean(&|ex| 1.0 / ex.candidates.len() as f64),
                mean_context_tokens: mean(&|ex| ex.context.len() as f64),
                mean_distance: (!distances.is_empty()).then(|| distances.iter().sum::<f64>() / distances.len() as f64),
            }
        })
        .collect())
}

/// Each candidate's summed log-probability after `ex`'s context, as the module says.
pub fn score(
    learner: &mut dyn MethodModel,
    ex: &SuffixExample,
    window: usize,
    rows: usize,
    device: Device,
) -> anyhow::Result<Vec<f64>> {
    let (shortest, longest) = ex
        .candidates
        .iter()
        .map(Vec::len)
        .fold((usize::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)));
    if shortest == 0 || longest > window {
        bail!("candidates of {shortest} to {longest} tokens: give 1 to {window} (the window) tokens per candidate");
    }
    // A context of no tokens still needs one to predict the first candidate token from.
    if ex.context.is_empty() {
        bail!("an example with an empty context: nothing to continue");
    }
    let local = local_tokens(window, longest).min(ex.context.len());
    let (far, near) = ex.context.split_at(ex.context.len() - local);
    write_memory(learner, far, window, false, rows, device);
    let prompt: Vec<i64> = near.iter().map(|&t| i64::from(t)).collect();
    let sequences: Vec<Vec<i64>> = ex
        .candidates
        .iter()
        .map(|c| {
            prompt
                .iter()
                .copied()
                .chain(c[..c.len() - 1].iter().map(|&t| i64::from(t)))
                .collect()
        })
        .collect();
    let mut scores = vec![0.0; ex.candidates.len()];
    let learner: &dyn MethodModel = learner;
    tch::no_grad(|| {
        for_each_read_only(learner, &sequences, rows, device, |i, logp| {
            scores[i] = continuation_logp(logp, prompt.len(), &ex.candidates[i]);
            Ok(())
        })
    })?;
    Ok(scores)
}
