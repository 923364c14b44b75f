//! The `[backbone]` section: the family, its shape, and optional pretrained weights,
//! resolved into a validated [`BackboneConfig`].

use super::resolver::{Resolver, SpecError};
use crate::models::config::{default_memory_layer, ConfigError};
use crate::models::{BackboneConfig, BlockStyle, Gelu};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackbone {
    pub style: BlockStyle,
    pub n_layer: i64,
    pub n_head: i64,
    pub n_embd: i64,
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
    /// Pretrained weights (safetensors); required by every method but `pretrain`.
    pub weights: Option<PathBuf>,
}

impl RawBackbone {
    /// A backbone of `style` and this shape, every other setting at its default.
    pub fn new(style: BlockStyle, n_layer: i64, n_head: i64, n_embd: i64) -> Self {
        Self {
            style,
            n_layer,
            n_head,
            n_embd,
            vocab_size: None,
            n_positions: None,
            n_inner: None,
            layer_norm_eps: None,
            gelu: None,
            dropout: None,
            memory_layer: None,
            weights: None,
        }
    }

    /// The validated config, for data of `data_vocab` tokens read in segments of
    /// `segment_len`.
    pub(super) fn resolve(
        &self,
        data_vocab: i64,
        segment_len: usize,
        r: &Resolver,
    ) -> Result<BackboneConfig, SpecError> {
        let b = self;
        let mut backbone = BackboneConfig::defaults(
            b.style,
            b.vocab_size.unwrap_or(data_vocab),
            b.n_layer,
            b.n_head,
            b.n_embd,
            b.n_positions.unwrap_or(segment_len as i64),
        );
        backbone.n_inner = b.n_inner.unwrap_or(4 * b.n_embd);
        backbone.layer_norm_eps = b.layer_norm_eps.unwrap_or(backbone.layer_norm_eps);
        backbone.gelu = b.gelu.unwrap_or(backbone.gelu);
        backbone.dropout = b.dropout.unwrap_or(backbone.dropout);
        backbone.memory_layer = b.memory_layer.unwrap_or(default_memory_layer(b.n_layer));
        backbone.validate().map_err(|e| match e {
            ConfigError::Invalid { key, value, allowed } => r.invalid(&format!("backbone.{key}"), &value, &allowed),
            other => r.invalid("backbone", &"", &other.to_string()),
        })?;
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
}
