//! What training records besides weights: the loss log (`train_log.csv`, one row per
//! `log_every` steps) and memory staleness (`staleness.csv`): how far the keys stored in
//! memory have drifted from the keys the current weights would write for the same tokens.

use crate::methods::MethodModel;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use tch::Tensor;

/// Memory staleness: the mean cosine distance between the keys a step wrote and the keys the
/// weights at `step` produce for the same tokens, `age` steps later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StalenessRow {
    pub step: u64,
    pub age: u64,
    pub cosine_distance: f64,
}

/// One line of the loss log: the mean over the steps since the previous line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
}

/// Loss and gradient norm summed since the last log line.
#[derive(Debug, Default)]
pub struct LossWindow {
    loss: f64,
    grad_norm: f64,
    steps: u64,
}

impl LossWindow {
    pub fn add(&mut self, loss: f64, grad_norm: f64) {
        self.loss += loss;
        self.grad_norm += grad_norm;
        self.steps += 1;
    }

    /// The log line at step `done` (means over the window), shown in the progress bar when it
    /// is visible and logged otherwise (CI, Slurm, pipes); the window starts again.
    pub fn take(&mut self, done: u64, lr: f64, bar: &indicatif::ProgressBar) -> LogRow {
        let row = LogRow {
            step: done,
            loss: self.loss / self.steps as f64,
            lr,
            grad_norm: self.grad_norm / self.steps as f64,
        };
        if bar.is_hidden() {
            tracing::info!(
                step = done,
                loss = format!("{:.4}", row.loss),
                lr = format!("{lr:.2e}"),
                "train"
            );
        } else {
            bar.set_message(format!("loss {:.4}", row.loss));
            tracing::debug!(step = done, loss = row.loss, lr, "train");
        }
        *self = Self::default();
        row
    }
}

/// The inputs and written keys of the most recent segments, newest first, for staleness.
pub struct RecentWrites {
    enabled: bool,
    window: usize,
    writes: VecDeque<(Tensor, Tensor)>,
}

impl RecentWrites {
    /// Keeps the last `window` segments when `enabled` (staleness is measured), none otherwise.
    pub fn new(enabled: bool, window: usize) -> Self {
        Self {
            enabled,
            window: window.max(1),
            writes: VecDeque::new(),
        }
    }

    pub fn push(&mut self, inputs: &Tensor, written_keys: &Tensor) {
        if self.enabled {
            self.writes.push_front((inputs.shallow_clone(), written_keys.detach()));
            self.writes.truncate(self.window);
        }
    }

    /// Cosine distance between each recent segment's written keys and the keys the current
    /// weights give its tokens, averaged over rows, heads and positions.
    pub fn staleness(&self, learner: &dyn MethodModel, step: u64) -> Vec<StalenessRow> {
        self.writes
            .iter()
            .enumerate()
            .filter_map(|(age, (inputs, written))| {
                let now = learner.memory_keys(inputs)?;
                let (a, b) = (written.to_kind(tch::Kind::Float), now.to_kind(tch::Kind::Float));
                let dot = (&a * &b).sum_dim_intlist(-1, false, tch::Kind::Float);
                let norms = a.norm_scalaropt_dim(2, [-1], false) * b.norm_scalaropt_dim(2, [-1], false);
                let cosine: Tensor = dot / norms.clamp_min(1e-12);
                let distance = cosine.neg().g_add_scalar(1.0).mean(tch::Kind::Double).double_value(&[]);
                Some(StalenessRow {
                    step,
                    age: age as u64,
                    cosine_distance: distance,
                })
            })
            .collect()
    }
}

/// `train_log.csv`.
pub fn log_csv(log: &[LogRow]) -> String {
    let mut text = String::from("step,loss,lr,grad_norm\n");
    for r in log {
        text.push_str(&format!("{},{},{},{}\n", r.step, r.loss, r.lr, r.grad_norm));
    }
    text
}

/// `staleness.csv`.
pub fn staleness_csv(rows: &[StalenessRow]) -> String {
    let mut text = String::from("step,age,cosine_distance\n");
    for r in rows {
        text.push_str(&format!("{},{},{}\n", r.step, r.age, r.cosine_distance));
    }
    text
}
