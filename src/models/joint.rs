//! Memory-augmented attention (the LongMem paper's memory-augmented layer, also used by the
//! MemTRM baseline): local causal attention and attention over the K retrieved (key, value)
//! pairs, mixed per head. K is the bank's own ([`crate::memory::BankConfig::top_k`]).
//!
//! - `gated` (the paper): two softmaxes, `out = (1 − σ(g_h))·local + σ(g_h)·memory`, g
//!   initialised to 0. Retrieved pairs carry no position signal and no mask beyond validity.
//!   A query with no valid retrieved pair (empty bank) gets plain local attention.
//! - `concat` (ablation): one softmax over the local scores and the memory scores together.
//!
//! Memory is read with the layer's queries before any position term; on rotary backbones
//! only the local scores rotate ([`Attention::local_inputs`]). Under grouped-query
//! attention the bank holds the key/value heads and each query head reads its group's.
//!
//! Dropout applies to the local attention probabilities only, as in the LongMem reference
//! code.
//!
//! Memory is read by the fused kernel ([`super::fused`]) unless the unfused reference is asked
//! for ([`JointAttention::with_path`]): the unfused path gathers the K retrieved keys and
//! values into `[B, H, T, K, d]` tensors and attends over them with tensor ops. Concat mode
//! fused mixes two softmaxes by their log-sum-exps, which is the joint softmax rewritten.

use super::attention::{Attention, Qkv};
use super::block::{AttentionOutput, LayerAttention};
use super::fused::{memory_attention, FusedPath};
use crate::memory::{MemoryBank, Retrieved};
use crate::profile::{Stage, StageClock};
use serde::{Deserialize, Serialize};
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
    bank: &'a MemoryBank,
    /// Per-head gate logits `[H]`.
    gate: &'a Tensor,
    mode: JointMode,
    /// MemTRM option: per-head log temperature `[H]`; queries and keys are L2-normalised and
    /// scores are `exp(τ_h)·q̂·k̂`. The bank must then hold normalised keys.
    log_temperature: Option<&'a Tensor>,
    /// Charges retrieval and joint attention time, when profiling.
    clock: Option<&'a StageClock>,
    /// The fused kernel's path, or `None` for the unfused reference.
    path: Option<FusedPath>,
}

impl<'a> JointAttention<'a> {
    /// Joint attention over `bank` (K = its `top_k`), mixed by the per-head `gate` `[H]`.
    pub fn new(bank: &'a MemoryBank, gate: &'a Tensor, mode: JointMode) -> Self {
        Self {
            bank,
            gate,
            mode,
            log_temperature: None,
            clock: None,
            path: Some(FusedPath::Auto),
        }
    }

    /// Reading memory with the fused kernel on `path`, or (`None`) the unfused reference.
    pub fn with_path(self, path: Option<FusedPath>) -> Self {
        Self { path, ..self }
    }

    /// With MemTRM's L2-normalised queries and keys scaled by `exp(log_temperature)` `[H]`
    /// (`None`: plain 1/√d scores).
    pub fn with_log_temperature(self, log_temperature: Option<&'a Tensor>) -> Self {
        Self {
            log_temperature,
            ..self
        }
    }

    /// Charging retrieval and joint attention time to `clock`, when given.
    pub fn with_clock(self, clock: Option<&'a StageClock>) -> Self {
        Self { clock, ..self }
    }
}

/// L2-normalises the last dimension.
pub fn l2_normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-6)
}

impl LayerAttention for JointAttention<'_> {
    fn attend(&self, attn: &Attention, qkv: &Qkv, train: bool) -> AttentionOutput {
        match self.clock {
            Some(clock) => clock.time_excluding(Stage::JointAttention, &[Stage::Retrieval], || {
                self.joint(attn, qkv, train)
            }),
            None => self.joint(attn, qkv, train),
        }
    }
}

