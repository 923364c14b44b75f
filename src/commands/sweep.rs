//! `longmem sweep <experiment> [--shard i/n]`: runs an experiment's runs.
//!
//! SIGUSR1 (what `#SBATCH --signal=USR1@<seconds>` sends before a time limit or
//! preemption) makes the training in progress checkpoint at its next step; the run is
//! marked interrupted and, inside a Slurm job, the job requeues itself to resume later.

use crate::cli::SweepArgs;
use crate::harness::experiment::Experiment;
use crate::harness::runner::{execute, shard_runs};
use anyhow::{bail, Context};

pub fn run(args: &SweepArgs) -> anyhow::Result<()> {
    let experiment = Experiment::load(&args.experiment)?;
    // Every point is resolved and checked before anything runs.
    let runs = experiment.plan()?;
    let mine = shard_runs(&runs, args.shard);
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, crate::train::trainer::INTERRUPT.clone())
        .context("installing the SIGUSR1 handler")?;
    let summary = execute(&experiment, &runs, &mine);
    println!(
        "{}: {} runs ran, {} were already done, {} failed{}",
        experiment.name,
        summary.ran,
        summary.skipped,
        summary.failed.len(),
        if summary.interrupted {
            ", interrupted by a signal"
        } else {
            ""
        }
    );
    for (id, reason) in &summary.failed {
        println!("  failed {id}: {reason}");
    }
    if summary.interrupted {
        return requeue();
    }
    if !summary.failed.is_empty() {
        bail!(
            "{} of {} runs failed (their status.json holds the reason); fix and rerun to resume",
            summary.failed.len(),
            mine.len()
        );
    }
    Ok(())
}

/// Inside a Slurm job, requeues it (`scontrol requeue`) so it resumes from the checkpoint;
/// elsewhere, reports the interruption.
fn requeue() -> anyhow::Result<()> {
    let job = match (
        std::env::var("SLURM_ARRAY_JOB_ID"),
        std::env::var("SLURM_ARRAY_TASK_ID"),
    ) {
        (Ok(array), Ok(task)) => format!("{array}_{task}"),
        _ => match std::env::var("SLURM_JOB_ID") {
            Ok(id) => id,
            Err(_) => bail!("interrupted by a signal; rerun the same command to resume from the checkpoints"),
        },
    };
    let status = std::process::Command::new("scontrol")
        .args(["requeue", &job])
        .status()
        .context("running scontrol requeue")?;
    if !status.success() {
        bail!("interrupted, and `scontrol requeue {job}` failed ({status}); resubmit to resume");
    }
    println!("interrupted: requeued Slurm job {job}; it resumes from the checkpoints");
    Ok(())
}
