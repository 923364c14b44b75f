//! GPT-NeoX as Hugging Face `transformers` implements `GPTNeoXForCausalLM`
//! (`models/gpt_neox/modeling_gpt_neox.py`), the Pythia models' architecture:
//!
//! - no position embedding: partial rotary embeddings (the first `rotary_pct · head_dim`
//!   dimensions of each head rotate; `rotary_emb_base` or `rope_theta`);
//! - the fused `attention.query_key_value` `[3D, D]` laid out per head as q|k|v, and
//!   `attention.dense`, both with biases;
//! - `use_parallel_residual` on: `x + Attn(LN₁ x) + MLP(LN₂ x)`; off: the sequential block
//!   `h = x + Attn(LN₁ x); h + MLP(LN₂ h)`; LayerNorms with biases;
//! - the MLP `dense_4h_to_h(gelu(dense_h_to_4h(·)))`;
//! - an untied head `embed_out` (tied where `tie_word_embeddings` says so).
//!
//! **Memory**, as for [`super::llama`]: the bank caches pre-rotary keys and values and is
//! read with pre-rotary queries; only local attention rotates.
//!
//! Checkpoints: HF's names (`gpt_neox.embed_in`, `gpt_neox.layers.{i}.*`,
//! `gpt_neox.final_layer_norm`, `embed_out`) map to this project's (`wte`, `h.{i}.*`,
//! `ln_f`, `lm_head`); the `attention.bias`, `attention.masked_bias` and
//! `rotary_emb.inv_freq` buffers are skipped.

use super::attention::{Attention, Positions, Projections, Rotary};
use super::block::{Block, BlockLayers};
use super::config::{default_memory_layer, BackboneConfig, BlockStyle, ConfigError, Gelu, RotaryLayout};
use super::family::Family;
use super::hf::{self, HfRope, HfShape};
use super::layers::{layer_norm, linear};
use serde::Deserialize;
use std::path::Path;
use tch::{nn, nn::Module, Tensor};

impl BackboneConfig {
    /// A GPT-NeoX backbone with Pythia's defaults: a quarter of each head rotates
    /// (θ = 10,000), parallel residual, exact GELU, LN eps 1e-5, biases, untied head, no
    /// dropout.
    pub fn neox(vocab_size: i64, n_layer: i64, n_head: i64, n_embd: i64, n_positions: i64) -> Self {
        let head_dim = n_embd / n_head.max(1);
        Self {
            style: BlockStyle::Neox,
            vocab_size,
            n_layer,
            n_head,
            n_embd,
            n_positions,
            n_inner: 4 * n_embd,
            layer_norm_eps: 1e-5,
            gelu: Gelu::Erf,
            dropout: 0.0,
            memory_layer: default_memory_layer(n_layer),
            rotary: Some(RotaryLayout {
                rotary_dim: rotary_dims(head_dim, DEFAULT_ROTARY_PCT),
                qkv_bias: true,
                out_bias: true,
                mlp_bias: true,
                parallel_residual: true,
                ..RotaryLayout::llama(n_head, n_embd)
            }),
        }
    }

    /// Reads a Hugging Face `config.json` of `model_type` `gpt_neox`.
    pub fn from_hf_neox_config(path: &Path) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Hf {
            hidden_act: Option<String>,
            layer_norm_eps: Option<f64>,
            use_parallel_residual: Option<bool>,
            tie_word_embeddings: Option<bool>,
            attention_bias: Option<bool>,
            #[serde(flatten)]
            shape: HfShape,
            #[serde(flatten)]
            rope: HfRope,
        }
        let hf: Hf = hf::read_json(path, "GPT-NeoX")?;
        let gelu = match hf.hidden_act.as_deref() {
            None | Some("gelu") => Gelu::Erf,
            Some("gelu_new" | "gelu_pytorch_tanh") => Gelu::Tanh,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "hidden_act",
                    value: format!("{other:?} in {}", path.display()),
                    allowed: "gelu, gelu_new or gelu_pytorch_tanh".into(),
                })
            }
        };
        let mut config = hf.shape.config(BlockStyle::Neox);
        config.layer_norm_eps = hf.layer_norm_eps.unwrap_or(1e-5);
        config.gelu = gelu;
        let (theta, scaling) = hf.rope.resolve(path, 10_000.0)?;
        let bias = hf.attention_bias.unwrap_or(true);
        let layout = config.rotary.as_mut().expect("neox has a rotary layout");
        layout.theta = theta;
        layout.scaling = scaling;
        layout.rotary_dim = rotary_dims(layout.head_dim, hf.rope.partial_factor(DEFAULT_ROTARY_PCT));
        layout.qkv_bias = bias;
        layout.out_bias = bias;
        layout.parallel_residual = hf.use_parallel_residual.unwrap_or(true);
        layout.tied_head = hf.tie_word_embeddings.unwrap_or(false);
        config.validate()?;
        Ok(config)
    }
}

