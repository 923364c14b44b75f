//! Memory benchmarks: exact retrieval (search alone and with the gather of keys and
//! values), its scaling over memory and chunk size, the write (with wrap-around), and the
//! bank's bytes per cached token.

use super::{measure, BenchRow, Timing};
use crate::device::synchronize;
use crate::memory::{BankConfig, BankSharing, Eviction, MemoryBank};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// One retrieval problem: a bank of `memory` tokens in chunks of `chunk`, `heads` × `dim`,
/// searched by `queries` query tokens for `k_tokens` tokens each.
#[derive(Debug, Clone, Copy)]
pub struct RetrievalShape {
    pub heads: i64,
    pub dim: i64,
    pub memory: i64,
    pub chunk: i64,
    pub k_tokens: i64,
    pub queries: i64,
}

impl RetrievalShape {
    /// The paper's: M = 65536, c = 4, K = 64, 16 heads × 64, 1024-token segments.
    pub fn paper() -> Self {
        Self {
            heads: 16,
            dim: 64,
            memory: 65536,
            chunk: 4,
            k_tokens: 64,
            queries: 1024,
        }
    }

    pub fn quick() -> Self {
        Self {
            heads: 2,
            dim: 16,
            memory: 2048,
            chunk: 4,
            k_tokens: 16,
            queries: 64,
        }
    }

    pub fn chunks(&self) -> i64 {
        self.memory / self.chunk
    }

    pub fn chunks_per_query(&self) -> i64 {
        self.k_tokens / self.chunk
    }

    pub fn describe(&self) -> String {
        format!(
            "M={} c={} K={} H={} d={} T={}",
            self.memory, self.chunk, self.k_tokens, self.heads, self.dim, self.queries
        )
    }

    /// FLOPs of scoring every query against every chunk key.
    pub fn scoring_flops(&self) -> f64 {
        2.0 * (self.heads * self.queries * self.chunks() * self.dim) as f64
    }

    fn config(&self, kind: Kind, device: Device) -> BankConfig {
        BankConfig {
            n_head: self.heads,
            head_dim: self.dim,
            capacity: self.memory,
            chunk: self.chunk,
            top_k: self.k_tokens,
            batch: 1,
            sharing: BankSharing::PerStream,
            eviction: Eviction::Fifo,
            kind,
            device,
        }
    }

    /// A full f32 bank of random keys (values the same tensor: their contents do not matter).
    pub fn filled_bank(&self, device: Device) -> MemoryBank {
        let mut bank = MemoryBank::new(self.config(Kind::Float, device)).expect("bench shapes are valid");
        let keys = Tensor::randn([1, self.heads, self.memory, self.dim], (Kind::Float, device));
        bank.write(&keys, &keys);
        bank
    }

    pub fn random_queries(&self, device: Device) -> Tensor {
        Tensor::randn([1, self.heads, self.queries, self.dim], (Kind::Float, device))
    }
}

/// A full bank of `shape` and random queries for it.
pub struct Problem {
    pub shape: RetrievalShape,
    pub bank: MemoryBank,
    pub queries: Tensor,
}

impl Problem {
    pub fn random(shape: RetrievalShape, device: Device) -> Self {
        Self {
            shape,
            bank: shape.filled_bank(device),
            queries: shape.random_queries(device),
        }
    }
}

/// Search alone (slots), and the whole retrieval (search + gather of K keys and values).
pub struct RetrievalTimings {
    pub search: Timing,
    pub retrieve: Timing,
}

pub fn time_retrieval(problem: &Problem, device: Device, samples: usize) -> RetrievalTimings {
    let Problem { shape, bank, queries } = problem;
    let kc = shape.chunks_per_query();
    let search = measure(device, 1, samples, || {
        let _ = bank.search(queries, kc);
    });
    let retrieve = measure(device, 1, samples, || {
        let _ = bank.retrieve(queries, shape.k_tokens).expect("valid top-K");
    });
    RetrievalTimings { search, retrieve }
}

/// Rows for one shape: search, retrieve and (optionally) the dense matmul + `topk` reference.
pub fn retrieval_rows(
    group: &str,
    problem: &Problem,
    device: Device,
    samples: usize,
    dense: bool,
) -> (Vec<BenchRow>, RetrievalTimings) {
    let t = time_retrieval(problem, device, samples);
    let Problem { shape, bank, queries } = problem;
    let flops = shape.scoring_flops();
    let tokens = shape.queries as f64;
    let mut rows = vec![
        BenchRow::timed(group, "search (ids)", shape.describe(), &t.search)
            .with_flops(flops)
            .with_tokens(tokens)
            .with_note(search_path(bank, queries)),
        BenchRow::timed(group, "retrieve (ids + keys/values)", shape.describe(), &t.retrieve)
            .with_flops(flops)
            .with_tokens(tokens),
    ];
    if dense {
        let kc = shape.chunks_per_query();
        let timing = measure(device, 1, samples, || {
            let _ = bank.search_dense(queries, kc);
        });
        rows.push(
            BenchRow::timed(group, "search, dense matmul + topk", shape.describe(), &timing)
                .with_flops(flops)
                .with_tokens(tokens)
                .with_note("the plain PyTorch way: the whole T × N score matrix, then topk"),
        );
    }
    (rows, t)
}

