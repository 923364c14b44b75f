//! Low-precision search that returns the exact ids: chunk keys are scored in bf16 (AVX-512
//! BF16 through torch's bf16 matmul, 1.9× the f32 matmul's rate on one AMD EPYC Zen 4
//! core: 170 against 88 GFLOP/s for 256 × 1024 × 64), a superset of candidates is kept per query, and the
//! candidates are re-scored in f32 for the exact top-k.
//!
//! Exactness is certified per query row, not hoped for. The bf16 score of a chunk differs
//! from its exact score by at most ε = γ·‖q‖·max‖k‖ (γ covers rounding q and k to bf16,
//! f32 accumulation and the f32 re-score). Every chunk left out of the candidates scored at
//! most the candidates' lowest bf16 score a, so its exact score is at most a + ε. When that
//! is below the k-th best re-scored candidate, the candidates hold the exact top-k; when not,
//! the row is searched again in f32. [`LowpStats`] counts those rows.

use super::search::{scan_f32, search_pool};
use super::{MemoryBank, SearchPrecision};
use longmem_kernels::Bf16;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use tch::{Device, Kind, Tensor};

/// Candidates kept per query: this many times the chunks it retrieves.
const SUPERSET: usize = 2;
/// Query rows and chunk slots per score block (as the f32 blocked search).
const QUERY_BLOCK: i64 = 256;
const SLOT_BLOCK: i64 = 1024;

/// The bf16 unit roundoff, 2⁻⁸, and f32's, 2⁻²⁴.
const U_BF16: f64 = 1.0 / 256.0;
const U_F32: f64 = 1.0 / 16_777_216.0;

/// Whether this CPU has AVX-512 BF16 (the bf16 search's speed comes from it; without it
/// the search stays in f32).
pub fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The certificate's γ for head dim `d`, with a 1% margin: q and k rounded to bf16 (2u + u²),
/// the product accumulated in f32 and rounded to bf16 (torch's CPU matmul has no f32 output
/// for bf16 inputs; `mm.dtype_out` is CUDA-only), and the f32 re-score.
fn gamma(d: i64) -> f64 {
    (3.0 * U_BF16 + U_BF16 * U_BF16 + 2.0 * (d as f64 + 2.0) * U_F32) * 1.01
}

/// What the bf16 searches did, over the bank's life: query rows searched, and the rows
/// whose candidates could not be certified and were searched again in f32.
#[derive(Debug, Default)]
pub struct LowpStats {
    pub rows: AtomicU64,
    pub rescanned: AtomicU64,
}

impl LowpStats {
    /// (rows, rows searched again in f32).
    pub fn read(&self) -> (u64, u64) {
        (
            self.rows.load(Ordering::Relaxed),
            self.rescanned.load(Ordering::Relaxed),
        )
    }
}

/// One (batch row, head) of a bf16 search.
struct Task<'a> {
    queries: Tensor,
    keys: Tensor,
    eligible: &'a [bool],
    at: usize,
}

impl MemoryBank {
    /// Which precision the blocked search scores in: bf16 (certified exact, see `lowp.rs`)
    /// where the CPU has AVX-512 BF16 and the bank allows it, else f32.
    pub fn search_precision(&self) -> SearchPrecision {
        if self.allow_bf16_search && cpu_has_bf16() {
            SearchPrecision::Bf16
        } else {
            SearchPrecision::F32
        }
    }

    /// Lets the blocked search score in bf16 where the CPU has AVX-512 BF16 (the default),
    /// or keeps it in f32. Either returns the exact ids.
    pub fn allow_bf16_search(&mut self, allow: bool) {
        self.allow_bf16_search = allow;
    }

    /// (query rows the bf16 search took, rows of them it searched again in f32 because the
    /// bf16 candidates could not be certified), over the bank's life.
    pub fn bf16_search_stats(&self) -> (u64, u64) {
        self.lowp.read()
    }

    /// [`MemoryBank::search_blocked`]'s result, scored in bf16 and certified exact (module
    /// docs). Same layout: `[B, H, T, kc]` slots and f32 scores, best first.
    pub(super) fn search_bf16(&self, queries: &Tensor, kc: i64) -> (Tensor, Tensor) {
        let (b, h, t, d) = queries.size4().expect("queries must be [B, H, T, d]");
        let q = queries.detach().to_kind(Kind::Float).contiguous();
        let valid: Vec<Vec<bool>> = (0..self.streams())
            .map(|s| Vec::<bool>::try_from(self.valid.get(s)).expect("valid is a bool vector"))
            .collect();
        let mut tasks = vec![];
        for row in 0..b {
            let s = self.stream_of_row(row as usize);
            if !valid[s].contains(&true) {
                continue;
            }
            for head in 0..h {
                tasks.push(Task {
                    queries: q.get(row).get(head),
                    keys: self.chunk_keys.get(s as i64).get(head),
                    eligible: &valid[s],
                    at: ((row * h + head) * t * kc) as usize,
                });
            }
        }
        let gamma = gamma(d);
        let torch_threads = tch::get_num_threads();
        let found: Vec<(usize, Searched)> = search_pool().install(|| {
            tasks
                .into_par_iter()
                .map(|task| {
                    tch::set_num_threads(1);
                    let _guard = tch::no_grad_guard();
                    (task.at, search_task(&task, kc as usize, gamma))
                })
                .collect()
        });
        tch::set_num_threads(torch_threads);
        self.lowp.rows.fetch_add((b * h * t) as u64, Ordering::Relaxed);
        let rescanned = found.iter().map(|(_, f)| f.rescanned).sum();
        self.lowp.rescanned.fetch_add(rescanned, Ordering::Relaxed);
        let mut slots = vec![0i64; (b * h * t * kc) as usize];
        let mut scores = vec![f32::NEG_INFINITY; slots.len()];
        for (at, found) in found {
            scores[at..at + found.scores.len()].copy_from_slice(&found.scores);
            for (dst, &id) in slots[at..at + found.ids.len()].iter_mut().zip(&found.ids) {
                *dst = id.max(0);
            }
        }
        let shape = [b, h, t, kc];
        (
            Tensor::from_slice(&slots).view(shape),
            Tensor::from_slice(&scores).view(shape),
        )
    }
}

