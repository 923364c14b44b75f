//! The long-memory section of a report: accuracy on answer tokens by the distance to their
//! evidence, per method and memory size, beside the oracle and random retrieval bounds, with
//! the share of evidence memory had already evicted, a chart per memory size, and findings
//! computed from the numbers and their confidence intervals.

use super::charts::{heat_map, line_chart, HeatMap, Series};
use super::markdown::{cell, table};
use super::metrics::{Metric, ACC_4K_64K, ACC_BY_DISTANCE, EVICTED_BY_DISTANCE, HIT_BY_DISTANCE, STALENESS};
use super::tables::SummaryRow;
use super::view::View;
use crate::eval::distance::bucket_bounds;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

/// The retrieval of an evaluation point: exact unless the point names a bound.
const RETRIEVALS: [&str; 3] = ["exact", "oracle", "random"];

/// A bucket's x position on a log axis: the geometric middle of its bounds.
fn middle(bucket: &str) -> Option<f64> {
    let (from, to) = bucket_bounds(bucket)?;
    Some(match (from, to.is_finite()) {
        (0, _) => to / 2.0,
        (from, false) => from as f64 * 2.0,
        (from, true) => (from as f64 * to).sqrt(),
    })
}

/// The long-memory section, when the runs measured accuracy by distance.
pub(super) fn distance_section(v: &View, labels: &[String], out: &Path, prefix: &str) -> anyhow::Result<String> {
    let mut buckets: Vec<String> = v
        .summary
        .iter()
        .filter_map(|r| ACC_BY_DISTANCE.key_of(&r.metric).map(String::from))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if buckets.is_empty() {
        return Ok(String::new());
    }
    buckets.sort_by_key(|b| bucket_bounds(b).map_or(usize::MAX, |(from, _)| from));
    let sizes = v.values("memory_size");
    let mut md = String::from(
        "\n## Accuracy by distance to the evidence\n\nTop-1 accuracy on answer tokens, bucketed by their distance in tokens to the evidence that gives them away. `oracle` puts each query's evidence chunk into its retrieved set (where memory still holds it), `random` retrieves K/c chunks at random: the bounds of what better retrieval could give and of what retrieval gives by chance. Methods without memory are the same at every memory size.\n\n",
    );
    md += &table_of(v, labels, &buckets, &sizes, &ACC_BY_DISTANCE);
    md += "\nShare of answers whose evidence memory had already evicted (exact retrieval), and hit rate: answers whose evidence chunk some head retrieved.\n\n";
    md += &table_of(v, labels, &buckets, &sizes, &EVICTED_BY_DISTANCE);
    md += "\n";
    md += &table_of(v, labels, &buckets, &sizes, &HIT_BY_DISTANCE);
    for size in sizes.iter().rev() {
        let series = chart_series(v, labels, &buckets, Some(size));
        if series.iter().all(|s| s.points.is_empty()) {
            continue;
        }
        let png = line_chart(
            &out.join(format!("{prefix}accuracy_vs_distance_M{size}")),
            &format!("accuracy by distance to the evidence, memory M = {size}"),
            &format!("distance to the evidence (tokens); memory holds M = {size}"),
            ACC_BY_DISTANCE.unit,
            &series,
            true,
        )?;
        let _ = writeln!(
            md,
            "\n![accuracy by distance, M = {size}]({})",
            png.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    md += &heat_map_of(v, labels, &buckets, &sizes, out, prefix)?;
    md += &findings(v, labels, &sizes);
    Ok(md)
}

/// The points of a label at one memory size and retrieval.
fn point(v: &View, label: &str, metric: &str, size: Option<&str>, retrieval: &str) -> Option<SummaryRow> {
    let mut at: Vec<(&str, &str)> = vec![("retrieval", retrieval)];
    if let (Some(size), Some(r)) = (size, v.references.get(label)) {
        at.extend([
            ("memory_size", size),
            ("chunk", r.chunk.as_str()),
            ("top_k", r.top_k.as_str()),
        ]);
    } else if retrieval != "exact" {
        return None; // a method without memory has no retrieval bounds
    }
    v.find(label, metric, &at).cloned()
}

/// The memory sizes a label is shown at: each of `sizes` for a memory model, none (`None`)
/// for a method without memory.
fn sizes_of<'a>(v: &View, label: &str, sizes: &'a [String]) -> Vec<Option<&'a str>> {
    match v.references.contains_key(label) {
        true => sizes.iter().map(|s| Some(s.as_str())).collect(),
        false => vec![None],
    }
}

