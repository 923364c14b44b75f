//! Streaming next-token NLL: documents streamed in
//! non-overlapping segments, memory carried across segments and reset per document (write
//! after read). Totals are kept for all tokens, for answer tokens whose source lies beyond
//! the local window ("far") and within it ("near"), and per document-length bucket (the
//! paper's 5K-10K, 10K-100K, 100K-500K, 500K-1M, >1M tokens, plus <5K).

use crate::data::{DocumentSource, SegmentStream};
use crate::methods::MethodModel;
use crate::profile::StageClock;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The paper's bucket edges in tokens.
pub const PAPER_LENGTH_EDGES: [usize; 5] = [5_000, 10_000, 100_000, 500_000, 1_000_000];

/// Summed NLL and token counts of one document-length bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketTotals {
    /// e.g. `10K-100K`.
    pub bucket: String,
    pub documents: u64,
    pub nll: f64,
    pub tokens: f64,
}

impl BucketTotals {
    pub fn perplexity(&self) -> f64 {
        (self.nll / self.tokens).exp()
    }
}

/// Summed NLL and token counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Sum over far answers of the chance that one head retrieving K/c of the row's
    /// chunks at random gets the source chunk: min(1, (K/c) / chunks in memory).
    pub far_hit_chance_sum: f64,
    pub heads: f64,
    /// Per document-length bucket, in increasing length; empty buckets left out.
    pub by_length: Vec<BucketTotals>,
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
    /// What [`NllTotals::hit_rate_per_head`] would be for a head picking chunks at random.
    pub fn hit_rate_chance(&self) -> f64 {
        self.far_hit_chance_sum / self.far_tokens
    }
    pub fn perplexity(&self) -> f64 {
        self.mean().exp()
    }
    pub fn far_perplexity(&self) -> f64 {
        self.far_mean().exp()
    }
}

/// `5K`, `10K`, `1M`: a token count as the paper writes bucket edges.
fn short(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}K", n / 1_000),
        n => n.to_string(),
    }
}

/// Bucket labels for `edges` (increasing): `<e0`, `e0-e1`, …, `>e_last`.
pub fn bucket_labels(edges: &[usize]) -> Vec<String> {
    let mut labels = Vec::with_capacity(edges.len() + 1);
    labels.push(match edges.first() {
        Some(&e) => format!("<{}", short(e)),
        None => "all".into(),
    });
    for pair in edges.windows(2) {
        labels.push(format!("{}-{}", short(pair[0]), short(pair[1])));
    }
    if let Some(&last) = edges.last() {
        labels.push(format!(">{}", short(last)));
    }
    labels
}

/// Index of the bucket a document of `len` tokens falls in.
pub fn bucket_of(len: usize, edges: &[usize]) -> usize {
    edges.iter().take_while(|&&e| len >= e).count()
}

/// Runs `batches` segments of `stream` through `learner` in evaluation mode, starting from
/// an empty memory, and sums the NLLs (length buckets: the paper's).
pub fn stream_nll<S: DocumentSource>(
    learner: &mut dyn MethodModel,
    stream: &mut SegmentStream<S>,
    batches: usize,
) -> NllTotals {
    stream_nll_bucketed(learner, stream, batches, &PAPER_LENGTH_EDGES, &StageClock::disabled())
}

