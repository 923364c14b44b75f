//! The bank's exact top-k search over chunk keys: dense scoring with torch's `topk` (the
//! reference), and a blocked search with a running top-k for large f32 searches on the CPU.

use super::{BankSharing, MemoryBank, SearchPrecision};
use rayon::prelude::*;
use std::sync::LazyLock;
use tch::{Device, Kind, Tensor};

/// The blocked search's threads, one per torch intra-op thread, apart from rayon's global
/// pool so that their torch settings (one thread each) stay theirs.
pub(super) fn search_pool() -> &'static rayon::ThreadPool {
    static POOL: LazyLock<rayon::ThreadPool> = LazyLock::new(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(tch::get_num_threads().max(1) as usize)
            .thread_name(|i| format!("memory-search-{i}"))
            .build()
            .expect("a thread pool for the memory search")
    });
    &POOL
}

impl MemoryBank {
    /// The `kc` best chunk slots per query and head: `([B, H, T, kc]` int64 slots,
    /// `[B, H, T, kc]` f32 scores)`, best first; where fewer than `kc` chunks are valid the
    /// rest score −inf (their slot is any valid index, to be masked).
    ///
    /// A large search of an f32 bank on the CPU is done block by block: a block of scores at
    /// a time by matmul, folded into a running top-k, never the whole `T × N` score matrix
    /// (the selection, not the arithmetic, is what costs; see `longmem bench`). Other banks,
    /// and searches whose whole score matrix is small, score densely and take torch's
    /// `topk`. Both give the same slots (ties aside).
    ///
    /// Under grouped-query attention `queries` has more heads than the bank (a multiple G of
    /// them): the G query heads that share a key/value head search it together, as one
    /// block of G·T queries.
    pub fn search(&self, queries: &Tensor, kc: i64) -> (Tensor, Tensor) {
        let (b, h, t, d) = queries.size4().expect("queries must be [B, H, T, d]");
        let kv_heads = self.config.n_head;
        if h != kv_heads {
            let grouped = queries.reshape([b, kv_heads, h / kv_heads * t, d]);
            let (slots, top) = self.search(&grouped, kc);
            return (slots.view([b, h, t, kc]), top.view([b, h, t, kc]));
        }
        if self.searches_blocked(b, t) {
            match self.search_precision() {
                SearchPrecision::Bf16 => self.search_bf16(queries, kc),
                SearchPrecision::F32 => self.search_blocked(queries, kc),
            }
        } else {
            self.search_dense(queries, kc)
        }
    }

    /// Whether [`MemoryBank::search`] takes the blocked path for `rows` × `queries` query
    /// tokens: an f32 bank on the CPU whose dense score matrix would exceed 2²⁰ scores
    /// (4 MiB). Below that, dense scoring fits in cache and `topk` is cheaper than the
    /// blocked search's per-task set-up (measured: 2.7 against 6.1 ms for 16 rows × 4 heads
    /// × 32 queries over 256 chunks, top 32).
    pub fn searches_blocked(&self, rows: i64, queries: i64) -> bool {
        let scores = rows * self.config.n_head * queries * self.n_chunks;
        self.config.device == Device::Cpu && self.config.kind == Kind::Float && scores > 1 << 20
    }

    /// Dense scores and `topk`: the reference, and the path for GPUs, half-precision banks
    /// and small searches. Queries are scored in tiles along T whose scores (f32, plus the
    /// bank's dtype where that is narrower) fit the bank's search budget, so memory stays
    /// bounded at any shape; each query's top-k is its own, so tiling changes nothing.
    pub fn search_dense(&self, queries: &Tensor, kc: i64) -> (Tensor, Tensor) {
        let (b, h, t, _) = queries.size4().expect("queries must be [B, H, T, d]");
        let bytes_per_score = 4 + if self.config.kind == Kind::Float {
            0
        } else {
            self.config.kind.elt_size_in_bytes() as i64
        };
        let tile = (self.search_budget / (b * h * self.n_chunks * bytes_per_score).max(1)).clamp(1, t);
        if tile >= t {
            return self.search_dense_tile(queries, kc);
        }
        let (slots, top): (Vec<Tensor>, Vec<Tensor>) = (0..t)
            .step_by(tile as usize)
            .map(|start| self.search_dense_tile(&queries.narrow(2, start, tile.min(t - start)), kc))
            .unzip();
        (Tensor::cat(&slots, 2), Tensor::cat(&top, 2))
    }

    /// [`MemoryBank::search_dense`] of one tile of queries.
    fn search_dense_tile(&self, queries: &Tensor, kc: i64) -> (Tensor, Tensor) {
        let _guard = tch::no_grad_guard();
        let (b, _, _, _) = queries.size4().expect("queries must be [B, H, T, d]");
        let n = self.n_chunks;
        let rows = |x: &Tensor| match self.config.sharing {
            BankSharing::PerStream => x.shallow_clone(),
            BankSharing::Shared => x.expand([b].iter().chain(&x.size()[1..]).copied().collect::<Vec<_>>(), false),
        };
        let q = queries.to_kind(self.config.kind);
        let scores = q.matmul(&rows(&self.chunk_keys).transpose(-1, -2)); // [B, H, T, N]
        let valid = rows(&self.valid).view([b, 1, 1, n]);
        // In place: one f32 score matrix per tile, as the search budget counts.
        let mut scores = scores.to_kind(Kind::Float);
        let _ = scores.masked_fill_(&valid.logical_not(), f64::NEG_INFINITY);
        let (top, slots) = scores.topk(kc, -1, true, true);
        (slots, top)
    }

