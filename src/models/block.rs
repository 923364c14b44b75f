//! One transformer block of any family: the family's norms and MLP ([`BlockLayers`], in
//! its own file) wired around the shared [`Attention`], whose local attention a
//! [`LayerAttention`] hook may replace.

use super::attention::{Attention, Qkv};
use super::config::BackboneConfig;
use tch::{nn, Tensor};

/// What a layer's attention yields.
///
/// # Shapes
/// - `context`: `[B, H, T, d]`, the per-head context that goes into the output projection
/// - `retrieved_chunks`: `[B, H, T, K/c]`, the memory chunks the layer read (the bank's
///   [`crate::memory::Retrieved::chunk_index`]), when it read memory
#[derive(Debug)]
pub struct AttentionOutput {
    pub context: Tensor,
    pub retrieved_chunks: Option<Tensor>,
}

impl AttentionOutput {
    /// The output of attention that read no memory.
    pub fn local(context: Tensor) -> Self {
        Self {
            context,
            retrieved_chunks: None,
        }
    }
}

/// Replaces a block's local attention with something richer, such as the joint
/// local + memory attention of LongMem and MemTRM. Models implement it; the block knows no
/// memory.
pub trait LayerAttention {
    /// Given the block's attention module and its per-head `qkv` (each `[B, H, T, d]`),
    /// return the per-head context that goes into the output projection, and what memory
    /// it read.
    fn attend(&self, attn: &Attention, qkv: &Qkv, train: bool) -> AttentionOutput;
}

/// A family's block around its attention: the norms, the MLP and the residual wiring.
/// Each family file implements it (`Gpt2Layers`, `NewGptLayers`).
pub trait BlockLayers: std::fmt::Debug + Send {
    /// The attention branch's input, `x: [B, T, D]` normed → `[B, T, D]`.
    fn attention_input(&self, x: &Tensor) -> Tensor;
    /// The block's output `[B, T, D]` from its input `x`, the attention input `normed` and
    /// the attention branch's output `attention` (projected, dropout applied).
    fn output(&self, x: &Tensor, normed: &Tensor, attention: Tensor, train: bool) -> Tensor;
}

/// The output of one block.
#[derive(Debug)]
pub struct BlockOutput {
    /// `[B, T, D]`
    pub hidden: Tensor,
    /// This block's per-head q/k/v of its normed input, `[B, H, T, d]` each.
    pub qkv: Qkv,
    /// `[B, H, T, K/c]`: the memory chunks this block's attention read, when a hook read
    /// memory.
    pub retrieved_chunks: Option<Tensor>,
}

/// One transformer block: attention and the family's layers around it.
#[derive(Debug)]
pub struct Block {
    pub attn: Attention,
    layers: Box<dyn BlockLayers>,
    /// Dropout on the attention branch's output, in training.
    dropout: f64,
}

impl Block {
    /// Builds block weights under `vs` with the checkpoint's names of `config.style`'s
    /// family (`ln_1`, `attn.c_attn`, ... for `gpt2`; `ln`, `attn.q_proj`, ..., `mlp.fc_in`
    /// for `newgpt`).
    pub fn new(vs: nn::Path, config: &BackboneConfig) -> Self {
        super::family_of(config.style).block(vs, config)
    }

    /// A block of `attn` and a family's `layers`, with `config`'s dropout on the attention
    /// branch.
    pub fn from_parts(attn: Attention, layers: Box<dyn BlockLayers>, config: &BackboneConfig) -> Self {
        Self {
            attn,
            layers,
            dropout: config.dropout,
        }
    }

    /// `x: [B, T, D]` → `[B, T, D]`. `hook`, when given, computes this block's attention
    /// context in place of plain local attention.
    pub fn forward(&self, x: &Tensor, train: bool, hook: Option<&dyn LayerAttention>) -> BlockOutput {
        let normed = self.layers.attention_input(x);
        let qkv = self.attn.qkv(&normed);
        let AttentionOutput {
            context,
            retrieved_chunks,
        } = match hook {
            Some(hook) => hook.attend(&self.attn, &qkv, train),
            None => AttentionOutput::local(self.attn.local(&qkv, train)),
        };
        let attention = self.attn.project_out(&context).dropout(self.dropout, train);
        BlockOutput {
            hidden: self.layers.output(x, &normed, attention, train),
            qkv,
            retrieved_chunks,
        }
    }
}