/// [`stream_nll`] with explicit length-bucket edges (increasing, in tokens), charging each
/// stage of the forward passes to `clock`.
pub fn stream_nll_bucketed<S: DocumentSource>(
    learner: &mut dyn MethodModel,
    stream: &mut SegmentStream<S>,
    batches: usize,
    edges: &[usize],
    clock: &StageClock,
) -> NllTotals {
    let _guard = tch::no_grad_guard();
    if let Some(bank) = learner.bank_mut() {
        bank.reset_all();
    }
    let labels = bucket_labels(edges);
    let mut buckets: Vec<BucketTotals> = labels
        .iter()
        .map(|l| BucketTotals {
            bucket: l.clone(),
            ..Default::default()
        })
        .collect();
    let mut totals = NllTotals::default();
    let bar = crate::progress::bar(batches as u64, "eval");
    for _ in 0..batches {
        bar.inc(1);
        let batch = stream.next_batch();
        // Chunks each row can retrieve from (its memory as the forward pass reads it).
        let chunks_before: Option<Vec<i64>> = learner.bank().map(|bank| {
            (0..batch.reset.len())
                .map(|r| if batch.reset[r] { 0 } else { bank.chunks_for_row(r) })
                .collect()
        });
        let out = learner.forward_timed(&batch, false, clock);
        let logp = out.logits.log_softmax(-1, Kind::Float);
        let token_nll = -logp.gather(-1, &batch.targets.unsqueeze(-1), false).squeeze_dim(-1); // [B, T]
        let sum = |mask: &Tensor| {
            let nll = (&token_nll * mask).sum(Kind::Double).double_value(&[]);
            (nll, mask.sum(Kind::Double).double_value(&[]))
        };
        let (nll, tokens) = sum(&batch.loss_mask);
        let (far_nll, far_tokens) = sum(&batch.far_mask);
        let (near_nll, near_tokens) = sum(&batch.near_mask);
        totals.nll += nll;
        totals.tokens += tokens;
        totals.far_nll += far_nll;
        totals.far_tokens += far_tokens;
        totals.near_nll += near_nll;
        totals.near_tokens += near_tokens;
        let row_nll = Vec::<f64>::try_from((&token_nll * &batch.loss_mask).sum_dim_intlist(1, false, Kind::Double))
            .expect("[B] NLL sums");
        let row_tokens =
            Vec::<f64>::try_from(batch.loss_mask.sum_dim_intlist(1, false, Kind::Double)).expect("[B] token counts");
        for (row, &len) in batch.doc_lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let bucket = &mut buckets[bucket_of(len, edges)];
            bucket.nll += row_nll[row];
            bucket.tokens += row_tokens[row];
            if batch.reset[row] {
                bucket.documents += 1;
            }
        }
        if let (Some(retrieved), Some(chunk)) = (&out.retrieved_chunks, learner.bank().map(|b| b.config().chunk)) {
            let (hits_any, hits_heads, heads) = retrieval_hits(retrieved, &batch.answer_source, &batch.far_mask, chunk);
            totals.far_hits_any_head += hits_any;
            totals.far_hits_head_sum += hits_heads;
            totals.heads = heads;
            let retrieved_per_head = retrieved.size()[3] as f64;
            let far_per_row =
                Vec::<f64>::try_from(batch.far_mask.sum_dim_intlist(1, false, Kind::Double)).expect("[B] far counts");
            for (row, chunks) in chunks_before.iter().flatten().enumerate() {
                if *chunks > 0 {
                    totals.far_hit_chance_sum += far_per_row[row] * (retrieved_per_head / *chunks as f64).min(1.0);
                }
            }
        }
    }
    bar.finish_and_clear();
    totals.by_length = buckets.into_iter().filter(|b| b.tokens > 0.0).collect();
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

/// Segments needed so that every row has streamed its first `documents` documents that
/// exist, with segments of `window` tokens.
pub fn segments_to_cover<S: DocumentSource>(source: &S, rows: usize, documents: u64, window: usize) -> usize {
    (0..rows as u64)
        .map(|row| {
            (0..documents)
                .filter(|&i| source.exists(row, i))
                .map(|i| {
                    source
                        .document(row, i)
                        .tokens
                        .len()
                        .saturating_sub(1)
                        .div_ceil(window)
                        .max(1)
                })
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0)
}

/// Tokens in the first `documents` documents of each of `rows` rows that exist: what an
/// evaluation streaming them reads.
pub fn tokens_to_cover<S: DocumentSource>(source: &S, rows: usize, documents: u64) -> usize {
    (0..rows as u64)
        .flat_map(|row| (0..documents).map(move |i| (row, i)))
        .filter(|&(row, i)| source.exists(row, i))
        .map(|(row, i)| source.document(row, i).tokens.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_paper() {
        assert_eq!(
            bucket_labels(&PAPER_LENGTH_EDGES),
            vec!["<5K", "5K-10K", "10K-100K", "100K-500K", "500K-1M", ">1M"]
        );
        assert_eq!(bucket_of(4_999, &PAPER_LENGTH_EDGES), 0);
        assert_eq!(bucket_of(5_000, &PAPER_LENGTH_EDGES), 1);
        assert_eq!(bucket_of(99_999, &PAPER_LENGTH_EDGES), 2);
        assert_eq!(bucket_of(2_000_000, &PAPER_LENGTH_EDGES), 5);
        assert_eq!(bucket_labels(&[]), vec!["all"]);
        assert_eq!(bucket_labels(&[100, 1500]), vec!["<100", "100-1500", ">1500"]);
    }
}
