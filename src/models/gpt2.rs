//! GPT-2 as Hugging Face `transformers` implements it (`GPT2LMHeadModel` in
//! `models/gpt2/modeling_gpt2.py`), with HF's tensor names so that its `model.safetensors`
//! files load unchanged:
//!
//! - a learned position embedding `wpe` added to the token embedding `wte`;
//! - the sequential block `h = h + Attn(LN₁ h); h = h + MLP(LN₂ h)` (HF `GPT2Block`);
//! - `Conv1D` projections (`weight: [in, out]`) with biases: the fused `attn.c_attn`
//!   `[D, 3D]`, `attn.c_proj`, `mlp.c_fc` and `mlp.c_proj`;
//! - the LM head tied to `wte`.
//!
//! Checkpoints: an optional `transformer.` prefix is stripped, and the causal-mask buffers
//! `attn.bias` / `attn.masked_bias` and the tied `lm_head.weight` are skipped.
//! `tests/fixtures/make_reference.py` builds the HF reference that `tests/reference_parity.rs`
//! checks this file against.

use super::attention::{Attention, Positions, Projections};
use super::block::{Block, BlockLayers};
use super::config::{default_memory_layer, BackboneConfig, BlockStyle, ConfigError, Gelu};
use super::family::{Family, OuterLayers};
use super::layers::{embedding, layer_norm};
use serde::Deserialize;
use std::path::Path;
use tch::{nn, nn::Module, Kind, Tensor};

impl BackboneConfig {
    /// A GPT-2-style backbone with HF's defaults (tanh GELU, LN eps 1e-5, dropout 0.1).
    pub fn gpt2(vocab_size: i64, n_layer: i64, n_head: i64, n_embd: i64, n_positions: i64) -> Self {
        Self {
            style: BlockStyle::Gpt2,
            vocab_size,
            n_layer,
            n_head,
            n_embd,
            n_positions,
            n_inner: 4 * n_embd,
            layer_norm_eps: 1e-5,
            gelu: Gelu::Tanh,
            dropout: 0.1,
            memory_layer: default_memory_layer(n_layer),
            rotary: None,
        }
    }

    /// Reads a Hugging Face GPT-2 `config.json` (as saved beside `model.safetensors`).
    pub fn from_hf_gpt2_config(path: &Path) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Hf {
            vocab_size: i64,
            n_layer: i64,
            n_head: i64,
            n_embd: i64,
            n_positions: i64,
            n_inner: Option<i64>,
            layer_norm_epsilon: Option<f64>,
            activation_function: Option<String>,
            resid_pdrop: Option<f64>,
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let hf: Hf = serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            family: "GPT-2",
            source,
        })?;
        let mut config = Self::gpt2(hf.vocab_size, hf.n_layer, hf.n_head, hf.n_embd, hf.n_positions);
        config.n_inner = hf.n_inner.unwrap_or(4 * hf.n_embd);
        config.layer_norm_eps = hf.layer_norm_epsilon.unwrap_or(1e-5);
        config.dropout = hf.resid_pdrop.unwrap_or(0.1);
        config.gelu = match hf.activation_function.as_deref() {
            None | Some("gelu_new") | Some("gelu_pytorch_tanh") => Gelu::Tanh,
            Some("gelu") => Gelu::Erf,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "activation_function",
                    value: format!("{other:?} in {}", path.display()),
                    allowed: "gelu_new, gelu_pytorch_tanh or gelu".into(),
                })
            }
        };
        config.validate()?;
        Ok(config)
    }
}

/// The GPT-2 family ([`BlockStyle::Gpt2`]).
pub struct Gpt2;

impl Family for Gpt2 {
    fn config(&self, vocab_size: i64, n_layer: i64, n_head: i64, n_embd: i64, n_positions: i64) -> BackboneConfig {
        BackboneConfig::gpt2(vocab_size, n_layer, n_head, n_embd, n_positions)
    }

    fn max_segment_len(&self, config: &BackboneConfig) -> Option<i64> {
        Some(config.n_positions)
    }

    fn outer_layers(&self, vs: &nn::Path, config: &BackboneConfig) -> Box<dyn OuterLayers> {
        Box::new(LearnedPositions {
            wpe: embedding(vs / "wpe", config.n_positions, config.n_embd),
            n_positions: config.n_positions,
        })
    }

