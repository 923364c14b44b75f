//! Memory-augmented attention (DESIGN.md §2.2 "Memory-augmented layer", §2.3): local causal
//! attention and attention over the K retrieved (key, value) pairs, mixed per head.
//!
//! - `gated` (the paper): two softmaxes, `out = (1 − σ(g_h))·local + σ(g_h)·memory`, g
//!   initialised to 0. Retrieved pairs carry no position signal and no mask beyond validity.
//!   A query with no valid retrieved pair (empty bank) gets plain local attention.
//! - `concat` (ablation): one softmax over the local scores and the memory scores together.
//!
//! Dropout applies to the local attention probabilities only (DESIGN.md §6).

use super::attention::{Attention, Qkv};
use super::block::LayerAttention;
use crate::memory::{MemoryBank, Retrieved};
use crate::profile::{Stage, StageClock};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use tch::{Kind, Tensor};

/// How local and memory attention are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JointMode {
    Gated,
    Concat,
}

/// Scores of masked-out pairs: finite, so a row with nothing valid stays NaN-free.
const MASKED: f64 = -1e30;

/// The hook that turns a block's attention into joint local + memory attention for one
/// forward pass. It only reads the bank; the caller writes the segment afterwards.
pub struct JointAttention<'a> {
    pub bank: &'a MemoryBank,
    /// Per-head gate logits `[H]`.
    pub gate: &'a Tensor,
    /// Retrieved tokens per query, K.
    pub k_tokens: i64,
    pub mode: JointMode,
    /// MemTRM option: per-head log temperature `[H]`; queries and keys are L2-normalised and
    /// scores are `exp(τ_h)·q̂·k̂`. The bank must then hold normalised keys.
    pub log_temperature: Option<&'a Tensor>,
    /// The last retrieval's chunk indices `[B, H, T, K/c]`, for diagnostics.
    pub retrieved_chunks: RefCell<Option<Tensor>>,
    /// Charges retrieval and joint attention time, when profiling.
    pub clock: Option<&'a StageClock>,
}

impl<'a> JointAttention<'a> {
    pub fn new(bank: &'a MemoryBank, gate: &'a Tensor, k_tokens: i64, mode: JointMode) -> Self {
        Self {
            bank,
            gate,
            k_tokens,
            mode,
            log_temperature: None,
            retrieved_chunks: RefCell::new(None),
            clock: None,
        }
    }
}

/// L2-normalises the last dimension.
pub fn l2_normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-6)
}

impl LayerAttention for JointAttention<'_> {
    fn attend(&self, attn: &Attention, qkv: &Qkv, train: bool) -> Tensor {
        match self.clock {
            Some(clock) => clock.time_excluding(Stage::JointAttention, &[Stage::Retrieval], || {
                self.joint(attn, qkv, train)
            }),
            None => self.joint(attn, qkv, train),
        }
    }
}

impl JointAttention<'_> {
    fn joint(&self, attn: &Attention, qkv: &Qkv, train: bool) -> Tensor {
        let (_b, h, t, d) = qkv.q.size4().expect("q must be [B, H, T, d]");
        let (qkv, scale) = match self.log_temperature {
            None => (qkv.shallow_clone(), 1.0 / (d as f64).sqrt()),
            Some(log_t) => {
                let temperature = log_t.exp().view([1, h, 1, 1]);
                let q = l2_normalize(&qkv.q) * temperature;
                (
                    Qkv {
                        q,
                        k: l2_normalize(&qkv.k),
                        v: qkv.v.shallow_clone(),
                    },
                    1.0,
                )
            }
        };
        let retrieve = || self.bank.retrieve(&qkv.q, self.k_tokens);
        let retrieved = match self.clock {
            Some(clock) => clock.time(Stage::Retrieval, retrieve),
            None => retrieve(),
        }
        .expect("k_tokens is validated against the chunk size when the model is built");
        *self.retrieved_chunks.borrow_mut() = Some(retrieved.chunk_index.shallow_clone());
        let Retrieved { keys, values, mask, .. } = retrieved;
        let kind = qkv.q.kind();
        let k_retrieved = mask.size()[3];
        let (keys, values) = (keys.to_kind(kind), values.to_kind(kind));
        // Memory scores [B, H, T, K]: each query against its own K retrieved keys, in f32 so
        // that the masked fill stays finite under f16 autocast.
        let mem_scores = (qkv.q.unsqueeze(3).matmul(&keys.transpose(-1, -2)).squeeze_dim(3) * scale)
            .to_kind(Kind::Float)
            .masked_fill(&mask.logical_not(), MASKED);
        let weighted = |probs: &Tensor| probs.unsqueeze(3).matmul(&values).squeeze_dim(3);
        match self.mode {
            JointMode::Gated => {
                let local = attn.local_scaled(&qkv, Some(scale), train);
                let memory = weighted(&mem_scores.softmax(-1, Kind::Float).to_kind(kind));
                let any_valid = mask.any_dim(-1, true).to_kind(kind); // [B, H, T, 1]
                let g = (self.gate.sigmoid().view([1, h, 1, 1]) * any_valid).to_kind(kind);
                &local * (1.0 - &g) + memory * g
            }
            JointMode::Concat => {
                let local_scores = (qkv.q.matmul(&qkv.k.transpose(-1, -2)) * scale).to_kind(Kind::Float)
                    + attn.position_bias(t, qkv.q.device()).unsqueeze(0);
                let probs = Tensor::cat(&[local_scores, mem_scores], -1)
                    .softmax(-1, Kind::Float)
                    .to_kind(kind);
                let local_probs = probs.narrow(-1, 0, t).dropout(attn.dropout(), train);
                let mem_probs = probs.narrow(-1, t, k_retrieved);
                local_probs.matmul(&qkv.v) + weighted(&mem_probs)
            }
        }
    }
}
