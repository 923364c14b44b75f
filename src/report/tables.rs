//! Rows → polars DataFrames → Parquet and CSV, and the aggregation over seeds.

use super::MetricRow;
use crate::fsutil::temp_path;
use anyhow::Context;
use polars::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A metric's statistics over seeds (and replicates) at one setting.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub experiment: String,
    pub method: String,
    pub params: BTreeMap<String, String>,
    pub metric: String,
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (0 for one value).
    pub std: f64,
    /// Half-width of the 95% confidence interval of the mean (Student's t; 0 for one value).
    pub ci95: f64,
}

/// Two-sided 95% Student's t quantiles for 1..=30 degrees of freedom.
const T95: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
    2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/// Mean, sample standard deviation and 95% half-width of `values`.
pub fn stats(values: &[f64]) -> (f64, f64, f64) {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, 0.0, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let std = var.sqrt();
    let t = T95.get(n - 2).copied().unwrap_or(1.96);
    (mean, std, t * std / (n as f64).sqrt())
}

/// What a summary row is keyed by: experiment, method, parameters, metric.
type GroupKey = (String, String, Vec<(String, String)>, String);

/// Groups rows that differ only in seed and replicate.
pub fn summarize(rows: &[MetricRow]) -> Vec<SummaryRow> {
    let mut groups: BTreeMap<GroupKey, Vec<f64>> = BTreeMap::new();
    for r in rows {
        let params: Vec<(String, String)> = r
            .params
            .iter()
            .filter(|(k, _)| *k != "seed")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        groups
            .entry((r.experiment.clone(), r.method.clone(), params, r.metric.clone()))
            .or_default()
            .push(r.value);
    }
    groups
        .into_iter()
        .map(|((experiment, method, params, metric), values)| {
            let (mean, std, ci95) = stats(&values);
            SummaryRow {
                experiment,
                method,
                params: params.into_iter().collect(),
                metric,
                n: values.len(),
                mean,
                std,
                ci95,
            }
        })
        .collect()
}

/// Every parameter any row has, sorted (the swept parameters' columns).
pub fn param_keys<'a>(params: impl Iterator<Item = &'a BTreeMap<String, String>>) -> Vec<String> {
    let keys: BTreeSet<String> = params.flat_map(|p| p.keys().cloned()).filter(|k| k != "seed").collect();
    keys.into_iter().collect()
}

fn param_columns<'a>(
    keys: &[String],
    params: impl Iterator<Item = &'a BTreeMap<String, String>> + Clone,
) -> Vec<Column> {
    keys.iter()
        .map(|k| {
            let values: Vec<Option<String>> = params.clone().map(|p| p.get(k).cloned()).collect();
            Column::new(k.as_str().into(), values)
        })
        .collect()
}

/// One row per run and metric: experiment, stage, run, method, seed, rep, each parameter, metric, value.
pub fn runs_frame(rows: &[MetricRow]) -> PolarsResult<DataFrame> {
    let keys = param_keys(rows.iter().map(|r| &r.params));
    let mut columns = vec![
        Column::new(
            "experiment".into(),
            rows.iter().map(|r| r.experiment.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "stage".into(),
            rows.iter().map(|r| r.stage.to_string()).collect::<Vec<_>>(),
        ),
        Column::new("run".into(), rows.iter().map(|r| r.run.clone()).collect::<Vec<_>>()),
        Column::new(
            "method".into(),
            rows.iter().map(|r| r.method.clone()).collect::<Vec<_>>(),
        ),
        Column::new("seed".into(), rows.iter().map(|r| r.seed).collect::<Vec<_>>()),
        Column::new("rep".into(), rows.iter().map(|r| r.rep).collect::<Vec<_>>()),
    ];
    columns.extend(param_columns(&keys, rows.iter().map(|r| &r.params)));
    columns.push(Column::new(
        "metric".into(),
        rows.iter().map(|r| r.metric.clone()).collect::<Vec<_>>(),
    ));
    columns.push(Column::new(
        "value".into(),
        rows.iter().map(|r| r.value).collect::<Vec<_>>(),
    ));
    DataFrame::new_infer_height(columns)
}

/// One row per setting and metric: n, mean, std and the 95% interval over seeds.
pub fn summary_frame(summary: &[SummaryRow]) -> PolarsResult<DataFrame> {
    let keys = param_keys(summary.iter().map(|r| &r.params));
    let mut columns = vec![
        Column::new(
            "experiment".into(),
            summary.iter().map(|r| r.experiment.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "method".into(),
            summary.iter().map(|r| r.method.clone()).collect::<Vec<_>>(),
        ),
    ];
    columns.extend(param_columns(&keys, summary.iter().map(|r| &r.params)));
    columns.push(Column::new(
        "metric".into(),
        summary.iter().map(|r| r.metric.clone()).collect::<Vec<_>>(),
    ));
    columns.push(Column::new(
        "n".into(),
        summary.iter().map(|r| r.n as u64).collect::<Vec<_>>(),
    ));
    columns.push(Column::new(
        "mean".into(),
        summary.iter().map(|r| r.mean).collect::<Vec<_>>(),
    ));
    columns.push(Column::new(
        "std".into(),
        summary.iter().map(|r| r.std).collect::<Vec<_>>(),
    ));
    columns.push(Column::new(
        "ci95_low".into(),
        summary.iter().map(|r| r.mean - r.ci95).collect::<Vec<_>>(),
    ));
    columns.push(Column::new(
        "ci95_high".into(),
        summary.iter().map(|r| r.mean + r.ci95).collect::<Vec<_>>(),
    ));
    DataFrame::new_infer_height(columns)
}

/// Writes `<stem>.parquet` and `<stem>.csv` in `dir`, each atomically.
pub fn write_frame(frame: &mut DataFrame, dir: &Path, stem: &str) -> anyhow::Result<()> {
    write_file(&dir.join(format!("{stem}.parquet")), |file| {
        ParquetWriter::new(file).finish(frame).map(|_| ())
    })?;
    write_file(&dir.join(format!("{stem}.csv")), |file| {
        CsvWriter::new(file).finish(frame)
    })
}

/// Writes `path` through `write` into a temporary file, then renames it into place.
fn write_file(path: &Path, write: impl FnOnce(std::fs::File) -> PolarsResult<()>) -> anyhow::Result<()> {
    let tmp = temp_path(path);
    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let written = write(file).map_err(anyhow::Error::from);
    written.with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_match_hand_computed_values() {
        let (mean, std, ci) = stats(&[1.0, 2.0, 3.0]);
        assert_eq!(mean, 2.0);
        assert!((std - 1.0).abs() < 1e-12);
        // t(0.975, 2) = 4.303; 4.303 · 1 / √3.
        assert!((ci - 4.303 / 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(stats(&[5.0]), (5.0, 0.0, 0.0));
    }
}
