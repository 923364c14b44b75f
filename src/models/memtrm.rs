//! MemTRM-style coupled memory (the LongMem paper's baseline, after Wu et al. 2022,
//! "Memorizing Transformers"): the memory bank and gated joint attention live inside the
//! backbone itself. The backbone's memory layer retrieves with its own queries from a bank
//! filled with its own keys and values, and a subset of backbone blocks trains (default
//! the odd-indexed ones, as the paper's re-implementation), so cached keys go stale as the
//! writer changes.
//!
//! Options from the original MemTRM: L2-normalised queries and keys with a learned per-head
//! temperature, and token-level retrieval (chunk size 1, set on the bank).

use super::backbone::{Backbone, BackboneOutput};
use super::joint::{l2_normalize, JointAttention, JointMode};
use crate::memory::MemoryBank;
use crate::profile::{Stage, StageClock};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Which backbone blocks train.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainableBlocks {
    /// Blocks 1, 3, 5, … (the paper's re-implementation).
    Odd,
    All,
    /// Exactly these 0-based blocks.
    List(Vec<i64>),
}

impl TrainableBlocks {
    pub fn contains(&self, block: i64) -> bool {
        match self {
            Self::Odd => block % 2 == 1,
            Self::All => true,
            Self::List(blocks) => blocks.contains(&block),
        }
    }
}

/// Resolved MemTRM settings; K is the bank's ([`crate::memory::BankConfig::top_k`]).
/// Unknown fields are accepted, so that run configs written when this section also stored K
/// (`k_tokens`) still parse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemTrmConfig {
    pub trainable: TrainableBlocks,
    /// L2-normalised q/k with a learned per-head temperature.
    pub qk_norm: bool,
    pub joint: JointMode,
}

/// One MemTRM forward pass.
#[derive(Debug)]
pub struct MemTrmOutput {
    pub backbone: BackboneOutput,
    /// What to write to the bank after the read: the memory layer's keys (normalised when
    /// `qk_norm`) and values, `[B, H, T, d]`, detached.
    pub memory_keys: Tensor,
    pub memory_values: Tensor,
    pub retrieved_chunks: Tensor,
}

#[derive(Debug)]
pub struct MemTrm {
    pub backbone: Backbone,
    pub config: MemTrmConfig,
    /// Per-head gate logits `[H]`, initialised to 0.
    pub gate: Tensor,
    /// Per-head log temperature `[H]` when `qk_norm` (initialised to ln √d).
    pub log_temperature: Option<Tensor>,
}

impl MemTrm {
    /// `vs` holds the backbone's own weights (`wte`, `h.{i}`, …) plus `mem_gate` and, with
    /// `qk_norm`, `mem_log_temperature`.
    pub fn new(vs: &nn::Path, backbone: Backbone, config: MemTrmConfig) -> Self {
        let h = backbone.config.n_head;
        let gate = vs.zeros("mem_gate", &[h]);
        let log_temperature = config.qk_norm.then(|| {
            let init = (backbone.config.head_dim() as f64).sqrt().ln();
            vs.var("mem_log_temperature", &[h], nn::Init::Const(init))
        });
        Self {
            backbone,
            config,
            gate,
            log_temperature,
        }
    }

    /// Whether the variable `name` of this model's `VarStore` trains.
    pub fn is_trainable(&self, name: &str) -> bool {
        if name.starts_with("mem_") {
            return true;
        }
        match name.strip_prefix("h.").and_then(|rest| rest.split_once('.')) {
            Some((block, _)) => block.parse().is_ok_and(|b| self.config.trainable.contains(b)),
            None => false, // embeddings, final LN and head stay frozen
        }
    }

    pub fn forward(&self, tokens: &Tensor, bank: &MemoryBank, train: bool) -> MemTrmOutput {
        self.forward_timed(tokens, bank, train, &StageClock::disabled())
    }

    /// [`MemTrm::forward`], charging retrieval and joint attention to `clock` and the rest
    /// of the backbone to its backbone stage.
    pub fn forward_timed(&self, tokens: &Tensor, bank: &MemoryBank, train: bool, clock: &StageClock) -> MemTrmOutput {
        let hook = JointAttention::new(bank, &self.gate, self.config.joint)
            .with_log_temperature(self.log_temperature.as_ref())
            .with_clock(clock.enabled().then_some(clock));
        let out = clock.time_excluding(Stage::Backbone, &[Stage::Retrieval, Stage::JointAttention], || {
            self.backbone.forward_with(tokens, train, Some(&hook))
        });
        let retrieved_chunks = out
            .retrieved_chunks
            .as_ref()
            .expect("the memory layer read the bank")
            .shallow_clone();
        let keys = out.memory_qkv.k.detach();
        let memory_keys = if self.config.qk_norm { l2_normalize(&keys) } else { keys };
        let memory_values = out.memory_qkv.v.detach();
        MemTrmOutput {
            backbone: out,
            memory_keys,
            memory_values,
            retrieved_chunks,
        }
    }
}
