//! One experiment's summary as the report's sections read it: its rows, and each memory
//! model's trained memory (the reference point of the tables).

use super::label;
use super::tables::SummaryRow;
use std::collections::{BTreeMap, BTreeSet};

/// The memory a model trained with: the reference point of the tables.
#[derive(Debug, Clone)]
pub(super) struct Reference {
    pub(super) memory_size: String,
    pub(super) chunk: String,
    pub(super) top_k: String,
}

/// One experiment's summary rows, with each memory model's trained memory.
pub(super) struct View<'a> {
    pub(super) summary: &'a [SummaryRow],
    /// Each memory model's trained memory, by label.
    pub(super) references: BTreeMap<String, Reference>,
}

impl View<'_> {
    /// Rows of `metric` for `label` whose parameters include every `(key, value)` of `at`.
    pub(super) fn find(&self, label_: &str, metric: &str, at: &[(&str, &str)]) -> Option<&SummaryRow> {
        self.summary.iter().find(|r| {
            r.metric == metric
                && label(&r.method, &r.params) == label_
                && at.iter().all(|&(k, v)| match r.params.get(k) {
                    Some(have) => have == v,
                    // Exact retrieval writes no `retrieval` column: a row without one is
                    // exact, never a bound that was not measured.
                    None => k != "retrieval" || v == "exact",
                })
        })
    }

    /// At the trained memory (memory models), or the only point (plain).
    pub(super) fn at_reference(&self, label_: &str, metric: &str) -> Option<&SummaryRow> {
        match self.references.get(label_) {
            Some(r) => self.find(
                label_,
                metric,
                &[
                    ("memory_size", &r.memory_size),
                    ("chunk", &r.chunk),
                    ("top_k", &r.top_k),
                ],
            ),
            None => self.find(label_, metric, &[]),
        }
    }

    pub(super) fn labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = self
            .summary
            .iter()
            .map(|r| label(&r.method, &r.params))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Memory methods first, then plain, frozen and their long windows.
        labels.sort_by_key(|l| (super::without_memory(l), !l.starts_with("plain"), l.clone()));
        labels
    }

    /// Distinct values of a parameter, numerically sorted.
    pub(super) fn values(&self, key: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .summary
            .iter()
            .filter_map(|r| r.params.get(key).cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        v.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap_or(0.0)
                .total_cmp(&b.parse::<f64>().unwrap_or(0.0))
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(params: &[(&str, &str)], mean: f64) -> SummaryRow {
        SummaryRow {
            experiment: "e".into(),
            method: "memtrm".into(),
            params: params.iter().map(|&(k, v)| (k.to_string(), v.to_string())).collect(),
            metric: "acc".into(),
            n: 1,
            mean,
            std: 0.0,
            ci95: 0.0,
        }
    }

    #[test]
    fn a_bound_that_was_not_measured_is_not_found_as_the_exact_row() {
        // Exact rows have no retrieval column; only the oracle bound was measured.
        let summary = [
            row(&[("memory_size", "64")], 0.1),
            row(&[("memory_size", "64"), ("retrieval", "oracle")], 0.9),
        ];
        let v = View {
            summary: &summary,
            references: BTreeMap::new(),
        };
        let mean = |retrieval: &str| {
            v.find("memtrm", "acc", &[("retrieval", retrieval), ("memory_size", "64")])
                .map(|r| r.mean)
        };
        assert_eq!(mean("exact"), Some(0.1));
        assert_eq!(mean("oracle"), Some(0.9));
        assert_eq!(mean("random"), None);
    }
}