impl JointAttention<'_> {
    fn joint(&self, attn: &Attention, qkv: &Qkv, train: bool) -> AttentionOutput {
        let (_, h, _, d) = qkv.q.size4().expect("q must be [B, H, T, d]");
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
        match self.path {
            Some(path) => self.fused(attn, &qkv, scale, path, train),
            None => self.unfused(attn, &qkv, scale, train),
        }
    }

    /// Times `f` as retrieval, when profiling.
    fn timed_retrieval<T>(&self, f: impl FnOnce() -> T) -> T {
        match self.clock {
            Some(clock) => clock.time(Stage::Retrieval, f),
            None => f(),
        }
    }

    /// Memory read in place by the fused kernel.
    fn fused(&self, attn: &Attention, qkv: &Qkv, scale: f64, path: FusedPath, train: bool) -> AttentionOutput {
        let (_b, h, t, _d) = qkv.q.size4().expect("q must be [B, H, T, d]");
        let slots = self
            .timed_retrieval(|| self.bank.retrieve_slots(&qkv.q, self.bank.config().top_k))
            .expect("top_k is validated against the chunk size when the bank is built");
        let kind = qkv.q.kind();
        let (memory, mem_lse) = memory_attention(&qkv.q, self.bank, &slots, scale, path);
        let memory = memory.to_kind(kind);
        let context = match self.mode {
            JointMode::Gated => {
                let local = attn.local_scaled(qkv, Some(scale), train);
                let any_valid = slots.chunk_mask.any_dim(-1, true).to_kind(kind); // [B, H, T, 1]
                let g = (self.gate.sigmoid().view([1, h, 1, 1]) * any_valid).to_kind(kind);
                &local * (1.0 - &g) + memory * g
            }
            JointMode::Concat => {
                let local = attn.local_inputs(qkv);
                let local_scores = self.local_scores(attn, &local, scale, t);
                let local_lse = local_scores.logsumexp([-1], true);
                let probs = local_scores.softmax(-1, Kind::Float).to_kind(kind);
                let local_out = probs.dropout(attn.dropout(), train).matmul(&local.v);
                // The joint softmax's mass on memory: σ(lse_memory − lse_local), 0 with none.
                let to_memory = (mem_lse.unsqueeze(-1) - local_lse).sigmoid().to_kind(kind);
                &local_out * (1.0 - &to_memory) + memory * to_memory
            }
        };
        AttentionOutput {
            context,
            retrieved_chunks: Some(slots.chunk_index),
        }
    }

    /// Local scores `[B, H, T, T]` in f32 with the position bias (concat mode).
    fn local_scores(&self, attn: &Attention, local: &Qkv, scale: f64, t: i64) -> Tensor {
        (local.q.matmul(&local.k.transpose(-1, -2)) * scale).to_kind(Kind::Float)
            + attn.position_bias(t, local.q.device()).unsqueeze(0)
    }

    /// The reference: the K retrieved pairs gathered, then attended over by tensor ops.
    fn unfused(&self, attn: &Attention, qkv: &Qkv, scale: f64, train: bool) -> AttentionOutput {
        let (_b, h, t, _d) = qkv.q.size4().expect("q must be [B, H, T, d]");
        let retrieved = self
            .timed_retrieval(|| self.bank.retrieve(&qkv.q, self.bank.config().top_k))
            .expect("top_k is validated against the chunk size when the bank is built");
        let Retrieved {
            keys,
            values,
            mask,
            chunk_index,
        } = retrieved;
        let kind = qkv.q.kind();
        let k_retrieved = mask.size()[3];
        let (keys, values) = (keys.to_kind(kind), values.to_kind(kind));
        // Memory scores [B, H, T, K]: each query against its own K retrieved keys, in f32 so
        // that the masked fill stays finite under f16 autocast.
        let mem_scores = (qkv.q.unsqueeze(3).matmul(&keys.transpose(-1, -2)).squeeze_dim(3) * scale)
            .to_kind(Kind::Float)
            .masked_fill(&mask.logical_not(), MASKED);
        let weighted = |probs: &Tensor| probs.unsqueeze(3).matmul(&values).squeeze_dim(3);
        let context = match self.mode {
            JointMode::Gated => {
                let local = attn.local_scaled(qkv, Some(scale), train);
                let memory = weighted(&mem_scores.softmax(-1, Kind::Float).to_kind(kind));
                let any_valid = mask.any_dim(-1, true).to_kind(kind); // [B, H, T, 1]
                let g = (self.gate.sigmoid().view([1, h, 1, 1]) * any_valid).to_kind(kind);
                &local * (1.0 - &g) + memory * g
            }
            JointMode::Concat => {
                let local = attn.local_inputs(qkv);
                let local_scores = self.local_scores(attn, &local, scale, t);
                let probs = Tensor::cat(&[local_scores, mem_scores], -1)
                    .softmax(-1, Kind::Float)
                    .to_kind(kind);
                let local_probs = probs.narrow(-1, 0, t).dropout(attn.dropout(), train);
                let mem_probs = probs.narrow(-1, t, k_retrieved);
                local_probs.matmul(&local.v) + weighted(&mem_probs)
            }
        };
        AttentionOutput {
            context,
            retrieved_chunks: Some(chunk_index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Backbone, BackboneConfig};
    use tch::{nn::VarStore, Device};

    /// A bank of 2 rows holding 12 chunks of random keys, retrieving 3 chunks of 2 tokens.
    fn filled_bank(n_head: i64, head_dim: i64) -> MemoryBank {
        crate::memory::random_bank(n_head, head_dim, 32, 24)
    }

    #[test]
    fn the_output_carries_the_chunks_the_bank_retrieves_for_the_same_queries() {
        let vs = VarStore::new(Device::Cpu);
        let backbone = Backbone::new(&vs.root(), &BackboneConfig::newgpt(30, 2, 2, 16, 32));
        let attn = &backbone.blocks()[1].attn;
        let qkv = tch::no_grad(|| attn.qkv(&Tensor::randn([2, 8, 16], (Kind::Float, Device::Cpu))));
        let bank = filled_bank(2, 8);
        let gate = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let log_t = Tensor::full([2], 0.5, (Kind::Float, Device::Cpu));
        let normalized = l2_normalize(&qkv.q) * log_t.exp().view([1, 2, 1, 1]);
        for mode in [JointMode::Gated, JointMode::Concat] {
            for (log_temperature, queries) in [(None, &qkv.q), (Some(&log_t), &normalized)] {
                let hook = JointAttention::new(&bank, &gate, mode).with_log_temperature(log_temperature);
                let out = tch::no_grad(|| hook.attend(attn, &qkv, false));
                let expected = bank.retrieve(queries, 6).unwrap().chunk_index;
                assert_eq!(expected.size(), [2, 2, 8, 3]);
                assert!(
                    bool::try_from(expected.ge(0).all()).unwrap(),
                    "every query finds 3 chunks"
                );
                let got = out.retrieved_chunks.expect("joint attention reads memory");
                assert!(got.equal(&expected), "{mode:?}, qk-norm {}", log_temperature.is_some());
                assert_eq!(out.context.size(), [2, 2, 8, 8]);
            }
        }
    }
}
