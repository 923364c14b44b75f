//! Slurm job arrays: one array task per shard of the sweep. A task
//! is `longmem sweep <experiment> --shard $SLURM_ARRAY_TASK_ID/<tasks>`: it runs its
//! training runs and their evaluations (an evaluation that waits for no training run, the
//! frozen backbone's, is a unit of its own), and the shared stages they need under the runs'
//! locks (so tasks wait for their inputs instead of separate dependent arrays). Tasks are
//! requeue-safe: finished runs are skipped and unfinished ones resume from their checkpoints;
//! `--signal=B:USR1@<s>` makes a task checkpoint and requeue itself before its time limit.

use crate::config::SlurmSettings;
use crate::fsutil::write_atomic;
use crate::harness::experiment::{Experiment, PlannedRun};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Array tasks for `runs` at `per_task` units of work (training runs with their
/// evaluations) each.
pub fn task_count(runs: &[PlannedRun], per_task: usize) -> usize {
    let units = crate::harness::runner::unit_count(runs);
    units.div_ceil(per_task.max(1)).max(1)
}

/// The sbatch script for `experiment` with `tasks` array tasks, running `exe`.
pub fn script(experiment: &Experiment, settings: &SlurmSettings, tasks: usize, exe: &Path) -> anyhow::Result<String> {
    let file =
        std::fs::canonicalize(&experiment.file).with_context(|| format!("locating {}", experiment.file.display()))?;
    let logs = log_dir(experiment);
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!("#SBATCH --job-name=longmem-{}", experiment.name),
        match settings.max_parallel {
            Some(p) => format!("#SBATCH --array=0-{}%{p}", tasks - 1),
            None => format!("#SBATCH --array=0-{}", tasks - 1),
        },
        format!("#SBATCH --output={}/%A_%a.out", logs.display()),
        "#SBATCH --requeue".to_string(),
        format!("#SBATCH --signal=B:USR1@{}", settings.signal_seconds.unwrap_or(120)),
    ];
    let optional = [
        ("partition", &settings.partition),
        ("account", &settings.account),
        ("qos", &settings.qos),
        ("time", &settings.time),
        ("mem", &settings.mem),
    ];
    for (flag, value) in optional {
        if let Some(v) = value {
            lines.push(format!("#SBATCH --{flag}={v}"));
        }
    }
    if let Some(g) = settings.gpus_per_task {
        lines.push(format!("#SBATCH --gres=gpu:{g}"));
    }
    if let Some(c) = settings.cpus_per_task {
        lines.push(format!("#SBATCH --cpus-per-task={c}"));
    }
    lines.extend(settings.extra.iter().map(|e| format!("#SBATCH {e}")));
    lines.push(String::new());
    lines.push("# One shard of the sweep per array task; see `longmem sweep --help`.".into());
    lines.push(format!(
        "exec {} sweep {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{tasks}\"",
        quote(&exe.display().to_string()),
        quote(&file.display().to_string())
    ));
    Ok(lines.join("\n") + "\n")
}

/// Where scripts and task logs go: `<runs_dir>/slurm/<name>/`.
pub fn log_dir(experiment: &Experiment) -> PathBuf {
    experiment.runs_dir.join("slurm").join(&experiment.name)
}

/// Writes the script (atomically) and returns its path.
pub fn write_script(experiment: &Experiment, text: &str) -> anyhow::Result<PathBuf> {
    let dir = log_dir(experiment);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("array.sbatch");
    write_atomic(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
