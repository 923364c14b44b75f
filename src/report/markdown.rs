//! REPORT.md: the setup, the tables, the charts, and the published numbers beside ours.

use super::tables::SummaryRow;
use super::Collected;
use serde::Deserialize;
use std::fmt::Write;
use std::path::Path;

/// `mean ± half-width (n)` to `digits`, or the mean alone for one value.
pub fn cell(row: Option<&SummaryRow>, digits: usize) -> String {
    match row {
        None => "–".into(),
        Some(r) if r.n > 1 => format!("{:.digits$} ± {:.digits$} ({})", r.mean, r.ci95, r.n),
        Some(r) => format!("{:.digits$}", r.mean),
    }
}

/// A markdown table.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|{}\n", header.join(" | "), " --- |".repeat(header.len()));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out
}

#[derive(Deserialize)]
struct Published {
    result: Vec<PublishedResult>,
}

#[derive(Deserialize)]
struct PublishedResult {
    source: String,
    metric: String,
    dataset: Option<String>,
    method: String,
    setup: Option<String>,
    value: Option<f64>,
    value_min: Option<f64>,
    value_max: Option<f64>,
}

/// The published numbers, and why ours do not sit beside them: none of this project's
/// built-in setups is the paper's.
pub fn published_section(baselines: &Path, ours: &str) -> String {
    let Ok(text) = std::fs::read_to_string(baselines) else {
        return format!("(no published numbers: {} is missing)\n", baselines.display());
    };
    let published = match toml::from_str::<Published>(&text) {
        Ok(p) => p,
        Err(e) => return format!("(no published numbers: {} does not parse: {e})\n", baselines.display()),
    };
    let mut out = format!(
        "None of these setups matches this report's ({ours}), so they are listed for reference, not \
         compared: the paper's models are GPT-2-medium-sized, read real text with 1k-token windows and \
         65k-token memories, and its ICL tasks are SST-2, MR, Subj, SST-5 and MPQA.\n\n"
    );
    let rows: Vec<Vec<String>> = published
        .result
        .iter()
        .map(|r| {
            let value = match (r.value, r.value_min, r.value_max) {
                (Some(v), _, _) => format!("{v}"),
                (None, Some(lo), Some(hi)) => format!("{lo} to {hi}"),
                _ => "–".into(),
            };
            vec![
                r.method.clone(),
                r.dataset.clone().unwrap_or_default(),
                r.metric.clone(),
                value,
                r.setup.clone().unwrap_or_default(),
                r.source.clone(),
            ]
        })
        .collect();
    out += &table(
        &["method", "dataset", "metric", "value", "setup", "source"].map(String::from),
        &rows,
    );
    out
}

/// The setup section: experiments, versions, device, commit, counts.
pub fn setup_section(c: &Collected) -> String {
    let mut out = String::new();
    for e in &c.experiments {
        let _ = writeln!(out, "- experiment `{}`: `{}`", e.name, e.file.display());
    }
    let (planned, finished, failed) = c.counts;
    let _ = writeln!(out, "- runs: {planned} planned, {finished} finished, {failed} failed");
    if let Some(m) = &c.metadata {
        let _ = writeln!(
            out,
            "- longmem-bench {}, tch {}, libtorch {}; device {}; host {}{}; git commit `{}`",
            m.versions.longmem_bench,
            m.versions.tch,
            m.versions.libtorch,
            m.device,
            m.host,
            if m.cpu.is_empty() {
                String::new()
            } else {
                format!(", CPU {}", m.cpu)
            },
            m.git_commit
        );
    }
    out
}
