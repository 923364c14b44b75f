//! Streaming next-token NLL: documents streamed in
//! non-overlapping segments, memory carried across segments and reset per document (write
//! after read). Totals are kept for all tokens, for answer tokens whose source lies beyond
//! the local window ("far") and within it ("near"), and per document-length bucket (the
//! paper's 5K-10K, 10K-100K, 100K-500K, 500K-1M, >1M tokens, plus <5K).

use super::distance::{distance_edges, Answers, DistanceTally, DistanceTotals};
use crate::data::{Batch, DocumentSource, SegmentStream};
use crate::memory::{Policy, Retrieval};
use crate::methods::{MethodModel, StepOutput};
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
    /// Per evidence-distance bucket of the answer tokens, shortest first; empty buckets
    /// left out (none without answers, and none in files written before they were kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_distance: Vec<DistanceTotals>,
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
/// stage of the forward passes to `clock`; exact retrieval, distance buckets from the
/// stream's far reference.
pub fn stream_nll_bucketed<S: DocumentSource>(
    learner: &mut dyn MethodModel,
    stream: &mut SegmentStream<S>,
    batches: usize,
    edges: &[usize],
    clock: &StageClock,
) -> NllTotals {
    let scoring = Scoring {
        length_edges: edges,
        distance_edges: distance_edges(stream.far_reference()),
        retrieval: Retrieval::Exact,
        seed: 0,
        clock,
    };
    stream_nll_scored(learner, stream, batches, &scoring)
}

/// How [`stream_nll_scored`] buckets and retrieves.
pub struct Scoring<'a> {
    /// Document-length bucket edges (increasing, in tokens).
    pub length_edges: &'a [usize],
    /// Evidence-distance bucket edges (increasing, in tokens).
    pub distance_edges: Vec<usize>,
    /// Exact retrieval, or the oracle or random bound (memory methods).
    pub retrieval: Retrieval,
    /// Seeds random retrieval.
    pub seed: u64,
    /// Charged with each stage of the forward passes.
    pub clock: &'a StageClock,
}

/// Runs `batches` segments of `stream` through `learner` in evaluation mode, starting from
/// an empty memory, and sums the NLLs per length and distance bucket.
pub fn stream_nll_scored<S: DocumentSource>(
    learner: &mut dyn MethodModel,
    stream: &mut SegmentStream<S>,
    batches: usize,
    scoring: &Scoring,
) -> NllTotals {
    let _guard = tch::no_grad_guard();
    if let Some(bank) = learner.bank_mut() {
        bank.reset_all();
        if scoring.retrieval == Retrieval::Random {
            let random = Policy::Random {
                seed: scoring.seed,
                searches: Default::default(),
            };
            bank.set_policy(random).expect("random retrieval works with every bank");
        }
    }
    let mut lengths = LengthTally::new(scoring.length_edges);
    let mut distances = DistanceTally::new(scoring.distance_edges.clone());
    let mut totals = NllTotals::default();
    let bar = crate::progress::bar(batches as u64, "eval");
    for _ in 0..batches {
        bar.inc(1);
        let batch = stream.next_batch();
        // What each row's memory holds as the forward pass reads it: chunks, oldest chunk.
        let memory: Option<Vec<(i64, i64)>> = learner.bank().map(|bank| {
            (0..batch.reset.len())
                .map(|r| match batch.reset[r] {
                    true => (0, 0),
                    false => (bank.chunks_for_row(r), bank.oldest_chunk_for_row(r)),
                })
                .collect()
        });
        if scoring.retrieval == Retrieval::Oracle {
            set_oracle(learner, &batch);
        }
        let out = learner.forward_timed(&batch, false, scoring.clock);
        let token_nll = score_batch(&mut totals, &batch, &out);
        lengths.add(&batch, &token_nll);
        let chunk = learner.bank().map(|b| b.config().chunk);
        // Memory methods: which heads retrieved each target's evidence chunk, `[B, H, T]`.
        let hits = (out.retrieved_chunks.as_ref())
            .zip(chunk)
            .map(|(retrieved, chunk)| evidence_hits(retrieved, &batch.answer_source, chunk));
        let memory_read = hits.as_ref().zip(chunk).zip(memory.as_deref());
        distances.add(&answers_of(&batch, &out, &token_nll, memory_read).as_answers());
        if let (Some(hits), Some(retrieved), Some(memory)) = (&hits, &out.retrieved_chunks, &memory) {
            add_retrieval(&mut totals, &batch, hits, retrieved.size()[3], memory);
        }
    }
    bar.finish_and_clear();
    if let Some(bank) = learner.bank_mut() {
        bank.set_policy(Policy::Exact)
            .expect("exact retrieval works with every bank");
    }
    totals.by_length = lengths.totals();
    totals.by_distance = distances.totals();
    totals
}

/// Puts each query token's evidence chunk (its target's source / c) into its retrieved set.
fn set_oracle(learner: &mut dyn MethodModel, batch: &Batch) {
    let Some(bank) = learner.bank_mut() else {
        return;
    };
    let chunk = bank.config().chunk;
    let evidence = batch.answer_source.divide_scalar_mode(chunk, "floor");
    bank.set_policy(Policy::Oracle { evidence })
        .expect("run::perplexity refuses the oracle for a shared bank");
}

/// Adds a batch's NLLs to `totals`; returns the per-token NLL `[B, T]`.
fn score_batch(totals: &mut NllTotals, batch: &Batch, out: &StepOutput) -> Tensor {
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
    token_nll
}

