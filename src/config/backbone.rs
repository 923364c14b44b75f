//! The `[backbone]` section: the family, its shape, and optional pretrained weights,
//! resolved into a validated [`BackboneConfig`].
//!
//! When `weights` is a Hugging Face model directory that exists, its `config.json` gives
//! the family and shape: keys the section also sets must agree with it (only `dropout` and
//! `memory_layer` are the spec's own). Otherwise (no weights, a `.safetensors` file, or a
//! directory not on this machine, e.g. when planning) the section states the shape itself.

use super::resolver::{Resolver, SpecError};
use crate::models::config::{default_memory_layer, ConfigError};
use crate::models::{hf, neox, BackboneConfig, BlockStyle, Gelu};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackbone {
    /// Required unless `weights` is a Hugging Face model directory.
    pub style: Option<BlockStyle>,
    pub n_layer: Option<i64>,
    pub n_head: Option<i64>,
    pub n_embd: Option<i64>,
    /// Default: the data's vocabulary.
    pub vocab_size: Option<i64>,
    /// Default: the segment length.
    pub n_positions: Option<i64>,
    pub n_inner: Option<i64>,
    pub layer_norm_eps: Option<f64>,
    pub gelu: Option<Gelu>,
    pub dropout: Option<f64>,
    /// Default: `3L/4 − 1`.
    pub memory_layer: Option<i64>,
    /// `llama`, `neox`: key/value heads (default `n_head`).
    pub n_kv_head: Option<i64>,
    /// `llama`, `neox`: per-head width (default `n_embd / n_head`).
    pub head_dim: Option<i64>,
    /// `llama`, `neox`: rotary base θ (default 10,000).
    pub rope_theta: Option<f64>,
    /// `neox`: share of each head that rotates (default 0.25).
    pub rotary_pct: Option<f64>,
    /// `neox`: parallel residual (default true).
    pub parallel_residual: Option<bool>,
    /// `llama`, `neox`: LM head tied to the embedding (default false).
    pub tie_word_embeddings: Option<bool>,
    /// Pretrained weights: a `.safetensors` file or a Hugging Face model directory;
    /// required by every method but `pretrain`.
    pub weights: Option<PathBuf>,
}

impl RawBackbone {
    /// A backbone of `style` and this shape, every other setting at its default.
    pub fn new(style: BlockStyle, n_layer: i64, n_head: i64, n_embd: i64) -> Self {
        Self {
            style: Some(style),
            n_layer: Some(n_layer),
            n_head: Some(n_head),
            n_embd: Some(n_embd),
            vocab_size: None,
            n_positions: None,
            n_inner: None,
            layer_norm_eps: None,
            gelu: None,
            dropout: None,
            memory_layer: None,
            n_kv_head: None,
            head_dim: None,
            rope_theta: None,
            rotary_pct: None,
            parallel_residual: None,
            tie_word_embeddings: None,
            weights: None,
        }
    }

    /// The validated config, for data of `data_vocab` tokens read in segments of
    /// `segment_len`; `weights` is the resolved `weights` path.
    pub(super) fn resolve(
        &self,
        data_vocab: i64,
        segment_len: usize,
        weights: Option<&Path>,
        r: &Resolver,
    ) -> Result<BackboneConfig, SpecError> {
        let model_dir = weights.filter(|w| w.join("config.json").is_file());
        let config_error = |e: ConfigError| match e {
            ConfigError::Invalid { key, value, allowed } => r.invalid(&format!("backbone.{key}"), &value, &allowed),
            other => r.invalid("backbone", &"", &other.to_string()),
        };
        let mut backbone = match model_dir {
            Some(dir) => {
                let config = hf::config_of_dir(dir)
                    .map_err(|e| r.invalid("backbone.weights", &dir.display(), &e.to_string()))?;
                self.check_agrees(&config, dir, r)?;
                config
            }
            None => self.config_from_keys(data_vocab, segment_len, r)?,
        };
        backbone.dropout = self.dropout.unwrap_or(backbone.dropout);
        backbone.memory_layer = self.memory_layer.unwrap_or(default_memory_layer(backbone.n_layer));
        backbone.validate().map_err(config_error)?;
        if backbone.vocab_size < data_vocab {
            return Err(r.invalid(
                "backbone.vocab_size",
                &backbone.vocab_size,
                &format!("at least the data's vocabulary, {data_vocab}"),
            ));
        }
        if let Some(max) = backbone.max_segment_len().filter(|&max| segment_len as i64 > max) {
            return Err(r.invalid(
                "train.segment_len",
                &segment_len,
                &format!("at most backbone.n_positions = {max} (the gpt2 position table)"),
            ));
        }
        Ok(backbone)
    }

