//! Cost (DESIGN.md §3): throughput, per-token latency by stage, peak memory, and achieved
//! FLOP/s against the device's measured matmul peak (MFU), counting only useful FLOPs.
//!
//! Useful forward FLOPs per token position:
//! - a block: `2·(4D² + 2·D·n_inner)` for its projections and MLP, plus `2·2·((T+1)/2)·D`
//!   for causal attention over on average (T+1)/2 keys;
//! - the LM head: `2·D·V`;
//! - memory: `2·D·N` to score all N chunk keys and `2·2·K·D` to attend over K retrieved pairs.
//!
//! LongMem counts L backbone blocks (no backbone head: it computes none), S SideNet blocks,
//! one head and the memory; MemTRM the backbone with its head and the memory; plain models
//! the backbone. N is the bank's capacity in chunks, an upper bound while it fills.

use crate::models::BackboneConfig;
use crate::profile::{Stage, StageClock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What decides the FLOPs of one token position.
#[derive(Debug, Clone)]
pub struct FlopShape<'a> {
    pub backbone: &'a BackboneConfig,
    /// Local window T.
    pub window: i64,
    /// SideNet blocks (LongMem), 0 otherwise.
    pub sidenet_layers: i64,
    /// Whether the backbone's own LM head runs (all methods but LongMem).
    pub backbone_head: bool,
    /// Memory: (chunk slots N, retrieved tokens K), when the method has one.
    pub memory: Option<(i64, i64)>,
}

/// Useful forward FLOPs per token position.
pub fn forward_flops_per_token(shape: &FlopShape) -> f64 {
    let c = shape.backbone;
    let d = c.n_embd as f64;
    let block = 2.0 * (4.0 * d * d + 2.0 * d * c.n_inner as f64) + 4.0 * ((shape.window + 1) as f64 / 2.0) * d;
    let head = 2.0 * d * c.vocab_size as f64;
    let mut flops = (c.n_layer + shape.sidenet_layers) as f64 * block;
    if shape.backbone_head || shape.sidenet_layers > 0 {
        flops += head; // the backbone's head, or the SideNet's (one of them runs)
    }
    if let Some((chunks, k)) = shape.memory {
        flops += 2.0 * d * chunks as f64 + 4.0 * k as f64 * d;
    }
    flops
}

/// The cost section of an evaluation result ([`super::result::EvalResult`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    pub wall_seconds: f64,
    /// Token positions processed (batch rows × window × segments, padding included).
    pub positions: f64,
    #[serde(deserialize_with = "super::result::nan_if_null")]
    pub positions_per_second: f64,
    /// Microseconds per token position, by stage ([`Stage::name`]).
    pub latency_us_per_position: BTreeMap<String, f64>,
    pub peak_rss_bytes: Option<u64>,
    pub flops_per_position: f64,
    #[serde(deserialize_with = "super::result::nan_if_null")]
    pub achieved_gflops: f64,
    pub peak_gflops: f64,
    /// achieved / peak.
    #[serde(deserialize_with = "super::result::nan_if_null")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_follow_the_formula() {
        let mut c = BackboneConfig::gpt2(1000, 2, 4, 64, 32);
        c.n_inner = 256;
        let plain = FlopShape {
            backbone: &c,
            window: 31,
            sidenet_layers: 0,
            backbone_head: true,
            memory: None,
        };
        let block = 2.0 * (4.0 * 64.0 * 64.0 + 2.0 * 64.0 * 256.0) + 4.0 * 16.0 * 64.0;
        assert_eq!(forward_flops_per_token(&plain), 2.0 * block + 2.0 * 64.0 * 1000.0);
        let longmem = FlopShape {
            sidenet_layers: 1,
            backbone_head: false,
            memory: Some((8, 16)),
            ..plain.clone()
        };
        let memory = 2.0 * 64.0 * 8.0 + 4.0 * 16.0 * 64.0;
        assert_eq!(
            forward_flops_per_token(&longmem),
            3.0 * block + 2.0 * 64.0 * 1000.0 + memory
        );
    }
}
