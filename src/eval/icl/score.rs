//! Scoring in-context learning prompts read-only: each label word's log-likelihood after
//! the prompt and the next-token distribution the paper's argmax reads, and the three
//! accuracies they give.

use super::{loglik_choices, paper_argmax_correct, IclTask};
use crate::data::loaders::Example;
use crate::methods::MethodModel;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context};
use tch::Device;

/// One query's scores: each label word's summed log-probability after the prompt, and the
/// next-token distribution the paper's argmax protocol reads.
#[derive(Debug, Clone)]
pub struct QueryScore {
    pub label_logp: Vec<f64>,
    pub next_logp: Vec<f32>,
}

/// Scores each of `tests` after the `local` demonstrations, reading memory without writing
/// it. Sequences are batched `rows` at a time and right-padded; a prompt with its label must
/// fit in `window`.
#[allow(clippy::too_many_arguments)]
pub fn score_queries(
    learner: &dyn MethodModel,
    tokenizer: &dyn Tokenizer,
    task: &IclTask,
    local: &[Example],
    tests: &[Example],
    window: usize,
    rows: usize,
    device: Device,
) -> anyhow::Result<Vec<QueryScore>> {
    let context: String = local
        .iter()
        .map(|ex| task.template.demonstration(&ex.text, &ex.label))
        .collect();
    let prompts: Vec<Vec<u32>> = tests
        .iter()
        .map(|test| tokenizer.encode(&format!("{context}{}", task.template.query(&test.text))))
        .collect();
    score_prompts(learner, tokenizer, task, &prompts, window, rows, device)
        .with_context(|| format!("{} local demonstrations and the query", local.len()))
}

/// [`score_queries`] on prompts already tokenised: each label word (after a space) is
/// scored after each prompt, and the next-token distribution is read after it.
pub(crate) fn score_prompts(
    learner: &dyn MethodModel,
    tokenizer: &dyn Tokenizer,
    task: &IclTask,
    prompts: &[Vec<u32>],
    window: usize,
    rows: usize,
    device: Device,
) -> anyhow::Result<Vec<QueryScore>> {
    let continuations: Vec<Vec<u32>> = task
        .label_words
        .iter()
        .map(|w| tokenizer.encode(&format!(" {w}")))
        .collect();
    // Tokens every label's continuation opens with that are only whitespace (a byte-level
    // tokenizer's space): the paper's argmax is read after them.
    let lead = leading_whitespace(&continuations, tokenizer);
    // One row per (query, label): the prompt, then the label's tokens but the last.
    let mut sequences: Vec<(usize, Vec<i64>)> = Vec::new();
    for prompt in prompts {
        for cont in &continuations {
            let seq: Vec<i64> = prompt
                .iter()
                .chain(&cont[..cont.len() - 1])
                .map(|&t| i64::from(t))
                .collect();
            if seq.len() > window {
                bail!(
                    "a prompt with its label takes {} tokens, more than the window of {window}; lower \
                     icl.local_shots or raise train.segment_len",
                    seq.len()
                );
            }
            sequences.push((prompt.len(), seq));
        }
    }
    let labels = continuations.len();
    let mut scores: Vec<QueryScore> = Vec::with_capacity(prompts.len());
    let seqs: Vec<Vec<i64>> = sequences.iter().map(|(_, seq)| seq.clone()).collect();
    crate::eval::score::for_each_read_only(learner, &seqs, rows, device, |i, logp| {
        let (query, label) = (i / labels, i % labels);
        let prompt_len = sequences[i].0;
        let sum = crate::eval::score::continuation_logp(logp, prompt_len, &continuations[label]);
        if label == 0 {
            scores.push(QueryScore {
                label_logp: Vec::with_capacity(labels),
                next_logp: Vec::<f32>::try_from(logp.get((prompt_len - 1 + lead) as i64))?,
            });
        }
        debug_assert_eq!(scores.len(), query + 1);
        scores[query].label_logp.push(sum);
        Ok(())
    })?;
    Ok(scores)
}

/// Accuracy of the paper's protocol, `acc` and `acc_norm` over `tests` given their scores.
pub(crate) fn accuracies(
    scores: &[QueryScore],
    tests: &[Example],
    task: &IclTask,
    tokenizer: &dyn Tokenizer,
) -> anyhow::Result<(f64, f64, f64)> {
    let (mut paper, mut raw, mut norm) = (0usize, 0usize, 0usize);
    for (score, test) in scores.iter().zip(tests) {
        let gold = task
            .label_words
            .iter()
            .position(|w| *w == test.label)
            .with_context(|| format!("label {:?} is not a label word", test.label))?;
        let (by_sum, by_char) = loglik_choices(&score.label_logp, &task.label_words);
        paper += usize::from(paper_argmax_correct(&score.next_logp, &test.label, tokenizer));
        raw += usize::from(by_sum == gold);
        norm += usize::from(by_char == gold);
    }
    let n = tests.len().max(1) as f64;
    Ok((paper as f64 / n, raw as f64 / n, norm as f64 / n))
}

/// How many tokens every continuation opens with that decode to whitespace alone (the
/// same tokens in each), leaving at least one token of each.
fn leading_whitespace(continuations: &[Vec<u32>], tokenizer: &dyn Tokenizer) -> usize {
    let shortest = continuations.iter().map(Vec::len).min().unwrap_or(0);
    (0..shortest.saturating_sub(1))
        .take_while(|&j| {
            let t = continuations[0][j];
            continuations.iter().all(|c| c[j] == t) && tokenizer.decode(&[t]).trim().is_empty()
        })
        .count()
}
