//! `longmem status <experiment>`: each run's state, with the reasons of the failed ones.

use crate::cli::PlanArgs;
use crate::harness::experiment::Experiment;
use crate::harness::runner::{status, Status};
use std::collections::BTreeMap;

pub fn run(args: &PlanArgs) -> anyhow::Result<()> {
    let experiment = Experiment::load(&args.experiment)?;
    let runs = experiment.plan_checking(false)?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for run in &runs {
        let (state, detail) = match status(&run.dir) {
            Some(Status::Done { finished }) => ("done", finished),
            Some(Status::Running { since }) => ("running", format!("since {since}")),
            Some(Status::Interrupted { at }) => ("interrupted", format!("at {at}; resumes on the next sweep")),
            Some(Status::Failed { reason, at }) => ("failed", format!("{at}: {reason}")),
            None => ("pending", String::new()),
        };
        *counts.entry(state).or_default() += 1;
        println!("  {:<8} {:<22} {:<11} {detail}", run.stage.to_string(), run.id, state);
    }
    let summary: Vec<String> = counts.iter().map(|(state, n)| format!("{n} {state}")).collect();
    println!("{}: {} runs: {}", experiment.name, runs.len(), summary.join(", "));
    Ok(())
}
