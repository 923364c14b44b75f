//! Streaming next-token NLL (DESIGN.md §3 "Long-text perplexity"): documents streamed in
//! non-overlapping segments, memory carried across segments and reset per document (write
//! after read), totals kept for all tokens, for answer tokens whose source lies beyond the
//! local window ("far"), and for answers within it ("near").

use crate::data::{DocumentSource, SegmentStream};
use crate::train::{masked_nll, Learner};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Summed NLL and token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NllTotals {
    pub nll: f64,
    pub tokens: f64,
    pub far_nll: f64,
    pub far_tokens: f64,
    pub near_nll: f64,
    pub near_tokens: f64,
    /// Far answers whose source chunk was retrieved by at least one head of the memory layer.
    pub far_hits_any_head: f64,
    /// Far answers × heads whose source chunk that head retrieved.
    pub far_hits_head_sum: f64,
    pub heads: f64,
}

impl NllTotals {
    pub fn mean(&self) -> f64 {
        self.nll / self.tokens
    }
    pub fn far_mean(&self) -> f64 {
        self.far_nll / self.far_tokens
    }
    pub fn near_mean(&self) -> f64 {
        self.near_nll / self.near_tokens
    }
    /// Fraction of far answers whose source chunk was among the retrieved ones (any head).
    pub fn hit_rate_any_head(&self) -> f64 {
        self.far_hits_any_head / self.far_tokens
    }
    /// Mean over heads of each head's hit rate on far answers.
    pub fn hit_rate_per_head(&self) -> f64 {
        self.far_hits_head_sum / (self.far_tokens * self.heads)
    }
    pub fn perplexity(&self) -> f64 {
        self.mean().exp()
    }
    pub fn far_perplexity(&self) -> f64 {
        self.far_mean().exp()
    }
}

/// Runs `batches` segments of `stream` through `learner` in evaluation mode, starting from
/// an empty memory, and sums the NLLs.
pub fn stream_nll<S: DocumentSource>(
    learner: &mut Learner,
    stream: &mut SegmentStream<S>,
    batches: usize,
) -> NllTotals {
    let _guard = tch::no_grad_guard();
    if let Some(bank) = learner.bank_mut() {
        bank.reset_all();
    }
    let mut totals = NllTotals::default();
    for _ in 0..batches {
        let batch = stream.next_batch();
        let out = learner.forward(&batch, false);
        let add = |mask: &tch::Tensor| {
            let (nll, count) = masked_nll(&out.logits, &batch.targets, mask);
            (nll.to_kind(Kind::Double).double_value(&[]), count.double_value(&[]))
        };
        let (nll, tokens) = add(&batch.loss_mask);
        let (far_nll, far_tokens) = add(&batch.far_mask);
        let (near_nll, near_tokens) = add(&batch.near_mask);
        totals.nll += nll;
        totals.tokens += tokens;
        totals.far_nll += far_nll;
        totals.far_tokens += far_tokens;
        totals.near_nll += near_nll;
        totals.near_tokens += near_tokens;
        if let (Some(retrieved), Some(chunk)) = (&out.retrieved_chunks, learner.bank().map(|b| b.config().chunk)) {
            let (hits_any, hits_heads, heads) = retrieval_hits(retrieved, &batch.answer_source, &batch.far_mask, chunk);
            totals.far_hits_any_head += hits_any;
            totals.far_hits_head_sum += hits_heads;
            totals.heads = heads;
        }
    }
    totals
}

/// Counts far answers whose source chunk (`answer_source / c`) is among the retrieved
/// chunks `[B, H, T, K/c]`: by any head, and summed over heads.
pub fn retrieval_hits(retrieved: &Tensor, answer_source: &Tensor, far_mask: &Tensor, chunk: i64) -> (f64, f64, f64) {
    let heads = retrieved.size()[1];
    let source_chunk = answer_source
        .divide_scalar_mode(chunk, "floor")
        .unsqueeze(1)
        .unsqueeze(-1); // [B, 1, T, 1]
    let hit = retrieved
        .eq_tensor(&source_chunk)
        .any_dim(-1, false)
        .to_kind(Kind::Float); // [B, H, T]
    let far = far_mask.unsqueeze(1);
    let any = (hit.amax([1], true) * &far).sum(Kind::Double).double_value(&[]);
    let per_head = (hit * far).sum(Kind::Double).double_value(&[]);
    (any, per_head, heads as f64)
}
