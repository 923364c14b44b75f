//! Backbone configuration shared by every family: the shape, the GELU flavour, the memory
//! layer, and their validation. Each family's defaults live in its own file
//! ([`super::gpt2`], [`super::newgpt`]).

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
    #[error("{path} is not a GPT-2 config.json: {source}")]
    Parse { path: String, source: serde_json::Error },
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
