//! Reports: every finished evaluation of one or more experiments collected into rows (one
//! per run and metric, every swept parameter a column), aggregated over seeds, written as
//! Parquet and CSV with polars, drawn with plotters, and summed up in REPORT.md. Runs are
//! read from their directories through the result types of `src/eval/result.rs`; the
//! metrics they give are `metrics.rs`'s registry.

pub mod charts;
mod distance;
pub mod markdown;
pub mod metrics;
mod suffix;
pub mod tables;
mod view;

use crate::eval::result::{EvalResult, IclResult, SuffixResult};
use crate::harness::experiment::{Experiment, PlannedRun, Stage};
use crate::harness::runner::{status, Metadata, Status};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::Path;

/// One measured value of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub experiment: String,
    pub stage: Stage,
    pub run: String,
    pub method: String,
    pub seed: u64,
    /// A replicate within the run (an ICL seed); 0 otherwise.
    pub rep: u64,
    pub params: BTreeMap<String, String>,
    pub metric: String,
    pub value: f64,
}

/// Everything a report is made of.
pub struct Collected {
    pub experiments: Vec<Experiment>,
    pub rows: Vec<MetricRow>,
    /// Metadata of one finished run (versions, device, commit), for the setup section.
    pub metadata: Option<Metadata>,
    /// Runs planned, finished, failed.
    pub counts: (usize, usize, usize),
}

