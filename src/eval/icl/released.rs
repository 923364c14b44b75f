//! The authors' in-context learning evaluation (LongMem's `eval_scripts/eval_longmem_icl.py`),
//! step for step but for its random draws (ChaCha streams here, Python's `random` there):
//!
//! - seeds 1 to `icl.seeds`; per seed, n prompt demonstrations and m memory demonstrations
//!   drawn from the training file independently (the two sets may overlap);
//! - every demonstration is a line of its own, encoded `<s> demonstration </s>` (the
//!   tokenizer's begin- and end-of-text ids; a fairseq dictionary's 0 and 2);
//! - memory is reset, then the memory lines, concatenated, are written in slices of the
//!   window (1,024 tokens at paper scale); the trailing partial slice is dropped;
//! - each test prompt is the n demonstration lines and the query line (`Review: x
//!   Sentiment:`), its last token (the query's `</s>`) removed; it reads memory without
//!   writing it; the argmax next token is the paper's prediction (`acc_paper`), and the
//!   label words' log-likelihood after the prompt gives `acc` and `acc_norm` beside it.

use super::{accuracies, memory_shots, score_prompts, summarize, IclRow, IclSummary, IclTask};
use crate::config::IclSpec;
use crate::eval::score::write_memory;
use crate::methods::MethodModel;
use crate::tokenizer::Tokenizer;
use anyhow::Context;
use tch::Device;

/// Draw streams of [`IclTask::draw`].
const PROMPT: u64 = 0;
const MEMORY: u64 = 1;

/// A line as the authors encode it: begin of text, the text, end of text.
fn line(tokenizer: &dyn Tokenizer, text: &str) -> Vec<u32> {
    let mut ids = tokenizer.begin_of_text().to_vec();
    ids.extend(tokenizer.encode(text));
    ids.push(tokenizer.end_of_text());
    ids
}

/// Evaluates `task` on `learner` by the released protocol (the module's steps).
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
    let tests = task.test_queries()?;
    let mut results = Vec::new();
    for s in 1..=icl.seeds {
        for &m in &memory_shots {
            let memory = task.draw(s, MEMORY, m)?;
            let memory_tokens: Vec<u32> = memory
                .iter()
                .flat_map(|ex| line(tokenizer, &task.template.demonstration(&ex.text, &ex.label)))
                .collect();
            for &n in &icl.local_shots {
                // The memory lines, in whole slices of the window (the partial one dropped).
                let (written, kept) = write_memory(learner, &memory_tokens, window, true, rows, device);
                let demos = task.draw(s, PROMPT, n)?;
                let context: Vec<u32> = demos
                    .iter()
                    .flat_map(|ex| line(tokenizer, &task.template.demonstration(&ex.text, &ex.label)))
                    .collect();
                let prompts: Vec<Vec<u32>> = tests
                    .iter()
                    .map(|test| {
                        let mut prompt = context.clone();
                        prompt.extend(line(tokenizer, &task.template.query(&test.text)));
                        prompt.pop();
                        prompt
                    })
                    .collect();
                let queries = score_prompts(learner, tokenizer, task, &prompts, window, rows, device)
                    .with_context(|| format!("{n} local demonstrations and the query"))?;
                let (acc_paper, acc, acc_norm) = accuracies(&queries, &tests, task, tokenizer)?;
                results.push(IclRow {
                    task: task.name.clone(),
                    seed: s,
                    local_shots: n,
                    memory_shots: m,
                    memory_tokens_written: written,
                    memory_tokens_kept: kept,
                    examples: tests.len(),
                    acc_paper,
                    acc,
                    acc_norm,
                });
            }
        }
    }
    let summaries = summarize(&results, &memory_shots, &icl.local_shots, &task.name);
    Ok((results, summaries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::ByteLevel;

    #[test]
    fn a_line_is_wrapped_in_begin_and_end_of_text() {
        // Byte level has no begin-of-text id: the line is the text and end of text.
        assert_eq!(line(&ByteLevel, "ab"), vec![97, 98, 256]);
    }
}