/// One row per (method, memory size, retrieval) that measured `metric`, one column per bucket.
fn table_of(v: &View, labels: &[String], buckets: &[String], sizes: &[String], metric: &Metric) -> String {
    let mut header = vec!["method".to_string(), "M".into(), "retrieval".into()];
    header.extend(buckets.iter().map(|b| format!("{} {b}", metric.label)));
    let mut rows = vec![];
    for label in labels {
        for size in sizes_of(v, label, sizes) {
            for retrieval in RETRIEVALS {
                let cells: Vec<Option<SummaryRow>> = buckets
                    .iter()
                    .map(|b| point(v, label, &metric.keyed(b), size, retrieval))
                    .collect();
                if cells.iter().all(Option::is_none) {
                    continue;
                }
                let mut row = vec![label.clone(), size.unwrap_or("–").to_string(), retrieval.to_string()];
                row.extend(cells.iter().map(|c| cell(c.as_ref(), metric.digits)));
                rows.push(row);
            }
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    table(&header, &rows)
}

/// The needle-in-a-haystack heat map: accuracy (exact retrieval) by distance to the evidence
/// (columns) for each method at each memory size (rows).
fn heat_map_of(
    v: &View,
    labels: &[String],
    buckets: &[String],
    sizes: &[String],
    out: &Path,
    prefix: &str,
) -> anyhow::Result<String> {
    let mut rows = vec![];
    let mut values = vec![];
    for label in labels {
        for size in sizes_of(v, label, sizes) {
            let row: Vec<Option<f64>> = buckets
                .iter()
                .map(|b| point(v, label, &ACC_BY_DISTANCE.keyed(b), size, "exact").map(|r| r.mean))
                .collect();
            if row.iter().any(Option::is_some) {
                rows.push(size.map_or(label.clone(), |m| format!("{label}, M = {m}")));
                values.push(row);
            }
        }
    }
    if rows.is_empty() {
        return Ok(String::new());
    }
    let top = values.iter().flatten().flatten().fold(0.05f64, |a, &b| a.max(b));
    let png = heat_map(
        &out.join(format!("{prefix}accuracy_heat_map")),
        &HeatMap {
            title: "accuracy by distance to the evidence and memory size",
            x_label: "distance to the evidence (tokens)",
            columns: buckets,
            rows: &rows,
            values: &values,
            top,
        },
    )?;
    Ok(format!(
        "\nAccuracy (exact retrieval) by distance and memory size, darker is better (scale 0 to {top:.2}):\n\n![accuracy heat map]({})\n",
        png.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Accuracy against distance at memory size `size`: each method's exact retrieval, and its
/// oracle and random bounds where measured.
fn chart_series(v: &View, labels: &[String], buckets: &[String], size: Option<&str>) -> Vec<Series> {
    let mut series = vec![];
    for label in labels {
        for retrieval in RETRIEVALS {
            let points: Vec<(f64, f64, f64)> = buckets
                .iter()
                .filter_map(|b| {
                    let row = point(v, label, &ACC_BY_DISTANCE.keyed(b), size, retrieval)?;
                    Some((middle(b)?, row.mean, row.ci95))
                })
                .collect();
            if !points.is_empty() {
                let name = match retrieval {
                    "exact" => label.clone(),
                    bound => format!("{label} ({bound} bound)"),
                };
                series.push(Series { name, points });
            }
        }
    }
    series
}

/// Sentences from the pooled accuracy on evidence 4k–64k tokens away: whether each memory
/// method beats plain at the largest memory, whether a larger memory helps, and how close it
/// comes to its oracle bound.
fn findings(v: &View, labels: &[String], sizes: &[String]) -> String {
    let (Some(largest), Some(smallest)) = (sizes.last(), sizes.first()) else {
        return String::new();
    };
    let acc = |label: &str, size: Option<&str>, retrieval: &str| point(v, label, ACC_4K_64K.name, size, retrieval);
    let plain = labels
        .iter()
        .find(|l| l.as_str() == "plain")
        .and_then(|l| acc(l, None, "exact"));
    let mut md = String::from(
        "\n### Findings on evidence 4,096–65,536 tokens away\n\nAccuracy pooled over those answers; intervals are 95% over seeds. \"Beats\" means the two intervals do not overlap.\n\n",
    );
    let show = |r: &SummaryRow| format!("{:.3} ± {:.3}", r.mean, r.ci95);
    let mut any = false;
    for label in labels.iter().filter(|l| v.references.contains_key(*l)) {
        let Some(at_largest) = acc(label, Some(largest), "exact") else {
            continue;
        };
        any = true;
        let mut line = format!("- **{label}** at M = {largest}: {}", show(&at_largest));
        if let Some(plain) = &plain {
            let verdict = if at_largest.mean - at_largest.ci95 > plain.mean + plain.ci95 {
                "beats plain"
            } else if at_largest.mean + at_largest.ci95 < plain.mean - plain.ci95 {
                "is below plain"
            } else {
                "is not distinguishable from plain"
            };
            let _ = write!(line, "; {verdict} ({})", show(plain));
        }
        if largest != smallest {
            if let Some(small) = acc(label, Some(smallest), "exact") {
                let verdict = if at_largest.mean - at_largest.ci95 > small.mean + small.ci95 {
                    "a larger memory helps"
                } else {
                    "a larger memory does not help measurably"
                };
                let _ = write!(line, "; {verdict} (M = {smallest}: {})", show(&small));
            }
        }
        if let Some(oracle) = acc(label, Some(largest), "oracle") {
            let _ = write!(line, "; oracle bound {}", show(&oracle));
        }
        if let Some(random) = acc(label, Some(largest), "random") {
            let _ = write!(line, ", random-retrieval bound {}", show(&random));
        }
        md += &line;
        md += ".\n";
    }
    if any {
        md
    } else {
        String::new()
    }
}

/// Memory staleness, after the distance curves: for each memory method that measured it
/// (`train.staleness_every`), the cosine distance between the keys memory holds and those
/// the current weights give the same tokens, by the keys' age in tokens.
pub(super) fn staleness_section(v: &View, labels: &[String], out: &Path, prefix: &str) -> anyhow::Result<String> {
    let ages_of = |label: &str| -> Vec<(u64, SummaryRow)> {
        let mut ages: Vec<(u64, SummaryRow)> = v
            .summary
            .iter()
            .filter(|r| super::label(&r.method, &r.params) == label)
            .filter_map(|r| Some((STALENESS.key_of(&r.metric)?.parse().ok()?, r.clone())))
            .collect();
        ages.sort_by_key(|(age, _)| *age);
        ages
    };
    let measured: Vec<(&String, Vec<(u64, SummaryRow)>)> = labels
        .iter()
        .map(|l| (l, ages_of(l)))
        .filter(|(_, ages)| !ages.is_empty())
        .collect();
    let Some((_, first)) = measured.first() else {
        return Ok(String::new());
    };
    // Columns: ages of 0, 1, 2, 4, … segments, and the oldest.
    let all: Vec<u64> = first.iter().map(|(age, _)| *age).collect();
    let segment = all.get(1).copied().unwrap_or(1).max(1);
    let mut shown: Vec<u64> = all
        .iter()
        .copied()
        .filter(|age| *age == 0 || (age / segment).is_power_of_two())
        .collect();
    if let Some(&oldest) = all.last().filter(|a| !shown.contains(a)) {
        shown.push(oldest);
    }
    let mut header = vec!["method".to_string()];
    header.extend(shown.iter().map(|age| format!("age {age}")));
    let rows: Vec<Vec<String>> = measured
        .iter()
        .map(|(label, ages)| {
            let mut row = vec![label.to_string()];
            row.extend(shown.iter().map(|age| {
                let found = ages.iter().find(|(a, _)| a == age).map(|(_, r)| r);
                cell(found, STALENESS.digits)
            }));
            row
        })
        .collect();
    let mut md = String::from(
        "\n## Memory staleness\n\nCosine distance between the keys memory holds and the keys the current weights give the same tokens, by the keys' age in tokens (measured during training, averaged over its measurements). LongMem's writer is the frozen backbone, so its keys never go stale; MemTRM's writer trains, so older keys drift further.\n\n",
    );
    md += &table(&header, &rows);
    let series: Vec<Series> = measured
        .iter()
        .map(|(label, ages)| Series {
            name: label.to_string(),
            points: ages.iter().map(|(age, r)| (*age as f64, r.mean, r.ci95)).collect(),
        })
        .collect();
    let png = line_chart(
        &out.join(format!("{prefix}staleness_by_age")),
        "memory staleness by age of the stored keys",
        "age of the stored keys (tokens)",
        STALENESS.unit,
        &series,
        false,
    )?;
    let _ = writeln!(
        md,
        "\n![staleness by age]({})",
        png.file_name().unwrap_or_default().to_string_lossy()
    );
    Ok(md)
}
