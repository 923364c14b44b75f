//! `longmem sweep <experiment> [--shard i/n]`: runs an experiment's runs.

use crate::cli::SweepArgs;
use crate::harness::experiment::Experiment;
use crate::harness::runner::{execute, shard_runs};
use anyhow::bail;

pub fn run(args: &SweepArgs) -> anyhow::Result<()> {
    let experiment = Experiment::load(&args.experiment)?;
    // Every point is resolved and checked before anything runs.
    let runs = experiment.plan()?;
    let mine = shard_runs(&runs, args.shard);
    let summary = execute(&experiment, &runs, &mine);
    println!(
        "{}: {} runs ran, {} were already done, {} failed",
        experiment.name,
        summary.ran,
        summary.skipped,
        summary.failed.len()
    );
    for (id, reason) in &summary.failed {
        println!("  failed {id}: {reason}");
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