/// One task's exact top-k, `[T × kc]` row-major, and its rows searched again in f32.
struct Searched {
    scores: Vec<f32>,
    ids: Vec<i64>,
    rescanned: u64,
}

/// One (row, head): bf16 candidates per query block, re-scored and certified.
fn search_task(task: &Task, kc: usize, gamma: f64) -> Searched {
    let (t, d) = task.queries.size2().expect("queries are [T, d]");
    let n = task.keys.size()[0];
    let keys16 = task.keys.to_kind(Kind::BFloat16);
    let q16 = task.queries.to_kind(Kind::BFloat16);
    let keys_f32 = f32_slice(&task.keys);
    let q_f32 = f32_slice(&task.queries);
    let key_norms = Vec::<f32>::try_from(task.keys.norm_scalaropt_dim(2, [-1], false)).expect("[N] norms");
    let max_norm = key_norms
        .iter()
        .zip(task.eligible)
        .filter(|(_, &e)| e)
        .map(|(&x, _)| x as f64)
        .fold(0.0, f64::max);
    let width = (kc * SUPERSET).min(n as usize);
    let buffer = Tensor::empty([QUERY_BLOCK.min(t) * SLOT_BLOCK.min(n)], (Kind::BFloat16, Device::Cpu));
    let mut scores = Vec::with_capacity(t as usize * kc);
    let mut ids = Vec::with_capacity(t as usize * kc);
    let mut rescanned = 0u64;
    let (mut best, mut exact_ids) = (vec![0f32; kc], vec![0i64; kc]);
    for t0 in (0..t).step_by(QUERY_BLOCK as usize) {
        let tq = QUERY_BLOCK.min(t - t0);
        let mut top = longmem_kernels::RunningTopK::new(tq as usize, width);
        let qb = q16.narrow(0, t0, tq);
        for n0 in (0..n).step_by(SLOT_BLOCK as usize) {
            let nk = SLOT_BLOCK.min(n - n0);
            if !task.eligible[n0 as usize..(n0 + nk) as usize].contains(&true) {
                continue;
            }
            let out = buffer.narrow(0, 0, tq * nk).view([tq, nk]);
            let _ = qb.mm_out(&out, &keys16.narrow(0, n0, nk).tr());
            // SAFETY: `out` is a contiguous bf16 CPU tensor of tq·nk elements that outlives
            // the slice, and only this task touches it.
            let block = unsafe { std::slice::from_raw_parts(out.data_ptr() as *const Bf16, (tq * nk) as usize) };
            top.update(block, nk as usize, 0, n0 as usize, task.eligible);
        }
        let mut failed = vec![];
        for i in 0..tq as usize {
            let query = &q_f32[(t0 as usize + i) * d as usize..][..d as usize];
            let epsilon = gamma * norm(query) * max_norm;
            longmem_kernels::rescore(
                query,
                keys_f32,
                &top.ids()[i * width..(i + 1) * width],
                &mut best,
                &mut exact_ids,
            );
            let lowest = top.scores()[(i + 1) * width - 1] as f64;
            let certified = lowest == f64::NEG_INFINITY || lowest + epsilon < best[kc - 1] as f64;
            if !certified {
                failed.push(i);
            }
            scores.extend_from_slice(&best);
            ids.extend_from_slice(&exact_ids);
        }
        rescanned += failed.len() as u64;
        if !failed.is_empty() {
            let rows = Tensor::from_slice(&failed.iter().map(|&i| t0 + i as i64).collect::<Vec<_>>());
            let exact = scan_f32(&task.queries.index_select(0, &rows), &task.keys, task.eligible, kc);
            let base = t0 as usize * kc;
            for (j, &i) in failed.iter().enumerate() {
                let at = base + i * kc;
                scores[at..at + kc].copy_from_slice(&exact.scores()[j * kc..(j + 1) * kc]);
                ids[at..at + kc].copy_from_slice(&exact.ids()[j * kc..(j + 1) * kc]);
            }
        }
    }
    Searched { scores, ids, rescanned }
}

/// A contiguous f32 CPU tensor's elements.
fn f32_slice(t: &Tensor) -> &[f32] {
    assert!(t.kind() == Kind::Float && t.is_contiguous() && t.device() == Device::Cpu);
    // SAFETY: a contiguous f32 CPU tensor of numel elements, alive as long as `t` is.
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, t.numel()) }
}

fn norm(a: &[f32]) -> f64 {
    a.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt()
}
