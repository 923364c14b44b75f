//! `newgpt`, the backbone of the LongMem paper (Wang et al. 2023, "Augmenting Language
//! Models with Long-Term Memory") as its fairseq-based reference code builds it, and as
//! `tests/fixtures/make_reference.py` re-implements it for `tests/reference_parity.rs`:
//!
//! - no position embedding: ALiBi biases the attention scores (slopes `2^(-8k/H)`);
//! - the GPT-J-style parallel block `h = h + Attn(LN h) + MLP(LN h)`, one LayerNorm per
//!   block with eps 1e-6;
//! - separate `attn.q_proj`, `k_proj`, `v_proj`, `out_proj` without bias, and an MLP
//!   `mlp.fc_out(gelu(mlp.fc_in(·)))` with biases;
//! - an untied LM head `lm_head` `[V, D]` with bias.
//!
//! Checkpoints carry this project's names; as for `gpt2`, an optional `transformer.`
//! prefix is stripped.

use super::attention::{alibi_slopes, Attention, Positions, SplitProjections};
use super::block::{Block, BlockLayers};
use super::config::{BackboneConfig, BlockStyle, Gelu};
use super::family::{Family, OuterLayers};
use super::layers::{layer_norm, linear};
use tch::{nn, nn::Module, Tensor};

impl BackboneConfig {
    /// LongMem's `newgpt` backbone (parallel block, ALiBi, LN eps 1e-6, tanh GELU); the
    /// other defaults are GPT-2's ([`BackboneConfig::gpt2`]).
    pub fn newgpt(vocab_size: i64, n_layer: i64, n_head: i64, n_embd: i64, n_positions: i64) -> Self {
        Self {
            style: BlockStyle::Newgpt,
            layer_norm_eps: 1e-6,
            ..Self::gpt2(vocab_size, n_layer, n_head, n_embd, n_positions)
        }
    }
}

/// The `newgpt` family ([`BlockStyle::Newgpt`]).
pub struct NewGpt;

impl Family for NewGpt {
    fn config(&self, vocab_size: i64, n_layer: i64, n_head: i64, n_embd: i64, n_positions: i64) -> BackboneConfig {
        BackboneConfig::newgpt(vocab_size, n_layer, n_head, n_embd, n_positions)
    }

    fn outer_layers(&self, vs: &nn::Path, config: &BackboneConfig) -> Box<dyn OuterLayers> {
        Box::new(UntiedHead {
            lm_head: linear(vs / "lm_head", config.n_embd, config.vocab_size, true),
        })
    }

    fn block(&self, vs: nn::Path, config: &BackboneConfig) -> Block {
        let d = config.n_embd;
        let attn_vs = &vs / "attn";
        let projections = SplitProjections {
            q: linear(&attn_vs / "q_proj", d, d, false),
            k: linear(&attn_vs / "k_proj", d, d, false),
            v: linear(&attn_vs / "v_proj", d, d, false),
            out: linear(&attn_vs / "out_proj", d, d, false),
        };
        let slopes = alibi_slopes(config.n_head).to_device(vs.device());
        let attn = Attention::new(Box::new(projections), config, Positions::Alibi(slopes));
        let mlp_vs = &vs / "mlp";
        let layers = NewGptLayers {
            ln: layer_norm(&vs / "ln", d, config.layer_norm_eps),
            fc_in: linear(&mlp_vs / "fc_in", d, config.n_inner, true),
            fc_out: linear(&mlp_vs / "fc_out", config.n_inner, d, true),
            gelu: config.gelu,
            dropout: config.dropout,
        };
        Block::from_parts(attn, Box::new(layers), config)
    }

    fn model_name(&self, checkpoint_name: &str, _config: &BackboneConfig) -> Option<String> {
        Some(
            checkpoint_name
                .strip_prefix("transformer.")
                .unwrap_or(checkpoint_name)
                .to_string(),
        )
    }
}

/// No position embedding (ALiBi acts in attention) and the untied head `[V, D]` + bias.
#[derive(Debug)]
struct UntiedHead {
    lm_head: nn::Linear,
}

impl OuterLayers for UntiedHead {
    fn add_positions(&self, x: Tensor, _tokens: &Tensor) -> Tensor {
        x
    }

    fn head(&self, x: &Tensor, _wte: &nn::Embedding) -> Tensor {
        self.lm_head.forward(x)
    }
}

/// The parallel block's one LayerNorm `ln` and its MLP `fc_out(gelu(fc_in(·)))`.
#[derive(Debug)]
struct NewGptLayers {
    ln: nn::LayerNorm,
    fc_in: nn::Linear,
    fc_out: nn::Linear,
    gelu: Gelu,
    dropout: f64,
}

impl BlockLayers for NewGptLayers {
    fn attention_input(&self, x: &Tensor) -> Tensor {
        self.ln.forward(x)
    }

    fn output(&self, x: &Tensor, normed: &Tensor, attention: Tensor, train: bool) -> Tensor {
        let inner = self.fc_in.forward(normed).gelu(self.gelu.approximate());
        let mlp = self.fc_out.forward(&inner).dropout(self.dropout, train);
        x + attention + mlp
    }
}