    fn block(&self, vs: nn::Path, config: &BackboneConfig) -> Block {
        let (d, eps) = (config.n_embd, config.layer_norm_eps);
        let attn_vs = &vs / "attn";
        let projections = Gpt2Projections {
            c_attn: Conv1D::new(&attn_vs / "c_attn", d, 3 * d),
            c_proj: Conv1D::new(&attn_vs / "c_proj", d, d),
        };
        let attn = Attention::new(Box::new(projections), config, Positions::Embedding);
        let mlp_vs = &vs / "mlp";
        let layers = Gpt2Layers {
            ln_1: layer_norm(&vs / "ln_1", d, eps),
            ln_2: layer_norm(&vs / "ln_2", d, eps),
            c_fc: Conv1D::new(&mlp_vs / "c_fc", d, config.n_inner),
            c_proj: Conv1D::new(&mlp_vs / "c_proj", config.n_inner, d),
            gelu: config.gelu,
            dropout: config.dropout,
        };
        Block::from_parts(attn, Box::new(layers), config)
    }

    fn model_name(&self, checkpoint_name: &str, _config: &BackboneConfig) -> Option<String> {
        let name = checkpoint_name.strip_prefix("transformer.").unwrap_or(checkpoint_name);
        let buffer = name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias");
        (!buffer && name != "lm_head.weight").then(|| name.to_string())
    }
}

/// The learned position table `wpe` `[n_positions, D]`, and the head tied to `wte`.
#[derive(Debug)]
struct LearnedPositions {
    wpe: nn::Embedding,
    n_positions: i64,
}

impl OuterLayers for LearnedPositions {
    fn add_positions(&self, x: Tensor, tokens: &Tensor) -> Tensor {
        let (_b, t) = tokens.size2().expect("tokens must be [B, T]");
        assert!(
            t <= self.n_positions,
            "segment of {t} tokens exceeds the gpt2 backbone's n_positions = {}",
            self.n_positions
        );
        x + self.wpe.forward(&Tensor::arange(t, (Kind::Int64, tokens.device())))
    }

    fn head(&self, x: &Tensor, wte: &nn::Embedding) -> Tensor {
        x.matmul(&wte.ws.tr())
    }
}

/// HF GPT-2's attention projections: the fused `c_attn` `[D, 3D]` and `c_proj` `[D, D]`.
#[derive(Debug)]
struct Gpt2Projections {
    c_attn: Conv1D,
    c_proj: Conv1D,
}

impl Projections for Gpt2Projections {
    fn qkv(&self, x: &Tensor) -> [Tensor; 3] {
        let (_b, _t, d) = x.size3().expect("attention input must be [B, T, D]");
        let fused = self.c_attn.forward(x);
        fused.split(d, -1).try_into().expect("c_attn gives q | k | v")
    }

    fn out(&self, merged: &Tensor) -> Tensor {
        self.c_proj.forward(merged)
    }
}

/// The sequential block's norms and MLP: `ln_1` before attention, `ln_2` before the MLP
/// `c_proj(gelu(c_fc(·)))`.
#[derive(Debug)]
struct Gpt2Layers {
    ln_1: nn::LayerNorm,
    ln_2: nn::LayerNorm,
    c_fc: Conv1D,
    c_proj: Conv1D,
    gelu: Gelu,
    dropout: f64,
}

impl BlockLayers for Gpt2Layers {
    fn attention_input(&self, x: &Tensor) -> Tensor {
        self.ln_1.forward(x)
    }

    fn output(&self, x: &Tensor, _normed: &Tensor, attention: Tensor, train: bool) -> Tensor {
        let h = x + attention;
        let inner = self.c_fc.forward(&self.ln_2.forward(&h)).gelu(self.gelu.approximate());
        let mlp = self.c_proj.forward(&inner).dropout(self.dropout, train);
        h + mlp
    }
}

/// HF GPT-2's `Conv1D`: a dense layer stored as `weight: [in, out]`, `bias: [out]`, so HF
/// checkpoints load unchanged.
#[derive(Debug)]
pub struct Conv1D {
    /// `[in, out]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Tensor,
}

impl Conv1D {
    /// `weight` and `bias` under `vs`, with GPT-2's initialisation: N(0, 0.02) weights,
    /// zero bias.
    pub fn new(vs: nn::Path, d_in: i64, d_out: i64) -> Self {
        let weight = vs.var("weight", &[d_in, d_out], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let bias = vs.var("bias", &[d_out], nn::Init::Const(0.0));
        Self { weight, bias }
    }

    /// `[.., in] -> [.., out]`, the bias added inside the matmul (`addmm`), not in a pass of
    /// its own over the output.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let size = xs.size();
        let (d_in, d_out) = (self.weight.size()[0], self.weight.size()[1]);
        let out = self.bias.addmm(&xs.reshape([-1, d_in]), &self.weight);
        let mut shape = size[..size.len() - 1].to_vec();
        shape.push(d_out);
        out.view(shape.as_slice())
    }
}