/// Pythia's (and HF's default) `rotary_pct`.
pub const DEFAULT_ROTARY_PCT: f64 = 0.25;

/// HF's `rotary_ndims = int(head_size · rotary_pct)`.
pub fn rotary_dims(head_dim: i64, factor: f64) -> i64 {
    (head_dim as f64 * factor) as i64
}

/// The GPT-NeoX family ([`BlockStyle::Neox`]).
pub struct Neox;

impl Family for Neox {
    fn config(&self, vocab_size: i64, n_layer: i64, n_head: i64, n_embd: i64, n_positions: i64) -> BackboneConfig {
        BackboneConfig::neox(vocab_size, n_layer, n_head, n_embd, n_positions)
    }

    fn block(&self, vs: nn::Path, config: &BackboneConfig) -> Block {
        let layout = config.rotary.as_ref().expect("validated: neox has a rotary layout");
        let (d, eps) = (config.n_embd, config.layer_norm_eps);
        let width = config.n_head * layout.head_dim;
        let attn_vs = &vs / "attention";
        let projections = NeoxProjections {
            query_key_value: linear(&attn_vs / "query_key_value", d, 3 * width, layout.qkv_bias),
            dense: linear(&attn_vs / "dense", width, d, layout.out_bias),
            n_head: config.n_head,
        };
        let rotary = Rotary::new(layout, vs.device());
        let attn = Attention::new(Box::new(projections), config, Positions::Rotary(rotary));
        let mlp_vs = &vs / "mlp";
        let layers = NeoxLayers {
            input_layernorm: layer_norm(&vs / "input_layernorm", d, eps),
            post_attention_layernorm: layer_norm(&vs / "post_attention_layernorm", d, eps),
            dense_h_to_4h: linear(&mlp_vs / "dense_h_to_4h", d, config.n_inner, layout.mlp_bias),
            dense_4h_to_h: linear(&mlp_vs / "dense_4h_to_h", config.n_inner, d, layout.mlp_bias),
            gelu: config.gelu,
            parallel_residual: layout.parallel_residual,
            dropout: config.dropout,
        };
        Block::from_parts(attn, Box::new(layers), config)
    }

    fn model_name(&self, checkpoint_name: &str, config: &BackboneConfig) -> Option<String> {
        hf::model_name(checkpoint_name, config, &hf::Names::NEOX)
    }
}

/// The fused per-head q|k|v projection and the output projection `dense`.
#[derive(Debug)]
struct NeoxProjections {
    query_key_value: nn::Linear,
    dense: nn::Linear,
    n_head: i64,
}

impl Projections for NeoxProjections {
    fn qkv(&self, x: &Tensor) -> [Tensor; 3] {
        let (b, t, _) = x.size3().expect("attention input must be [B, T, D]");
        // `[B, T, 3·H·d]` holds, per head, that head's q, k and v one after the other.
        let fused = self.query_key_value.forward(x).view([b, t, self.n_head, 3, -1]);
        let part = |i: i64| fused.select(3, i).reshape([b, t, -1]);
        [part(0), part(1), part(2)]
    }

    fn out(&self, merged: &Tensor) -> Tensor {
        self.dense.forward(merged)
    }
}

/// The two LayerNorms and the MLP, wired in parallel or in sequence.
#[derive(Debug)]
struct NeoxLayers {
    input_layernorm: nn::LayerNorm,
    post_attention_layernorm: nn::LayerNorm,
    dense_h_to_4h: nn::Linear,
    dense_4h_to_h: nn::Linear,
    gelu: Gelu,
    parallel_residual: bool,
    dropout: f64,
}

impl NeoxLayers {
    fn mlp(&self, x: &Tensor, train: bool) -> Tensor {
        let inner = self.dense_h_to_4h.forward(&self.post_attention_layernorm.forward(x));
        self.dense_4h_to_h
            .forward(&inner.gelu(self.gelu.approximate()))
            .dropout(self.dropout, train)
    }
}

impl BlockLayers for NeoxLayers {
    fn attention_input(&self, x: &Tensor) -> Tensor {
        self.input_layernorm.forward(x)
    }

    fn output(&self, x: &Tensor, _normed: &Tensor, attention: Tensor, train: bool) -> Tensor {
        if self.parallel_residual {
            x + attention + self.mlp(x, train)
        } else {
            let h = x + attention;
            let mlp = self.mlp(&h, train);
            h + mlp
        }
    }
}
