//! Cache memory bank, as in the LongMem paper and its reference code.
//!
//! Per head, a ring buffer of the last M tokens' keys and values grouped in chunks of c
//! consecutive tokens; each chunk's retrieval key is the mean of its token keys. Buffers
//! are preallocated on the run's device and written in place; the host keeps only integer
//! counters. A write that ends inside a chunk keeps the partial chunk aside and completes
//! it with the next write; a partial chunk is never retrievable. Retrieval is exact: per
//! query token and head, the top K/c chunks by inner product, returned as K (key, value)
//! pairs with a validity mask, so an empty or part-filled bank never yields garbage.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

mod lowp;
mod policy;
mod search;

pub use policy::{Policy, Retrieval};

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
    #[error("retrieval policy: {0}")]
    Policy(&'static str),
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

/// Which chunks each query token and head retrieved, as rows of the bank's token stores.
#[derive(Debug)]
pub struct RetrievedSlots {
    /// `[B, H, T, K/c]` int64: rows of [`MemoryBank::token_stores`].
    pub rows: Tensor,
    /// `[B, H, T, K/c]`: true where the chunk is a real cached chunk.
    pub chunk_mask: Tensor,
    /// `[B, H, T, K/c]`: as [`Retrieved::chunk_index`].
    pub chunk_index: Tensor,
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
    /// How retrievals choose their chunks (evaluation bounds; exact by default).
    policy: Policy,
    /// Bytes of scores one step of the dense search may hold (it scores queries in tiles
    /// under this; see `search.rs`).
    search_budget: i64,
    /// A segment's keys and values whose write waits for the backward pass
    /// ([`MemoryBank::write_after_backward`]).
    deferred: Option<(Tensor, Tensor)>,
    /// Whether the blocked search may score in bf16 ([`MemoryBank::search_precision`]).
    allow_bf16_search: bool,
    lowp: lowp::LowpStats,
}

/// What the blocked CPU search scores in; both give the exact ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchPrecision {
    /// bf16 candidates re-scored in f32, certified exact per row (AVX-512 BF16 CPUs).
    Bf16,
    F32,
}

/// The dense search's default score budget: 2 GiB, so that the paper's training shape
/// (B = 8, 16 heads, T = 1,024 queries over 16,384 chunks: 8.6 GB of f32 scores at once)
/// searches in 4 tiles of 256 queries (7 of 170 with an f16 bank, whose scores also take
/// their f16 copy) beside the model on an 80 GB GPU.
pub const DEFAULT_SEARCH_BUDGET: i64 = 2 << 30;

impl MemoryBank {
    /// Bounds the bytes of scores the dense search holds at once (`memory.search_budget_mib`);
    /// results are the same at any budget.
    pub fn set_search_budget(&mut self, bytes: i64) {
        self.search_budget = bytes.max(1);
    }

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
            policy: Policy::Exact,
            search_budget: DEFAULT_SEARCH_BUDGET,
            deferred: None,
            allow_bf16_search: true,
            lowp: lowp::LowpStats::default(),
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

