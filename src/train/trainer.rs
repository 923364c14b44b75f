//! The training loop shared by every method: segments in
//! stream order, memory reset at document boundaries, AdamW with linear warm-up and decay,
//! optional gradient clipping, a loss log, checkpoints and exact resume.
//!
//! Determinism: libtorch's generator is re-seeded from (seed, step) before every step, so
//! dropout masks depend only on the step, and a resumed run continues exactly as an
//! uninterrupted one would (on CPU).

use super::checkpoint::{self, Checkpoint, CheckpointError, CheckpointState};
use super::optim::{learning_rate, AdamW};
use super::precision::{self, LossScaler};
use super::records::{log_csv, staleness_csv, LogRow, LossWindow, RecentWrites, StalenessRow};
use crate::config::{Precision, TrainConfig};
use crate::data::recall::mix;
use crate::data::{DocumentSource, SegmentStream};
use crate::device::synchronize;
use crate::fsutil::{write_atomic, write_json_atomic};
use crate::methods::{masked_nll, MethodModel};
use crate::models::weights::{self, WeightsError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

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

/// Set (by a signal handler) to make every training loop checkpoint at its next step and
/// return [`Outcome::Stopped`]: preemption and time limits lose at most one step.
pub static INTERRUPT: std::sync::LazyLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::LazyLock::new(Default::default);

/// Whether [`INTERRUPT`] is set.
pub fn interrupted() -> bool {
    INTERRUPT.load(std::sync::atomic::Ordering::SeqCst)
}

/// Where a run starts: step 0, or what its latest checkpoint holds.
struct Resumed {
    step: u64,
    log: Vec<LogRow>,
    scaler: LossScaler,
    staleness: Vec<StalenessRow>,
    from: Option<u64>,
}

/// Trains `learner` on `stream` into `out_dir`, resuming from `out_dir/checkpoints` when a
/// checkpoint is there. `stop_after` ends the run early (after a checkpoint) at that step,
/// as an interruption would.
pub fn train<S: DocumentSource>(
    learner: &mut dyn MethodModel,
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
    std::fs::create_dir_all(out_dir).map_err(|source| io_error(out_dir, source))?;
    learner.freeze_the_rest();
    let mut optimizer = AdamW::new(learner.trainable(), config.adamw);
    let ckpt_root = out_dir.join("checkpoints");
    let Resumed {
        step: start,
        mut log,
        mut scaler,
        mut staleness,
        from: resumed_from,
    } = resume(learner, &mut optimizer, stream, &ckpt_root)?;
    let mut window = LossWindow::default();
    let mut tokens = 0u64;
    let clock = Instant::now();
    let bar = crate::progress::bar(config.steps, "train");
    bar.set_position(start);
    // After a resume the staleness window refills from the resumed step on.
    let mut recent = RecentWrites::new(config.staleness_every > 0, config.staleness_window);
    for step in start..config.steps {
        let stats = optimise(learner, &mut optimizer, &mut scaler, stream, config, step, &mut recent)?;
        tokens += stats.tokens;
        window.add(stats.loss, stats.grad_norm);
        let done = step + 1;
        if done % config.log_every.max(1) == 0 || done == config.steps {
            log.push(window.take(done, stats.lr, &bar));
        }
        if config.staleness_every > 0 && done % config.staleness_every == 0 {
            staleness.extend(recent.staleness(learner, done));
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
    write_atomic_io(&out_dir.join("train_log.csv"), &log_csv(&log))?;
    if config.staleness_every > 0 {
        write_atomic_io(&out_dir.join("staleness.csv"), &staleness_csv(&staleness))?;
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
    write_json_atomic(&path, &summary).map_err(|source| io_error(&path, source))?;
    Ok(Outcome::Finished(summary))
}

/// What one optimisation step reports.
struct StepStats {
    loss: f64,
    grad_norm: f64,
    lr: f64,
    /// Target tokens the loss covered.
    tokens: u64,
}

/// One step: the step's seed, the next batch, forward (under autocast for f16), the masked
/// loss, backward, gradient clipping and the AdamW update (skipped on an f16 overflow).
fn optimise<S: DocumentSource>(
    learner: &mut dyn MethodModel,
    optimizer: &mut AdamW,
    scaler: &mut LossScaler,
    stream: &mut SegmentStream<S>,
    config: &TrainConfig,
    step: u64,
    recent: &mut RecentWrites,
) -> Result<StepStats, TrainError> {
    tch::manual_seed(mix(config.seed, 0x5354_4550, step) as i64);
    let lr = learning_rate(config.lr, step, config.warmup, config.steps);
    let batch = stream.next_batch();
    let out = tch::autocast(config.precision == Precision::F16, || learner.forward(&batch, true));
    if let Some(keys) = &out.written_keys {
        recent.push(&batch.inputs, keys);
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
    precision::scaled(&loss, config.precision, scaler).backward();
    learner.after_backward();
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
    Ok(StepStats {
        loss: value,
        grad_norm,
        lr,
        tokens: count.double_value(&[]) as u64,
    })
}

/// The latest checkpoint under `root` restored into `learner`, `optimizer` and `stream`,
/// or a fresh start.
fn resume<S: DocumentSource>(
    learner: &mut dyn MethodModel,
    optimizer: &mut AdamW,
    stream: &mut SegmentStream<S>,
    root: &Path,
) -> Result<Resumed, TrainError> {
    let Some(ckpt) = checkpoint::load_latest(root)? else {
        return Ok(Resumed {
            step: 0,
            log: Vec::new(),
            scaler: LossScaler::default(),
            staleness: Vec::new(),
            from: None,
        });
    };
    restore(learner, optimizer, stream, &ckpt, root)?;
    let step = ckpt.state.step;
    tracing::info!(step, "resumed from checkpoint");
    Ok(Resumed {
        step,
        log: ckpt.state.log,
        scaler: ckpt.state.scaler,
        staleness: ckpt.state.staleness,
        from: Some(step),
    })
}

fn io_error(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn write_atomic_io(path: &Path, text: &str) -> Result<(), TrainError> {
    write_atomic(path, text.as_bytes()).map_err(|source| io_error(path, source))
}

fn save(learner: &dyn MethodModel, optimizer: &AdamW, state: CheckpointState, root: &Path) -> Result<(), TrainError> {
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
    learner: &mut dyn MethodModel,
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