    /// The config the section's keys describe (no model directory to read).
    fn config_from_keys(&self, data_vocab: i64, segment_len: usize, r: &Resolver) -> Result<BackboneConfig, SpecError> {
        let required = |key: &str, value: Option<i64>| {
            value.ok_or_else(|| {
                r.invalid(
                    &format!("backbone.{key}"),
                    &"(missing)",
                    "required unless backbone.weights is a Hugging Face model directory with a config.json",
                )
            })
        };
        let style = self.style.ok_or_else(|| {
            r.invalid(
                "backbone.style",
                &"(missing)",
                "gpt2, newgpt, llama or neox; required unless backbone.weights is a Hugging Face model directory",
            )
        })?;
        let (n_layer, n_head, n_embd) = (
            required("n_layer", self.n_layer)?,
            required("n_head", self.n_head)?,
            required("n_embd", self.n_embd)?,
        );
        let mut backbone = BackboneConfig::defaults(
            style,
            self.vocab_size.unwrap_or(data_vocab),
            n_layer,
            n_head,
            n_embd,
            self.n_positions.unwrap_or(segment_len as i64),
        );
        backbone.n_inner = self.n_inner.unwrap_or(4 * n_embd);
        backbone.layer_norm_eps = self.layer_norm_eps.unwrap_or(backbone.layer_norm_eps);
        backbone.gelu = self.gelu.unwrap_or(backbone.gelu);
        let rotary_keys = [
            ("n_kv_head", self.n_kv_head.is_some()),
            ("head_dim", self.head_dim.is_some()),
            ("rope_theta", self.rope_theta.is_some()),
            ("rotary_pct", self.rotary_pct.is_some()),
            ("parallel_residual", self.parallel_residual.is_some()),
            ("tie_word_embeddings", self.tie_word_embeddings.is_some()),
        ];
        match backbone.rotary.as_mut() {
            None => {
                if let Some((key, _)) = rotary_keys.iter().find(|(_, set)| *set) {
                    return Err(r.invalid(
                        &format!("backbone.{key}"),
                        &"(set)",
                        &format!("a llama or neox setting; the {style} family has none"),
                    ));
                }
            }
            Some(layout) => {
                let neox_only = [
                    ("rotary_pct", self.rotary_pct.is_some()),
                    ("parallel_residual", self.parallel_residual.is_some()),
                ];
                if let Some((key, _)) = neox_only.iter().find(|(_, set)| *set && style != BlockStyle::Neox) {
                    return Err(r.invalid(&format!("backbone.{key}"), &"(set)", "a neox setting; llama has none"));
                }
                layout.n_kv_head = self.n_kv_head.unwrap_or(layout.n_kv_head);
                layout.head_dim = self.head_dim.unwrap_or(layout.head_dim);
                layout.theta = self.rope_theta.unwrap_or(layout.theta);
                layout.rotary_dim = match (style, self.rotary_pct) {
                    (BlockStyle::Neox, pct) => {
                        neox::rotary_dims(layout.head_dim, pct.unwrap_or(neox::DEFAULT_ROTARY_PCT))
                    }
                    _ => layout.head_dim,
                };
                layout.parallel_residual = self.parallel_residual.unwrap_or(layout.parallel_residual);
                layout.tied_head = self.tie_word_embeddings.unwrap_or(layout.tied_head);
            }
        }
        Ok(backbone)
    }

    /// Every shape key the section sets must equal what the model directory's config says.
    fn check_agrees(&self, config: &BackboneConfig, dir: &Path, r: &Resolver) -> Result<(), SpecError> {
        let layout = config.rotary.as_ref();
        let numbers = [
            ("n_layer", self.n_layer, Some(config.n_layer)),
            ("n_head", self.n_head, Some(config.n_head)),
            ("n_embd", self.n_embd, Some(config.n_embd)),
            ("vocab_size", self.vocab_size, Some(config.vocab_size)),
            ("n_positions", self.n_positions, Some(config.n_positions)),
            ("n_inner", self.n_inner, Some(config.n_inner)),
            ("n_kv_head", self.n_kv_head, layout.map(|l| l.n_kv_head)),
            ("head_dim", self.head_dim, layout.map(|l| l.head_dim)),
        ];
        let disagree = |key: &str, ours: &dyn std::fmt::Display, theirs: &dyn std::fmt::Display| {
            r.invalid(
                &format!("backbone.{key}"),
                &ours,
                &format!(
                    "{theirs}, as {} says; leave the key out or make it agree",
                    dir.join("config.json").display()
                ),
            )
        };
        if let Some(style) = self.style.filter(|&s| s != config.style) {
            return Err(disagree("style", &style, &config.style));
        }
        for (key, ours, theirs) in numbers {
            match (ours, theirs) {
                (Some(a), Some(b)) if a != b => return Err(disagree(key, &a, &b)),
                (Some(a), None) => return Err(disagree(key, &a, &"no such setting for this family")),
                _ => {}
            }
        }
        // The other keys, as (key, the spec's value, config.json's), compared as written.
        let rotary = |f: &dyn Fn(&crate::models::RotaryLayout) -> String| layout.map_or("none".to_string(), f);
        let others = [
            (
                "layer_norm_eps",
                self.layer_norm_eps.map(|v| v.to_string()),
                config.layer_norm_eps.to_string(),
            ),
            (
                "gelu",
                self.gelu.map(|g| format!("{g:?}")),
                format!("{:?}", config.gelu),
            ),
            (
                "rope_theta",
                self.rope_theta.map(|t| t.to_string()),
                rotary(&|l| l.theta.to_string()),
            ),
            (
                "rotary_pct",
                self.rotary_pct
                    .map(|p| format!("{} rotary dims", layout.map_or(0, |l| neox::rotary_dims(l.head_dim, p)))),
                rotary(&|l| format!("{} rotary dims", l.rotary_dim)),
            ),
            (
                "parallel_residual",
                self.parallel_residual.map(|p| p.to_string()),
                rotary(&|l| l.parallel_residual.to_string()),
            ),
            (
                "tie_word_embeddings",
                self.tie_word_embeddings.map(|t| t.to_string()),
                rotary(&|l| l.tied_head.to_string()),
            ),
        ];
        match others
            .iter()
            .find(|(_, ours, theirs)| ours.as_ref().is_some_and(|o| o != theirs))
        {
            Some((key, Some(ours), theirs)) => Err(disagree(key, ours, theirs)),
            _ => Ok(()),
        }
    }
}
