//! The training loop shared by every method (DESIGN.md §2.2 "Training"): segments in
//! stream order, memory reset at document boundaries, AdamW with linear warm-up and decay,
//! optional gradient clipping, a loss log, checkpoints and exact resume.
//!
//! Determinism: libtorch's generator is re-seeded from (seed, step) before every step, so
//! dropout masks depend only on the step, and a resumed run continues exactly as an
//! uninterrupted one would (on CPU).

use super::checkpoint::{self, Checkpoint, CheckpointError, CheckpointState};
use super::learner::{masked_nll, Learner};
use super::optim::{learning_rate, AdamW, AdamWConfig};
use super::precision::{self, LossScaler, Precision};
use crate::data::recall::mix;
use crate::data::{DocumentSource, SegmentStream};
use crate::device::synchronize;
use crate::fsutil::{write_atomic, write_json_atomic};
use crate::models::weights::{self, WeightsError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

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

/// Memory staleness (DESIGN.md §3): the mean cosine distance between the keys a step wrote
/// and the keys the weights at `step` produce for the same tokens, `age` steps later.
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: u64,
    /// Mean loss over the last logged window.
    pub final_loss: f64,
    /// Target tokens trained on in this process (resumed runs count only their part).
    pub tokens: u64,
    pub wall_seconds: f64,
    pub tokens_per_second: f64,
    /// Step the run resumed from, when it did.
    pub resumed_from: Option<u64>,
}

#[derive(Debug)]
pub enum Outcome {
    Finished(TrainSummary),
    /// Stopped on request after this many steps, with a checkpoint written.
    Stopped {
        step: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("the loss became {loss} at step {step}; lower the learning rate (train.lr) or set train.grad_clip")]
    NonFinite { step: u64, loss: f64 },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("cannot write {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("train.precision = \"f16\" needs a CUDA device (autocast is CUDA-only); use \"f32\" on {device}")]
    PrecisionNeedsCuda { device: String },
}

/// Trains `learner` on `stream` into `out_dir`, resuming from `out_dir/checkpoints` when a
/// checkpoint is there. `stop_after` ends the run early (after a checkpoint) at that step,
/// as an interruption would.
/// Set (by a signal handler) to make every training loop checkpoint at its next step and
/// return [`Outcome::Stopped`]: preemption and time limits lose at most one step.
pub static INTERRUPT: std::sync::LazyLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::LazyLock::new(Default::default);

/// Whether [`INTERRUPT`] is set.
pub fn interrupted() -> bool {
    INTERRUPT.load(std::sync::atomic::Ordering::SeqCst)
}

