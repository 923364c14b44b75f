//! Loading and saving weights as safetensors by tensor name.
//!
//! Loading is a name lookup after the family's own mapping
//! ([`super::family::Family::model_name`]): Hugging Face files of every family load
//! unchanged, from a `.safetensors` file or from a model directory (`model.safetensors`, or
//! the shards that `model.safetensors.index.json` lists). Tensors of any float dtype (bf16,
//! f16, f32) are converted to the model's.

use super::config::BackboneConfig;
use crate::fsutil::temp_path;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read safetensors file {path}: {source}")]
    Read { path: PathBuf, source: tch::TchError },
    #[error(
        "{path} is a directory without model.safetensors or model.safetensors.index.json; \
         point at a Hugging Face model directory or a .safetensors file"
    )]
    NoWeights { path: PathBuf },
    #[error("cannot read the shard index {path}: {reason}")]
    Index { path: PathBuf, reason: String },
    #[error(
        "{path}: tensor `{name}` is missing (expected shape {expected:?}){more}; \
         check that the file matches the model config (style, n_layer, widths)"
    )]
    Missing {
        path: PathBuf,
        name: String,
        expected: Vec<i64>,
        more: String,
    },
    #[error(
        "{path}: tensor `{name}` has shape {found:?} but the model config expects {expected:?}; \
         check vocab_size, n_embd, n_inner and n_positions against the checkpoint"
    )]
    Shape {
        path: PathBuf,
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error(
        "{path}: {count} tensor(s) the model does not have, e.g. {examples:?}; \
         the file has more layers or another block style than the config"
    )]
    Unexpected {
        path: PathBuf,
        count: usize,
        examples: Vec<String>,
    },
    #[error("cannot write safetensors file {path}: {source}")]
    Write { path: PathBuf, source: tch::TchError },
    #[error("cannot move {from} into place at {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

/// The safetensors files of `path`: the file itself, or a Hugging Face model directory's
/// `model.safetensors`, or the shards its `model.safetensors.index.json` lists (in order).
pub fn safetensors_files(path: &Path) -> Result<Vec<PathBuf>, WeightsError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let single = path.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = path.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(WeightsError::NoWeights {
            path: path.to_path_buf(),
        });
    }
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let bad = |reason: String| WeightsError::Index {
        path: index.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&index).map_err(|e| bad(e.to_string()))?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut files: Vec<String> = parsed.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(bad("its weight_map lists no shard".into()));
    }
    Ok(files.into_iter().map(|f| path.join(f)).collect())
}

/// Copies every variable of `vs` from the safetensors weights at `path` (a file or a
/// Hugging Face model directory, [`safetensors_files`]), whose tensors carry `config`'s
/// family's checkpoint names. Every variable must be present with its exact shape; dtypes
/// are converted. Nothing is copied unless all checks pass.
pub fn load_safetensors(vs: &VarStore, path: &Path, config: &BackboneConfig) -> Result<(), WeightsError> {
    let family = super::family_of(config.style);
    let mut by_name: BTreeMap<String, Tensor> = BTreeMap::new();
    for file in safetensors_files(path)? {
        let tensors = Tensor::read_safetensors(&file).map_err(|source| WeightsError::Read {
            path: file.clone(),
            source,
        })?;
        by_name.extend(
            tensors
                .into_iter()
                .filter_map(|(name, tensor)| family.model_name(&name, config).map(|n| (n, tensor))),
        );
    }
    let variables = vs.variables();
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();

    let missing: Vec<&String> = names.iter().copied().filter(|n| !by_name.contains_key(*n)).collect();
    if let Some(first) = missing.first() {
        let more = match missing.len() {
            1 => String::new(),
            n => format!(" (and {} more missing)", n - 1),
        };
        return Err(WeightsError::Missing {
            path: path.to_path_buf(),
            name: (*first).clone(),
            expected: variables[*first].size(),
            more,
        });
    }
    for name in &names {
        let (expected, found) = (variables[*name].size(), by_name[*name].size());
        if expected != found {
            return Err(WeightsError::Shape {
                path: path.to_path_buf(),
                name: (*name).clone(),
                expected,
                found,
            });
        }
    }
    let unexpected: Vec<String> = by_name
        .keys()
        .filter(|n| !variables.contains_key(*n))
        .cloned()
        .collect();
    if !unexpected.is_empty() {
        return Err(WeightsError::Unexpected {
            path: path.to_path_buf(),
            count: unexpected.len(),
            examples: unexpected.into_iter().take(5).collect(),
        });
    }
    tch::no_grad(|| {
        for name in names {
            let source = by_name.remove(name).expect("presence checked above");
            let mut var = variables[name].shallow_clone();
            var.copy_(&source);
        }
    });
    Ok(())
}

/// Writes every variable of `vs` to `path` as safetensors, atomically (a temporary file in
/// the same directory, then a rename): a crash never leaves a half-written file.
pub fn save_safetensors(vs: &VarStore, path: &Path) -> Result<(), WeightsError> {
    write_tensors(&vs.variables().into_iter().collect::<Vec<_>>(), path)
}

/// Writes named tensors (any device; sorted by name) as safetensors, atomically.
pub fn write_tensors(tensors: &[(String, Tensor)], path: &Path) -> Result<(), WeightsError> {
    let mut named: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(name, tensor)| (name.clone(), tensor.detach().to_device(tch::Device::Cpu).contiguous()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let tmp = temp_path(path);
    Tensor::write_safetensors(&named, &tmp).map_err(|source| WeightsError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| WeightsError::Rename {
        from: tmp.clone(),
        to: path.to_path_buf(),
        source,
    })
}