    /// Stream index of the oldest chunk batch row `row` can retrieve (chunks before it were
    /// evicted); the number written since the last reset when none is held.
    pub fn oldest_chunk_for_row(&self, row: usize) -> i64 {
        let s = self.stream_of_row(row);
        self.written_chunks[s] - self.filled[s]
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
        self.flush();
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
        self.flush();
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
    ///
    /// Under grouped-query attention H is a multiple G of the bank's heads: query head h
    /// reads key/value head `h / G` (HF's `repeat_kv` grouping).
    pub fn retrieve(&self, queries: &Tensor, k_tokens: i64) -> Result<Retrieved, BankError> {
        let slots = self.retrieve_slots(queries, k_tokens)?;
        let _guard = tch::no_grad_guard();
        let (b, h, t, kc) = slots.rows.size4().expect("rows are [B, H, T, kc]");
        let (c, d) = (self.config.chunk, self.config.head_dim);
        let rows = slots.rows.view([-1]);
        let (keys, values) = self.token_stores();
        let gather = |store: &Tensor| store.index_select(0, &rows).view([b, h, t, kc * c, d]);
        let mask = slots
            .chunk_mask
            .unsqueeze(-1)
            .expand([b, h, t, kc, c], false)
            .reshape([b, h, t, kc * c]);
        Ok(Retrieved {
            keys: gather(&keys),
            values: gather(&values),
            mask,
            chunk_index: slots.chunk_index,
        })
    }

    /// [`MemoryBank::retrieve`] without the gather: which chunk of the token stores
    /// ([`MemoryBank::token_stores`]) each query reads, for attention that reads them in place.
    pub fn retrieve_slots(&self, queries: &Tensor, k_tokens: i64) -> Result<RetrievedSlots, BankError> {
        let c = self.config.chunk;
        check_top_k(k_tokens, c)?;
        let _guard = tch::no_grad_guard();
        let (b, h, _, _) = queries.size4().expect("queries must be [B, H, T, d]");
        let kv_heads = self.config.n_head;
        assert!(
            h % kv_heads == 0,
            "{h} query heads cannot share the bank's {kv_heads} key/value heads"
        );
        let kc = (k_tokens / c).min(self.n_chunks);
        let (slots, top) = self.choose(queries, kc);
        let chunk_mask = top.isfinite(); // [B, H, T, kc]
        let n = self.n_chunks;
        let streams: Vec<i64> = (0..b as usize).map(|row| self.stream_of_row(row) as i64).collect();
        let stream_of_row = Tensor::from_slice(&streams).to_device(self.config.device);
        // Rows of the token stores `[S·H·N, c, d]`: (stream·H + head)·N + slot.
        let heads = Tensor::arange(h, (Kind::Int64, self.config.device)).floor_divide_scalar(h / kv_heads);
        let base = (stream_of_row.view([b, 1, 1, 1]) * kv_heads + heads.view([1, h, 1, 1])) * n;
        let stream_slots = (stream_of_row.view([b, 1, 1, 1]) * n + &slots).view([-1]);
        let chunk_index = self
            .chunk_index
            .view([-1])
            .index_select(0, &stream_slots)
            .view(slots.size().as_slice())
            .masked_fill(&chunk_mask.logical_not(), -1);
        Ok(RetrievedSlots {
            rows: base + &slots,
            chunk_mask,
            chunk_index,
        })
    }

    /// The token keys and values, `[S·H·N, c, d]` each (one row per stream, head and chunk
    /// slot; views of the bank, not copies).
    pub fn token_stores(&self) -> (Tensor, Tensor) {
        let (c, d) = (self.config.chunk, self.config.head_dim);
        (self.keys.view([-1, c, d]), self.values.view([-1, c, d]))
    }

    /// Holds a segment's write back until [`MemoryBank::flush`] (or the next write or reset):
    /// attention that read the bank in place recomputes from it in the backward pass, so a
    /// training step writes only after its backward.
    pub fn write_after_backward(&mut self, keys: &Tensor, values: &Tensor) {
        self.flush();
        self.deferred = Some((keys.detach(), values.detach()));
    }

    /// Applies a write held back by [`MemoryBank::write_after_backward`], if any.
    pub fn flush(&mut self) {
        if let Some((keys, values)) = self.deferred.take() {
            self.write(&keys, &values);
        }
    }

    /// The bank's whole state as named tensors (for checkpoints); counters included.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        assert!(
            self.deferred.is_none(),
            "the bank's state was read with a write held back: flush it first"
        );
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
        self.deferred = None;
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

/// A per-stream f32 CPU bank of 2 rows, chunk 2 and top-K 6, with `written` tokens of random
/// keys and values written to each row: for the tests of the modules that read banks.
#[cfg(test)]
pub(crate) fn random_bank(n_head: i64, head_dim: i64, capacity: i64, written: i64) -> MemoryBank {
    let mut bank = MemoryBank::new(BankConfig {
        n_head,
        head_dim,
        capacity,
        chunk: 2,
        top_k: 6,
        batch: 2,
        sharing: BankSharing::PerStream,
        eviction: Eviction::Fifo,
        kind: Kind::Float,
        device: Device::Cpu,
    })
    .expect("a valid bank");
    let keys = Tensor::randn([2, n_head, written, head_dim], (Kind::Float, Device::Cpu));
    bank.write(&keys, &keys.randn_like());
    bank
}
