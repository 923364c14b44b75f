//! Hugging Face model directories: `config.json` read into a [`BackboneConfig`] by its
//! `model_type` (each family's reader lives in its own file), and what the rotary families
//! share: their rotary settings in either of HF's spellings, their LM head, and the
//! mapping of their checkpoint names to this project's.

use super::config::{BackboneConfig, ConfigError, RopeScaling};
use serde::Deserialize;
use std::path::Path;

/// The `model_type`s that load, and the family each maps to.
pub const MODEL_TYPES: &str = "gpt2, llama, mistral, qwen2 (family llama), gpt_neox (family neox)";

/// The backbone config of the Hugging Face model directory `dir` (its `config.json`).
pub fn config_of_dir(dir: &Path) -> Result<BackboneConfig, ConfigError> {
    config_of_file(&dir.join("config.json"))
}

/// The backbone config of a Hugging Face `config.json`, read by its `model_type`.
pub fn config_of_file(path: &Path) -> Result<BackboneConfig, ConfigError> {
    let path = path.to_path_buf();
    #[derive(Deserialize)]
    struct ModelType {
        model_type: Option<String>,
    }
    let kind: ModelType = read_json(&path, "Hugging Face")?;
    match kind.model_type.as_deref() {
        // GPT-2 configs saved before `model_type` existed have none.
        Some("gpt2") | None => BackboneConfig::from_hf_gpt2_config(&path),
        Some("llama" | "mistral" | "qwen2") => BackboneConfig::from_hf_llama_config(&path),
        Some("gpt_neox") => BackboneConfig::from_hf_neox_config(&path),
        other => Err(ConfigError::Invalid {
            key: "model_type",
            value: format!("{:?} in {}", other.unwrap_or_default(), path.display()),
            allowed: format!("one of {MODEL_TYPES}"),
        }),
    }
}

/// Parses the JSON file at `path` as a `family` config.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, family: &'static str) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.display().to_string(),
        family,
        source,
    })
}

/// The shape every HF decoder config states in the same keys.
#[derive(Debug, Deserialize)]
pub struct HfShape {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub max_position_embeddings: Option<i64>,
}

impl HfShape {
    /// `style`'s defaults for this shape, with its MLP width (`n_positions` 2048 where the
    /// config has no `max_position_embeddings`).
    pub fn config(&self, style: super::BlockStyle) -> BackboneConfig {
        let mut config = BackboneConfig::defaults(
            style,
            self.vocab_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.hidden_size,
            self.max_position_embeddings.unwrap_or(2048),
        );
        config.n_inner = self.intermediate_size;
        config
    }
}

/// The rotary settings of an HF config, in the spellings transformers has used: top-level
/// `rope_theta` / `rope_scaling` (and NeoX's `rotary_emb_base`, `rotary_pct`), or v5's
/// `rope_parameters` object.
#[derive(Debug, Default, Deserialize)]
pub struct HfRope {
    rope_theta: Option<f64>,
    rotary_emb_base: Option<f64>,
    rotary_pct: Option<f64>,
    partial_rotary_factor: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    rope_parameters: Option<serde_json::Value>,
}

impl HfRope {
    /// θ (default `default_theta`) and the scaling, if any.
    pub fn resolve(&self, path: &Path, default_theta: f64) -> Result<(f64, Option<RopeScaling>), ConfigError> {
        let params = self.rope_parameters.as_ref();
        let theta = params
            .and_then(|p| p.get("rope_theta"))
            .and_then(|v| v.as_f64())
            .or(self.rope_theta)
            .or(self.rotary_emb_base)
            .unwrap_or(default_theta);
        let scaling = match params.or(self.rope_scaling.as_ref()) {
            None | Some(serde_json::Value::Null) => None,
            Some(object) => scaling_of(object, path)?,
        };
        Ok((theta, scaling))
    }

    /// The share of each head that rotates (NeoX's `rotary_pct` / `partial_rotary_factor`),
    /// `default` where the config has none.
    pub fn partial_factor(&self, default: f64) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.get("partial_rotary_factor"))
            .and_then(|v| v.as_f64())
            .or(self.partial_rotary_factor)
            .or(self.rotary_pct)
            .unwrap_or(default)
    }
}

/// One `rope_scaling` (or `rope_parameters`) object: `default` is none; `linear` and
/// `llama3` are implemented; any other type is refused.
fn scaling_of(object: &serde_json::Value, path: &Path) -> Result<Option<RopeScaling>, ConfigError> {
    let kind = object
        .get("rope_type")
        .or_else(|| object.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let number = |key: &'static str| {
        object
            .get(key)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| ConfigError::Invalid {
                key: "rope_scaling",
                value: format!("{object} in {}", path.display()),
                allowed: format!("a `{key}` number for rope type {kind:?}"),
            })
    };
    Ok(match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear {
            factor: number("factor")?,
        }),
        "llama3" => Some(RopeScaling::Llama3 {
            factor: number("factor")?,
            low_freq_factor: number("low_freq_factor")?,
            high_freq_factor: number("high_freq_factor")?,
            original_max_position_embeddings: number("original_max_position_embeddings")?,
        }),
        other => {
            return Err(ConfigError::Invalid {
                key: "rope_scaling",
                value: format!("type {other:?} in {}", path.display()),
                allowed: "default, linear or llama3 (others are not implemented)".into(),
            })
        }
    })
}

/// A rotary family's HF checkpoint prefixes, and the buffers its checkpoints may carry.
pub struct Names {
    embedding: &'static str,
    layers: &'static str,
    final_norm: &'static str,
    head: &'static str,
    buffers: &'static [&'static str],
}

impl Names {
    pub const LLAMA: Names = Names {
        embedding: "model.embed_tokens.",
        layers: "model.layers.",
        final_norm: "model.norm.",
        head: "lm_head.",
        buffers: &["rotary_emb.inv_freq"],
    };
    pub const NEOX: Names = Names {
        embedding: "gpt_neox.embed_in.",
        layers: "gpt_neox.layers.",
        final_norm: "gpt_neox.final_layer_norm.",
        head: "embed_out.",
        buffers: &["attention.bias", "attention.masked_bias", "rotary_emb.inv_freq"],
    };
}

/// The model's name for the checkpoint tensor `name`: HF's outer prefixes become `wte.`,
/// `h.`, `ln_f.` and `lm_head.`; this project's own names pass unchanged; buffers, and a
/// tied head's `lm_head.weight`, are skipped (`None`).
pub fn model_name(name: &str, config: &BackboneConfig, names: &Names) -> Option<String> {
    if names.buffers.iter().any(|b| name.ends_with(b)) {
        return None;
    }
    let renamed = [
        (names.embedding, "wte."),
        (names.layers, "h."),
        (names.final_norm, "ln_f."),
        (names.head, "lm_head."),
    ]
    .iter()
    .find_map(|(hf, ours)| name.strip_prefix(hf).map(|rest| format!("{ours}{rest}")))
    .unwrap_or_else(|| name.to_string());
    let tied = config.rotary.as_ref().is_some_and(|r| r.tied_head);
    (!(tied && renamed == "lm_head.weight")).then_some(renamed)
}
