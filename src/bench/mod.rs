//! `longmem bench`: microbenchmarks of the memory (retrieval, write, bank size), of each
//! method's forward and training step, and of the matmul peak they are measured against,
//! with faiss-cpu's `IndexFlatIP` side by side on the same keys and queries. Writes
//! `bench.csv` and `BENCH.md` (machine, versions, date, goals) atomically.
//!
//! Every figure is a median over timed samples after warm-up, with its spread (min, max);
//! CUDA is synchronised before every clock read.

mod faiss;
mod models;
mod report;
mod retrieval;

use crate::device::synchronize;
use serde::Serialize;
use std::time::Instant;
use tch::Device;

pub use report::{run, BenchOptions};

/// Shapes to measure: the paper's, or tiny ones (`--quick`, for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Paper,
    Quick,
}

/// The benchmark groups `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// Retrieval at the paper's shape, with the dense reference and faiss.
    Retrieval,
    /// Retrieval over memory size × chunk size, with faiss along both axes.
    Scaling,
    /// Memory writes, with wrap-around.
    Write,
    /// Each method's forward and training step.
    Models,
}

/// Wall times of repeated runs of one piece of work.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Seconds, sorted ascending.
    pub seconds: Vec<f64>,
}

impl Timing {
    pub fn from_seconds(mut seconds: Vec<f64>) -> Self {
        assert!(!seconds.is_empty(), "a timing needs at least one sample");
        seconds.sort_by(f64::total_cmp);
        Self { seconds }
    }
    pub fn median(&self) -> f64 {
        let n = self.seconds.len();
        if n % 2 == 1 {
            self.seconds[n / 2]
        } else {
            (self.seconds[n / 2 - 1] + self.seconds[n / 2]) / 2.0
        }
    }
    pub fn min(&self) -> f64 {
        self.seconds[0]
    }
    pub fn max(&self) -> f64 {
        *self.seconds.last().unwrap()
    }
}

/// Runs `f` `warmup` times, then times it `samples` times (CUDA synchronised around each).
pub fn measure(device: Device, warmup: usize, samples: usize, f: impl FnMut()) -> Timing {
    let seconds = measure_each(device, warmup, samples, f)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    Timing::from_seconds(seconds)
}

/// [`measure`], keeping each timed sample's seconds and what `f` returned, in run order.
pub fn measure_each<T>(device: Device, warmup: usize, samples: usize, mut f: impl FnMut() -> T) -> Vec<(f64, T)> {
    for _ in 0..warmup {
        f();
    }
    (0..samples.max(1))
        .map(|_| {
            synchronize(device);
            let start = Instant::now();
            let out = f();
            synchronize(device);
            (start.elapsed().as_secs_f64(), out)
        })
        .collect()
}

/// One line of `bench.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// `peak`, `retrieval`, `scaling`, `write`, `bank`, `model`.
    pub group: String,
    pub name: String,
    /// The shape, as `key=value` pairs.
    pub shape: String,
    pub samples: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Useful FLOPs of one run, where counted.
    pub gflop: Option<f64>,
    /// Achieved GFLOP/s at the median.
    pub gflops: Option<f64>,
    /// Achieved / the measured matmul peak.
    pub mfu: Option<f64>,
    /// Tokens (positions) per second, where that is the natural rate.
    pub tokens_per_s: Option<f64>,
    pub note: String,
}

impl BenchRow {
    pub fn timed(group: &str, name: &str, shape: String, timing: &Timing) -> Self {
        Self {
            group: group.into(),
            name: name.into(),
            shape,
            samples: timing.seconds.len(),
            median_ms: timing.median() * 1e3,
            min_ms: timing.min() * 1e3,
            max_ms: timing.max() * 1e3,
            gflop: None,
            gflops: None,
            mfu: None,
            tokens_per_s: None,
            note: String::new(),
        }
    }

    /// A row with no timing (a measured size, or a rate measured elsewhere).
    pub fn untimed(group: &str, name: &str, shape: String) -> Self {
        Self {
            samples: 1,
            ..Self::timed(group, name, shape, &Timing::from_seconds(vec![f64::NAN]))
        }
    }

    /// Sets the useful FLOPs of one run, and from them the achieved rate.
    pub fn with_flops(mut self, flop: f64) -> Self {
        let rate = flop / (self.median_ms / 1e3) / 1e9;
        (self.gflop, self.gflops) = (Some(flop / 1e9), Some(rate));
        self
    }

    /// Sets the MFU from the achieved rate, once the peak is known (rows with FLOPs only).
    pub fn set_peak(&mut self, peak_gflops: f64) {
        self.mfu = self.gflops.map(|rate| rate / peak_gflops);
    }

    pub fn with_tokens(mut self, tokens: f64) -> Self {
        self.tokens_per_s = Some(tokens / (self.median_ms / 1e3));
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_statistics() {
        let t = Timing::from_seconds(vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!((t.min(), t.median(), t.max()), (1.0, 2.5, 10.0));
        assert_eq!(Timing::from_seconds(vec![5.0, 1.0, 2.0]).median(), 2.0);
        let mut row = BenchRow::timed("g", "n", String::new(), &Timing::from_seconds(vec![0.5])).with_flops(100e9);
        row.set_peak(400.0);
        assert_eq!(row.gflops, Some(200.0));
        assert_eq!(row.mfu, Some(0.5));
    }
}
