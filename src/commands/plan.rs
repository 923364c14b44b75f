//! `longmem plan <experiment>`: the expanded runs, their state, and the work they take.

use crate::cli::PlanArgs;
use crate::config::{self, Spec};
use crate::eval::tokens_to_cover;
use crate::harness::experiment::{EvalSettings, Experiment, PlannedRun, Stage};
use crate::harness::runner::{status, Status};
use crate::methods::forward_flops_per_token;
use std::collections::HashMap;

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
    let mut held_out = HeldOutTokens::new(&experiment.eval);
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
        let (tokens, flops) = work(run, &mut held_out);
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
    for note in &held_out.notes {
        println!("note: {note}");
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
/// token (forward and backward); an evaluation reads its held-out documents, with its own
/// local window where it has one (`eval.window`).
fn work(run: &PlannedRun, held_out: &mut HeldOutTokens) -> (f64, f64) {
    let spec = &run.spec;
    let window = run
        .eval
        .as_ref()
        .and_then(|point| point.window)
        .unwrap_or(spec.segment_len);
    let per_token = forward_flops_per_token(&spec.flop_shape(window));
    match run.stage {
        Stage::Pretrain | Stage::Train => {
            let tokens = (spec.train.steps * (spec.batch_size * spec.segment_len) as u64) as f64;
            (tokens, 3.0 * per_token * tokens)
        }
        Stage::Eval => {
            let tokens = held_out.of(spec).unwrap_or_else(|| rough_eval_tokens(spec));
            (tokens, per_token * tokens)
        }
        Stage::Icl | Stage::ChapterBreak => {
            let tokens = rough_eval_tokens(spec);
            (tokens, per_token * tokens)
        }
    }
}

/// An evaluation's tokens where they cannot be counted: 64 segments per batch row.
fn rough_eval_tokens(spec: &Spec) -> f64 {
    (spec.batch_size * spec.segment_len * 64) as f64
}

/// The tokens of the held-out documents each evaluation reads (the experiment's `[eval]`
/// settings: `documents`, `seed_offset`). A corpus is read and tokenised (through the token
/// cache) once per data section; one whose data is not on this machine gets a note.
struct HeldOutTokens<'a> {
    settings: &'a EvalSettings,
    /// By the data section's JSON; `None`: not readable here.
    corpora: HashMap<String, Option<f64>>,
    notes: Vec<String>,
}

impl<'a> HeldOutTokens<'a> {
    fn new(settings: &'a EvalSettings) -> Self {
        Self {
            settings,
            corpora: HashMap::new(),
            notes: Vec::new(),
        }
    }

    /// The held-out tokens an evaluation of `spec` reads; `None` where its data is not here.
    fn of(&mut self, spec: &Spec) -> Option<f64> {
        let mut spec = match &self.settings.data {
            Some(changes) => spec.with_data_changes(changes).ok()?,
            None => spec.clone(),
        };
        if let Some(rows) = self.settings.rows {
            spec.batch_size = rows;
        }
        let spec = &spec;
        let count = || -> anyhow::Result<f64> {
            let (source, per_row) = config::held_out(
                spec,
                self.settings.seed_offset,
                spec.batch_size,
                self.settings.documents,
            )?;
            Ok(tokens_to_cover(&source, spec.batch_size, per_row) as f64)
        };
        if spec.data.is_generated() {
            // Generated: cheap, and the documents depend on the seed and the rows.
            return count().ok();
        }
        // A corpus's held-out documents depend on its data section alone.
        let key = serde_json::to_string(&spec.data).expect("data sections serialise");
        if let Some(&known) = self.corpora.get(&key) {
            return known;
        }
        let known = count()
            .map_err(|e| {
                self.notes.push(format!(
                    "{e}: evaluations of this data are estimated at batch_size × segment_len × 64 tokens each"
                ))
            })
            .ok();
        self.corpora.insert(key, known);
        known
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
