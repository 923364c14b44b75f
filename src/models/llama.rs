//! The Llama family as Hugging Face `transformers` implements `LlamaForCausalLM`
//! (`models/llama/modeling_llama.py`), and the models that share its layout: SmolLM and
//! SmolLM2, TinyLlama, Mistral without a sliding window, and `Qwen2ForCausalLM` (q/k/v
//! biases):
//!
//! - no position embedding: rotary embeddings of queries and keys in attention (`rope_theta`,
//!   `rope_scaling` types `linear` and `llama3`; [`super::attention::Rotary`]);
//! - the sequential block `h = h + Attn(RMSNorm₁ h); h = h + MLP(RMSNorm₂ h)`;
//! - grouped-query attention (`num_key_value_heads`), an explicit `head_dim` where given;
//! - the SwiGLU MLP `down(silu(gate(x)) · up(x))` (the config's `gelu` is unused);
//! - the LM head tied to the embedding or not (`tie_word_embeddings`).
//!
//! **Memory.** The memory bank caches the memory layer's keys and values before the rotary
//! rotation, one entry per key/value head, and memory is read with pre-rotary queries, each
//! query head reading its group's key/value head; only local attention rotates. So memory
//! carries no position signal, as in the paper, and with the memory gate closed LongMem is
//! this backbone exactly (`tests/backbone_families.rs`).
//!
//! Checkpoints: HF's names (`model.embed_tokens`, `model.layers.{i}.*`, `model.norm`,
//! `lm_head`) map to this project's (`wte`, `h.{i}.*` with HF's inner names, `ln_f`,
//! `lm_head`); a tied checkpoint's `lm_head.weight` and old `rotary_emb.inv_freq` buffers
//! are skipped. `tests/fixtures/make_reference.py` builds the HF references that
//! `tests/reference_parity.rs` checks this file against.

use super::attention::{Attention, Positions, Rotary, SplitProjections};
use super::block::{Block, BlockLayers};
use super::config::{default_memory_layer, BackboneConfig, BlockStyle, ConfigError, Gelu, RotaryLayout};
use super::family::Family;
use super::hf::{self, HfRope, HfShape};
use super::layers::{linear, Norm, RmsNorm};
use serde::Deserialize;
use std::path::Path;
use tch::{nn, nn::Module, Tensor};

impl BackboneConfig {
    /// A Llama-style backbone: every head dimension rotates (θ = 10,000), one key/value head
    /// per query head, no biases, untied head, RMSNorm eps 1e-6, SwiGLU of width
    /// `n_inner = 4·D` (set it as the checkpoint has it), no dropout (as HF's Llama).
    pub fn llama(vocab_size: i64, n_layer: i64, n_head: i64, n_embd: i64, n_positions: i64) -> Self {
        Self {
            style: BlockStyle::Llama,
            vocab_size,
            n_layer,
            n_head,
            n_embd,
            n_positions,
            n_inner: 4 * n_embd,
            layer_norm_eps: 1e-6,
            gelu: Gelu::Erf,
            dropout: 0.0,
            memory_layer: default_memory_layer(n_layer),
            rotary: Some(RotaryLayout::llama(n_head, n_embd)),
        }
    }

    /// Reads a Hugging Face `config.json` of `model_type` `llama`, `mistral` or `qwen2`.
    pub fn from_hf_llama_config(path: &Path) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Hf {
            model_type: String,
            num_key_value_heads: Option<i64>,
            head_dim: Option<i64>,
            hidden_act: Option<String>,
            rms_norm_eps: Option<f64>,
            tie_word_embeddings: Option<bool>,
            attention_bias: Option<bool>,
            mlp_bias: Option<bool>,
            sliding_window: Option<i64>,
            use_sliding_window: Option<bool>,
            #[serde(flatten)]
            shape: HfShape,
            #[serde(flatten)]
            rope: HfRope,
        }
        let hf: Hf = hf::read_json(path, "Llama-family")?;
        let at = |key: &'static str, value: String, allowed: &str| ConfigError::Invalid {
            key,
            value: format!("{value} in {}", path.display()),
            allowed: allowed.into(),
        };
        if let Some(act) = hf.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(at(
                "hidden_act",
                format!("{act:?}"),
                "\"silu\" (the SwiGLU this family implements)",
            ));
        }
        let qwen2 = hf.model_type == "qwen2";
        let sliding = if qwen2 {
            hf.use_sliding_window.unwrap_or(false)
        } else {
            true
        };
        if let Some(window) = hf.sliding_window.filter(|_| sliding) {
            return Err(at(
                "sliding_window",
                window.to_string(),
                "null: sliding-window attention is not implemented (Mistral v0.1 uses it; v0.3 does not)",
            ));
        }
        let mut config = hf.shape.config(BlockStyle::Llama);
        config.layer_norm_eps = hf.rms_norm_eps.unwrap_or(1e-6);
        let head_dim = hf
            .head_dim
            .unwrap_or(hf.shape.hidden_size / hf.shape.num_attention_heads.max(1));
        let attention_bias = hf.attention_bias.unwrap_or(false);
        let (theta, scaling) = hf.rope.resolve(path, 10_000.0)?;
        config.rotary = Some(RotaryLayout {
            n_kv_head: hf.num_key_value_heads.unwrap_or(hf.shape.num_attention_heads),
            head_dim,
            theta,
            rotary_dim: head_dim,
            scaling,
            qkv_bias: attention_bias || qwen2,
            out_bias: attention_bias,
            mlp_bias: hf.mlp_bias.unwrap_or(false),
            tied_head: hf.tie_word_embeddings.unwrap_or(false),
            parallel_residual: false,
        });
        config.validate()?;
        Ok(config)
    }
}

