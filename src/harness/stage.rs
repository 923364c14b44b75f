//! The stages a run goes through, as library functions with typed requests and results:
//! [`train_run`] trains a spec's method into a directory, resumably; [`evaluate_run`]
//! evaluates a trained run. The sweep runner (harness/runner.rs) and the CLI
//! (commands/train.rs, commands/eval.rs) both call them.

use crate::config::{self, Spec};
use crate::fsutil::write_json_atomic;
use crate::train::{train, Outcome, TrainSummary};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Train `spec`'s method into `dir`.
#[derive(Debug, Clone)]
pub struct TrainRequest<'a> {
    pub spec: &'a Spec,
    pub dir: &'a Path,
    /// Stop (with a checkpoint) after this many steps of this invocation.
    pub stop_after: Option<u64>,
}

/// What [`train_run`] did.
#[derive(Debug)]
pub enum TrainResult {
    /// The directory already held the finished run; nothing was trained.
    AlreadyTrained(TrainSummary),
    /// Trained to the end now; the weights are in `weights`.
    Trained { summary: TrainSummary, weights: PathBuf },
    /// Stopped after `step` (a checkpoint was written); the next call resumes.
    Stopped { step: u64 },
}

/// Trains the run `request` describes: skips it when finished, resumes it from its last
/// checkpoint otherwise, and refuses a directory that holds another config. Everything
/// that can fail on bad input (weights, data) happens before anything is written.
pub fn train_run(request: &TrainRequest) -> anyhow::Result<TrainResult> {
    let TrainRequest { spec, dir, stop_after } = *request;
    let device = spec.device.resolve()?;
    let config_path = dir.join("config.json");
    if config_path.exists() {
        let existing =
            std::fs::read_to_string(&config_path).with_context(|| format!("reading {}", config_path.display()))?;
        let same = serde_json::from_str::<Spec>(&existing).is_ok_and(|s| s.same_training(spec));
        if !same {
            bail!(
                "{} holds a run of a different config (see {}); choose another out_dir or delete that directory",
                dir.display(),
                config_path.display()
            );
        }
        if let Some(summary) = finished_summary(dir) {
            return Ok(TrainResult::AlreadyTrained(summary));
        }
    }
    let span = tracing::info_span!("train", method = %spec.method, out = %dir.display());
    let _enter = span.enter();
    let mut model = spec.build_model(device)?;
    let mut stream = config::train_stream(spec, device)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating out_dir {}", dir.display()))?;
    write_json_atomic(&config_path, spec).with_context(|| format!("writing {}", config_path.display()))?;
    Ok(
        match train(model.as_mut(), &mut stream, &spec.train, dir, stop_after)? {
            Outcome::Finished(summary) => TrainResult::Trained {
                summary,
                weights: dir.join(model.weights_file()),
            },
            Outcome::Stopped { step } => TrainResult::Stopped { step },
        },
    )
}

/// The summary of a finished training run in `dir`, if there is one.
fn finished_summary(dir: &Path) -> Option<TrainSummary> {
    let text = std::fs::read_to_string(dir.join("train_summary.json")).ok()?;
    serde_json::from_str(&text).ok()
}
