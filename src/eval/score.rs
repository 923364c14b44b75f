//! Scoring token sequences read-only: the batching that in-context learning and suffix
//! identification share.

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
