//! `longmem slurm <experiment> [--runs-per-task N] [--submit]`: a Slurm job array for the
//! experiment's sweep.

use crate::cli::SlurmArgs;
use crate::cluster::slurm::{script, task_count, write_script};
use crate::harness::experiment::Experiment;
use anyhow::{bail, Context};

pub fn run(args: &SlurmArgs) -> anyhow::Result<()> {
    let experiment = Experiment::load(&args.experiment)?;
    // Checked before anything is submitted; the cluster's files must exist where it runs,
    // so only the form is checked here when they are not visible.
    let runs = experiment.plan_checking(false)?;
    let tasks = task_count(&runs, args.runs_per_task.unwrap_or(1));
    let settings = experiment.slurm.clone().with(&args.resources);
    let exe = std::env::current_exe().context("locating the longmem binary")?;
    let path = write_script(&experiment, &script(&experiment, &settings, tasks, &exe)?)?;
    if !args.submit {
        println!("{}: {tasks} array tasks over {} runs", experiment.name, runs.len());
        println!("script: {}", path.display());
        println!("submit: sbatch {}", path.display());
        return Ok(());
    }
    let out = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(&path)
        .output()
        .context("running sbatch (is Slurm installed here?)")?;
    if !out.status.success() {
        bail!(
            "sbatch {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    println!("{job}");
    eprintln!(
        "submitted job array {job} ({tasks} tasks); follow it with `longmem status {}`",
        args.experiment.display()
    );
    Ok(())
}
