//! `longmem plan <experiment>`: the expanded runs, their state, and the work they take.

use crate::cli::PlanArgs;
use crate::harness::experiment::{Experiment, PlannedRun, Stage};
use crate::harness::runner::{status, Status};
use crate::methods::forward_flops_per_token;

pub fn run(args: &PlanArgs) -> anyhow::Result<()> {
    let experiment = Experiment::load(&args.experiment)?;
    // Input files need not exist here: a paper-scale experiment plans on any machine.
    let runs = experiment.plan_checking(false)?;
    println!(
        "{} ({}): {} runs under {}",
        experiment.name,
        experiment.file.display(),
        runs.len(),
        experiment.runs_dir.display()
    );
    let (mut done, mut failed, mut flops_todo, mut tokens_todo) = (0, 0, 0.0, 0.0);
    for run in &runs {
        let state = match status(&run.dir) {
            Some(Status::Done { .. }) => {
                done += 1;
                "done"
            }
            Some(Status::Failed { .. }) => {
                failed += 1;
                "failed"
            }
            Some(Status::Running { .. }) => "started",
            Some(Status::Interrupted { .. }) => "interrupted",
            None => "to do",
        };
        let (tokens, flops) = work(run);
        if state != "done" {
            tokens_todo += tokens;
            flops_todo += flops;
        }
        let mut params = vec![format!("seed={}", run.spec.seed)];
        params.extend(run.params.iter().map(|(k, v)| format!("{k}={v}")));
        println!(
            "  {:<8} {:<22} {:<7} {:>9.2e} tokens  {}",
            run.stage.to_string(),
            run.id,
            state,
            tokens,
            params.join(" ")
        );
    }
    // Two reference rates: the tiny models of experiments/ sustain about 50 GFLOP/s on 2 CPU
    // cores; a large model on one H100-class GPU about 200 TFLOP/s (a quarter of bf16 peak).
    println!(
        "{done} done, {failed} failed, {} to do: about {tokens_todo:.2e} tokens, {flops_todo:.2e} FLOPs: \
         {} at 50 GFLOP/s (2 CPU cores), {} at 200 TFLOP/s (one GPU)",
        runs.len() - done,
        duration(flops_todo / 50e9),
        duration(flops_todo / 200e12)
    );
    Ok(())
}

/// Tokens a run processes and their FLOPs: training takes about three forward passes per
/// token (forward and backward).
fn work(run: &PlannedRun) -> (f64, f64) {
    let spec = &run.spec;
    let per_token = forward_flops_per_token(&spec.flop_shape(spec.segment_len));
    match run.stage {
        Stage::Pretrain | Stage::Train => {
            let tokens = (spec.train.steps * (spec.batch_size * spec.segment_len) as u64) as f64;
            (tokens, 3.0 * per_token * tokens)
        }
        // Evaluation reads a bounded number of held-out documents; count one document per row.
        Stage::Eval | Stage::Icl => {
            let tokens = (spec.batch_size * spec.segment_len * 64) as f64;
            (tokens, per_token * tokens)
        }
    }
}

/// `42 s`, `3.5 min`, `7.2 h`, `12.0 days`.
fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 60.0 => format!("{s:.0} s"),
        s if s < 3600.0 => format!("{:.1} min", s / 60.0),
        s if s < 86400.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} days", s / 86400.0),
    }
}