/// Reads every finished eval and icl run of `experiments`. Only their run directories are
/// read: the experiments' data and weights need not be on this machine.
pub fn collect(files: &[std::path::PathBuf]) -> anyhow::Result<Collected> {
    let mut experiments = Vec::new();
    let mut rows = Vec::new();
    let mut metadata = None;
    let (mut planned, mut finished, mut failed) = (0, 0, 0);
    for file in files {
        let experiment = Experiment::load(file)?;
        let runs = experiment.plan_checking(false)?;
        for run in &runs {
            planned += 1;
            match status(&run.dir) {
                Some(Status::Done { .. }) => finished += 1,
                Some(Status::Failed { .. }) => {
                    failed += 1;
                    continue;
                }
                _ => continue,
            }
            if metadata.is_none() {
                metadata = std::fs::read_to_string(run.dir.join("metadata.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok());
            }
            match run.stage {
                Stage::Eval => rows.extend(eval_rows(&experiment, run)?),
                Stage::Icl => rows.extend(icl_rows(&experiment, run)?),
                Stage::ChapterBreak => rows.extend(chapterbreak_rows(&experiment, run)?),
                Stage::Train => rows.extend(staleness_rows(&experiment, run)?),
                Stage::Pretrain => {}
            }
        }
        experiments.push(experiment);
    }
    Ok(Collected {
        experiments,
        rows,
        metadata,
        counts: (planned, finished, failed),
    })
}

fn row(
    experiment: &Experiment,
    run: &PlannedRun,
    rep: u64,
    params: &BTreeMap<String, String>,
) -> impl Fn(&str, f64) -> MetricRow {
    let (experiment, stage, id, method, seed) = (
        experiment.name.clone(),
        run.stage,
        run.id.clone(),
        run.spec.method.to_string(),
        run.spec.seed,
    );
    let params = params.clone();
    move |metric: &str, value: f64| MetricRow {
        experiment: experiment.clone(),
        stage,
        run: id.clone(),
        method: method.clone(),
        seed,
        rep,
        params: params.clone(),
        metric: metric.to_string(),
        value,
    }
}

fn eval_rows(experiment: &Experiment, run: &PlannedRun) -> anyhow::Result<Vec<MetricRow>> {
    let result = EvalResult::read(&run.dir.join(eval_file_name(run)))?;
    let make = row(experiment, run, 0, &run.params);
    Ok(metrics::eval_values(&result)
        .into_iter()
        .map(|(metric, value)| make(&metric, value))
        .collect())
}

/// A training run's memory staleness, when it measured it (`staleness.csv`).
fn staleness_rows(experiment: &Experiment, run: &PlannedRun) -> anyhow::Result<Vec<MetricRow>> {
    let path = run.dir.join("staleness.csv");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let measured: Vec<crate::train::records::StalenessRow> = csv::Reader::from_path(&path)
        .and_then(|mut reader| reader.deserialize().collect())
        .with_context(|| format!("reading {}", path.display()))?;
    let make = row(experiment, run, 0, &run.params);
    Ok(metrics::staleness_values(&measured, run.spec.segment_len)
        .into_iter()
        .map(|(metric, value)| make(&metric, value))
        .collect())
}

fn icl_rows(experiment: &Experiment, run: &PlannedRun) -> anyhow::Result<Vec<MetricRow>> {
    let result = IclResult::read(&run.dir.join(crate::eval::result_file_name(
        "icl",
        None,
        false,
        None,
        Default::default(),
    )))?;
    let mut rows = Vec::new();
    for r in &result.rows {
        let mut params = run.params.clone();
        params.insert("task".into(), r.task.clone());
        params.insert("local_shots".into(), r.local_shots.to_string());
        params.insert("memory_shots".into(), r.memory_shots.to_string());
        let make = row(experiment, run, r.seed, &params);
        rows.extend(
            metrics::icl_values(r)
                .into_iter()
                .map(|(metric, value)| make(metric, value)),
        );
    }
    Ok(rows)
}

fn chapterbreak_rows(experiment: &Experiment, run: &PlannedRun) -> anyhow::Result<Vec<MetricRow>> {
    let name = crate::eval::result_file_name("chapterbreak", None, false, None, Default::default());
    let result = SuffixResult::read(&run.dir.join(name))?;
    let mut rows = Vec::new();
    for s in &result.sources {
        let mut params = run.params.clone();
        params.insert("source".into(), s.source.clone());
        let make = row(experiment, run, 0, &params);
        rows.extend(
            metrics::suffix_values(s)
                .into_iter()
                .map(|(metric, value)| make(metric, value)),
        );
    }
    Ok(rows)
}

/// The file an eval run writes: `eval.json`, or with its memory overrides in the name.
fn eval_file_name(run: &PlannedRun) -> String {
    let point = run.eval.clone().unwrap_or_default();
    let overrides = point.overrides_memory();
    let memory = run
        .spec
        .with_memory(point.memory_size, point.chunk, point.top_k)
        .map(|s| s.memory)
        .unwrap_or_else(|_| run.spec.memory.clone());
    crate::eval::result_file_name(
        "eval",
        point.window,
        false,
        overrides.then_some(&memory),
        point.retrieval.unwrap_or_default(),
    )
}

/// A method's name in tables: LongMem with its SideNet depth when that is swept.
pub fn label(method: &str, params: &BTreeMap<String, String>) -> String {
    let base = match (params.get("sidenet.layers"), params.get("window")) {
        (Some(layers), _) if method == "longmem" => format!("longmem S={layers}"),
        (_, Some(window)) => format!("{method} W={window}"),
        _ => method.to_string(),
    };
    // Any other swept setting (e.g. `memtrm.joint`, `train.lr`) names its value, so that
    // points differing in it get rows of their own instead of one standing for all.
    let others: Vec<String> = params
        .iter()
        .filter(|(k, _)| !SHOWN_PARAMS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    match others.is_empty() {
        true => base,
        false => format!("{base} {}", others.join(" ")),
    }
}

/// Parameters the report shows on their own (columns, sections, the label's S= and W=);
/// `preset` names the method.
const SHOWN_PARAMS: [&str; 11] = [
    "chunk",
    "local_shots",
    "memory_shots",
    "memory_size",
    "preset",
    "retrieval",
    "sidenet.layers",
    "source",
    "task",
    "top_k",
    "window",
];

/// Whether a label names a method without memory (plain, frozen, their long windows).
pub fn without_memory(label: &str) -> bool {
    label.starts_with("plain") || label.starts_with("frozen")
}

/// Writes tables, charts and REPORT.md for `files` into `out`; returns REPORT.md's path.
pub fn write_report(files: &[std::path::PathBuf], out: &Path) -> anyhow::Result<std::path::PathBuf> {
    let collected = collect(files)?;
    if collected.rows.is_empty() {
        anyhow::bail!(
            "no finished evaluation runs in {}: run `longmem sweep` on it first",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let summary = tables::summarize(&collected.rows);
    tables::write_frame(&mut tables::runs_frame(&collected.rows)?, out, "runs")?;
    tables::write_frame(&mut tables::summary_frame(&summary)?, out, "summary")?;
    let text = build::report(&collected, &summary, out)?;
    let path = out.join("REPORT.md");
    crate::fsutil::write_atomic(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

pub mod build;

#[cfg(test)]
mod tests {
    use super::label;
    use std::collections::BTreeMap;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|&(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn labels_name_swept_settings_the_report_does_not_show_otherwise() {
        let shown = params(&[
            ("memory_size", "64"),
            ("chunk", "4"),
            ("preset", "memtrm"),
            ("retrieval", "oracle"),
        ]);
        assert_eq!(label("memtrm", &shown), "memtrm");
        assert_eq!(label("longmem", &params(&[("sidenet.layers", "2")])), "longmem S=2");
        assert_eq!(label("plain", &params(&[("window", "256")])), "plain W=256");
        let gated = params(&[("memtrm.joint", "gated"), ("memory_size", "64")]);
        let concat = params(&[("memtrm.joint", "concat"), ("memory_size", "64")]);
        assert_eq!(label("memtrm", &gated), "memtrm memtrm.joint=gated");
        assert_ne!(label("memtrm", &gated), label("memtrm", &concat));
        let both = params(&[("sidenet.layers", "1"), ("train.lr", "0.001")]);
        assert_eq!(label("longmem", &both), "longmem S=1 train.lr=0.001");
    }
}
