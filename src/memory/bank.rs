//! Cache memory bank, as in the LongMem paper and its reference code.
//!
//! Per head, a ring buffer of the last M tokens' keys and values grouped in chunks of c
//! consecutive tokens; each chunk's retrieval key is the mean of its token keys. Buffers
//! are preallocated on the run's device and written in place; the host keeps only integer
//! counters. A write that ends inside a chunk keeps the partial chunk aside and completes
//! it with the next write; a partial chunk is never retrievable. Retrieval is exact: per
//! query token and head, the top K/c chunks by inner product, returned as K (key, value)
//! pairs with a validity mask, so an empty or part-filled bank never yields garbage.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use tch::{Device, Kind, Tensor};

/// The blocked search's threads, one per torch intra-op thread, apart from rayon's global
/// pool so that their torch settings (one thread each) stay theirs.
fn search_pool() -> &'static rayon::ThreadPool {
    static POOL: LazyLock<rayon::ThreadPool> = LazyLock::new(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(tch::get_num_threads().max(1) as usize)
            .thread_name(|i| format!("memory-search-{i}"))
            .build()
            .expect("a thread pool for the memory search")
    });
    &POOL
}

/// How batch rows map to banks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BankSharing {
    /// One bank per stream (batch row): exact semantics, the default.
    PerStream,
    /// One bank for all rows, as the paper's code: rows are written one after another and
    /// every row retrieves from all of them.
    Shared,
}

/// What happens when a write does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Eviction {
    /// Overwrite the oldest chunks, exactly as many as arrive: the bank stays full.
    Fifo,
    /// The paper's code: when full, evict twice the incoming amount first, so the bank never
    /// holds its nominal size (kept as a switch for parity).
    PaperDouble,
}

