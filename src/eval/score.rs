//! Scoring token sequences read-only, and writing a text to memory first: what in-context
//! learning and suffix identification share.

use crate::data::Batch;
use crate::methods::MethodModel;
use tch::{Device, Kind, Tensor};

/// Runs `sequences` through `learner`, reading memory without writing it, `rows` at a time
/// and right-padded, and calls `each(i, logp)` with sequence i's next-token
/// log-probabilities `[len, V]` (on the CPU; positions past its own length are padding).
pub fn for_each_read_only(
    learner: &dyn MethodModel,
    sequences: &[Vec<i64>],
    rows: usize,
    device: Device,
    mut each: impl FnMut(usize, &Tensor) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for (batch_index, batch) in sequences.chunks(rows).enumerate() {
        let len = batch.iter().map(Vec::len).max().unwrap_or(1);
        let mut flat = vec![0i64; rows * len];
        for (r, seq) in batch.iter().enumerate() {
            flat[r * len..r * len + seq.len()].copy_from_slice(seq);
        }
        let inputs = Tensor::from_slice(&flat)
            .view([rows as i64, len as i64])
            .to_device(device);
        let logp = learner
            .logits_read_only(&inputs)
            .log_softmax(-1, Kind::Float)
            .to_device(Device::Cpu);
        for r in 0..batch.len() {
            each(batch_index * rows + r, &logp.get(r as i64))?;
        }
    }
    Ok(())
}

/// The summed log-probability of `continuation` when it follows a prompt of `prompt_len`
/// tokens, from that sequence's log-probabilities `[len, V]`.
pub fn continuation_logp(logp: &Tensor, prompt_len: usize, continuation: &[u32]) -> f64 {
    continuation
        .iter()
        .enumerate()
        .map(|(j, &token)| logp.double_value(&[(prompt_len - 1 + j) as i64, token as i64]))
        .sum()
}

/// Resets the memory and writes `tokens` in slices of `window`, the same in every row; a
/// trailing partial slice too unless `whole_slices`. Returns the tokens written and the
/// tokens memory can retrieve afterwards ((0, 0) for a model without memory).
pub fn write_memory(
    learner: &mut dyn MethodModel,
    tokens: &[u32],
    window: usize,
    whole_slices: bool,
    rows: usize,
    device: Device,
) -> (usize, usize) {
    let Some(bank) = learner.bank_mut() else {
        return (0, 0);
    };
    bank.reset_all();
    let mut written = 0;
    for piece in tokens.chunks(window).filter(|p| !whole_slices || p.len() == window) {
        let ids: Vec<i64> = piece.iter().map(|&t| i64::from(t)).collect();
        let inputs = Tensor::from_slice(&ids)
            .view([1, ids.len() as i64])
            .repeat([rows as i64, 1])
            .to_device(device);
        tch::no_grad(|| learner.forward(&Batch::unlabelled(inputs), false));
        written += ids.len();
    }
    let kept = learner.bank().map_or(0, |b| b.len_tokens(0) as usize);
    (written, kept)
}
