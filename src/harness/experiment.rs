//! Experiments (docs/ARCHITECTURE.md, "The data flow of a sweep"): one TOML file holds a base run spec, the settings of the
//! shared pretraining stage, evaluation settings and a `[sweep]` block whose lists expand to
//! a grid. Expansion gives the runs, each with an id that hashes its resolved config:
//!
//! - `pretrain`: the backbone, trained once per distinct backbone config: of the sweep, only
//!   `backbone.*` keys reach it. Skipped when the base names `backbone.weights`.
//! - `train`: one per distinct (method, swept training settings) point.
//! - `eval`: one per train run and evaluation point (`eval.memory_size`, `eval.chunk`,
//!   `eval.top_k`: evaluation-time settings, no retraining).
//! - `icl`: one per train run when the base has an `[icl]` section.
//!
//! Runs live in `<runs_dir>/<stage>/<method>-<hash>/`; identical configs share a directory,
//! also across experiments, so shared stages are reused.

use super::run_id::{ignored_sections, run_id};
use super::sweep::{at_point, describe_point, grid, merge, set_path};
use crate::config::{FileChecks, Spec, SpecError};
use crate::fsutil::resolve_path;
use crate::memory::Retrieval;
use crate::methods::Method;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Sweep keys that set evaluation points rather than training runs.
const EVAL_SWEEP_KEYS: [&str; 5] = [
    "eval.memory_size",
    "eval.chunk",
    "eval.top_k",
    "eval.retrieval",
    "eval.window",
];

/// The one evaluation point key of methods without memory: their local window.
const WINDOW_KEY: &str = "eval.window";

/// The `[eval]` settings every evaluation run of an experiment shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSettings {
    /// Held-out documents each evaluation reads, whole: for the generators (recall, demos) N
    /// per batch row (default 8); for a corpus its first N held-out documents in id order,
    /// each read once (default all), which bounds evaluation time. As `longmem eval --documents`.
    pub documents: Option<u64>,
    /// Held-out documents come from the seed plus this offset.
    #[serde(default = "default_seed_offset")]
    pub seed_offset: u64,
    /// Document-length bucket edges in tokens (default: the paper's).
    pub length_buckets: Option<Vec<usize>>,
    /// Changes to a built-in generator's `[data]` settings for the held-out documents
    /// (e.g. `{ doc_tokens = 131072 }`: longer documents than trained on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<toml::Table>,
    /// Batch rows (streams) of the evaluation (default: the spec's `train.batch_size`); with
    /// `documents`, what bounds the tokens an evaluation reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
}

fn default_seed_offset() -> u64 {
    1000
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self {
            documents: None,
            seed_offset: default_seed_offset(),
            length_buckets: None,
            data: None,
            rows: None,
        }
    }
}

/// One evaluation point: the memory an evaluation runs with (`None`: the trained one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalPoint {
    pub memory_size: Option<i64>,
    pub chunk: Option<i64>,
    pub top_k: Option<i64>,
    /// Exact retrieval (`None`), or the oracle or random bound. Left out of the JSON (and so
    /// of the run id) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<Retrieval>,
    /// A methods without memory evaluated with this local window instead of its trained
    /// segment length (the long-window reference). Left out of the JSON when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
}

impl EvalPoint {
    /// Whether the point changes the memory's shape (M, c or K).
    pub fn overrides_memory(&self) -> bool {
        self.memory_size.is_some() || self.chunk.is_some() || self.top_k.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Pretrain,
    Train,
    Eval,
    Icl,
    /// Suffix identification (`[chapterbreak]`).
    ChapterBreak,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Pretrain => "pretrain",
            Stage::Train => "train",
            Stage::Eval => "eval",
            Stage::Icl => "icl",
            Stage::ChapterBreak => "chapterbreak",
        })
    }
}

/// One run of an expanded experiment.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    /// `<method>-<12 hex digits of the config hash>`.
    pub id: String,
    pub stage: Stage,
    /// The resolved spec.
    pub spec: Spec,
    /// The run's directory.
    pub dir: PathBuf,
    /// Where the trained weights are: the run's own directory for pretrain and train runs,
    /// the train run's for eval and icl runs.
    pub weights_dir: PathBuf,
    /// The run this one needs first.
    pub depends_on: Option<String>,
    /// Evaluation point (eval runs).
    pub eval: Option<EvalPoint>,
    /// Swept parameters and their values at this run, for tables.
    pub params: BTreeMap<String, String>,
}

