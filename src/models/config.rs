//! Backbone configuration shared by every family: the shape, the GELU flavour, the memory
//! layer, the rotary families' attention layout, and their validation. Each family's
//! defaults and Hugging Face `config.json` reader live in its own file ([`super::gpt2`],
//! [`super::newgpt`], [`super::llama`], [`super::neox`]).

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Which backbone family (block style) a backbone is built from; [`super::family_of`] maps
/// each to its implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum BlockStyle {
    /// HF GPT-2: learned positions, sequential LN→attn→add→LN→MLP→add, biases, tied head.
    Gpt2,
    /// LongMem's backbone: GPT-J-style parallel block, ALiBi, untied LM head with bias.
    Newgpt,
    /// HF `LlamaForCausalLM` and its layout (SmolLM, TinyLlama, Mistral, Qwen2): RMSNorm,
    /// SwiGLU, rotary positions, grouped-query attention.
    Llama,
    /// HF `GPTNeoXForCausalLM` (Pythia): fused per-head q|k|v, partial rotary, parallel or
    /// sequential residual, LayerNorms with biases, untied `embed_out`.
    Neox,
}

impl std::fmt::Display for BlockStyle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.to_possible_value().expect("no style is skipped");
        f.write_str(value.get_name())
    }
}

/// GELU flavour of the MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gelu {
    /// `0.5x(1+tanh(√(2/π)(x+0.044715x³)))`, GPT-2's `gelu_new`.
    Tanh,
    /// Exact `0.5x(1+erf(x/√2))`.
    Erf,
}

impl Gelu {
    /// The `approximate` argument of `torch.nn.functional.gelu`.
    pub fn approximate(self) -> &'static str {
        match self {
            Gelu::Tanh => "tanh",
            Gelu::Erf => "none",
        }
    }
}

/// A validated backbone shape. Every field is set; build one with [`BackboneConfig::gpt2`],
/// [`BackboneConfig::newgpt`], [`BackboneConfig::defaults`],
/// [`BackboneConfig::from_hf_gpt2_config`] or serde, then [`BackboneConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    pub style: BlockStyle,
    pub vocab_size: i64,
    /// Number of blocks, L.
    pub n_layer: i64,
    /// Number of attention heads, H.
    pub n_head: i64,
    /// Model width, D.
    pub n_embd: i64,
    /// Longest sequence the model accepts: the learned position table's size for `gpt2`;
    /// for `newgpt` (ALiBi) the longest window it is meant to be run at.
    pub n_positions: i64,
    /// MLP hidden width.
    pub n_inner: i64,
    pub layer_norm_eps: f64,
    pub gelu: Gelu,
    /// Dropout on embeddings, attention probabilities and residual branches, in training.
    pub dropout: f64,
    /// 0-based block whose attention keys/values feed the memory bank (the LongMem paper's
    /// 18th of 24, i.e. `3L/4 - 1`).
    pub memory_layer: i64,
    /// The rotary families' attention layout (`llama`, `neox`: required); `None` for `gpt2`
    /// and `newgpt`. Not serialized when `None`, so the older families' configs (and the
    /// run ids hashed from them) are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotary: Option<RotaryLayout>,
}

/// Attention layout and rotary settings of the `llama` and `neox` families, as their
/// Hugging Face `config.json` gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotaryLayout {
    /// Key/value heads (`num_key_value_heads`); query head h reads key/value head
    /// `h / (n_head / n_kv_head)`, as HF's `repeat_kv` does.
    pub n_kv_head: i64,
    /// Per-head width d (`head_dim`; default `n_embd / n_head`).
    pub head_dim: i64,
    /// Rotary base (`rope_theta`, NeoX's `rotary_emb_base`).
    pub theta: f64,
    /// Leading dimensions of each head that rotate (NeoX: `rotary_pct · head_dim`; Llama:
    /// all); even.
    pub rotary_dim: i64,
    /// `rope_scaling`, when the checkpoint sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<RopeScaling>,
    /// Biases on the q/k/v projections (Qwen2, NeoX, Llama's `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the attention output projection (NeoX, Llama's `attention_bias`).
    pub out_bias: bool,
    /// Biases in the MLP (NeoX, Llama's `mlp_bias`).
    pub mlp_bias: bool,
    /// LM head tied to the token embedding (`tie_word_embeddings`).
    pub tied_head: bool,
    /// NeoX's `use_parallel_residual`: `x + Attn(LN₁ x) + MLP(LN₂ x)`; unused by `llama`.
    pub parallel_residual: bool,
}

