//! Cost: throughput, per-token latency by stage, peak memory, and achieved
//! FLOP/s against the device's measured matmul peak (MFU), counting only useful FLOPs.
//!
//! The FLOPs counted are the methods' useful forward FLOPs (methods/flops.rs).

use crate::profile::{Stage, StageClock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The cost section of an evaluation result (`eval*.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    pub wall_seconds: f64,
    /// Token positions processed (batch rows × window × segments, padding included).
    pub positions: f64,
    #[serde(deserialize_with = "super::json::nan_if_null")]
    pub positions_per_second: f64,
    /// Microseconds per token position, by stage ([`Stage::name`]).
    pub latency_us_per_position: BTreeMap<String, f64>,
    pub peak_rss_bytes: Option<u64>,
    pub flops_per_position: f64,
    #[serde(deserialize_with = "super::json::nan_if_null")]
    pub achieved_gflops: f64,
    pub peak_gflops: f64,
    /// achieved / peak.
    #[serde(deserialize_with = "super::json::nan_if_null")]
    pub mfu: f64,
}

impl CostReport {
    pub fn new(
        clock: &StageClock,
        wall_seconds: f64,
        positions: f64,
        flops_per_position: f64,
        peak_gflops: f64,
    ) -> Self {
        let latency = Stage::ALL
            .iter()
            .filter(|&&s| clock.spent(s).as_nanos() > 0)
            .map(|&s| (s.name().to_string(), clock.spent(s).as_secs_f64() * 1e6 / positions))
            .collect();
        let achieved = flops_per_position * positions / wall_seconds / 1e9;
        Self {
            wall_seconds,
            positions,
            positions_per_second: positions / wall_seconds,
            latency_us_per_position: latency,
            peak_rss_bytes: crate::profile::peak_rss_bytes(),
            flops_per_position,
            achieved_gflops: achieved,
            peak_gflops,
            mfu: achieved / peak_gflops,
        }
    }
}
