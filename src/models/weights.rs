//! Loading and saving weights as safetensors by tensor name.
//!
//! A `VarStore` built by [`super::Backbone::new`] has exactly the checkpoint's names, so
//! loading is a name lookup after the family's own mapping ([`super::family::Family::model_name`]:
//! for `gpt2`, Hugging Face files load unchanged).

use super::config::BlockStyle;
use crate::fsutil::temp_path;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read safetensors file {path}: {source}")]
    Read { path: PathBuf, source: tch::TchError },
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

/// Copies every variable of `vs` from the safetensors file at `path`, whose tensors carry
/// `style`'s checkpoint names. Every variable must be present with its exact shape; dtypes
/// are converted. Nothing is copied unless all checks pass.
pub fn load_safetensors(vs: &VarStore, path: &Path, style: BlockStyle) -> Result<(), WeightsError> {
    let tensors = Tensor::read_safetensors(path).map_err(|source| WeightsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let family = super::family_of(style);
    let mut by_name: BTreeMap<String, Tensor> = tensors
        .into_iter()
        .filter_map(|(name, tensor)| family.model_name(&name).map(|n| (n.to_string(), tensor)))
        .collect();
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
