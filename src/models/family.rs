//! What a backbone family supplies to the generic backbone ([`super::Backbone`]: token
//! embedding, blocks, final norm, head). Each family implements [`Family`] in a file of its
//! own (`gpt2.rs`, `newgpt.rs`, `llama.rs`, `neox.rs`), and [`super::family_of`] maps its
//! [`BlockStyle`] to it.
//!
//! [`BlockStyle`]: super::BlockStyle

use super::block::Block;
use super::config::BackboneConfig;
use super::layers::{layer_norm, linear, Norm};
use tch::nn::Module;
use tch::{nn, Tensor};

/// One backbone family: its defaults, its layers and its checkpoint names.
pub trait Family: Sync {
    /// The family's defaults for a shape (GELU, LayerNorm eps, dropout, widths, memory layer).
    fn config(&self, vocab_size: i64, n_layer: i64, n_head: i64, n_embd: i64, n_positions: i64) -> BackboneConfig;

    /// The longest segment `config` can run (learned positions end at `n_positions`);
    /// `None` (the default) when any length runs.
    fn max_segment_len(&self, _config: &BackboneConfig) -> Option<i64> {
        None
    }

    /// The layers outside the blocks (position embedding, LM head) under `vs`. The backbone
    /// builds them right after the token embedding and before the blocks: that order fixes
    /// which seeded random numbers each weight gets. Default: no position embedding and an
    /// `lm_head` without bias, or the tied embedding ([`head`]).
    fn outer_layers(&self, vs: &nn::Path, config: &BackboneConfig) -> Box<dyn OuterLayers> {
        head(vs, config)
    }

    /// One block's weights under `vs`.
    fn block(&self, vs: nn::Path, config: &BackboneConfig) -> Block;

    /// The final norm (and the SideNet's) of width `d` under `vs`: LayerNorm unless the
    /// family says otherwise.
    fn final_norm(&self, vs: nn::Path, d: i64, eps: f64) -> Norm {
        Norm::Layer(layer_norm(vs, d, eps))
    }

    /// Maps a checkpoint tensor name (the family's Hugging Face names, or this project's
    /// own) to the model's name; `None` means the tensor is not a weight of this model and
    /// is skipped.
    fn model_name(&self, checkpoint_name: &str, config: &BackboneConfig) -> Option<String>;
}

/// A family's layers outside the blocks: how positions enter the embedding, and the LM head.
pub trait OuterLayers: std::fmt::Debug + Send {
    /// The token embedding `x: [B, T, D]` of `tokens: [B, T]` with position information
    /// added (or `x` itself where positions enter in attention).
    fn add_positions(&self, x: Tensor, tokens: &Tensor) -> Tensor;

    /// The LM head on already-normed states, `[.., D]` → `[.., V]`; `wte` is the token
    /// embedding, for a tied head.
    fn head(&self, x: &Tensor, wte: &nn::Embedding) -> Tensor;
}

/// The LM head of families without a position embedding (the rotary ones): `lm_head` `[V, D]` without bias, or the token embedding
/// when the layout ties it.
pub fn head(vs: &nn::Path, config: &BackboneConfig) -> Box<dyn OuterLayers> {
    let tied = config.rotary.as_ref().is_some_and(|r| r.tied_head);
    Box::new(RotaryHead {
        lm_head: (!tied).then(|| linear(vs / "lm_head", config.n_embd, config.vocab_size, false)),
    })
}

#[derive(Debug)]
struct RotaryHead {
    lm_head: Option<nn::Linear>,
}

impl OuterLayers for RotaryHead {
    fn add_positions(&self, x: Tensor, _tokens: &Tensor) -> Tensor {
        x
    }

    fn head(&self, x: &Tensor, wte: &nn::Embedding) -> Tensor {
        match &self.lm_head {
            Some(head) => head.forward(x),
            None => x.matmul(&wte.ws.tr()),
        }
    }
}
