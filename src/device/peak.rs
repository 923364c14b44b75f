//! Measured matmul throughput of a device: the denominator of every MFU figure.

use super::{device_name, synchronize};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// Square-matmul throughput of one device and dtype.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatmulPeak {
    pub device: String,
    pub dtype: String,
    /// Side of the square matrices.
    pub n: i64,
    /// Median over samples of 2n³ / seconds, in GFLOP/s.
    pub gflops_median: f64,
    /// Best sample, GFLOP/s.
    pub gflops_max: f64,
    pub samples: usize,
}

/// Times `n × n` matmuls of `kind` on `device`: warm-up, then `samples` timed batches of
/// at least `min_sample` each (CUDA synchronised before every clock read).
pub fn measure_matmul_peak(device: Device, kind: Kind, n: i64, samples: usize, min_sample: Duration) -> MatmulPeak {
    let _guard = tch::no_grad_guard();
    let a = Tensor::randn([n, n], (kind, device));
    let b = Tensor::randn([n, n], (kind, device));
    let out = Tensor::empty([n, n], (kind, device));
    for _ in 0..3 {
        let _ = a.matmul_out(&out, &b);
    }
    synchronize(device);
    // Matmuls per sample, sized from one timed call so each sample lasts ≥ `min_sample`.
    let start = Instant::now();
    let _ = a.matmul_out(&out, &b);
    synchronize(device);
    let one = start.elapsed().as_secs_f64().max(1e-6);
    let reps = ((min_sample.as_secs_f64() / one).ceil() as usize).max(1);
    let flop = 2.0 * (n as f64).powi(3) * reps as f64;
    let mut rates: Vec<f64> = (0..samples.max(1))
        .map(|_| {
            synchronize(device);
            let start = Instant::now();
            for _ in 0..reps {
                let _ = a.matmul_out(&out, &b);
            }
            synchronize(device);
            flop / start.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    MatmulPeak {
        device: device_name(device),
        dtype: format!("{kind:?}").to_lowercase(),
        n,
        gflops_median: rates[rates.len() / 2],
        gflops_max: *rates.last().unwrap(),
        samples: rates.len(),
    }
}