/// HF's `rope_scaling` types this project implements (`rope_type` / `type`); others are
/// refused when a config is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum RopeScaling {
    /// Positions divided by `factor` (HF `_compute_linear_scaling_rope_parameters`).
    Linear { factor: f64 },
    /// Llama 3.1's frequency-dependent scaling (HF `_compute_llama3_parameters`).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// Why a backbone config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("backbone config: `{key}` = {value} is invalid: {allowed}")]
    Invalid {
        key: &'static str,
        value: String,
        allowed: String,
    },
    #[error("cannot read HF config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a {family} config.json: {source}")]
    Parse {
        path: String,
        family: &'static str,
        source: serde_json::Error,
    },
}

impl BackboneConfig {
    /// The defaults of `style`'s family for this shape (what [`BackboneConfig::gpt2`] or
    /// [`BackboneConfig::newgpt`] give).
    pub fn defaults(
        style: BlockStyle,
        vocab_size: i64,
        n_layer: i64,
        n_head: i64,
        n_embd: i64,
        n_positions: i64,
    ) -> Self {
        super::family_of(style).config(vocab_size, n_layer, n_head, n_embd, n_positions)
    }

    /// The longest segment this backbone can run, where its family has a limit (learned
    /// positions end at `n_positions`); `None` when any length runs.
    pub fn max_segment_len(&self) -> Option<i64> {
        super::family_of(self.style).max_segment_len(self)
    }

    /// Head width d: D / H, or the rotary layout's explicit `head_dim`.
    pub fn head_dim(&self) -> i64 {
        self.rotary.as_ref().map_or(self.n_embd / self.n_head, |r| r.head_dim)
    }

    /// Key/value heads: H, or fewer under grouped-query attention.
    pub fn n_kv_head(&self) -> i64 {
        self.rotary.as_ref().map_or(self.n_head, |r| r.n_kv_head)
    }

    /// Checks that the shape is buildable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
            ("n_positions", self.n_positions),
            ("n_inner", self.n_inner),
        ];
        for (key, value) in positive {
            if value <= 0 {
                return Err(invalid(key, value, "must be a positive integer"));
            }
        }
        let rotary_family = matches!(self.style, BlockStyle::Llama | BlockStyle::Neox);
        match (&self.rotary, rotary_family) {
            (None, true) => {
                return Err(invalid(
                    "rotary",
                    "none",
                    &format!(
                        "the {} family needs its rotary layout (n_kv_head, head_dim, theta, ...)",
                        self.style
                    ),
                ))
            }
            (Some(_), false) => {
                return Err(invalid(
                    "rotary",
                    "a rotary layout",
                    &format!("the {} family has no rotary positions; leave it out", self.style),
                ))
            }
            (Some(r), true) => r.validate(self.n_head)?,
            (None, false) => {
                if self.n_embd % self.n_head != 0 {
                    return Err(invalid(
                        "n_embd",
                        self.n_embd,
                        &format!("must be a multiple of n_head = {}", self.n_head),
                    ));
                }
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(invalid("dropout", self.dropout, "must be in [0, 1)"));
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(invalid("layer_norm_eps", self.layer_norm_eps, "must be > 0"));
        }
        if !(0..self.n_layer).contains(&self.memory_layer) {
            return Err(invalid(
                "memory_layer",
                self.memory_layer,
                &format!("must be a 0-based block index in 0..{}", self.n_layer),
            ));
        }
        Ok(())
    }
}

