//! What a backbone family supplies to the generic backbone ([`super::Backbone`]: token
//! embedding, blocks, final LayerNorm, head). Each family implements [`Family`] in a file of
//! its own (`gpt2.rs`, `newgpt.rs`), and [`super::family_of`] maps its [`BlockStyle`] to it.
//!
//! [`BlockStyle`]: super::BlockStyle

use super::block::Block;
use super::config::BackboneConfig;
use super::layers::{layer_norm, Norm};
use tch::{nn, Tensor};

/// One backbone family: its defaults, its layers and its checkpoint names.
pub trait Family: Sync {
    /// The family's defaults for a shape (GELU, LayerNorm eps, dropout, widths, memory layer).
    fn config(&self, vocab_size: i64, n_layer: i64, n_head: i64, n_embd: i64, n_positions: i64) -> BackboneConfig;

    /// The longest segment `config` can run (learned positions end at `n_positions`);
    /// `None` when any length runs.
    fn max_segment_len(&self, config: &BackboneConfig) -> Option<i64>;

    /// The layers outside the blocks (position embedding, LM head) under `vs`. The backbone
    /// builds them right after the token embedding and before the blocks: that order fixes
    /// which seeded random numbers each weight gets.
    fn outer_layers(&self, vs: &nn::Path, config: &BackboneConfig) -> Box<dyn OuterLayers>;

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
