//! Hot CPU loops of longmem-bench, in their own crate so that even the dev profile builds
//! them with full optimisation (see the workspace `Cargo.toml`).
//!
//! [`RunningTopK`] keeps, per query row, the k best `(score, id)` pairs seen so far while
//! blocks of a score matrix stream past: exact retrieval never holds the full
//! `queries × keys` score matrix, only one block at a time.

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
    pub fn update(&mut self, block: &[f32], cols: usize, first_row: usize, first_id: usize, eligible: &[bool]) {
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
fn scan_row(row: &[f32], first_id: usize, eligible: &[bool], best: &mut [f32], ids: &mut [i64]) {
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
unsafe fn scan_row_avx512(row: &[f32], first_id: usize, eligible: &[bool], best: &mut [f32], ids: &mut [i64]) {
    scan_row_portable(row, first_id, eligible, best, ids)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_row_avx2(row: &[f32], first_id: usize, eligible: &[bool], best: &mut [f32], ids: &mut [i64]) {
    scan_row_portable(row, first_id, eligible, best, ids)
}

#[inline(always)]
fn scan_row_portable(row: &[f32], first_id: usize, eligible: &[bool], best: &mut [f32], ids: &mut [i64]) {
    let k = best.len();
    let mut threshold = best[k - 1];
    for (lane_index, lane) in row.chunks(LANE).enumerate() {
        // Branch-free OR over the lane: vectorises, unlike an early-exit `any`.
        let mut beats = false;
        for &s in lane {
            beats |= s > threshold;
        }
        if !beats {
            continue;
        }
        for (j, &s) in lane.iter().enumerate() {
            let col = lane_index * LANE + j;
            if s > threshold && eligible[col] {
                insert(best, ids, s, (first_id + col) as i64);
                threshold = best[k - 1];
            }
        }
    }
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
