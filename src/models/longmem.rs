//! LongMem (Wang et al. 2023, "Augmenting Language Models with Long-Term Memory"): a frozen
//! backbone whose memory layer's keys/values are cached in the bank, read back by a
//! trainable SideNet.
//!
//! - SideNet of S layers in the backbone's block style, input `H[0]`; layer i is
//!   initialised from backbone block `(i+1)·L/S − 1`; after layer i the cross-network
//!   residual `H[(i+1)·L/S] − H[i·L/S]` is added; final LN initialised from the backbone's,
//!   then the frozen backbone LM head. `H[L]` is already after the backbone's final LN and
//!   the SideNet's own final LN is applied again, as in the paper's reference code.
//! - One SideNet layer does joint attention ([`super::joint`]): its own queries retrieve
//!   from the bank, whose keys/values are the backbone memory layer's, used as they are.
//! - SideNet blocks use exact (erf) GELU and LN eps 1e-5 by default, as the reference code
//!   does; a switch.
//! - K, the retrieved tokens per query, is the bank's ([`crate::memory::BankConfig::top_k`]).
//! - Only SideNet weights and the gates train; the backbone runs without gradient.

use super::backbone::Backbone;
use super::block::{Block, LayerAttention};
use super::config::{BackboneConfig, Gelu};
use super::joint::{JointAttention, JointMode};
use super::layers::Norm;
use crate::memory::MemoryBank;
use crate::profile::{Stage, StageClock};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Tensor};

/// Resolved SideNet settings. Unknown fields are accepted, so that run configs written when
/// the SideNet also stored K (`k_tokens`) still parse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideNetConfig {
    /// S, a divisor of the backbone depth L.
    pub layers: i64,
    /// 0-based SideNet layer that does joint attention.
    pub memory_layer: i64,
    pub gelu: Gelu,
    pub layer_norm_eps: f64,
    pub dropout: f64,
    pub joint: JointMode,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SideNetError {
    #[error("sidenet.layers = {s} must be a positive divisor of the backbone's n_layer = {l}")]
    Depth { s: i64, l: i64 },
    #[error("sidenet.memory_layer = {m} is out of range: the SideNet has layers 0..{s}")]
    MemoryLayer { m: i64, s: i64 },
}

impl SideNetConfig {
    /// The paper's settings for a backbone of depth `n_layer` whose memory layer is
    /// `backbone_memory_layer`: erf GELU, eps 1e-5, gated joint attention, and as memory
    /// layer the SideNet layer initialised from the backbone's memory layer (or, when no
    /// SideNet layer is, the one initialised from the nearest block).
    pub fn paper(n_layer: i64, layers: i64, backbone_memory_layer: i64) -> Result<Self, SideNetError> {
        if layers <= 0 || n_layer % layers != 0 {
            return Err(SideNetError::Depth { s: layers, l: n_layer });
        }
        let memory_layer = (0..layers)
            .min_by_key(|&i| ((i + 1) * n_layer / layers - 1 - backbone_memory_layer).abs())
            .expect("layers > 0");
        Ok(Self {
            layers,
            memory_layer,
            gelu: Gelu::Erf,
            layer_norm_eps: 1e-5,
            dropout: 0.1,
            joint: JointMode::Gated,
        })
    }

    pub fn validate(&self, n_layer: i64) -> Result<(), SideNetError> {
        if self.layers <= 0 || n_layer % self.layers != 0 {
            return Err(SideNetError::Depth {
                s: self.layers,
                l: n_layer,
            });
        }
        if !(0..self.layers).contains(&self.memory_layer) {
            return Err(SideNetError::MemoryLayer {
                m: self.memory_layer,
                s: self.layers,
            });
        }
        Ok(())
    }

    /// Backbone block that SideNet layer `i` is initialised from: `(i+1)·L/S − 1`.
    pub fn source_block(&self, i: i64, n_layer: i64) -> i64 {
        (i + 1) * n_layer / self.layers - 1
    }
}

/// One LongMem forward pass.
#[derive(Debug)]
pub struct LongMemOutput {
    /// `[B, T, V]`
    pub logits: Tensor,
    /// S + 1 tensors `[B, T, D]`: the SideNet stream before layer 0 (`H[0]`) and after each
    /// layer and its cross-network residual (before the final LN).
    pub side_hidden: Vec<Tensor>,
    /// The backbone memory layer's keys and values `[B, H, T, d]`, to write after the read.
    pub memory_keys: Tensor,
    pub memory_values: Tensor,
    /// Chunk indices retrieved at the memory layer `[B, H, T, K/c]`.
    pub retrieved_chunks: Tensor,
}