/// An experiment file, parsed and checked.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub file: PathBuf,
    pub runs_dir: PathBuf,
    pub eval: EvalSettings,
    /// The `[slurm]` block: resources for `longmem slurm`.
    pub slurm: crate::config::SlurmSettings,
    base: Table,
    pretrain: Vec<(String, Value)>,
    sweep: Vec<(String, Vec<Value>)>,
    eval_sweep: Vec<(String, Vec<Value>)>,
}

/// An experiment's error: the file, then what is wrong.
fn invalid(file: &Path, key: &str, value: &dyn std::fmt::Display, allowed: &str) -> SpecError {
    SpecError::Invalid {
        path: file.into(),
        key: key.into(),
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

impl Experiment {
    pub fn load(file: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(file).map_err(|source| SpecError::Read {
            path: file.into(),
            source,
        })?;
        let mut base: Table = toml::from_str(&text).map_err(|e| SpecError::Parse {
            path: file.into(),
            message: e.to_string(),
        })?;
        let name = match base.remove("name") {
            None => file
                .file_stem()
                .map_or("experiment".into(), |s| s.to_string_lossy().into_owned()),
            Some(Value::String(s)) if !s.is_empty() && !s.contains(['/', '\\']) => s,
            Some(v) => return Err(invalid(file, "name", &v, "a non-empty string without slashes")),
        };
        let parent = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base_dir = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
        let runs_dir = match base.remove("runs_dir") {
            None => resolve_path(&base_dir, Path::new("../runs")),
            Some(Value::String(s)) => resolve_path(&base_dir, Path::new(&s)),
            Some(v) => return Err(invalid(file, "runs_dir", &v, "a directory path (relative to the file)")),
        };
        if base.contains_key("out_dir") {
            return Err(invalid(
                file,
                "out_dir",
                &"(set)",
                "absent in an experiment: its runs go under runs_dir/<stage>/<id>/",
            ));
        }
        let pretrain = take_table(file, "pretrain", &mut base)?;
        let slurm = Value::Table(take_table(file, "slurm", &mut base)?.into_iter().collect())
            .try_into()
            .map_err(|e: toml::de::Error| invalid(file, "slurm", &"(table)", &e.to_string()))?;
        let eval: EvalSettings = Value::Table(take_table(file, "eval", &mut base)?.into_iter().collect())
            .try_into()
            .map_err(|e: toml::de::Error| invalid(file, "eval", &"(table)", &e.to_string()))?;
        let (sweep, eval_sweep) = split_sweep(file, take_table(file, "sweep", &mut base)?)?;
        Ok(Self {
            name,
            file: file.to_path_buf(),
            runs_dir,
            eval,
            slurm,
            base,
            pretrain,
            sweep,
            eval_sweep,
        })
    }

    /// Expands the grid into runs in dependency order (pretrain, train, eval, icl), one per
    /// distinct config. Every point is resolved and validated first: an impossible
    /// combination is an error naming the point, before anything runs.
    pub fn plan(&self) -> Result<Vec<PlannedRun>, SpecError> {
        self.plan_checking(true)
    }

    /// [`Experiment::plan`]; with `strict = false` input files (data, weights) need not
    /// exist, so a paper-scale experiment can be planned on a machine without its data.
    pub fn plan_checking(&self, strict: bool) -> Result<Vec<PlannedRun>, SpecError> {
        let (checks, upstream_checks) = if strict {
            (FileChecks::All, FileChecks::NotWeights)
        } else {
            (FileChecks::None, FileChecks::None)
        };
        let mut runs = Runs::default();
        let explicit_weights = self
            .base
            .get("backbone")
            .and_then(Value::as_table)
            .is_some_and(|b| b.contains_key("weights"));
        for point in grid(&self.sweep) {
            let describe = || describe_point(&point);
            let mut table = self.point_table(&point)?;
            let mut upstream = None;
            if !explicit_weights {
                let pre = self
                    .pretrain_run(&point, checks)
                    .map_err(|e| at_point(e, &describe()))?;
                let weights = pre.dir.join("backbone.safetensors");
                set_path(
                    &mut table,
                    "backbone.weights",
                    Value::String(weights.display().to_string()),
                );
                upstream = Some(pre.id.clone());
                runs.push(pre);
            }
            let checks = if explicit_weights { checks } else { upstream_checks };
            let spec = Spec::from_table(table, &self.file, checks).map_err(|e| at_point(e, &describe()))?;
            let id = run_id(&spec, upstream.as_deref(), "");
            let dir = self.run_dir(Stage::Train, &id);
            let trained = PlannedRun {
                id,
                stage: Stage::Train,
                params: relevant_params(&point, spec.method),
                spec,
                weights_dir: dir.clone(),
                dir,
                depends_on: upstream,
                eval: None,
            };
            let mut evals = self.eval_runs(&trained)?;
            evals.extend(self.icl_run(&trained));
            evals.extend(self.chapterbreak_run(&trained));
            if trained.spec.trains() {
                runs.push(trained);
            } else {
                // Evaluated as it is: its evaluations wait for the pretrained backbone only.
                for run in &mut evals {
                    run.depends_on.clone_from(&trained.depends_on);
                    run.weights_dir.clone_from(&run.dir);
                }
            }
            evals.into_iter().for_each(|run| runs.push(run));
        }
        let mut runs = runs.runs;
        runs.sort_by_key(|r| r.stage);
        Ok(runs)
    }

    /// Where a run of `stage` with id `id` lives.
    fn run_dir(&self, stage: Stage, id: &str) -> PathBuf {
        self.runs_dir.join(stage.to_string()).join(id)
    }

    /// The base table with a sweep point's preset and settings applied.
    fn point_table(&self, point: &[(String, Value)]) -> Result<Table, SpecError> {
        let mut table = self.base.clone();
        let preset = point
            .iter()
            .find(|(k, _)| k == "preset")
            .map(|(_, v)| v.clone())
            .or_else(|| table.remove("preset"));
        if let Some(name) = preset {
            table = apply_preset(&self.file, &name, table).map_err(|e| at_point(e, &describe_point(point)))?;
        }
        for (key, value) in point.iter().filter(|(k, _)| k != "preset") {
            set_path(&mut table, key, value.clone());
        }
        if table.get("method").and_then(Value::as_str) == Some("pretrain") {
            return Err(invalid(
                &self.file,
                "method",
                &"pretrain",
                "longmem, memtrm, plain or frozen: the pretraining stage is implicit ([pretrain] sets it)",
            ));
        }
        Ok(table)
    }

    /// The evaluation runs of a train run: one per point of the evaluation grid, whose
    /// `eval.window` values apply to methods without memory and its other keys (the memory's
    /// shape, the retrieval) to methods with memory. The window of a memory method, and the
    /// window of a method without memory at its trained length, is its trained segment.
    fn eval_runs(&self, trained: &PlannedRun) -> Result<Vec<PlannedRun>, SpecError> {
        let spec = &trained.spec;
        let has_memory = spec.method.has_memory();
        let keys: Vec<(String, Vec<Value>)> = self
            .eval_sweep
            .iter()
            .filter(|(key, _)| (key == WINDOW_KEY) != has_memory)
            .cloned()
            .collect();
        let eval_grid = grid(&keys);
        if self.eval.rows == Some(0) {
            return Err(invalid(&self.file, "eval.rows", &0, "a positive number of batch rows"));
        }
        if let Some(changes) = &self.eval.data {
            spec.with_data_changes(changes)
                .map_err(|e| invalid(&self.file, "eval.data", &Value::Table(changes.clone()), &e))?;
        }
        let mut runs = vec![];
        for eval_values in eval_grid {
            let mut point = eval_point(&eval_values);
            // The trained window is the trained evaluation, under its own id.
            point.window = point.window.filter(|&w| w != spec.segment_len);
            if let Some(window) = point.window {
                spec.check_window(window)
                    .map_err(|e| invalid(&self.file, "sweep.\"eval.window\"", &(window as i64), &e))?;
            }
            let resolved = spec
                .with_memory(point.memory_size, point.chunk, point.top_k)
                .map_err(|e| invalid(&self.file, "sweep", &describe_point(&eval_values), &e))?;
            let salt = serde_json::to_string(&(&point, &self.eval)).expect("serialisable");
            let eval_id = run_id(spec, Some(&trained.id), &salt);
            let mut eval_params = trained.params.clone();
            if has_memory {
                eval_params.insert("memory_size".into(), resolved.memory.size.to_string());
                eval_params.insert("chunk".into(), resolved.memory.chunk.to_string());
                eval_params.insert("top_k".into(), resolved.memory.k.to_string());
            }
            if let Some(retrieval) = point.retrieval {
                eval_params.insert("retrieval".into(), retrieval.to_string());
            }
            if let Some(window) = point.window {
                eval_params.insert("window".into(), window.to_string());
            }
            runs.push(PlannedRun {
                dir: self.run_dir(Stage::Eval, &eval_id),
                id: eval_id,
                stage: Stage::Eval,
                spec: spec.clone(),
                weights_dir: trained.dir.clone(),
                depends_on: Some(trained.id.clone()),
                eval: Some(point),
                params: eval_params,
            });
        }
        Ok(runs)
    }

    /// The suffix-identification run of a train run whose spec has a `[chapterbreak]`
    /// section, at the trained memory.
    fn chapterbreak_run(&self, trained: &PlannedRun) -> Option<PlannedRun> {
        let cb = trained.spec.chapterbreak.as_ref()?;
        let salt = serde_json::to_string(&("chapterbreak", cb, self.eval.seed_offset)).expect("serialisable");
        Some(self.task_run(trained, Stage::ChapterBreak, &salt))
    }

    /// The in-context learning run of a train run whose spec has an `[icl]` section.
    fn icl_run(&self, trained: &PlannedRun) -> Option<PlannedRun> {
        let icl = trained.spec.icl.as_ref()?;
        let salt = serde_json::to_string(&(icl, self.eval.seed_offset)).expect("serialisable");
        Some(self.task_run(trained, Stage::Icl, &salt))
    }

    /// A `stage` run on `trained`'s weights, its id salted with the task's settings.
    fn task_run(&self, trained: &PlannedRun, stage: Stage, salt: &str) -> PlannedRun {
        let id = run_id(&trained.spec, Some(&trained.id), salt);
        PlannedRun {
            dir: self.run_dir(stage, &id),
            id,
            stage,
            spec: trained.spec.clone(),
            weights_dir: trained.dir.clone(),
            depends_on: Some(trained.id.clone()),
            eval: None,
            params: trained.params.clone(),
        }
    }

    /// The pretraining run a sweep point needs: the base with the point's `backbone.*`
    /// settings, then `[pretrain]`'s, as method `pretrain`. Other swept settings (seed,
    /// method, training and data settings) are the method stage's.
    fn pretrain_run(&self, point: &[(String, Value)], checks: FileChecks) -> Result<PlannedRun, SpecError> {
        let mut table = self.base.clone();
        table.remove("preset");
        for (key, value) in point.iter().filter(|(k, _)| k.starts_with("backbone.")) {
            set_path(&mut table, key, value.clone());
        }
        table.remove("icl");
        table.remove("chapterbreak");
        for (key, value) in &self.pretrain {
            set_path(&mut table, key, value.clone());
        }
        set_path(&mut table, "method", Value::String("pretrain".into()));
        let spec = Spec::from_table(table, &self.file, checks)?;
        let id = run_id(&spec, None, "");
        let dir = self.run_dir(Stage::Pretrain, &id);
        Ok(PlannedRun {
            id,
            stage: Stage::Pretrain,
            spec,
            weights_dir: dir.clone(),
            dir,
            depends_on: None,
            eval: None,
            params: BTreeMap::new(),
        })
    }
}

/// Removes `key` from the experiment's top level: absent is empty, anything but a table an error.
fn take_table(file: &Path, key: &str, base: &mut Table) -> Result<Vec<(String, Value)>, SpecError> {
    match base.remove(key) {
        None => Ok(Vec::new()),
        Some(Value::Table(t)) => Ok(t.into_iter().collect()),
        Some(v) => Err(invalid(file, key, &v, "a table")),
    }
}

/// The `[sweep]` block split into run settings and evaluation points (`eval.*` keys), each
/// checked.
#[allow(clippy::type_complexity)]
fn split_sweep(
    file: &Path,
    sweep: Vec<(String, Value)>,
) -> Result<(Vec<(String, Vec<Value>)>, Vec<(String, Vec<Value>)>), SpecError> {
    let (mut runs, mut evals) = (Vec::new(), Vec::new());
    for (key, value) in sweep {
        let at = format!("sweep.\"{key}\"");
        let values = match value {
            Value::Array(a) if !a.is_empty() => a,
            v => return Err(invalid(file, &at, &v, "a non-empty list of values")),
        };
        if key.starts_with("eval.") {
            if !EVAL_SWEEP_KEYS.contains(&key.as_str()) {
                return Err(invalid(
                    file,
                    &at,
                    &"(list)",
                    "an evaluation point key: eval.memory_size, eval.chunk, eval.top_k, eval.retrieval or eval.window",
                ));
            }
            if key == "eval.retrieval" {
                if let Some(bad) = values.iter().find(|v| retrieval_of(v).is_none()) {
                    return Err(invalid(file, &at, bad, "\"exact\", \"oracle\" or \"random\""));
                }
            } else if let Some(bad) = values.iter().find(|v| v.as_integer().is_none_or(|n| n <= 0)) {
                return Err(invalid(file, &at, bad, "positive integers (tokens)"));
            }
            evals.push((key, values));
        } else if key == "out_dir" || key == "pretrain" {
            return Err(invalid(file, &at, &"(list)", "a run setting"));
        } else {
            runs.push((key, values));
        }
    }
    Ok((runs, evals))
}

/// Planned runs without duplicates: identical configs share a directory, so a run whose
/// directory is already planned is planned once.
#[derive(Default)]
struct Runs {
    runs: Vec<PlannedRun>,
    seen: std::collections::HashSet<PathBuf>,
}

impl Runs {
    fn push(&mut self, run: PlannedRun) {
        if self.seen.insert(run.dir.clone()) {
            self.runs.push(run);
        }
    }
}

/// The swept parameters that matter for `method`: of the method-specific sections
/// (`METHOD_SECTIONS` in harness/run_id.rs) only those the method reads ([`Method::sections`]). The method and
/// the seed have columns of their own.
fn relevant_params(point: &[(String, Value)], method: Method) -> BTreeMap<String, String> {
    let ignored = ignored_sections(method);
    point
        .iter()
        .filter(|(k, _)| k != "method" && k != "seed")
        .filter(|(k, _)| {
            !ignored
                .iter()
                .any(|s| k.strip_prefix(s).is_some_and(|rest| rest.starts_with('.')))
        })
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

/// The evaluation point a set of `eval.*` sweep values names.
fn eval_point(values: &[(String, Value)]) -> EvalPoint {
    let get = |key: &str| values.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.as_integer());
    EvalPoint {
        memory_size: get("eval.memory_size"),
        chunk: get("eval.chunk"),
        top_k: get("eval.top_k"),
        retrieval: values
            .iter()
            .find(|(k, _)| k == "eval.retrieval")
            .and_then(|(_, v)| retrieval_of(v))
            .filter(|r| *r != Retrieval::Exact),
        window: get(WINDOW_KEY).map(|w| w as usize),
    }
}

/// The retrieval a sweep value names.
fn retrieval_of(value: &Value) -> Option<Retrieval> {
    value
        .as_str()
        .and_then(|s| Retrieval::deserialize(Value::String(s.into())).ok())
}

/// Where method presets live: `baselines/methods/<name>.toml`.
pub fn presets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("baselines/methods")
}

/// `table` over the preset `name`'s settings: the preset sets the method and the defaults
/// of its sections; every key the experiment sets itself wins.
fn apply_preset(file: &Path, name: &Value, table: Table) -> Result<Table, SpecError> {
    let dir = presets_dir();
    let known = || -> String {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".toml").map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        format!("a preset in {}: {}", dir.display(), names.join(", "))
    };
    let Some(name) = name.as_str() else {
        return Err(invalid(file, "preset", name, &known()));
    };
    let path = dir.join(format!("{name}.toml"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Err(invalid(file, "preset", &name, &known()));
    };
    let mut merged: Table = toml::from_str(&text).map_err(|e| SpecError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let method = merged.get("method").cloned();
    merge(&mut merged, table);
    if let Some(method) = method {
        merged.insert("method".into(), method);
    }
    Ok(merged)
}
