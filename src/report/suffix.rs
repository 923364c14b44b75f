//! The report's suffix-identification (ChapterBreak) section: accuracy per source, with
//! 95% intervals over seeds and the chance level.

use super::charts::{bar_chart, Bar};
use super::markdown::{cell, table};
use super::metrics::{CHAPTERBREAK_ACC, CHAPTERBREAK_CHANCE};
use super::view::View;
use std::fmt::Write;
use std::path::Path;

/// The section, or nothing when the experiment scored no suffix identification.
pub(super) fn chapterbreak_section(v: &View, labels: &[String], out: &Path, prefix: &str) -> anyhow::Result<String> {
    let sources: Vec<String> = v
        .values("source")
        .into_iter()
        .filter(|s| {
            v.summary
                .iter()
                .any(|r| r.metric == CHAPTERBREAK_ACC.name && r.params.get("source") == Some(s))
        })
        .collect();
    if sources.is_empty() {
        return Ok(String::new());
    }
    let mut header = vec!["method".to_string()];
    header.extend(sources.iter().map(|s| format!("accuracy {s}")));
    let mut rows = Vec::new();
    let mut bars = Vec::new();
    for l in labels {
        let at = |s: &str, metric: &str| v.find(l, metric, &[("source", s)]);
        if sources.iter().all(|s| at(s, CHAPTERBREAK_ACC.name).is_none()) {
            continue;
        }
        let mut row = vec![l.clone()];
        for s in &sources {
            let found = at(s, CHAPTERBREAK_ACC.name);
            row.push(cell(found, CHAPTERBREAK_ACC.digits));
            if let Some(r) = found {
                bars.push(Bar {
                    label: format!("{l}, {s}"),
                    value: r.mean,
                    ci95: r.ci95,
                });
            }
        }
        rows.push(row);
    }
    let chance: Vec<String> = sources
        .iter()
        .filter_map(|s| {
            let r = v
                .summary
                .iter()
                .find(|r| r.metric == CHAPTERBREAK_CHANCE.name && r.params.get("source") == Some(s))?;
            Some(format!("{s} {:.3}", r.mean))
        })
        .collect();
    let png = bar_chart(
        &out.join(format!("{prefix}chapterbreak")),
        "Suffix identification (ChapterBreak)",
        CHAPTERBREAK_ACC.unit,
        &bars,
        true,
    )?;
    let mut md = String::new();
    let _ = write!(
        md,
        "\n## Suffix identification (ChapterBreak)\n\nThe context streams through memory window by window; each candidate continuation is scored by its log-likelihood after the context's last tokens, and the true one must score highest. `builtin` is the built-in analogue: the true continuation is an answer span whose evidence lies beyond the window, the distractors are other answer spans of the same length from the same document, whose evidence also lies wholly beyond the window; no candidate occurs in the window, and each occurs in the context as often as the true one, so neither recency nor frequency can tell the true one. Chance: {}. Intervals are 95% over seeds.\n\n{}\n![ChapterBreak]({})\n",
        chance.join(", "),
        table(&header, &rows),
        png.file_name().unwrap_or_default().to_string_lossy()
    );
    Ok(md)
}