fn search_path(bank: &MemoryBank, queries: &Tensor) -> &'static str {
    let (b, _, t, _) = queries.size4().expect("queries are [B, H, T, d]");
    if bank.searches_blocked(b, t) {
        "blocked scoring + running top-k"
    } else {
        "dense scoring + topk"
    }
}

/// Times segment writes of `shape.queries` tokens into a full bank, two rounds of the ring,
/// and splits them by whether the write wraps around the ring's end. The bank starts half
/// a segment in, so that with M a multiple of the segment one write per round wraps.
pub fn write_rows(shape: &RetrievalShape, device: Device) -> Vec<BenchRow> {
    let (m, t) = (shape.memory, shape.queries);
    let mut bank = shape.filled_bank(device);
    let half = (t / 2 / shape.chunk).max(1) * shape.chunk;
    let head = Tensor::randn([1, shape.heads, half, shape.dim], (Kind::Float, device));
    bank.write(&head, &head);
    let segment = Tensor::randn([1, shape.heads, t, shape.dim], (Kind::Float, device));
    for _ in 0..2 {
        bank.write(&segment, &segment); // warm-up (values: the same tensor)
    }
    let mut offset = half + 2 * t;
    let (mut plain, mut wrapping) = (vec![], vec![]);
    for _ in 0..(2 * m / t).max(4) {
        let wraps = offset % m + t > m;
        synchronize(device);
        let start = Instant::now();
        bank.write(&segment, &segment);
        synchronize(device);
        let seconds = start.elapsed().as_secs_f64();
        if wraps { &mut wrapping } else { &mut plain }.push(seconds);
        offset += t;
    }
    let describe = format!("M={m} c={} H={} d={} segment={t}", shape.chunk, shape.heads, shape.dim);
    let mut rows = vec![BenchRow::timed(
        "write",
        "write a segment",
        describe.clone(),
        &Timing::from_seconds(plain),
    )
    .with_tokens(t as f64)];
    if !wrapping.is_empty() {
        rows.push(
            BenchRow::timed(
                "write",
                "write a segment across the ring's end",
                describe,
                &Timing::from_seconds(wrapping),
            )
            .with_tokens(t as f64),
        );
    }
    rows
}

/// The bank's bytes per cached token against 2 × width × bytes per element plus the chunk
/// key (width / c elements per token).
pub struct BankBytes {
    pub dtype: &'static str,
    pub shape: String,
    /// All of the bank's buffers (keys, values, chunk keys, validity, indices, the pending
    /// chunk), divided by M.
    pub per_token: f64,
    pub ideal: f64,
}

impl BankBytes {
    pub fn ratio(&self) -> f64 {
        self.per_token / self.ideal
    }

    pub fn row(&self) -> BenchRow {
        BenchRow::untimed(
            "bank",
            &format!("bank bytes per cached token, {}", self.dtype),
            self.shape.clone(),
        )
        .with_note(format!(
            "{:.1} B measured, {:.1} B ideal: ratio {:.4}",
            self.per_token,
            self.ideal,
            self.ratio()
        ))
    }
}

/// [`BankBytes`] of an f32 and an f16 bank of `shape`.
pub fn bank_bytes(shape: &RetrievalShape) -> Vec<BankBytes> {
    [(Kind::Float, "f32"), (Kind::Half, "f16")]
        .into_iter()
        .map(|(kind, dtype)| {
            let bank = MemoryBank::new(shape.config(kind, Device::Cpu)).expect("bench shapes are valid");
            let bytes: i64 = bank
                .state()
                .iter()
                .map(|(_, t)| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64)
                .sum();
            let width = (shape.heads * shape.dim) as f64;
            let elt = kind.elt_size_in_bytes() as f64;
            BankBytes {
                dtype,
                shape: format!("M={} c={} width={width}", shape.memory, shape.chunk),
                per_token: bytes as f64 / shape.memory as f64,
                ideal: 2.0 * width * elt + width * elt / shape.chunk as f64,
            }
        })
        .collect()
}
