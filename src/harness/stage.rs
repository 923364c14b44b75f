//! The stages a run goes through, as library functions with typed requests and results:
//! [`train_run`] trains a spec's method into a directory, resumably; [`evaluate_run`]
//! evaluates a trained run. The sweep runner (harness/runner.rs) and the CLI
//! (commands/train.rs, commands/eval.rs) both call them.

use super::experiment::EvalPoint;
use crate::config::{self, Spec};
use crate::eval::result::{EvalResult, IclResult, SuffixResult};
use crate::eval::run::{self, PerplexitySettings};
use crate::eval::{result_file_name, PAPER_LENGTH_EDGES};
use crate::fsutil::write_json_atomic;
use crate::methods::MethodModel;
use crate::models::weights;
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
    if !spec.trains() {
        let what = match &spec.sidenet_weights {
            Some(w) => format!("its SideNet is given (sidenet.weights = {})", w.display()),
            None => format!("method {} is the backbone as it is", spec.method),
        };
        bail!("{what} and has nothing to train; evaluate it with `longmem eval`");
    }
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

/// How to evaluate a trained run (the `longmem eval` flags; an experiment's `[eval]` and
/// evaluation point).
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    /// See [`PerplexitySettings::documents`].
    pub documents: Option<u64>,
    /// A longer local window (the long-window plain reference).
    pub window: Option<usize>,
    /// Close the memory gates (the no-memory ablation).
    pub no_memory: bool,
    /// Another memory than the trained one (memory methods).
    pub memory: EvalPoint,
    /// Document-length bucket edges (default: the paper's).
    pub length_buckets: Option<Vec<usize>>,
    /// Changes to the generator's `[data]` settings for the held-out documents.
    pub data: Option<toml::Table>,
    /// Batch rows of the evaluation (default: the spec's batch size).
    pub rows: Option<usize>,
    /// Skip the long-text evaluation (ICL only).
    pub icl_only: bool,
    /// Skip the ICL evaluation.
    pub no_icl: bool,
    /// Run the suffix-identification (`[chapterbreak]`) evaluation only.
    pub chapterbreak_only: bool,
    /// Skip the suffix-identification evaluation.
    pub no_chapterbreak: bool,
    /// Held-out documents come from the seed plus this offset.
    pub seed_offset: u64,
}

/// Evaluate the run `spec` trained, whose weights are in `weights_dir`, into `out_dir`.
#[derive(Debug, Clone)]
pub struct EvalRequest<'a> {
    pub spec: &'a Spec,
    pub weights_dir: &'a Path,
    pub out_dir: &'a Path,
    pub options: &'a EvalOptions,
    /// Names the spec in messages.
    pub spec_name: &'a Path,
}

/// What [`evaluate_run`] wrote: each file with its contents.
#[derive(Debug, Default)]
pub struct EvalOutcome {
    pub perplexity: Option<(PathBuf, EvalResult)>,
    pub icl: Option<(PathBuf, IclResult)>,
    pub chapterbreak: Option<(PathBuf, SuffixResult)>,
}

impl EvalOutcome {
    /// What the evaluation found, line by line, `label` naming the run.
    pub fn describe(&self, label: &str) -> String {
        let perplexity = self.perplexity.iter().map(|(path, r)| r.describe(label, path));
        let icl = self.icl.iter().map(|(path, r)| r.describe(label, path));
        let cb = self.chapterbreak.iter().map(|(path, r)| r.describe(label, path));
        perplexity.chain(icl).chain(cb).map(|text| text + "\n").collect()
    }
}

/// Evaluates a trained run as `request` says: checks the options against the method,
/// builds the model with the memory asked for, loads the trained weights, closes the gates
/// for the ablation, then runs the long-text and ICL evaluations, writing each result file
/// as soon as it is done.
pub fn evaluate_run(request: &EvalRequest) -> anyhow::Result<EvalOutcome> {
    let EvalRequest {
        spec,
        weights_dir,
        out_dir,
        options: o,
        spec_name,
    } = *request;
    let spec = &eval_spec(spec, o)?;
    let device = spec.device.resolve()?;
    let window = match o.window {
        None => spec.segment_len,
        Some(w) => spec.check_window(w).map_err(|e| anyhow::anyhow!("--window {e}"))?,
    };
    let build = |spec: &Spec| trained_model(spec, weights_dir, spec_name, o.no_memory, device);
    // ICL runs with its own memory size where `icl.memory_size` sets one and the command
    // line does not.
    let icl_spec = match spec.icl.as_ref().and_then(|icl| icl.memory_size) {
        Some(size) if spec.method.has_memory() && o.memory.memory_size.is_none() => spec
            .with_memory(Some(size), None, None)
            .map_err(|e| anyhow::anyhow!("{e} (from icl.memory_size)"))?,
        _ => spec.clone(),
    };
    let mut model = build(if o.icl_only { &icl_spec } else { spec })?;
    // A run with no training stage (frozen, given SideNet weights) has no directory yet.
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let overrides = o.memory.overrides_memory();
    let retrieval = o.memory.retrieval.unwrap_or_default();
    let name = |stem| {
        result_file_name(
            stem,
            o.window,
            o.no_memory,
            overrides.then_some(&spec.memory),
            retrieval,
        )
    };
    let mut outcome = EvalOutcome::default();
    if o.chapterbreak_only {
        outcome.chapterbreak = Some(chapterbreak(model.as_mut(), spec, o, out_dir, spec_name)?);
        return Ok(outcome);
    }
    if !o.icl_only {
        let edges = o.length_buckets.clone().unwrap_or_else(|| PAPER_LENGTH_EDGES.to_vec());
        let settings = PerplexitySettings {
            window,
            documents: o.documents,
            seed_offset: o.seed_offset,
            length_edges: &edges,
            gates_closed: o.no_memory,
            retrieval,
        };
        let result = run::perplexity(model.as_mut(), spec, &settings)?;
        let path = out_dir.join(name("eval"));
        result.write(&path)?;
        outcome.perplexity = Some((path, result));
        // Suffix identification resets memory per example: the same model serves it.
        if spec.chapterbreak.is_some() && o.window.is_none() && !o.no_chapterbreak {
            outcome.chapterbreak = Some(chapterbreak(model.as_mut(), spec, o, out_dir, spec_name)?);
        }
    }
    match &spec.icl {
        Some(icl) if o.window.is_none() && !o.no_icl => {
            if !o.icl_only && icl_spec.memory != spec.memory {
                model = build(&icl_spec)?;
            }
            let result = run::in_context(model.as_mut(), &icl_spec, icl, o.seed_offset, o.no_memory)?;
            let path = out_dir.join(name("icl"));
            result.write(&path)?;
            outcome.icl = Some((path, result));
        }
        None if o.icl_only => bail!(
            "{} has no [icl] section to evaluate; add one (see experiments/icl/)",
            spec_name.display()
        ),
        _ => {}
    }
    Ok(outcome)
}