#[derive(Debug)]
pub struct LongMem {
    pub backbone: Backbone,
    pub config: SideNetConfig,
    blocks: Vec<Block>,
    ln_f: Norm,
    /// Per-head gate logits `[H]`, initialised to 0 (σ = 0.5).
    pub gate: Tensor,
}

impl LongMem {
    /// Builds the SideNet under `side` (names `h.{i}.*`, `ln_f`, `mem_gate`) next to a frozen
    /// `backbone`. Call [`LongMem::init_from_backbone`] to copy the source blocks' weights.
    pub fn new(side: &nn::Path, backbone: Backbone, config: SideNetConfig) -> Self {
        let side_config = BackboneConfig {
            gelu: config.gelu,
            layer_norm_eps: config.layer_norm_eps,
            dropout: config.dropout,
            ..backbone.config.clone()
        };
        let h = side / "h";
        let blocks = (0..config.layers).map(|i| Block::new(&h / i, &side_config)).collect();
        let ln_f =
            super::family_of(side_config.style).final_norm(side / "ln_f", side_config.n_embd, config.layer_norm_eps);
        let gate = side.zeros("mem_gate", &[side_config.n_head]);
        Self {
            backbone,
            config,
            blocks,
            ln_f,
            gate,
        }
    }

    /// Copies backbone block `(i+1)·L/S − 1` into SideNet layer i and the backbone's final
    /// LN into the SideNet's, by tensor name.
    pub fn init_from_backbone(&self, backbone_vs: &nn::VarStore, side_vs: &nn::VarStore) {
        let source = backbone_vs.variables();
        let n_layer = self.backbone.config.n_layer;
        tch::no_grad(|| {
            for (name, mut var) in side_vs.variables() {
                let from = if let Some(rest) = name.strip_prefix("h.") {
                    let (i, tail) = rest.split_once('.').expect("block variables are h.{i}.*");
                    let i: i64 = i.parse().expect("block index");
                    format!("h.{}.{tail}", self.config.source_block(i, n_layer))
                } else if name.starts_with("ln_f.") {
                    name.clone()
                } else {
                    continue; // the gates keep their init
                };
                var.copy_(&source[&from]);
            }
        });
    }

    /// Reads the bank (never the segment itself) and returns logits and what to write.
    pub fn forward(&self, tokens: &Tensor, bank: &MemoryBank, train: bool) -> LongMemOutput {
        self.forward_timed(tokens, bank, train, &StageClock::disabled())
    }

    /// [`LongMem::forward`], charging the backbone, retrieval, joint attention and the rest
    /// of the SideNet to `clock`.
    pub fn forward_timed(&self, tokens: &Tensor, bank: &MemoryBank, train: bool, clock: &StageClock) -> LongMemOutput {
        let (hidden, memory_qkv) = clock.time(Stage::Backbone, || {
            tch::no_grad(|| self.backbone.hidden_states(tokens, false, None))
        });
        let (logits, side_hidden, retrieved_chunks) =
            clock.time_excluding(Stage::SideNet, &[Stage::Retrieval, Stage::JointAttention], || {
                self.side_forward(&hidden, bank, train, clock)
            });
        LongMemOutput {
            logits,
            side_hidden,
            memory_keys: memory_qkv.k,
            memory_values: memory_qkv.v,
            retrieved_chunks,
        }
    }

    /// The SideNet over the backbone's hidden states: logits, its stream, retrieved chunks.
    fn side_forward(
        &self,
        hidden: &[Tensor],
        bank: &MemoryBank,
        train: bool,
        clock: &StageClock,
    ) -> (Tensor, Vec<Tensor>, Tensor) {
        let stride = (hidden.len() as i64 - 1) / self.config.layers;
        let hook =
            JointAttention::new(bank, &self.gate, self.config.joint).with_clock(clock.enabled().then_some(clock));
        let mut x = hidden[0].shallow_clone();
        let mut side_hidden = vec![x.shallow_clone()];
        let mut retrieved_chunks = None;
        for (i, block) in self.blocks.iter().enumerate() {
            let i = i as i64;
            let layer_hook = (i == self.config.memory_layer).then_some(&hook as &dyn LayerAttention);
            let out = block.forward(&x, train, layer_hook);
            retrieved_chunks = retrieved_chunks.or(out.retrieved_chunks);
            let residual = &hidden[((i + 1) * stride) as usize] - &hidden[(i * stride) as usize];
            x = out.hidden + residual;
            side_hidden.push(x.shallow_clone());
        }
        let logits = self.backbone.head(&self.ln_f.forward(&x));
        let retrieved_chunks = retrieved_chunks.expect("the memory layer read the bank");
        (logits, side_hidden, retrieved_chunks)
    }
}
