//! Hot CPU loops of longmem-bench, in their own crate so that even the dev profile builds
//! them with full optimisation (see the workspace `Cargo.toml`).
//!
//! [`RunningTopK`] keeps, per query row, the k best `(score, id)` pairs seen so far while
//! blocks of a score matrix stream past: exact retrieval never holds the full
//! `queries × keys` score matrix, only one block at a time.

/// A score as a block holds it: f32, or bf16 (the top 16 bits of an f32).
pub trait Score: Copy {
    fn value(self) -> f32;
}

impl Score for f32 {
    #[inline(always)]
    fn value(self) -> f32 {
        self
    }
}

/// A bf16 score, as torch stores one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct Bf16(pub u16);

impl Score for Bf16 {
    #[inline(always)]
    fn value(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}

/// Scores are scanned in lanes of this many; a lane is looked at element by element only
/// when one of its scores beats the row's current k-th best.
const LANE: usize = 32;

/// The k best `(score, id)` pairs of each of `rows` rows, each row sorted by score
/// descending, ties broken by the smaller id. Unfilled places hold `(-inf, -1)`.
#[derive(Debug, Clone)]
pub struct RunningTopK {
    k: usize,
    scores: Vec<f32>,
    ids: Vec<i64>,
}

impl RunningTopK {
    pub fn new(rows: usize, k: usize) -> Self {
        assert!(k > 0, "top-k needs k > 0");
        Self {
            k,
            scores: vec![f32::NEG_INFINITY; rows * k],
            ids: vec![-1; rows * k],
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn rows(&self) -> usize {
        self.scores.len() / self.k
    }

    /// `[rows × k]` scores, row-major.
    pub fn scores(&self) -> &[f32] {
        &self.scores
    }

    /// `[rows × k]` ids, row-major.
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// Takes in a block of scores: `block` is `[rows × cols]` row-major, for rows
    /// `first_row..first_row + rows` and ids `first_id..first_id + cols`. Ids whose
    /// `eligible[id]` is false are never taken (`eligible` covers every id, not just the
    /// block's). NaN scores are never taken. Blocks must arrive in increasing id order for
    /// ties to go to the smaller id. Runs on the calling thread: callers parallelise over
    /// independent row ranges or heads.
    pub fn update<S: Score>(&mut self, block: &[S], cols: usize, first_row: usize, first_id: usize, eligible: &[bool]) {
        assert!(
            cols > 0 && block.len().is_multiple_of(cols),
            "block is not [rows × {cols}]"
        );
        let rows = block.len() / cols;
        assert!(first_row + rows <= self.rows(), "block rows beyond the top-k rows");
        assert!(first_id + cols <= eligible.len(), "block ids beyond `eligible`");
        let k = self.k;
        let eligible = &eligible[first_id..first_id + cols];
        let range = first_row * k..(first_row + rows) * k;
        self.scores[range.clone()]
            .chunks_mut(k)
            .zip(self.ids[range].chunks_mut(k))
            .zip(block.chunks(cols))
            .for_each(|((best, ids), row)| scan_row(row, first_id, eligible, best, ids));
    }
}

/// Folds one row of scores into its sorted top-k, with the widest vector instructions the
/// CPU has (the crate is built for the baseline target, so they are chosen at run time).
fn scan_row<S: Score>(row: &[S], first_id: usize, eligible: &[bool], best: &mut [f32], ids: &mut [i64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { scan_row_avx512(row, first_id, eligible, best, ids) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { scan_row_avx2(row, first_id, eligible, best, ids) };
        }
    }
    scan_row_portable(row, first_id, eligible, best, ids)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scan_row_avx512<S: Score>(row: &[S], first_id: usize, eligible: &[bool], best: &mut [f32], ids: &mut [i64]) {
    scan_row_portable(row, first_id, eligible, best, ids)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_row_avx2<S: Score>(row: &[S], first_id: usize, eligible: &[bool], best: &mut [f32], ids: &mut [i64]) {
    scan_row_portable(row, first_id, eligible, best, ids)
}

#[inline(always)]
fn scan_row_portable<S: Score>(row: &[S], first_id: usize, eligible: &[bool], best: &mut [f32], ids: &mut [i64]) {
    let k = best.len();
    let mut threshold = best[k - 1];
    for (lane_index, lane) in row.chunks(LANE).enumerate() {
        // Branch-free OR over the lane: vectorises, unlike an early-exit `any`.
        let mut beats = false;
        for &s in lane {
            beats |= s.value() > threshold;
        }
        if !beats {
            continue;
        }
        for (j, &s) in lane.iter().enumerate() {
            let s = s.value();
            let col = lane_index * LANE + j;
            if s > threshold && eligible[col] {
                insert(best, ids, s, (first_id + col) as i64);
                threshold = best[k - 1];
            }
        }
    }
}

/// The exact top-k of `candidates` (ids into `keys`, `[N × d]` row-major f32; −1 entries are
/// skipped) by inner product with `query` (`d`): written to `best`/`ids` (k = their length),
/// sorted by score descending, ties to the smaller id, unfilled places `(-inf, -1)`.
pub fn rescore(query: &[f32], keys: &[f32], candidates: &[i64], best: &mut [f32], ids: &mut [i64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { rescore_avx512(query, keys, candidates, best, ids) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { rescore_avx2(query, keys, candidates, best, ids) };
        }
    }
    rescore_portable(query, keys, candidates, best, ids)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rescore_avx512(query: &[f32], keys: &[f32], candidates: &[i64], best: &mut [f32], ids: &mut [i64]) {
    rescore_portable(query, keys, candidates, best, ids)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rescore_avx2(query: &[f32], keys: &[f32], candidates: &[i64], best: &mut [f32], ids: &mut [i64]) {
    rescore_portable(query, keys, candidates, best, ids)
}

#[inline(always)]
fn rescore_portable(query: &[f32], keys: &[f32], candidates: &[i64], best: &mut [f32], ids: &mut [i64]) {
    let d = query.len();
    best.fill(f32::NEG_INFINITY);
    ids.fill(-1);
    let mut sorted: Vec<i64> = candidates.iter().copied().filter(|&id| id >= 0).collect();
    sorted.sort_unstable();
    let k = best.len();
    for id in sorted {
        let s = dot(query, &keys[id as usize * d..(id as usize + 1) * d]);
        if s > best[k - 1] {
            insert(best, ids, s, id);
        }
    }
}

/// In 16 independent lanes, so that it vectorises without reassociating one long sum.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (chunks_a, chunks_b) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for l in 0..16 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Inserts `(s, id)` into the sorted `best`, after every entry with a score ≥ s (so an
/// earlier, smaller id wins a tie), dropping the last entry.
fn insert(best: &mut [f32], ids: &mut [i64], s: f32, id: i64) {
    let k = best.len();
    let mut p = k - 1;
    while p > 0 && best[p - 1] < s {
        best[p] = best[p - 1];
        ids[p] = ids[p - 1];
        p -= 1;
    }
    best[p] = s;
    ids[p] = id;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency needed for test data).
    fn scores(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Full sort of each row, eligible ids only, ties to the smaller id.
    fn reference(all: &[f32], cols: usize, k: usize, eligible: &[bool]) -> Vec<Vec<(f32, i64)>> {
        all.chunks(cols)
            .map(|row| {
                let mut v: Vec<(f32, i64)> = row
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| eligible[*i] && !s.is_nan())
                    .map(|(i, &s)| (s, i as i64))
                    .collect();
                v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                v.resize(k, (f32::NEG_INFINITY, -1));
                v.truncate(k);
                v
            })
            .collect()
    }

    #[test]
    fn blocked_top_k_equals_a_full_sort() {
        let (rows, cols, k) = (37, 1000, 16);
        let mut all = scores(rows * cols, 7);
        // Ties, including ties across block edges, and NaNs.
        for r in 0..rows {
            all[r * cols + 3] = 0.75;
            all[r * cols + 700] = 0.75;
            all[r * cols + 999] = f32::NAN;
        }
        let eligible: Vec<bool> = (0..cols).map(|i| i % 7 != 0).collect();
        for block_cols in [1000, 256, 33, 1] {
            let mut top = RunningTopK::new(rows, k);
            for first_id in (0..cols).step_by(block_cols) {
                let width = block_cols.min(cols - first_id);
                let block: Vec<f32> = all
                    .chunks(cols)
                    .flat_map(|row| row[first_id..first_id + width].to_vec())
                    .collect();
                top.update(&block, width, 0, first_id, &eligible);
            }
            let want = reference(&all, cols, k, &eligible);
            for (r, row) in want.iter().enumerate() {
                let ids: Vec<i64> = row.iter().map(|x| x.1).collect();
                assert_eq!(&top.ids()[r * k..(r + 1) * k], ids, "block {block_cols}, row {r}");
            }
        }
    }

    #[test]
    fn rescoring_candidates_equals_a_full_sort_of_them() {
        let (n, d, k) = (50, 20, 6);
        let keys = scores(n * d, 4);
        let query = scores(d, 5);
        let mut candidates: Vec<i64> = vec![17, 3, -1, 40, 8, 3 + 0, 22, 49, 0, 31];
        candidates.dedup();
        let mut best = vec![0.0; k];
        let mut ids = vec![0; k];
        rescore(&query, &keys, &candidates, &mut best, &mut ids);
        let mut want: Vec<(f32, i64)> = candidates
            .iter()
            .filter(|&&id| id >= 0)
            .map(|&id| (dot(&query, &keys[id as usize * d..][..d]), id))
            .collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        assert_eq!(ids, want.iter().take(k).map(|x| x.1).collect::<Vec<_>>());
        let naive: f32 = query.iter().zip(&keys[17 * d..18 * d]).map(|(a, b)| a * b).sum();
        assert!((dot(&query, &keys[17 * d..18 * d]) - naive).abs() < 1e-5);
        // Fewer candidates than k: the rest stays unfilled.
        rescore(&query, &keys, &[5, -1], &mut best, &mut ids);
        assert_eq!((ids[0], ids[1], best[1]), (5, -1, f32::NEG_INFINITY));
    }

    #[test]
    fn bf16_blocks_rank_as_their_f32_values() {
        let (rows, cols, k) = (5, 300, 7);
        // Scores exactly representable in bf16, with ties.
        let all: Vec<f32> = scores(rows * cols, 9)
            .iter()
            .map(|x| f32::from_bits(x.to_bits() & 0xFFFF_0000))
            .collect();
        let bf16: Vec<Bf16> = all.iter().map(|x| Bf16((x.to_bits() >> 16) as u16)).collect();
        let eligible: Vec<bool> = (0..cols).map(|i| i % 5 != 1).collect();
        let mut top = RunningTopK::new(rows, k);
        top.update(&bf16, cols, 0, 0, &eligible);
        let want = reference(&all, cols, k, &eligible);
        for (r, row) in want.iter().enumerate() {
            let ids: Vec<i64> = row.iter().map(|x| x.1).collect();
            assert_eq!(&top.ids()[r * k..(r + 1) * k], ids, "row {r}");
            let scores: Vec<f32> = row.iter().map(|x| x.0).collect();
            assert_eq!(&top.scores()[r * k..(r + 1) * k], scores, "row {r}");
        }
    }

    #[test]
    fn row_blocks_fill_their_own_rows_and_short_rows_pad() {
        let (cols, k) = (5, 8);
        let all = scores(4 * cols, 3);
        let eligible = vec![true; cols];
        let mut top = RunningTopK::new(4, k);
        top.update(&all[2 * cols..], cols, 2, 0, &eligible);
        top.update(&all[..2 * cols], cols, 0, 0, &eligible);
        let want = reference(&all, cols, k, &eligible);
        for (r, row) in want.iter().enumerate() {
            let ids: Vec<i64> = row.iter().map(|x| x.1).collect();
            assert_eq!(&top.ids()[r * k..(r + 1) * k], ids);
            assert_eq!(top.scores()[r * k + cols], f32::NEG_INFINITY);
            assert_eq!(top.ids()[r * k + cols], -1);
        }
    }
}
