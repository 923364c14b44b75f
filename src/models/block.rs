//! One transformer block in either style (DESIGN.md §2.1).
//!
//! - `gpt2`: `h = h + Attn(LN₁ h); h = h + MLP(LN₂ h)` (HF `GPT2Block`).
//! - `newgpt`: `h = h + Attn(LN h) + MLP(LN h)` (GPT-J-style parallel block, LongMem's backbone).

use super::attention::{Attention, Qkv};
use super::config::{BackboneConfig, BlockStyle, Gelu};
use super::layers::{layer_norm, linear, Conv1D};
use tch::{nn, nn::Module, Tensor};

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

#[derive(Debug)]
enum Mlp {
    Gpt2 { c_fc: Conv1D, c_proj: Conv1D },
    Newgpt { fc_in: nn::Linear, fc_out: nn::Linear },
}

impl Mlp {
    fn forward(&self, x: &Tensor, gelu: Gelu) -> Tensor {
        match self {
            Mlp::Gpt2 { c_fc, c_proj } => c_proj.forward(&c_fc.forward(x).gelu(gelu.approximate())),
            Mlp::Newgpt { fc_in, fc_out } => fc_out.forward(&fc_in.forward(x).gelu(gelu.approximate())),
        }
    }
}

#[derive(Debug)]
enum Norms {
    /// `ln_1` before attention, `ln_2` before the MLP.
    Gpt2 { ln_1: nn::LayerNorm, ln_2: nn::LayerNorm },
    /// One `ln` shared by both branches.
    Newgpt { ln: nn::LayerNorm },
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

#[derive(Debug)]
pub struct Block {
    norms: Norms,
    pub attn: Attention,
    mlp: Mlp,
    gelu: Gelu,
    dropout: f64,
}

impl Block {
    /// Builds block weights under `vs` with the checkpoint's names (`ln_1`, `attn.c_attn`, ...
    /// for `gpt2`; `ln`, `attn.q_proj`, ..., `mlp.fc_in` for `newgpt`).
    pub fn new(vs: nn::Path, config: &BackboneConfig) -> Self {
        let (d, eps) = (config.n_embd, config.layer_norm_eps);
        let attn = Attention::new(&vs / "attn", config);
        let mlp_vs = &vs / "mlp";
        let (norms, mlp) = match config.style {
            BlockStyle::Gpt2 => (
                Norms::Gpt2 {
                    ln_1: layer_norm(&vs / "ln_1", d, eps),
                    ln_2: layer_norm(&vs / "ln_2", d, eps),
                },
                Mlp::Gpt2 {
                    c_fc: Conv1D::new(&mlp_vs / "c_fc", d, config.n_inner),
                    c_proj: Conv1D::new(&mlp_vs / "c_proj", config.n_inner, d),
                },
            ),
            BlockStyle::Newgpt => (
                Norms::Newgpt {
                    ln: layer_norm(&vs / "ln", d, eps),
                },
                Mlp::Newgpt {
                    fc_in: linear(&mlp_vs / "fc_in", d, config.n_inner, true),
                    fc_out: linear(&mlp_vs / "fc_out", config.n_inner, d, true),
                },
            ),
        };
        Self {
            norms,
            attn,
            mlp,
            gelu: config.gelu,
            dropout: config.dropout,
        }
    }

    /// `x: [B, T, D]` → `[B, T, D]`. `hook`, when given, computes this block's attention
    /// context in place of plain local attention.
    pub fn forward(&self, x: &Tensor, train: bool, hook: Option<&dyn LayerAttention>) -> BlockOutput {
        let attend = |normed: &Tensor| {
            let qkv = self.attn.qkv(normed);
            let AttentionOutput {
                context,
                retrieved_chunks,
            } = match hook {
                Some(hook) => hook.attend(&self.attn, &qkv, train),
                None => AttentionOutput::local(self.attn.local(&qkv, train)),
            };
            let out = self.attn.project_out(&context).dropout(self.dropout, train);
            (out, qkv, retrieved_chunks)
        };
        match &self.norms {
            Norms::Gpt2 { ln_1, ln_2 } => {
                let (attn_out, qkv, retrieved_chunks) = attend(&ln_1.forward(x));
                let h = x + attn_out;
                let mlp_out = self
                    .mlp
                    .forward(&ln_2.forward(&h), self.gelu)
                    .dropout(self.dropout, train);
                BlockOutput {
                    hidden: h + mlp_out,
                    qkv,
                    retrieved_chunks,
                }
            }
            Norms::Newgpt { ln } => {
                let normed = ln.forward(x);
                let (attn_out, qkv, retrieved_chunks) = attend(&normed);
                let mlp_out = self.mlp.forward(&normed, self.gelu).dropout(self.dropout, train);
                BlockOutput {
                    hidden: x + attn_out + mlp_out,
                    qkv,
                    retrieved_chunks,
                }
            }
        }
    }
}
