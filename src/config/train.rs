//! The `[train]` section: the raw form in the file and the resolved [`TrainConfig`] the
//! trainer (train/trainer.rs) runs with.

use super::resolver::{Resolver, SpecError};
use crate::device::DeviceSpec;
use crate::methods::Method;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrain {
    pub steps: u64,
    pub batch_size: usize,
    pub segment_len: usize,
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    #[serde(default)]
    pub warmup: u64,
    #[serde(default = "defaults::weight_decay")]
    pub weight_decay: f64,
    #[serde(default = "defaults::betas")]
    pub betas: [f64; 2],
    #[serde(default = "defaults::eps")]
    pub eps: f64,
    #[serde(default = "defaults::grad_clip")]
    pub grad_clip: Option<f64>,
    #[serde(default = "defaults::log_every")]
    pub log_every: u64,
    #[serde(default)]
    pub checkpoint_every: u64,
    /// "f32", or "f16": autocast with loss scaling, CUDA only.
    #[serde(default = "defaults::precision")]
    pub precision: Precision,
    /// Steps between memory-staleness measurements (0: none). Memory methods only: methods
    /// without memory resolve it to 0.
    #[serde(default)]
    pub staleness_every: u64,
    /// Recent segments whose written keys each measurement re-derives.
    #[serde(default = "defaults::staleness_window")]
    pub staleness_window: usize,
}

impl RawTrain {
    /// `steps` steps of `batch_size` rows × `segment_len` tokens, every other setting at its
    /// default (for specs built in code).
    pub fn new(steps: u64, batch_size: usize, segment_len: usize) -> Self {
        Self {
            steps,
            batch_size,
            segment_len,
            lr: defaults::lr(),
            warmup: 0,
            weight_decay: defaults::weight_decay(),
            betas: defaults::betas(),
            eps: defaults::eps(),
            grad_clip: defaults::grad_clip(),
            log_every: defaults::log_every(),
            checkpoint_every: 0,
            precision: defaults::precision(),
            staleness_every: 0,
            staleness_window: defaults::staleness_window(),
        }
    }

    /// Validates the section for `method` on `device`; `trains` is false for a run with no
    /// training stage (the frozen backbone, given SideNet weights).
    pub(super) fn resolve(
        &self,
        seed: u64,
        (method, trains): (Method, bool),
        device: DeviceSpec,
        r: &Resolver,
    ) -> Result<TrainConfig, SpecError> {
        // A run that trains nothing: only its rows, window, precision and seed matter, so
        // `[train]`'s other settings leave its run id alone.
        let frozen;
        let t = if trains {
            self
        } else {
            frozen = RawTrain {
                precision: self.precision,
                ..RawTrain::new(1, self.batch_size, self.segment_len)
            };
            &frozen
        };
        if t.steps == 0 {
            return Err(r.invalid("train.steps", &t.steps, "at least 1"));
        }
        if t.batch_size == 0 {
            return Err(r.invalid("train.batch_size", &t.batch_size, "at least 1"));
        }
        if t.segment_len < 2 {
            return Err(r.invalid("train.segment_len", &t.segment_len, "at least 2 tokens"));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(r.invalid("train.lr", &t.lr, "a positive number"));
        }
        if t.precision == Precision::F16 && device == DeviceSpec::Cpu {
            return Err(r.invalid(
                "train.precision",
                &"f16",
                "f32 on device = \"cpu\" (f16 autocast is CUDA-only)",
            ));
        }
        if t.warmup >= t.steps {
            return Err(r.invalid(
                "train.warmup",
                &t.warmup,
                &format!("fewer than train.steps = {}", t.steps),
            ));
        }
        Ok(TrainConfig {
            steps: t.steps,
            lr: t.lr,
            warmup: t.warmup,
            adamw: AdamWConfig {
                beta1: t.betas[0],
                beta2: t.betas[1],
                eps: t.eps,
                weight_decay: t.weight_decay,
            },
            grad_clip: t.grad_clip,
            log_every: t.log_every,
            checkpoint_every: t.checkpoint_every,
            seed,
            precision: t.precision,
            // Methods without memory have nothing to measure: 0 in their resolved config (and
            // run id), so one experiment can set it for every method of a sweep.
            staleness_every: if method.has_memory() { t.staleness_every } else { 0 },
            staleness_window: if method.has_memory() {
                t.staleness_window
            } else {
                defaults::staleness_window()
            },
        })
    }
}

mod defaults {
    pub fn lr() -> f64 {
        2e-4
    }
    pub fn weight_decay() -> f64 {
        0.01
    }
    pub fn betas() -> [f64; 2] {
        [0.9, 0.98]
    }
    pub fn eps() -> f64 {
        1e-6
    }
    pub fn grad_clip() -> Option<f64> {
        Some(1.0)
    }
    pub fn staleness_window() -> usize {
        8
    }
    pub fn log_every() -> u64 {
        10
    }
    pub fn precision() -> super::Precision {
        super::Precision::F32
    }
}

/// What the trainer runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    pub warmup: u64,
    pub adamw: AdamWConfig,
    /// Global gradient-norm clip; `None` for none.
    pub grad_clip: Option<f64>,
    pub log_every: u64,
    /// Steps between checkpoints (0: only at the end).
    pub checkpoint_every: u64,
    pub seed: u64,
    /// f32, or f16 autocast with loss scaling (CUDA only).
    pub precision: Precision,
    /// Steps between staleness measurements (0: none); memory methods only.
    pub staleness_every: u64,
    /// How many recent segments' written keys the staleness measurement compares.
    pub staleness_window: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
/// AdamW's settings (the paper's recipe by default: betas 0.9/0.98, eps 1e-6, wd 0.01).
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.01,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
/// Training arithmetic.
pub enum Precision {
    F32,
    /// f16 autocast (CUDA only) with dynamic loss scaling.
    F16,
}