pub fn train<S: DocumentSource>(
    learner: &mut Learner,
    stream: &mut SegmentStream<S>,
    config: &TrainConfig,
    out_dir: &Path,
    stop_after: Option<u64>,
) -> Result<Outcome, TrainError> {
    let device = learner.trained_vs().device();
    if config.precision == Precision::F16 && !device.is_cuda() {
        return Err(TrainError::PrecisionNeedsCuda {
            device: crate::device::device_name(device),
        });
    }
    std::fs::create_dir_all(out_dir).map_err(|source| TrainError::Io {
        path: out_dir.display().to_string(),
        source,
    })?;
    learner.freeze_the_rest();
    let mut optimizer = AdamW::new(learner.trainable(), config.adamw);
    let ckpt_root = out_dir.join("checkpoints");
    let mut start = 0;
    let mut log = Vec::new();
    let mut resumed_from = None;
    let mut scaler = LossScaler::default();
    let mut resumed_staleness = Vec::new();
    if let Some(ckpt) = checkpoint::load_latest(&ckpt_root)? {
        restore(learner, &mut optimizer, stream, &ckpt, &ckpt_root)?;
        start = ckpt.state.step;
        log = ckpt.state.log;
        scaler = ckpt.state.scaler;
        resumed_staleness = ckpt.state.staleness;
        resumed_from = Some(start);
        tracing::info!(step = start, "resumed from checkpoint");
    }
    let (mut window_loss, mut window_norm, mut window_steps) = (0.0, 0.0, 0u64);
    let mut tokens = 0u64;
    let clock = Instant::now();
    let bar = crate::progress::bar(config.steps, "train");
    bar.set_position(start);
    // Recent (inputs, written keys), newest first, and the staleness measured so far. After
    // a resume the window refills from the resumed step on.
    let mut recent: std::collections::VecDeque<(tch::Tensor, tch::Tensor)> = Default::default();
    let mut staleness: Vec<StalenessRow> = resumed_staleness;
    for step in start..config.steps {
        tch::manual_seed(mix(config.seed, 0x5354_4550, step) as i64);
        let lr = learning_rate(config.lr, step, config.warmup, config.steps);
        let batch = stream.next_batch();
        let out = tch::autocast(config.precision == Precision::F16, || learner.forward(&batch, true));
        if let (true, Some(keys)) = (config.staleness_every > 0, &out.written_keys) {
            recent.push_front((batch.inputs.shallow_clone(), keys.detach()));
            recent.truncate(config.staleness_window.max(1));
        }
        let (nll, count) = masked_nll(&out.logits, &batch.targets, &batch.loss_mask);
        let loss = nll / count.clamp_min(1.0);
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(TrainError::NonFinite {
                step: step + 1,
                loss: value,
            });
        }
        optimizer.zero_grad();
        precision::scaled(&loss, config.precision, &scaler).backward();
        let overflow = config.precision == Precision::F16 && !scaler.unscale(optimizer.params());
        let grad_norm = match config.grad_clip {
            Some(max) if !overflow => optimizer.clip_grad_norm(max),
            _ => f64::NAN,
        };
        if overflow {
            tracing::debug!(
                step = step + 1,
                scale = scaler.scale,
                "f16 gradient overflow: step skipped"
            );
        } else {
            optimizer.step(lr);
        }
        tokens += count.double_value(&[]) as u64;
        window_loss += value;
        window_norm += grad_norm;
        window_steps += 1;
        let done = step + 1;
        if done % config.log_every.max(1) == 0 || done == config.steps {
            let row = LogRow {
                step: done,
                loss: window_loss / window_steps as f64,
                lr,
                grad_norm: window_norm / window_steps as f64,
            };
            // With a visible bar the loss goes into it; otherwise (CI, Slurm, pipes) into the log.
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
            log.push(row);
            (window_loss, window_norm, window_steps) = (0.0, 0.0, 0);
        }
        if config.staleness_every > 0 && done % config.staleness_every == 0 {
            staleness.extend(measure_staleness(learner, &recent, done));
        }
        bar.inc(1);
        let stop = stop_after == Some(done) || interrupted();
        let periodic = config.checkpoint_every > 0 && done % config.checkpoint_every == 0;
        if periodic || stop || done == config.steps {
            let state = CheckpointState {
                step: done,
                stream: stream.state().clone(),
                log: log.clone(),
                scaler,
                staleness: staleness.clone(),
            };
            save(learner, &optimizer, state, &ckpt_root)?;
        }
        if stop && done < config.steps {
            return Ok(Outcome::Stopped { step: done });
        }
    }
    bar.finish_and_clear();
    synchronize(device);
    let wall_seconds = clock.elapsed().as_secs_f64();
    weights::save_safetensors(learner.trained_vs(), &out_dir.join(learner.weights_file()))?;
    write_log_csv(&out_dir.join("train_log.csv"), &log)?;
    if config.staleness_every > 0 {
        let mut text = String::from("step,age,cosine_distance\n");
        for r in &staleness {
            text.push_str(&format!("{},{},{}\n", r.step, r.age, r.cosine_distance));
        }
        let path = out_dir.join("staleness.csv");
        write_atomic(&path, text.as_bytes()).map_err(|source| TrainError::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    let summary = TrainSummary {
        steps: config.steps,
        final_loss: log.last().map_or(f64::NAN, |r| r.loss),
        tokens,
        wall_seconds,
        tokens_per_second: tokens as f64 / wall_seconds.max(1e-9),
        resumed_from,
    };
    let path = out_dir.join("train_summary.json");
    write_json_atomic(&path, &summary).map_err(|source| TrainError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Outcome::Finished(summary))
}

fn save(learner: &Learner, optimizer: &AdamW, state: CheckpointState, root: &Path) -> Result<(), TrainError> {
    let ckpt = Checkpoint {
        weights: learner.trained_vs().variables().into_iter().collect(),
        optimizer: optimizer.state(),
        memory: learner.bank().map(|b| b.state()),
        state,
    };
    checkpoint::save(root, &ckpt)?;
    Ok(())
}

fn restore<S: DocumentSource>(
    learner: &mut Learner,
    optimizer: &mut AdamW,
    stream: &mut SegmentStream<S>,
    ckpt: &Checkpoint,
    root: &Path,
) -> Result<(), TrainError> {
    let corrupt = |why: String| CheckpointError::Corrupt {
        path: root.to_path_buf(),
        why,
    };
    let variables = learner.trained_vs().variables();
    tch::no_grad(|| -> Result<(), CheckpointError> {
        for (name, mut var) in variables {
            let source = ckpt.weights.iter().find(|(n, _)| *n == name).map(|(_, t)| t);
            let source = source.ok_or_else(|| corrupt(format!("weights lack `{name}`")))?;
            if source.size() != var.size() {
                return Err(corrupt(format!(
                    "`{name}` has shape {:?}, the model {:?}",
                    source.size(),
                    var.size()
                )));
            }
            var.copy_(source);
        }
        Ok(())
    })?;
    optimizer.load_state(&ckpt.optimizer).map_err(corrupt)?;
    if let (Some(bank), Some(memory)) = (learner.bank_mut(), &ckpt.memory) {
        bank.load_state(memory).map_err(corrupt)?;
    }
    if ckpt.state.stream.rows.len() != stream.state().rows.len() {
        return Err(corrupt("it was written with another batch size".into()).into());
    }
    stream.set_state(ckpt.state.stream.clone());
    Ok(())
}

fn write_log_csv(path: &Path, log: &[LogRow]) -> Result<(), TrainError> {
    let mut text = String::from("step,loss,lr,grad_norm\n");
    for r in log {
        text.push_str(&format!("{},{},{},{}\n", r.step, r.loss, r.lr, r.grad_norm));
    }
    write_atomic(path, text.as_bytes()).map_err(|source| TrainError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Cosine distance between each recent segment's written keys and the keys the current
/// weights give its tokens, averaged over rows, heads and positions.
fn measure_staleness(
    learner: &Learner,
    recent: &std::collections::VecDeque<(tch::Tensor, tch::Tensor)>,
    step: u64,
) -> Vec<StalenessRow> {
    recent
        .iter()
        .enumerate()
        .filter_map(|(age, (inputs, written))| {
            let now = learner.memory_keys(inputs)?;
            let (a, b) = (written.to_kind(tch::Kind::Float), now.to_kind(tch::Kind::Float));
            let dot = (&a * &b).sum_dim_intlist(-1, false, tch::Kind::Float);
            let norms = a.norm_scalaropt_dim(2, [-1], false) * b.norm_scalaropt_dim(2, [-1], false);
            let cosine: tch::Tensor = dot / norms.clamp_min(1e-12);
            let distance = cosine.neg().g_add_scalar(1.0).mean(tch::Kind::Double).double_value(&[]);
            Some(StalenessRow {
                step,
                age: age as u64,
                cosine_distance: distance,
            })
        })
        .collect()
}