    /// Blocked scoring with a running top-k (f32 banks on the CPU).
    ///
    /// Work is split into (row, head, query block) tasks on a thread pool of its own, each
    /// doing its matmuls single-threaded and scanning its score block while it is still in
    /// that core's cache. (Letting torch's OpenMP threads do the matmul and rayon's the scan
    /// made the two pools contend for the cores: 1.8× slower at the paper's shape.)
    pub fn search_blocked(&self, queries: &Tensor, kc: i64) -> (Tensor, Tensor) {
        /// Query rows per task.
        const QUERY_BLOCK: i64 = 256;
        let (b, h, t, _) = queries.size4().expect("queries must be [B, H, T, d]");
        let q = queries.detach().to_kind(Kind::Float).contiguous();
        let valid: Vec<Vec<bool>> = (0..self.streams())
            .map(|s| Vec::<bool>::try_from(self.valid.get(s)).expect("valid is a bool vector"))
            .collect();
        struct Task<'a> {
            queries: Tensor,
            keys: Tensor,
            eligible: &'a [bool],
            /// Where the task's `rows × kc` results go in the `[B, H, T, kc]` output.
            at: usize,
        }
        let mut tasks = vec![];
        for row in 0..b {
            let s = self.stream_of_row(row as usize) as i64;
            let eligible = &valid[s as usize];
            if !eligible.contains(&true) {
                continue;
            }
            for head in 0..h {
                for t0 in (0..t).step_by(QUERY_BLOCK as usize) {
                    tasks.push(Task {
                        queries: q.get(row).get(head).narrow(0, t0, QUERY_BLOCK.min(t - t0)),
                        keys: self.chunk_keys.get(s).get(head), // [N, d], contiguous
                        eligible,
                        at: (((row * h + head) * t + t0) * kc) as usize,
                    });
                }
            }
        }
        let torch_threads = tch::get_num_threads();
        let found: Vec<(usize, longmem_kernels::RunningTopK)> = search_pool().install(|| {
            tasks
                .into_par_iter()
                .map(|task| {
                    // This worker's torch calls run inline (OpenMP and MKL thread counts are
                    // per thread); gradients never flow through the search.
                    tch::set_num_threads(1);
                    let _guard = tch::no_grad_guard();
                    let top = scan_f32(&task.queries, &task.keys, task.eligible, kc as usize);
                    (task.at, top)
                })
                .collect()
        });
        // `set_num_threads` also sets torch's process-wide default: restore it.
        tch::set_num_threads(torch_threads);
        let mut slots = vec![0i64; (b * h * t * kc) as usize];
        let mut scores = vec![f32::NEG_INFINITY; slots.len()];
        for (at, top) in found {
            let len = top.scores().len();
            scores[at..at + len].copy_from_slice(top.scores());
            for (dst, &id) in slots[at..at + len].iter_mut().zip(top.ids()) {
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

/// The top `kc` eligible chunks of each of `queries` `[tq, d]` against `keys` `[N, d]` (f32,
/// contiguous), scored by matmul one block of slots at a time on the calling thread.
pub(super) fn scan_f32(queries: &Tensor, keys: &Tensor, eligible: &[bool], kc: usize) -> longmem_kernels::RunningTopK {
    /// Chunk slots per score block: 256 queries × 1024 f32 is 1 MiB, which stays in a core's
    /// L2 between the matmul that writes it and the scan that reads it.
    const SLOT_BLOCK: i64 = 1024;
    let tq = queries.size()[0];
    let n = keys.size()[0];
    let buffer = Tensor::empty([tq * SLOT_BLOCK.min(n)], (Kind::Float, Device::Cpu));
    let mut top = longmem_kernels::RunningTopK::new(tq as usize, kc);
    for n0 in (0..n).step_by(SLOT_BLOCK as usize) {
        let nk = SLOT_BLOCK.min(n - n0);
        if !eligible[n0 as usize..(n0 + nk) as usize].contains(&true) {
            continue;
        }
        let out = buffer.narrow(0, 0, tq * nk).view([tq, nk]);
        let _ = queries.mm_out(&out, &keys.narrow(0, n0, nk).tr());
        // SAFETY: `out` is a contiguous f32 CPU tensor of tq·nk elements that outlives the
        // slice, and only this call touches it.
        let block = unsafe { std::slice::from_raw_parts(out.data_ptr() as *const f32, (tq * nk) as usize) };
        top.update(block, nk as usize, 0, n0 as usize, eligible);
    }
    top
}