/// Suffix identification (`[chapterbreak]`) with `model`, written to `chapterbreak*.json`:
/// named by the memory overrides and the closed gates, not the retrieval mode (its scoring
/// retrieves exactly).
fn chapterbreak(
    model: &mut dyn MethodModel,
    spec: &Spec,
    o: &EvalOptions,
    out_dir: &Path,
    spec_name: &Path,
) -> anyhow::Result<(PathBuf, SuffixResult)> {
    let Some(cb) = &spec.chapterbreak else {
        bail!(
            "{} has no [chapterbreak] section to evaluate; add one (see experiments/paper/chapterbreak.toml)",
            spec_name.display()
        );
    };
    let result = run::suffix_identification(model, spec, cb, o.seed_offset, o.no_memory)?;
    let memory = o.memory.overrides_memory().then_some(&spec.memory);
    let path = out_dir.join(result_file_name(
        "chapterbreak",
        None,
        o.no_memory,
        memory,
        Default::default(),
    ));
    result.write(&path)?;
    Ok((path, result))
}

/// The model of `spec` with the weights its run trained (in `weights_dir`), its memory
/// gates closed for the no-memory ablation.
fn trained_model(
    spec: &Spec,
    weights_dir: &Path,
    spec_name: &Path,
    no_memory: bool,
    device: tch::Device,
) -> anyhow::Result<Box<dyn MethodModel>> {
    // The build loads `backbone.weights` (and `sidenet.weights`); a run that trains then
    // takes its own weights.
    let model = spec.build_model(device)?;
    if spec.trains() {
        let file = weights_dir.join(model.weights_file());
        if !file.is_file() {
            bail!(
                "{} does not exist: train the run first (`longmem train {}`)",
                file.display(),
                spec_name.display()
            );
        }
        weights::load_safetensors(model.trained_vs(), &file, &spec.backbone)
            .with_context(|| format!("loading the trained weights of {}", weights_dir.display()))?;
    }
    if no_memory && !run::close_memory_gates(model.as_ref()) {
        bail!("--no-memory ablates a memory model; {} has no memory", spec.method);
    }
    Ok(model)
}

/// The spec evaluated: the trained one with the memory `options` ask for, after checking
/// that the options fit the method.
fn eval_spec(spec: &Spec, o: &EvalOptions) -> anyhow::Result<Spec> {
    if let Some(edges) = &o.length_buckets {
        if edges.is_empty() || edges.windows(2).any(|w| w[0] >= w[1]) {
            bail!("--length-buckets {edges:?}: give increasing token counts, e.g. 5000,10000,100000");
        }
    }
    let m = &o.memory;
    if m.retrieval.is_some() && !spec.method.has_memory() {
        bail!(
            "--retrieval chooses what a memory model retrieves; {} has no memory",
            spec.method
        );
    }
    if m.overrides_memory() && !spec.method.has_memory() {
        bail!(
            "--memory-size, --chunk and --top-k set a memory model's memory; {} has none",
            spec.method
        );
    }
    if o.window.is_some() && spec.method.has_memory() {
        bail!(
            "--window evaluates a plain backbone with a longer local window; {} uses memory instead",
            spec.method
        );
    }
    let mut spec = spec
        .with_memory(m.memory_size, m.chunk, m.top_k)
        .map_err(|e| anyhow::anyhow!("{e} (from --memory-size/--chunk/--top-k)"))?;
    match o.rows {
        Some(0) => bail!("--rows 0: give a positive number of batch rows"),
        Some(rows) => spec.batch_size = rows,
        None => {}
    }
    match &o.data {
        None => Ok(spec),
        Some(changes) => spec
            .with_data_changes(changes)
            .map_err(|e| anyhow::anyhow!("{e} (from --doc-tokens / [eval] data)")),
    }
}
