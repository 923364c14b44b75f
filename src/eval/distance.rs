//! Scores by evidence distance: every answer token (a token predictable only from an earlier
//! one, its evidence) is put in a log-spaced bucket of its distance in tokens to that
//! evidence, and each bucket sums NLL, top-1 accuracy, retrieval hits and evicted evidence.
//! The buckets are a run's window times powers of 4 (within the window, 1–4 windows, 4–16
//! windows, …), the same for every memory size, so that curves over memory sizes share
//! their x axis; the memory size falls on a bucket edge when it is the window times a power
//! of 4.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The longest distance bucketed separately: beyond it one open bucket.
const LONGEST_EDGE: usize = 1 << 20;

/// Bucket edges for a run whose local window is `window` tokens: `window · 4^i` up to 2²⁰.
pub fn distance_edges(window: usize) -> Vec<usize> {
    let mut edges = vec![];
    let mut edge = window.max(1);
    while edge <= LONGEST_EDGE {
        edges.push(edge);
        edge *= 4;
    }
    edges
}

/// `<32`, `32-128`, …, `>1048576`: the label of each bucket of `edges`.
pub fn distance_labels(edges: &[usize]) -> Vec<String> {
    let mut labels = vec![format!("<{}", edges.first().copied().unwrap_or(0))];
    labels.extend(edges.windows(2).map(|pair| format!("{}-{}", pair[0], pair[1])));
    if let Some(last) = edges.last() {
        labels.push(format!(">{last}"));
    }
    labels
}

/// Sums over the answer tokens of one distance bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DistanceTotals {
    /// e.g. `4096-16384` (tokens).
    pub bucket: String,
    /// Shortest distance in the bucket.
    pub from: usize,
    pub tokens: f64,
    pub nll: f64,
    /// Answers whose most likely next token is the answer.
    pub correct: f64,
    /// Answers whose evidence chunk some head of the memory layer retrieved.
    pub hits_any_head: f64,
    /// Answers × heads whose evidence chunk that head retrieved.
    pub hits_head_sum: f64,
    /// Answers whose evidence had been evicted from memory (older than the memory holds).
    pub evicted: f64,
}

impl DistanceTotals {
    pub fn mean_nll(&self) -> f64 {
        self.nll / self.tokens
    }
    pub fn accuracy(&self) -> f64 {
        self.correct / self.tokens
    }
    pub fn evicted_share(&self) -> f64 {
        self.evicted / self.tokens
    }
}

/// The bounds `[from, to)` of a bucket label (`to` is infinite for the last).
pub fn bucket_bounds(label: &str) -> Option<(usize, f64)> {
    if let Some(to) = label.strip_prefix('<') {
        return Some((0, to.parse().ok()?));
    }
    if let Some(from) = label.strip_prefix('>') {
        return Some((from.parse().ok()?, f64::INFINITY));
    }
    let (from, to) = label.split_once('-')?;
    Some((from.parse().ok()?, to.parse().ok()?))
}

/// Pooled over the buckets that lie within `[from, to]` tokens: answers, and correct ones.
/// `None` when no bucket does (the edges do not fall on `from` and `to`).
pub fn pooled(buckets: &[DistanceTotals], from: usize, to: usize) -> Option<(f64, f64)> {
    let inside: Vec<&DistanceTotals> = buckets
        .iter()
        .filter(|b| bucket_bounds(&b.bucket).is_some_and(|(lo, hi)| lo >= from && hi <= to as f64))
        .collect();
    (!inside.is_empty()).then(|| {
        let tokens = inside.iter().map(|b| b.tokens).sum();
        (tokens, inside.iter().map(|b| b.correct).sum())
    })
}

/// One batch's answer tokens, `[B, T]` each, on the model's device.
pub struct Answers<'a> {
    /// Distance to the evidence in tokens; −1 where the target is no answer.
    pub distance: &'a Tensor,
    /// Per-token NLL.
    pub nll: &'a Tensor,
    /// 1 where the most likely next token is the target.
    pub correct: &'a Tensor,
    /// Heads that retrieved the evidence chunk (memory methods).
    pub heads_hit: Option<&'a Tensor>,
    /// 1 where the evidence had been evicted (memory methods).
    pub evicted: Option<&'a Tensor>,
}

/// The running sums of every distance bucket.
#[derive(Debug, Clone)]
pub struct DistanceTally {
    edges: Vec<usize>,
    /// `[buckets, 6]` f64 on the host: tokens, nll, correct, hits any head, hits summed over
    /// heads, evicted.
    sums: Vec<[f64; 6]>,
}

impl DistanceTally {
    pub fn new(edges: Vec<usize>) -> Self {
        let buckets = edges.len() + 1;
        Self {
            edges,
            sums: vec![[0.0; 6]; buckets],
        }
    }