impl RotaryLayout {
    /// The layout of a model whose every head dimension rotates, with Llama's defaults (one
    /// key/value head per query head, `head_dim = n_embd / n_head`, θ = 10,000, no biases,
    /// untied head).
    pub fn llama(n_head: i64, n_embd: i64) -> Self {
        let head_dim = n_embd / n_head.max(1);
        Self {
            n_kv_head: n_head,
            head_dim,
            theta: 10_000.0,
            rotary_dim: head_dim,
            scaling: None,
            qkv_bias: false,
            out_bias: false,
            mlp_bias: false,
            tied_head: false,
            parallel_residual: false,
        }
    }

    fn validate(&self, n_head: i64) -> Result<(), ConfigError> {
        if self.n_kv_head <= 0 || n_head % self.n_kv_head != 0 {
            return Err(invalid(
                "n_kv_head",
                self.n_kv_head,
                &format!("must be a positive divisor of n_head = {n_head}"),
            ));
        }
        if self.head_dim <= 0 || self.head_dim % 2 != 0 {
            return Err(invalid("head_dim", self.head_dim, "must be a positive even integer"));
        }
        if self.rotary_dim <= 0 || self.rotary_dim % 2 != 0 || self.rotary_dim > self.head_dim {
            return Err(invalid(
                "rotary_dim",
                self.rotary_dim,
                &format!("must be a positive even integer at most head_dim = {}", self.head_dim),
            ));
        }
        if self.theta.is_nan() || self.theta <= 0.0 {
            return Err(invalid("rope_theta", self.theta, "must be > 0"));
        }
        match self.scaling {
            Some(RopeScaling::Linear { factor }) | Some(RopeScaling::Llama3 { factor, .. })
                if factor.is_nan() || factor < 1.0 =>
            {
                Err(invalid("rope_scaling.factor", factor, "must be at least 1"))
            }
            Some(RopeScaling::Llama3 {
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
                ..
            }) if !(high_freq_factor > low_freq_factor
                && low_freq_factor > 0.0
                && original_max_position_embeddings > 0.0) =>
            {
                Err(invalid(
                    "rope_scaling",
                    format!("low_freq_factor {low_freq_factor}, high_freq_factor {high_freq_factor}"),
                    "needs 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The memory layer sits at about 3/4 depth, as in the LongMem paper (block 17 of 24,
/// 0-based).
pub fn default_memory_layer(n_layer: i64) -> i64 {
    (3 * n_layer / 4 - 1).max(0)
}

fn invalid(key: &'static str, value: impl std::fmt::Display, allowed: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        allowed: allowed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_layer_default_is_the_papers_for_24_layers() {
        assert_eq!(default_memory_layer(24), 17);
        assert_eq!(default_memory_layer(4), 2);
        assert_eq!(default_memory_layer(1), 0);
    }

    #[test]
    fn each_style_has_its_familys_defaults_and_its_serde_name() {
        let (gpt2, newgpt) = (
            BackboneConfig::gpt2(100, 4, 2, 32, 64),
            BackboneConfig::newgpt(100, 4, 2, 32, 64),
        );
        assert_eq!(BackboneConfig::defaults(BlockStyle::Gpt2, 100, 4, 2, 32, 64), gpt2);
        assert_eq!(BackboneConfig::defaults(BlockStyle::Newgpt, 100, 4, 2, 32, 64), newgpt);
        assert_eq!((gpt2.max_segment_len(), newgpt.max_segment_len()), (Some(64), None));
        for style in [BlockStyle::Gpt2, BlockStyle::Newgpt] {
            assert_eq!(serde_json::to_string(&style).unwrap(), format!("\"{style}\""));
        }
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = BackboneConfig::gpt2(100, 2, 3, 32, 64);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("n_embd") && err.contains("n_head = 3"), "{err}");
        c.n_head = 4;
        c.memory_layer = 2;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("memory_layer") && err.contains("0..2"), "{err}");
        c.memory_layer = 1;
        c.validate().unwrap();
    }
}