/// A bank's shape, policies and retrieval size.
#[derive(Debug, Clone, PartialEq)]
pub struct BankConfig {
    pub n_head: i64,
    pub head_dim: i64,
    /// Capacity M in tokens; a multiple of `chunk`.
    pub capacity: i64,
    /// Chunk size c.
    pub chunk: i64,
    /// Retrieved tokens per query, K: a positive multiple of `chunk` (K/c chunks).
    pub top_k: i64,
    /// Batch rows B (the number of banks for [`BankSharing::PerStream`]).
    pub batch: i64,
    pub sharing: BankSharing,
    pub eviction: Eviction,
    /// Storage dtype of keys and values.
    pub kind: Kind,
    pub device: Device,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BankError {
    #[error("memory size {capacity} is not a positive multiple of the chunk size {chunk}")]
    Capacity { capacity: i64, chunk: i64 },
    #[error("retrieving {k} tokens per query needs a positive multiple of the chunk size {chunk}")]
    TopK { k: i64, chunk: i64 },
    #[error("memory `{key}` = {value} must be positive")]
    Shape { key: &'static str, value: i64 },
}

impl BankConfig {
    pub fn validate(&self) -> Result<(), BankError> {
        for (key, value) in [
            ("n_head", self.n_head),
            ("head_dim", self.head_dim),
            ("chunk", self.chunk),
            ("batch", self.batch),
        ] {
            if value <= 0 {
                return Err(BankError::Shape { key, value });
            }
        }
        if self.capacity <= 0 || self.capacity % self.chunk != 0 {
            return Err(BankError::Capacity {
                capacity: self.capacity,
                chunk: self.chunk,
            });
        }
        check_top_k(self.top_k, self.chunk)
    }

    /// Bytes the bank's buffers take: keys, values and chunk keys.
    pub fn bytes(&self) -> i64 {
        let streams = match self.sharing {
            BankSharing::PerStream => self.batch,
            BankSharing::Shared => 1,
        };
        let per_token = 2 * self.n_head * self.head_dim;
        let chunk_keys = (self.capacity / self.chunk) * self.n_head * self.head_dim;
        streams * (self.capacity * per_token + chunk_keys) * self.kind.elt_size_in_bytes() as i64
    }
}

/// Retrieving `k` tokens per query takes whole chunks: `k` must be a positive multiple of c.
fn check_top_k(k: i64, chunk: i64) -> Result<(), BankError> {
    if k <= 0 || k % chunk != 0 {
        return Err(BankError::TopK { k, chunk });
    }
    Ok(())
}

/// K retrieved (key, value) pairs per query token and head.
#[derive(Debug)]
pub struct Retrieved {
    /// `[B, H, T, K, d]`, in the bank's storage dtype.
    pub keys: Tensor,
    /// `[B, H, T, K, d]`
    pub values: Tensor,
    /// `[B, H, T, K]`: true where the pair is a real cached token.
    pub mask: Tensor,
    /// `[B, H, T, K/c]`: stream position of each retrieved chunk's first token divided by
    /// c (the chunk's index in its stream since the last reset), −1 where invalid.
    pub chunk_index: Tensor,
}

#[derive(Debug)]
pub struct MemoryBank {
    config: BankConfig,
    /// Chunk slots per stream, N = M / c.
    n_chunks: i64,
    /// `[S, H, N, c, d]`
    keys: Tensor,
    /// `[S, H, N, c, d]`
    values: Tensor,
    /// `[S, H, N, d]`: mean of each chunk's token keys.
    chunk_keys: Tensor,
    /// `[S, N]` bool: slot holds a chunk.
    valid: Tensor,
    /// `[S, N]` int64: index of the slot's chunk in its stream.
    chunk_index: Tensor,
    /// `[S, H, c, d]`: tokens of the chunk being completed.
    pending_keys: Tensor,
    pending_values: Tensor,
    /// Host counters per stream: next slot to write, slots filled, tokens pending, chunks
    /// written since the last reset.
    next: Vec<i64>,
    filled: Vec<i64>,
    pending: Vec<i64>,
    written_chunks: Vec<i64>,
}

impl MemoryBank {
    pub fn new(config: BankConfig) -> Result<Self, BankError> {
        config.validate()?;
        let streams = match config.sharing {
            BankSharing::PerStream => config.batch,
            BankSharing::Shared => 1,
        };
        let (h, d, c) = (config.n_head, config.head_dim, config.chunk);
        let n = config.capacity / c;
        let opts = (config.kind, config.device);
        let bank = Self {
            n_chunks: n,
            keys: Tensor::zeros([streams, h, n, c, d], opts),
            values: Tensor::zeros([streams, h, n, c, d], opts),
            chunk_keys: Tensor::zeros([streams, h, n, d], opts),
            valid: Tensor::zeros([streams, n], (Kind::Bool, config.device)),
            chunk_index: Tensor::full([streams, n], -1, (Kind::Int64, config.device)),
            pending_keys: Tensor::zeros([streams, h, c, d], opts),
            pending_values: Tensor::zeros([streams, h, c, d], opts),
            next: vec![0; streams as usize],
            filled: vec![0; streams as usize],
            pending: vec![0; streams as usize],
            written_chunks: vec![0; streams as usize],
            config,
        };
        Ok(bank)
    }

    pub fn config(&self) -> &BankConfig {
        &self.config
    }

    fn streams(&self) -> i64 {
        self.next.len() as i64
    }

    /// Tokens currently retrievable in stream `s` (complete chunks only).
    pub fn len_tokens(&self, s: usize) -> i64 {
        self.filled[s] * self.config.chunk
    }

    /// The stream batch row `row` reads and writes: its own, or the shared one.
    fn stream_of_row(&self, row: usize) -> usize {
        match self.config.sharing {
            BankSharing::PerStream => row,
            BankSharing::Shared => 0,
        }
    }

    /// Retrievable chunks for batch row `row` (its own stream, or the shared one).
    pub fn chunks_for_row(&self, row: usize) -> i64 {
        self.filled[self.stream_of_row(row)]
    }

    /// Empties every stream.
    pub fn reset_all(&mut self) {
        for s in 0..self.streams() as usize {
            self.reset_stream(s);
        }
    }

    /// Empties one stream's bank (a document boundary). With a shared bank, `s` must be 0.
    pub fn reset_stream(&mut self, s: usize) {
        self.next[s] = 0;
        self.filled[s] = 0;
        self.pending[s] = 0;
        self.written_chunks[s] = 0;
        let _ = self.valid.get(s as i64).fill_(0);
        let _ = self.chunk_index.get(s as i64).fill_(-1);
    }

    /// Appends one segment's keys and values, `[B, H, T, d]` each (detached: nothing flows
    /// back into memory). Per-stream banks take row b into stream b; a shared bank takes
    /// the rows one after another.
    pub fn write(&mut self, keys: &Tensor, values: &Tensor) {
        let _guard = tch::no_grad_guard();
        let (b, h, t, d) = keys.size4().expect("keys must be [B, H, T, d]");
        assert_eq!(b, self.config.batch, "bank was built for {} rows", self.config.batch);
        assert_eq!(
            (h, d),
            (self.config.n_head, self.config.head_dim),
            "head shape mismatch"
        );
        let keys = keys.detach().to_kind(self.config.kind);
        let values = values.detach().to_kind(self.config.kind);
        match self.config.sharing {
            BankSharing::PerStream => {
                for s in 0..b {
                    self.write_stream(s as usize, &keys.get(s), &values.get(s));
                }
            }
            BankSharing::Shared => {
                // [B, H, T, d] → [H, B·T, d], row 0's tokens first.
                let flat = |x: &Tensor| x.permute([1, 0, 2, 3]).reshape([h, b * t, d]);
                self.write_stream(0, &flat(&keys), &flat(&values));
            }
        }
    }

    /// `keys`, `values`: `[H, n, d]` tokens in stream order.
    fn write_stream(&mut self, s: usize, keys: &Tensor, values: &Tensor) {
        let c = self.config.chunk;
        let n = keys.size()[1];
        let mut offset = 0;
        if self.pending[s] > 0 {
            let take = (c - self.pending[s]).min(n);
            let (pk, pv) = (self.pending_keys.get(s as i64), self.pending_values.get(s as i64));
            pk.narrow(1, self.pending[s], take).copy_(&keys.narrow(1, 0, take));
            pv.narrow(1, self.pending[s], take).copy_(&values.narrow(1, 0, take));
            self.pending[s] += take;
            offset = take;
            if self.pending[s] == c {
                self.commit(s, &pk.unsqueeze(1), &pv.unsqueeze(1));
                self.pending[s] = 0;
            }
        }
        let full = (n - offset) / c;
        if full > 0 {
            let (h, d) = (self.config.n_head, self.config.head_dim);
            let ck = keys.narrow(1, offset, full * c).reshape([h, full, c, d]);
            let cv = values.narrow(1, offset, full * c).reshape([h, full, c, d]);
            // Only the last N chunks can survive this write.
            let skip = (full - self.n_chunks).max(0);
            self.written_chunks[s] += skip;
            self.commit(s, &ck.narrow(1, skip, full - skip), &cv.narrow(1, skip, full - skip));
            offset += full * c;
        }
        let rest = n - offset;
        if rest > 0 {
            self.pending_keys
                .get(s as i64)
                .narrow(1, 0, rest)
                .copy_(&keys.narrow(1, offset, rest));
            self.pending_values
                .get(s as i64)
                .narrow(1, 0, rest)
                .copy_(&values.narrow(1, offset, rest));
            self.pending[s] = rest;
        }
    }

    /// Writes `[H, n, c, d]` complete chunks (n ≤ N) at the ring's head.
    fn commit(&mut self, s: usize, keys: &Tensor, values: &Tensor) {
        let n = keys.size()[1];
        let slots = self.n_chunks;
        if self.config.eviction == Eviction::PaperDouble && self.filled[s] + n > slots {
            // Evict the 2n oldest chunks (or all there are) before writing.
            let evict = (2 * n).min(self.filled[s]);
            let oldest = (self.next[s] - self.filled[s]).rem_euclid(slots);
            self.for_ring_ranges(oldest, evict, |start, len, _| {
                let _ = self.valid.get(s as i64).narrow(0, start, len).fill_(0);
                let _ = self.chunk_index.get(s as i64).narrow(0, start, len).fill_(-1);
            });
            self.filled[s] -= evict;
        }
        let mean_keys = keys.mean_dim(2, false, keys.kind());
        let first_index = self.written_chunks[s];
        let stream = s as i64;
        self.for_ring_ranges(self.next[s], n, |start, len, offset| {
            self.keys
                .get(stream)
                .narrow(1, start, len)
                .copy_(&keys.narrow(1, offset, len));
            self.values
                .get(stream)
                .narrow(1, start, len)
                .copy_(&values.narrow(1, offset, len));
            self.chunk_keys
                .get(stream)
                .narrow(1, start, len)
                .copy_(&mean_keys.narrow(1, offset, len));
            let _ = self.valid.get(stream).narrow(0, start, len).fill_(1);
            let index = Tensor::arange_start(
                first_index + offset,
                first_index + offset + len,
                (Kind::Int64, self.config.device),
            );
            self.chunk_index.get(stream).narrow(0, start, len).copy_(&index);
        });
        self.next[s] = (self.next[s] + n) % slots;
        self.filled[s] = (self.filled[s] + n).min(slots);
        self.written_chunks[s] += n;
    }

    /// Calls `f(start, len, offset)` for the (at most two) contiguous slot ranges covering
    /// `count` slots from `start` around the ring.
    fn for_ring_ranges(&self, start: i64, count: i64, mut f: impl FnMut(i64, i64, i64)) {
        let first = count.min(self.n_chunks - start);
        if first > 0 {
            f(start, first, 0);
        }
        if count > first {
            f(0, count - first, first);
        }
    }

    /// Exact retrieval: per query `[B, H, T, d]` token and head, the `k_tokens / c` chunks whose
    /// chunk key has the largest inner product with it, token by token (models pass `top_k`).
    pub fn retrieve(&self, queries: &Tensor, k_tokens: i64) -> Result<Retrieved, BankError> {
        let c = self.config.chunk;
        check_top_k(k_tokens, c)?;
        let _guard = tch::no_grad_guard();
        let (b, h, t, d) = queries.size4().expect("queries must be [B, H, T, d]");
        let kc = (k_tokens / c).min(self.n_chunks);
        let (slots, top) = self.search(queries, kc);
        let chunk_mask = top.isfinite(); // [B, H, T, kc]
        let n = self.n_chunks;
        let streams: Vec<i64> = (0..b as usize).map(|row| self.stream_of_row(row) as i64).collect();
        let stream_of_row = Tensor::from_slice(&streams).to_device(self.config.device);
        // Rows of the flattened stores `[S·H·N, …]`: (stream·H + head)·N + slot.
        let heads = Tensor::arange(h, (Kind::Int64, self.config.device));
        let base = (stream_of_row.view([b, 1, 1, 1]) * h + heads.view([1, h, 1, 1])) * n;
        let rows = (base + &slots).view([-1]);
        let gather = |store: &Tensor| {
            store
                .view([-1, c * d])
                .index_select(0, &rows)
                .view([b, h, t, kc * c, d])
        };
        let mask = chunk_mask
            .unsqueeze(-1)
            .expand([b, h, t, kc, c], false)
            .reshape([b, h, t, kc * c]);
        let stream_slots = (stream_of_row.view([b, 1, 1, 1]) * n + &slots).view([-1]);
        let chunk_index = self
            .chunk_index
            .view([-1])
            .index_select(0, &stream_slots)
            .view([b, h, t, kc])
            .masked_fill(&chunk_mask.logical_not(), -1);
        Ok(Retrieved {
            keys: gather(&self.keys),
            values: gather(&self.values),
            mask,
            chunk_index,
        })
    }

    /// The `kc` best chunk slots per query and head: `([B, H, T, kc]` int64 slots,
    /// `[B, H, T, kc]` f32 scores)`, best first; where fewer than `kc` chunks are valid the
    /// rest score −inf (their slot is any valid index, to be masked).
    ///
    /// A large search of an f32 bank on the CPU is done block by block: a block of scores at
    /// a time by matmul, folded into a running top-k, never the whole `T × N` score matrix
    /// (the selection, not the arithmetic, is what costs; see `longmem bench`). Other banks,
    /// and searches whose whole score matrix is small, score densely and take torch's
    /// `topk`. Both give the same slots (ties aside).
    pub fn search(&self, queries: &Tensor, kc: i64) -> (Tensor, Tensor) {
        let (b, _, t, _) = queries.size4().expect("queries must be [B, H, T, d]");
        if self.searches_blocked(b, t) {
            self.search_blocked(queries, kc)
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
    /// and small searches.
    pub fn search_dense(&self, queries: &Tensor, kc: i64) -> (Tensor, Tensor) {
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
        let scores = scores
            .to_kind(Kind::Float)
            .masked_fill(&valid.logical_not(), f64::NEG_INFINITY);
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
        /// Query rows and chunk slots per score block: 256 × 1024 f32 is 1 MiB, which stays
        /// in a core's L2 between the matmul that writes it and the scan that reads it.
        const QUERY_BLOCK: i64 = 256;
        const SLOT_BLOCK: i64 = 1024;
        let (b, h, t, _) = queries.size4().expect("queries must be [B, H, T, d]");
        let n = self.n_chunks;
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
                    let tq = task.queries.size()[0];
                    let buffer = Tensor::empty([tq * SLOT_BLOCK.min(n)], (Kind::Float, Device::Cpu));
                    let mut top = longmem_kernels::RunningTopK::new(tq as usize, kc as usize);
                    for n0 in (0..n).step_by(SLOT_BLOCK as usize) {
                        let nk = SLOT_BLOCK.min(n - n0);
                        if !task.eligible[n0 as usize..(n0 + nk) as usize].contains(&true) {
                            continue;
                        }
                        let out = buffer.narrow(0, 0, tq * nk).view([tq, nk]);
                        let _ = task.queries.mm_out(&out, &task.keys.narrow(0, n0, nk).tr());
                        // SAFETY: `out` is a contiguous f32 CPU tensor of tq·nk elements that
                        // outlives the slice, and only this task touches it.
                        let block =
                            unsafe { std::slice::from_raw_parts(out.data_ptr() as *const f32, (tq * nk) as usize) };
                        top.update(block, nk as usize, 0, n0 as usize, task.eligible);
                    }
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

    /// The bank's whole state as named tensors (for checkpoints); counters included.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let counters: Vec<i64> = [&self.next, &self.filled, &self.pending, &self.written_chunks]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        vec![
            ("keys".into(), self.keys.shallow_clone()),
            ("values".into(), self.values.shallow_clone()),
            ("chunk_keys".into(), self.chunk_keys.shallow_clone()),
            ("valid".into(), self.valid.shallow_clone()),
            ("chunk_index".into(), self.chunk_index.shallow_clone()),
            ("pending_keys".into(), self.pending_keys.shallow_clone()),
            ("pending_values".into(), self.pending_values.shallow_clone()),
            ("counters".into(), Tensor::from_slice(&counters)),
        ]
    }

    /// Restores a state saved by [`MemoryBank::state`] from a bank of the same config.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), String> {
        let get = |name: &str| {
            state
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| format!("memory state lacks `{name}`"))
        };
        let _guard = tch::no_grad_guard();
        for (name, target) in [
            ("keys", &self.keys),
            ("values", &self.values),
            ("chunk_keys", &self.chunk_keys),
            ("valid", &self.valid),
            ("chunk_index", &self.chunk_index),
            ("pending_keys", &self.pending_keys),
            ("pending_values", &self.pending_values),
        ] {
            let source = get(name)?;
            if source.size() != target.size() {
                return Err(format!(
                    "memory state `{name}` has shape {:?}, expected {:?}",
                    source.size(),
                    target.size()
                ));
            }
            target.shallow_clone().copy_(source);
        }
        let counters = Vec::<i64>::try_from(get("counters")?).map_err(|e| e.to_string())?;
        let s = self.streams() as usize;
        if counters.len() != 4 * s {
            return Err(format!(
                "memory state has {} counters, expected {}",
                counters.len(),
                4 * s
            ));
        }
        self.next.copy_from_slice(&counters[0..s]);
        self.filled.copy_from_slice(&counters[s..2 * s]);
        self.pending.copy_from_slice(&counters[2 * s..3 * s]);
        self.written_chunks.copy_from_slice(&counters[3 * s..4 * s]);
        Ok(())
    }
}