    /// Adds one batch: the buckets by torch's `bucketize`, the sums by `index_add` on the
    /// device, one transfer to the host.
    pub fn add(&mut self, answers: &Answers) {
        let device = answers.distance.device();
        let mask = answers.distance.ge(0).view([-1]);
        let distance = answers.distance.view([-1]).masked_select(&mask);
        if distance.numel() == 0 {
            return;
        }
        let edges: Vec<i64> = self.edges.iter().map(|&e| e as i64).collect();
        let boundaries = Tensor::from_slice(&edges).to_device(device);
        // right = true: bucket i holds edges[i − 1] ≤ d < edges[i].
        let bucket = distance.bucketize(&boundaries, false, true);
        let select = |x: &Tensor| x.view([-1]).masked_select(&mask).to_kind(Kind::Double);
        let zeros = || Tensor::zeros_like(&distance).to_kind(Kind::Double);
        let ones = Tensor::ones_like(&distance).to_kind(Kind::Double);
        let heads_hit = answers.heads_hit.map_or_else(zeros, select);
        let columns = [
            ones,
            select(answers.nll),
            select(answers.correct),
            heads_hit.gt(0).to_kind(Kind::Double),
            heads_hit,
            answers.evicted.map_or_else(zeros, select),
        ];
        let values = Tensor::stack(&columns, 1); // [n, 6]
        let sums = Tensor::zeros([self.sums.len() as i64, 6], (Kind::Double, device)).index_add(0, &bucket, &values);
        let sums = Vec::<f64>::try_from(sums.view([-1]).to_device(tch::Device::Cpu)).expect("[buckets · 6] sums");
        for (bucket, row) in self.sums.iter_mut().zip(sums.chunks(6)) {
            for (total, x) in bucket.iter_mut().zip(row) {
                *total += x;
            }
        }
    }

    /// The non-empty buckets, shortest distance first.
    pub fn totals(&self) -> Vec<DistanceTotals> {
        let labels = distance_labels(&self.edges);
        let froms = std::iter::once(0).chain(self.edges.iter().copied());
        labels
            .into_iter()
            .zip(froms)
            .zip(&self.sums)
            .filter(|(_, s)| s[0] > 0.0)
            .map(|((bucket, from), s)| DistanceTotals {
                bucket,
                from,
                tokens: s[0],
                nll: s[1],
                correct: s[2],
                hits_any_head: s[3],
                hits_head_sum: s[4],
                evicted: s[5],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: one answer at a time, its bucket by counting the edges at or below it.
    fn slow(edges: &[usize], distance: &[i64], nll: &[f64], correct: &[f64], heads: &[f64]) -> Vec<[f64; 6]> {
        let mut sums = vec![[0.0; 6]; edges.len() + 1];
        for i in 0..distance.len() {
            if distance[i] < 0 {
                continue;
            }
            let b = edges.iter().filter(|&&e| e as i64 <= distance[i]).count();
            let row = [1.0, nll[i], correct[i], f64::from(heads[i] > 0.0), heads[i], 0.0];
            for (s, x) in sums[b].iter_mut().zip(row) {
                *s += x;
            }
        }
        sums
    }

    #[test]
    fn bucketing_equals_the_slow_reference() {
        let edges = distance_edges(32);
        assert_eq!(&edges[..4], &[32, 128, 512, 2048]);
        assert_eq!(*edges.last().unwrap(), 1 << 19);
        let mut tally = DistanceTally::new(edges.clone());
        let mut want = vec![[0.0; 6]; edges.len() + 1];
        for seed in 0..3 {
            tch::manual_seed(seed);
            // Distances on both sides of every edge, and the edges themselves.
            let exact = Tensor::from_slice(&edges.iter().map(|&e| e as i64).collect::<Vec<_>>());
            let random = Tensor::randint(2 << 20, [62], (Kind::Int64, tch::Device::Cpu)) - (1 << 19);
            let distance = Tensor::cat(&[exact.shallow_clone(), exact - 1, random], 0).view([2, -1]);
            let shape = distance.size();
            let nll = Tensor::rand(&shape, (Kind::Float, tch::Device::Cpu));
            let correct = Tensor::rand(&shape, (Kind::Float, tch::Device::Cpu))
                .gt(0.5)
                .to_kind(Kind::Float);
            let heads = Tensor::randint(3, &shape, (Kind::Float, tch::Device::Cpu));
            tally.add(&Answers {
                distance: &distance,
                nll: &nll,
                correct: &correct,
                heads_hit: Some(&heads),
                evicted: None,
            });
            let host = |t: &Tensor| Vec::<f64>::try_from(t.view([-1]).to_kind(Kind::Double)).unwrap();
            let d = Vec::<i64>::try_from(distance.view([-1])).unwrap();
            let slow_sums = slow(&edges, &d, &host(&nll), &host(&correct), &host(&heads));
            for (w, s) in want.iter_mut().zip(slow_sums) {
                for (a, b) in w.iter_mut().zip(s) {
                    *a += b;
                }
            }
        }
        let got = tally.totals();
        let want: Vec<&[f64; 6]> = want.iter().filter(|s| s[0] > 0.0).collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            let row = [g.tokens, g.nll, g.correct, g.hits_any_head, g.hits_head_sum, g.evicted];
            for (a, b) in row.iter().zip(w) {
                assert!((a - b).abs() < 1e-9, "{}: {row:?} against {w:?}", g.bucket);
            }
        }
        assert_eq!(got[0].bucket, "<32");
        assert_eq!(bucket_bounds("<32"), Some((0, 32.0)));
        assert_eq!(bucket_bounds("4096-16384"), Some((4096, 16384.0)));
        assert_eq!(bucket_bounds(">1048576"), Some((1048576, f64::INFINITY)));
        let (n, correct) = pooled(&got, 128, 2048).unwrap();
        let want: Vec<&DistanceTotals> = got.iter().filter(|b| b.from == 128 || b.from == 512).collect();
        assert_eq!(n, want.iter().map(|b| b.tokens).sum::<f64>());
        assert_eq!(correct, want.iter().map(|b| b.correct).sum::<f64>());
        assert_eq!(pooled(&got, 100, 200), None);
        assert_eq!(distance_labels(&[32, 128]), vec!["<32", "32-128", ">128"]);
    }
}
