//! Executing an experiment's runs: one directory per run with its metadata and a status
//! written atomically, a lock so that processes sharing a sweep never run the same run
//! twice, dependencies run first, finished runs skipped, unfinished ones resumed (training
//! restarts from its last checkpoint), failures recorded with their reason.

use super::experiment::{Experiment, PlannedRun, Stage};
use super::stage::{evaluate_run, train_run, EvalOptions, EvalRequest, TrainRequest, TrainResult};
use crate::device::Versions;
use crate::fsutil::write_json_atomic;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::SystemTime;

/// A run's state, in `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum Status {
    Running {
        since: String,
    },
    Done {
        finished: String,
    },
    Failed {
        reason: String,
        at: String,
    },
    /// Stopped by a signal (preemption, a time limit) after a checkpoint; resumes on the
    /// next invocation.
    Interrupted {
        at: String,
    },
}

/// A run stopped by [`crate::train::trainer::INTERRUPT`] after checkpointing.
#[derive(Debug, thiserror::Error)]
#[error("interrupted after step {0} (checkpoint written)")]
pub struct RunInterrupted(pub u64);

/// Everything a result needs to be reproduced, in `metadata.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    pub id: String,
    pub stage: Stage,
    pub experiment: String,
    pub params: BTreeMap<String, String>,
    pub seed: u64,
    pub device: String,
    pub git_commit: String,
    pub versions: Versions,
    pub host: String,
    /// The CPU model and its vector extensions (absent in runs before it was recorded).
    #[serde(default)]
    pub cpu: String,
    /// `SLURM_JOB_ID`, `SLURM_ARRAY_JOB_ID`, `SLURM_ARRAY_TASK_ID` when set.
    pub slurm: BTreeMap<String, String>,
    pub started: String,
    pub finished: Option<String>,
    /// The tokenizer of text data and its special tokens; absent for the generators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerInfo>,
}

/// Which tokenizer a run's text was tokenised with, and the special ids it used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenizerInfo {
    /// `byte`, `gpt2`, or the `tokenizer.json` path.
    pub name: String,
    pub vocab_size: usize,
    /// The id between documents (the model's EOS).
    pub end_of_text: u32,
    /// The ids every document starts with (the model's BOS), if any.
    pub begin_of_text: Vec<u32>,
}

pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A run's status, if it has one.
pub fn status(dir: &Path) -> Option<Status> {
    let text = std::fs::read_to_string(dir.join("status.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn set_status(dir: &Path, status: &Status) -> anyhow::Result<()> {
    write_json_atomic(&dir.join("status.json"), status)
        .with_context(|| format!("writing {}/status.json", dir.display()))
}

fn set_failed(dir: &Path, reason: &str) -> anyhow::Result<()> {
    set_status(
        dir,
        &Status::Failed {
            reason: reason.to_string(),
            at: now(),
        },
    )
}

/// `i/n`: this process runs every n-th unit of work starting at the i-th (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("--shard {s:?}: write i/n with 0 <= i < n, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

/// The units of work shards split: each train run with its evaluations, and each evaluation
/// that waits for no train run (the frozen backbone's) on its own. Pretraining runs belong
/// to no unit. Returns, for every run that belongs to one, its unit's index.
fn unit_of_runs(runs: &[PlannedRun]) -> HashMap<&str, usize> {
    let trained: HashMap<&str, usize> = runs
        .iter()
        .filter(|r| r.stage == Stage::Train)
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    let mut units = trained.clone();
    let mut next = trained.len();
    for run in runs
        .iter()
        .filter(|r| matches!(r.stage, Stage::Eval | Stage::Icl | Stage::ChapterBreak))
    {
        let unit = match run.depends_on.as_deref().and_then(|dep| trained.get(dep)) {
            Some(&unit) => unit,
            None => {
                next += 1;
                next - 1
            }
        };
        units.insert(run.id.as_str(), unit);
    }
    units
}

/// How many units of work [`shard_runs`] splits `runs` into.
pub fn unit_count(runs: &[PlannedRun]) -> usize {
    unit_of_runs(runs)
        .values()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// The runs shard `shard` owns: every n-th unit of work ([`unit_of_runs`]). Pretraining runs
/// belong to no shard; whoever needs one first runs it, and the others wait for it.
pub fn shard_runs(runs: &[PlannedRun], shard: Option<Shard>) -> Vec<&PlannedRun> {
    let Some(shard) = shard else {
        return runs.iter().collect();
    };
    let units = unit_of_runs(runs);
    runs.iter()
        .filter(|r| units.get(r.id.as_str()).is_some_and(|i| i % shard.count == shard.index))
        .collect()
}

/// What became of the runs one invocation was given.
#[derive(Debug, Default)]
pub struct Summary {
    pub ran: usize,
    pub skipped: usize,
    pub failed: Vec<(String, String)>,
    /// A signal stopped the sweep (the run in progress checkpointed).
    pub interrupted: bool,
}

/// Runs `runs` (and what they depend on), skipping finished ones. Failures are recorded and
/// do not stop the others.
pub fn execute(experiment: &Experiment, all: &[PlannedRun], runs: &[&PlannedRun]) -> Summary {
    let by_id: HashMap<&str, &PlannedRun> = all.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut summary = Summary::default();
    let bar = crate::progress::bar(runs.len() as u64, "runs");
    for run in runs {
        if crate::train::trainer::interrupted() {
            summary.interrupted = true;
            break;
        }
        bar.set_message(format!("{} {}", run.stage, run.id));
        match ensure(experiment, run, &by_id) {
            Ok(true) => summary.ran += 1,
            Ok(false) => summary.skipped += 1,
            Err(e) if e.downcast_ref::<RunInterrupted>().is_some() => {
                summary.interrupted = true;
                break;
            }
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::error!(run = %run.id, "{reason}");
                summary.failed.push((run.id.clone(), reason));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    summary
}

/// Runs `run` unless it is done, its dependency first. `Ok(true)` when it ran now.
fn ensure(experiment: &Experiment, run: &PlannedRun, by_id: &HashMap<&str, &PlannedRun>) -> anyhow::Result<bool> {
    if matches!(status(&run.dir), Some(Status::Done { .. })) {
        return Ok(false);
    }
    if let Some(dep) = &run.depends_on {
        let upstream = by_id
            .get(dep.as_str())
            .with_context(|| format!("unknown upstream run {dep}"))?;
        if let Err(e) = ensure(experiment, upstream, by_id) {
            if e.downcast_ref::<RunInterrupted>().is_some() {
                return Err(e);
            }
            // Recorded here too, so the dependent run shows why it never ran.
            let reason = format!("upstream run {dep} failed: {e:#}");
            std::fs::create_dir_all(&run.dir).with_context(|| format!("creating {}", run.dir.display()))?;
            set_failed(&run.dir, &reason)?;
            bail!(reason);
        }
    }
    std::fs::create_dir_all(&run.dir).with_context(|| format!("creating {}", run.dir.display()))?;
    let lock_path = run.dir.join(".lock");
    let lock = std::fs::File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    // Another process may hold it: wait, then look again.
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if matches!(status(&run.dir), Some(Status::Done { .. })) {
        return Ok(false);
    }
    let mut metadata = metadata(experiment, run);
    write_json_atomic(&run.dir.join("metadata.json"), &metadata)?;
    set_status(&run.dir, &Status::Running { since: now() })?;
    log(&run.dir, &format!("{} start {} {}", now(), run.stage, run.id));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute_stage(experiment, run)))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err(anyhow::anyhow!("panicked: {message}"))
        });
    match result {
        Ok(()) => {
            metadata.finished = Some(now());
            write_json_atomic(&run.dir.join("metadata.json"), &metadata)?;
            set_status(&run.dir, &Status::Done { finished: now() })?;
            log(&run.dir, &format!("{} done", now()));
            Ok(true)
        }
        Err(e) if e.downcast_ref::<RunInterrupted>().is_some() => {
            set_status(&run.dir, &Status::Interrupted { at: now() })?;
            log(&run.dir, &format!("{} {e}", now()));
            Err(e)
        }
        Err(e) => {
            let reason = format!("{e:#}");
            set_failed(&run.dir, &reason)?;
            log(&run.dir, &format!("{} failed: {reason}", now()));
            Err(e)
        }
    }
}

fn execute_stage(experiment: &Experiment, run: &PlannedRun) -> anyhow::Result<()> {
    match run.stage {
        Stage::Pretrain | Stage::Train => {
            let request = TrainRequest {
                spec: &run.spec,
                dir: &run.dir,
                stop_after: None,
            };
            match train_run(&request)? {
                TrainResult::AlreadyTrained(_) | TrainResult::Trained { .. } => Ok(()),
                TrainResult::Stopped { step } => Err(RunInterrupted(step).into()),
            }
        }
        Stage::Eval | Stage::Icl | Stage::ChapterBreak => {
            let options = EvalOptions {
                documents: experiment.eval.documents,
                memory: run.eval.clone().unwrap_or_default(),
                window: run.eval.as_ref().and_then(|point| point.window),
                length_buckets: experiment.eval.length_buckets.clone(),
                data: experiment.eval.data.clone(),
                rows: experiment.eval.rows,
                icl_only: run.stage == Stage::Icl,
                no_icl: run.stage == Stage::Eval,
                no_chapterbreak: run.stage != Stage::ChapterBreak,
                chapterbreak_only: run.stage == Stage::ChapterBreak,
                seed_offset: experiment.eval.seed_offset,
                ..EvalOptions::default()
            };
            let outcome = evaluate_run(&EvalRequest {
                spec: &run.spec,
                weights_dir: &run.weights_dir,
                out_dir: &run.dir,
                options: &options,
                spec_name: &experiment.file,
            })?;
            print!("{}", outcome.describe(&run.weights_dir.display().to_string()));
            Ok(())
        }
    }
}

fn metadata(experiment: &Experiment, run: &PlannedRun) -> Metadata {
    let slurm = ["SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    Metadata {
        id: run.id.clone(),
        stage: run.stage,
        experiment: experiment.name.clone(),
        params: run.params.clone(),
        seed: run.spec.seed,
        device: run
            .spec
            .device
            .resolve()
            .map(crate::device::device_name)
            .unwrap_or_else(|_| run.spec.device.to_string()),
        git_commit: git_commit(),
        versions: Versions::current(),
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into()),
        cpu: crate::device::cpu_description(),
        slurm,
        started: now(),
        finished: None,
        tokenizer: run.spec.data.tokenizer_kind().and_then(|kind| {
            let tok = kind.load().ok()?;
            Some(TokenizerInfo {
                name: kind.to_string(),
                vocab_size: tok.vocab_size(),
                end_of_text: tok.end_of_text(),
                begin_of_text: tok.begin_of_text().to_vec(),
            })
        }),
    }
}

/// The commit of the source tree this binary was built from (`-dirty` with uncommitted
/// changes), or `unknown` without git.
pub fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(["-C", env!("CARGO_MANIFEST_DIR")])
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        None => "unknown".into(),
    }
}

fn log(dir: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log.txt"))
    {
        let _ = writeln!(f, "{line}");
    }
}
