//! Checkpoints: `checkpoints/step-NNNNNNNN/` holds the trained weights, the optimizer's
//! moments, the memory bank (its exact contents: MemTRM's stale keys cannot be rebuilt from
//! the current weights) and `state.json` (step, data position, loss log). A checkpoint
//! directory is assembled under a temporary name and renamed into place, then the
//! `checkpoints/latest` pointer is replaced atomically: a crash at any moment leaves the
//! previous checkpoint intact.

use super::precision::LossScaler;
use super::records::{LogRow, StalenessRow};
use crate::data::StreamState;
use crate::fsutil::{write_atomic, write_json_atomic};
use crate::models::weights::{self, WeightsError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Steps completed.
    pub step: u64,
    pub stream: StreamState,
    pub log: Vec<LogRow>,
    /// The f16 loss scale (unused under f32).
    #[serde(default)]
    pub scaler: LossScaler,
    /// Staleness measured so far.
    #[serde(default)]
    pub staleness: Vec<StalenessRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint I/O at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("checkpoint {path} is unusable: {why}; delete it to restart this run from scratch")]
    Corrupt { path: PathBuf, why: String },
}

/// What a checkpoint holds, as tensors and state.
pub struct Checkpoint {
    pub weights: Vec<(String, Tensor)>,
    pub optimizer: Vec<(String, Tensor)>,
    pub memory: Option<Vec<(String, Tensor)>>,
    pub state: CheckpointState,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a checkpoint under `root` and points `latest` at it; keeps the newest two.
pub fn save(root: &Path, ckpt: &Checkpoint) -> Result<PathBuf, CheckpointError> {
    std::fs::create_dir_all(root).map_err(io(root))?;
    let name = format!("step-{:08}", ckpt.state.step);
    let dir = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    weights::write_tensors(&ckpt.weights, &tmp.join("weights.safetensors"))?;
    weights::write_tensors(&ckpt.optimizer, &tmp.join("optimizer.safetensors"))?;
    if let Some(memory) = &ckpt.memory {
        weights::write_tensors(memory, &tmp.join("memory.safetensors"))?;
    }
    write_json_atomic(&tmp.join("state.json"), &ckpt.state).map_err(io(&tmp))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    write_atomic(&root.join("latest"), name.as_bytes()).map_err(io(root))?;
    prune(root, 2)?;
    Ok(dir)
}

/// Loads the checkpoint `latest` points at, if any.
pub fn load_latest(root: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let pointer = root.join("latest");
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(io(&pointer))?;
    let dir = root.join(name.trim());
    let corrupt = |why: String| CheckpointError::Corrupt { path: dir.clone(), why };
    let read = |file: &str| Tensor::read_safetensors(dir.join(file)).map_err(|e| corrupt(e.to_string()));
    let state_path = dir.join("state.json");
    let state_text = std::fs::read_to_string(&state_path).map_err(|e| corrupt(e.to_string()))?;
    let state: CheckpointState = serde_json::from_str(&state_text).map_err(|e| corrupt(e.to_string()))?;
    let memory = match dir.join("memory.safetensors").exists() {
        true => Some(read("memory.safetensors")?),
        false => None,
    };
    Ok(Some(Checkpoint {
        weights: read("weights.safetensors")?,
        optimizer: read("optimizer.safetensors")?,
        memory,
        state,
    }))
}

/// Removes all but the newest `keep` checkpoints (and leftover temporary directories).
fn prune(root: &Path, keep: usize) -> Result<(), CheckpointError> {
    let mut steps: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io(root))? {
        let path = entry.map_err(io(root))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("step-") && path.is_dir() {
            steps.push(path);
        } else if name.starts_with(".step-") && !name.ends_with(&format!("-{}", std::process::id())) {
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        }
    }
    steps.sort();
    for old in steps.iter().rev().skip(keep) {
        std::fs::remove_dir_all(old).map_err(io(old))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_values_survive_the_json_round_trip_bit_exactly() {
        // Without serde_json's `float_roundtrip`, values like this came back one ulp off.
        let rows: Vec<LogRow> = [1.6088579893112185, 0.1 + 0.2, 4.579787731170654, 1e-300]
            .into_iter()
            .map(|x| LogRow {
                step: 1,
                loss: x,
                lr: x / 3.0,
                grad_norm: x * 7.0,
            })
            .collect();
        let state = CheckpointState {
            step: 1,
            stream: StreamState { rows: vec![] },
            log: rows.clone(),
            scaler: LossScaler::default(),
            staleness: vec![],
        };
        let back: CheckpointState = serde_json::from_str(&serde_json::to_string_pretty(&state).unwrap()).unwrap();
        for (a, b) in rows.iter().zip(&back.log) {
            assert_eq!(a.loss.to_bits(), b.loss.to_bits());
            assert_eq!(a.lr.to_bits(), b.lr.to_bits());
            assert_eq!(a.grad_norm.to_bits(), b.grad_norm.to_bits());
        }
    }
}
