//! Backbone configuration (DESIGN.md §2.1): one transformer, two block styles.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Which block a backbone is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BlockStyle {
    /// HF GPT-2: learned positions, sequential LN→attn→add→LN→MLP→add, biases, tied head.
    Gpt2,
    /// LongMem's backbone: GPT-J-style parallel block, ALiBi, untied LM head with bias.
    Newgpt,
}

impl std::fmt::Display for BlockStyle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlockStyle::Gpt2 => "gpt2",
            BlockStyle::Newgpt => "newgpt",
        })
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
/// [`BackboneConfig::newgpt`], [`BackboneConfig::from_hf_gpt2_config`] or serde, then
/// [`BackboneConfig::validate`].
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
    /// 0-based block whose attention keys/values feed the memory bank (DESIGN.md: the 18th
    /// of 24, i.e. `3L/4 - 1`).
    pub memory_layer: i64,
}

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
    #[error("{path} is not a GPT-2 config.json: {source}")]
    Parse { path: String, source: serde_json::Error },
}

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
        }
    }

    /// LongMem's `newgpt` backbone (parallel block, ALiBi, LN eps 1e-6, tanh GELU).
    pub fn newgpt(vocab_size: i64, n_layer: i64, n_head: i64, n_embd: i64, n_positions: i64) -> Self {
        Self {
            style: BlockStyle::Newgpt,
            layer_norm_eps: 1e-6,
            ..Self::gpt2(vocab_size, n_layer, n_head, n_embd, n_positions)
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

    /// Head width d = D / H.
    pub fn head_dim(&self) -> i64 {
        self.n_embd / self.n_head
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
        if self.n_embd % self.n_head != 0 {
            return Err(invalid(
                "n_embd",
                self.n_embd,
                &format!("must be a multiple of n_head = {}", self.n_head),
            ));
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

/// DESIGN.md §2.1: the memory layer sits at about 3/4 depth (block 17 of 24, 0-based).
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