/// Adds a memory method's retrieval hits `[B, H, T]` on far answers, and what a head picking
/// `retrieved_per_head` chunks at random would get.
fn add_retrieval(totals: &mut NllTotals, batch: &Batch, hits: &Tensor, retrieved_per_head: i64, memory: &[(i64, i64)]) {
    let (hits_any, hits_heads, heads) = far_hits(hits, &batch.far_mask);
    totals.far_hits_any_head += hits_any;
    totals.far_hits_head_sum += hits_heads;
    totals.heads = heads;
    let retrieved_per_head = retrieved_per_head as f64;
    let far_per_row =
        Vec::<f64>::try_from(batch.far_mask.sum_dim_intlist(1, false, Kind::Double)).expect("[B] far counts");
    for (row, (chunks, _)) in memory.iter().enumerate() {
        if *chunks > 0 {
            totals.far_hit_chance_sum += far_per_row[row] * (retrieved_per_head / *chunks as f64).min(1.0);
        }
    }
}

/// What a memory method's forward read: the evidence hits `[B, H, T]`, the chunk size, and
/// each row's (chunks, oldest chunk) in memory.
type MemoryRead<'a> = ((&'a Tensor, i64), &'a [(i64, i64)]);

/// The answer tokens of a batch, on its device, as [`DistanceTally::add`] takes them.
struct BatchAnswers {
    distance: Tensor,
    nll: Tensor,
    correct: Tensor,
    heads_hit: Option<Tensor>,
    evicted: Option<Tensor>,
}

impl BatchAnswers {
    fn as_answers(&self) -> Answers<'_> {
        Answers {
            distance: &self.distance,
            nll: &self.nll,
            correct: &self.correct,
            heads_hit: self.heads_hit.as_ref(),
            evicted: self.evicted.as_ref(),
        }
    }
}

/// Each answer's distance to its evidence, NLL and correctness, and for memory methods the
/// heads that retrieved its evidence chunk and whether that chunk had been evicted.
fn answers_of(batch: &Batch, out: &StepOutput, token_nll: &Tensor, memory: Option<MemoryRead>) -> BatchAnswers {
    let device = batch.targets.device();
    let (b, t) = batch.targets.size2().expect("targets are [B, T]");
    let starts: Vec<i64> = batch.starts.iter().map(|&s| s as i64).collect();
    // Target j of a row is the token at start + j + 1.
    let position = Tensor::from_slice(&starts).to_device(device).view([b, 1])
        + Tensor::arange_start(1, t + 1, (Kind::Int64, device)).view([1, t]);
    let is_answer = batch.answer_source.ge(0);
    let distance = (position - &batch.answer_source).where_self(&is_answer, &Tensor::from(-1i64).to_device(device));
    let correct = out
        .logits
        .argmax(-1, false)
        .eq_tensor(&batch.targets)
        .to_kind(Kind::Float);
    let heads_hit = memory.map(|((hits, _), _)| hits.sum_dim_intlist(1, false, Kind::Float)); // [B, T]
    let evicted = memory.map(|((_, chunk), rows)| {
        let source = batch.answer_source.divide_scalar_mode(chunk, "floor");
        let oldest: Vec<i64> = rows.iter().map(|&(_, oldest)| oldest).collect();
        let oldest = Tensor::from_slice(&oldest).to_device(device).view([b, 1]);
        (source.lt_tensor(&oldest).logical_and(&is_answer)).to_kind(Kind::Float)
    });
    BatchAnswers {
        distance,
        nll: token_nll.shallow_clone(),
        correct,
        heads_hit,
        evicted,
    }
}

/// The running sums of each document-length bucket.
struct LengthTally<'a> {
    edges: &'a [usize],
    buckets: Vec<BucketTotals>,
}

impl<'a> LengthTally<'a> {
    fn new(edges: &'a [usize]) -> Self {
        let buckets = bucket_labels(edges)
            .into_iter()
            .map(|bucket| BucketTotals {
                bucket,
                ..Default::default()
            })
            .collect();
        Self { edges, buckets }
    }

    fn add(&mut self, batch: &Batch, token_nll: &Tensor) {
        let row_nll = Vec::<f64>::try_from((token_nll * &batch.loss_mask).sum_dim_intlist(1, false, Kind::Double))
            .expect("[B] NLL sums");
        let row_tokens =
            Vec::<f64>::try_from(batch.loss_mask.sum_dim_intlist(1, false, Kind::Double)).expect("[B] token counts");
        for (row, &len) in batch.doc_lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let bucket = &mut self.buckets[bucket_of(len, self.edges)];
            bucket.nll += row_nll[row];
            bucket.tokens += row_tokens[row];
            if batch.reset[row] {
                bucket.documents += 1;
            }
        }
    }

    /// The non-empty buckets, in increasing length.
    fn totals(self) -> Vec<BucketTotals> {
        self.buckets.into_iter().filter(|b| b.tokens > 0.0).collect()
    }
}

/// 1 where a head's retrieved chunks `[B, H, T, K/c]` include the target's evidence chunk
/// (`answer_source / c`), `[B, H, T]` f32.
pub fn evidence_hits(retrieved: &Tensor, answer_source: &Tensor, chunk: i64) -> Tensor {
    let source_chunk = answer_source
        .divide_scalar_mode(chunk, "floor")
        .unsqueeze(1)
        .unsqueeze(-1); // [B, 1, T, 1]
    retrieved
        .eq_tensor(&source_chunk)
        .any_dim(-1, false)
        .to_kind(Kind::Float)
}

/// Counts the far answers among evidence `hits` `[B, H, T]`: by any head, and summed over
/// heads; with the number of heads.
fn far_hits(hits: &Tensor, far_mask: &Tensor) -> (f64, f64, f64) {
    let heads = hits.size()[1];
    let far = far_mask.unsqueeze(1);
    let any = (hits.amax([1], true) * &far).sum(Kind::Double).double_value(&[]);
    let per_head = (hits * far).sum(Kind::Double).double_value(&[]);
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