/// The Llama family ([`BlockStyle::Llama`]).
pub struct Llama;

impl Family for Llama {
    fn config(&self, vocab_size: i64, n_layer: i64, n_head: i64, n_embd: i64, n_positions: i64) -> BackboneConfig {
        BackboneConfig::llama(vocab_size, n_layer, n_head, n_embd, n_positions)
    }

    fn block(&self, vs: nn::Path, config: &BackboneConfig) -> Block {
        let layout = config.rotary.as_ref().expect("validated: llama has a rotary layout");
        let (d, hd) = (config.n_embd, layout.head_dim);
        let (q_width, kv_width) = (config.n_head * hd, layout.n_kv_head * hd);
        let attn_vs = &vs / "self_attn";
        let projections = SplitProjections {
            q: linear(&attn_vs / "q_proj", d, q_width, layout.qkv_bias),
            k: linear(&attn_vs / "k_proj", d, kv_width, layout.qkv_bias),
            v: linear(&attn_vs / "v_proj", d, kv_width, layout.qkv_bias),
            out: linear(&attn_vs / "o_proj", q_width, d, layout.out_bias),
        };
        let rotary = Rotary::new(layout, vs.device());
        let attn = Attention::new(Box::new(projections), config, Positions::Rotary(rotary));
        let mlp_vs = &vs / "mlp";
        let layers = LlamaLayers {
            input_layernorm: RmsNorm::new(&vs / "input_layernorm", d, config.layer_norm_eps),
            post_attention_layernorm: RmsNorm::new(&vs / "post_attention_layernorm", d, config.layer_norm_eps),
            gate_proj: linear(&mlp_vs / "gate_proj", d, config.n_inner, layout.mlp_bias),
            up_proj: linear(&mlp_vs / "up_proj", d, config.n_inner, layout.mlp_bias),
            down_proj: linear(&mlp_vs / "down_proj", config.n_inner, d, layout.mlp_bias),
            dropout: config.dropout,
        };
        Block::from_parts(attn, Box::new(layers), config)
    }

    fn final_norm(&self, vs: nn::Path, d: i64, eps: f64) -> Norm {
        Norm::Rms(RmsNorm::new(vs, d, eps))
    }

    fn model_name(&self, checkpoint_name: &str, config: &BackboneConfig) -> Option<String> {
        hf::model_name(checkpoint_name, config, &hf::Names::LLAMA)
    }
}

/// The sequential block's RMSNorms and its SwiGLU MLP.
#[derive(Debug)]
struct LlamaLayers {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    gate_proj: nn::Linear,
    up_proj: nn::Linear,
    down_proj: nn::Linear,
    dropout: f64,
}

impl BlockLayers for LlamaLayers {
    fn attention_input(&self, x: &Tensor) -> Tensor {
        self.input_layernorm.forward(x)
    }

    fn output(&self, x: &Tensor, _normed: &Tensor, attention: Tensor, train: bool) -> Tensor {
        let h = x + attention;
        let normed = self.post_attention_layernorm.forward(&h);
        let inner = self.gate_proj.forward(&normed).silu() * self.up_proj.forward(&normed);
        let mlp = self.down_proj.forward(&inner).dropout(self.dropout, train);
        h + mlp
    }
}
