//! The metric registry: every metric a report holds, with its name (the `metric` column of
//! `runs.csv` and `summary.csv`), its label and unit in tables and charts, its decimal places,
//! and how it is read from a run's result file. The tables, charts and REPORT.md name metrics
//! only through it.
//!
//! Adding a metric: compute it where the result types are made (`src/eval/`), then add one
//! entry here: a `const` and its line in [`ALL`], whose order is the order of each run's
//! rows in `runs.csv`.

use crate::eval::distance::{pooled, DistanceTotals};
use crate::eval::icl::IclRow;
use crate::eval::result::{EvalResult, SourceAccuracy};
use crate::train::records::StalenessRow;
use std::collections::BTreeMap;

/// How a metric's values are read from a run's result.
#[derive(Clone, Copy)]
pub enum Read {
    /// One value of an evaluation, or none where the run did not measure it.
    Eval(fn(&EvalResult) -> Option<f64>),
    /// One value per key of an evaluation (a stage, a length bucket), named `name[key]`.
    EvalKeyed(fn(&EvalResult) -> Vec<(String, f64)>),
    /// One value per row of an in-context learning result (a seed at one setting).
    Icl(fn(&IclRow) -> f64),
    /// One value per source of a suffix-identification result.
    Suffix(fn(&SourceAccuracy) -> f64),
    /// One value per key of a training run's staleness measurements (`staleness.csv`) and
    /// its segment length.
    Staleness(StalenessRead),
}

/// Reads keyed values from a training run's staleness rows and its segment length.
pub type StalenessRead = fn(&[StalenessRow], usize) -> Vec<(String, f64)>;

/// One metric.
pub struct Metric {
    /// The `metric` column's value (for keyed metrics, the part before `[key]`).
    pub name: &'static str,
    /// Its heading in tables (keyed metrics: after the key, e.g. `backbone µs`).
    pub label: &'static str,
    /// A phrase for chart titles and prose.
    pub description: &'static str,
    /// What a chart's value axis shows: the unit, or for a number without one, the quantity.
    pub unit: &'static str,
    /// Decimal places in tables.
    pub digits: usize,
    pub read: Read,
}

impl Metric {
    /// The name of this keyed metric's value at `key`: `latency_us[backbone]`.
    pub fn keyed(&self, key: &str) -> String {
        format!("{}[{key}]", self.name)
    }

    /// The key in `metric`, when it names one of this keyed metric's values.
    pub fn key_of<'a>(&self, metric: &'a str) -> Option<&'a str> {
        metric.strip_prefix(self.name)?.strip_prefix('[')?.strip_suffix(']')
    }

    /// The table heading of this keyed metric's value at `key`: `backbone µs`.
    pub fn keyed_label(&self, key: &str) -> String {
        format!("{key} {}", self.label)
    }
}

/// Whether the evaluation had answers beyond the window (corpora without known answers have none).
fn far(r: &EvalResult) -> bool {
    r.totals.far_tokens > 0.0
}

/// Whether it had far answers and a memory whose retrieval was scored.
fn scored_retrieval(r: &EvalResult) -> bool {
    far(r) && r.totals.heads > 0.0
}

pub const PERPLEXITY: Metric = Metric {
    name: "perplexity",
    label: "perplexity",
    description: "held-out perplexity",
    unit: "perplexity",
    digits: 3,
    read: Read::Eval(|r| Some(r.totals.perplexity())),
};

pub const NLL: Metric = Metric {
    name: "nll",
    label: "NLL",
    description: "held-out NLL per token",
    unit: "nats per token",
    digits: 4,
    read: Read::Eval(|r| Some(r.totals.mean())),
};

pub const FAR_NLL: Metric = Metric {
    name: "far_nll",
    label: "NLL beyond window",
    description: "NLL on tokens whose evidence is beyond the window",
    unit: "nats per token",
    digits: 3,
    read: Read::Eval(|r| far(r).then(|| r.totals.far_mean())),
};

pub const FAR_PERPLEXITY: Metric = Metric {
    name: "far_perplexity",
    label: "perplexity beyond the window",
    description: "perplexity beyond the window",
    unit: "perplexity",
    digits: 3,
    read: Read::Eval(|r| far(r).then(|| r.totals.far_mean().exp())),
};

pub const HIT_RATE_ANY_HEAD: Metric = Metric {
    name: "hit_rate_any_head",
    label: "hit rate (any head)",
    description: "far answers whose source chunk some head of the memory layer retrieved",
    unit: "fraction",
    digits: 2,
    read: Read::Eval(|r| scored_retrieval(r).then(|| r.totals.hit_rate_any_head())),
};

pub const HIT_RATE_PER_HEAD: Metric = Metric {
    name: "hit_rate_per_head",
    label: "hit rate (per head)",
    description: "far answers whose source chunk a head retrieved, averaged over heads",
    unit: "fraction",
    digits: 2,
    read: Read::Eval(|r| scored_retrieval(r).then(|| r.totals.hit_rate_per_head())),
};

pub const HIT_RATE_CHANCE: Metric = Metric {
    name: "hit_rate_chance",
    label: "chance (per head)",
    description: "the per-head hit rate of a head retrieving chunks at random",
    unit: "fraction",
    digits: 2,
    read: Read::Eval(|r| scored_retrieval(r).then(|| r.totals.hit_rate_chance())),
};

pub const NEAR_NLL: Metric = Metric {
    name: "near_nll",
    label: "NLL within window",
    description: "NLL on tokens whose evidence is within the window",
    unit: "nats per token",
    digits: 3,
    read: Read::Eval(|r| (r.totals.near_tokens > 0.0).then(|| r.totals.near_mean())),
};

/// Keyed by document-length bucket (`perplexity[10K-100K]`).
pub const BUCKET_PERPLEXITY: Metric = Metric {
    name: "perplexity",
    label: "perplexity",
    description: "perplexity of the documents in one length bucket",
    unit: "perplexity",
    digits: 3,
    read: Read::EvalKeyed(|r| {
        r.totals
            .by_length
            .iter()
            .map(|b| (b.bucket.clone(), b.perplexity()))
            .collect()
    }),
};

/// Keyed by evidence-distance bucket in tokens (`acc_by_distance[4096-16384]`).
pub const ACC_BY_DISTANCE: Metric = Metric {
    name: "acc_by_distance",
    label: "accuracy",
    description: "top-1 accuracy on answer tokens by distance to their evidence",
    unit: "accuracy",
    digits: 3,
    read: Read::EvalKeyed(|r| by_distance(r, |d| d.accuracy())),
};

pub const NLL_BY_DISTANCE: Metric = Metric {
    name: "nll_by_distance",
    label: "NLL",
    description: "NLL on answer tokens by distance to their evidence",
    unit: "nats per token",
    digits: 3,
    read: Read::EvalKeyed(|r| by_distance(r, |d| d.mean_nll())),
};

pub const HIT_BY_DISTANCE: Metric = Metric {
    name: "hit_by_distance",
    label: "hit rate (any head)",
    description: "answers whose evidence chunk some head retrieved, by distance to the evidence",
    unit: "fraction",
    digits: 3,
    read: Read::EvalKeyed(|r| match r.memory {
        Some(_) => by_distance(r, |d| d.hits_any_head / d.tokens),
        None => vec![],
    }),
};

pub const EVICTED_BY_DISTANCE: Metric = Metric {
    name: "evicted_by_distance",
    label: "evicted",
    description: "answers whose evidence memory no longer held, by distance to the evidence",
    unit: "fraction",
    digits: 3,
    read: Read::EvalKeyed(|r| match r.memory {
        Some(_) => by_distance(r, |d| d.evicted_share()),
        None => vec![],
    }),
};

/// Top-1 accuracy pooled over the answers 4,096–65,536 tokens from their evidence (the
/// long-memory findings' range), where the distance buckets fall on those edges.
pub const ACC_4K_64K: Metric = Metric {
    name: "acc_4k_64k",
    label: "accuracy 4k–64k",
    description: "top-1 accuracy on answers 4,096–65,536 tokens from their evidence",
    unit: "accuracy",
    digits: 3,
    read: Read::Eval(|r| pooled(&r.totals.by_distance, 4096, 65536).map(|(n, correct)| correct / n)),
};

pub const ANSWERS_BY_DISTANCE: Metric = Metric {
    name: "answers_by_distance",
    label: "answers",
    description: "answer tokens scored, by distance to their evidence",
    unit: "tokens",
    digits: 0,
    read: Read::EvalKeyed(|r| by_distance(r, |d| d.tokens)),
};

/// One value per distance bucket of an evaluation.
fn by_distance(r: &EvalResult, value: fn(&DistanceTotals) -> f64) -> Vec<(String, f64)> {
    r.totals
        .by_distance
        .iter()
        .map(|d| (d.bucket.clone(), value(d)))
        .collect()
}

pub const POSITIONS_PER_SECOND: Metric = Metric {
    name: "positions_per_second",
    label: "positions/s",
    description: "token positions evaluated per second",
    unit: "positions/s",
    digits: 0,
    read: Read::Eval(|r| Some(r.cost.positions_per_second)),
};

pub const MFU: Metric = Metric {
    name: "mfu",
    label: "MFU",
    description: "achieved useful FLOP/s over the measured matmul peak",
    unit: "fraction of the matmul peak",
    digits: 3,
    read: Read::Eval(|r| Some(r.cost.mfu)),
};

pub const PEAK_RSS_MIB: Metric = Metric {
    name: "peak_rss_mib",
    label: "peak RSS",
    description: "peak resident memory of the evaluation",
    unit: "MiB",
    digits: 0,
    read: Read::Eval(|r| r.cost.peak_rss_bytes.map(|rss| rss as f64 / (1 << 20) as f64)),
};

/// Keyed by stage (`latency_us[retrieval]`).
pub const LATENCY_US: Metric = Metric {
    name: "latency_us",
    label: "µs",
    description: "latency per position by stage",
    unit: "µs per position",
    digits: 2,
    read: Read::EvalKeyed(|r| {
        r.cost
            .latency_us_per_position
            .iter()
            .map(|(stage, us)| (stage.clone(), *us))
            .collect()
    }),
};

pub const ICL_ACC: Metric = Metric {
    name: "icl_acc",
    label: "accuracy",
    description: "in-context accuracy",
    unit: "accuracy",
    digits: 3,
    read: Read::Icl(|r| r.acc),
};

pub const ICL_ACC_NORM: Metric = Metric {
    name: "icl_acc_norm",
    label: "accuracy (per character)",
    description: "in-context accuracy by label-word log-likelihood per character",
    unit: "accuracy",
    digits: 3,
    read: Read::Icl(|r| r.acc_norm),
};

pub const ICL_ACC_PAPER: Metric = Metric {
    name: "icl_acc_paper",
    label: "accuracy (paper's argmax)",
    description: "in-context accuracy by the paper's argmax protocol",
    unit: "accuracy",
    digits: 3,
    read: Read::Icl(|r| r.acc_paper),
};

pub const CHAPTERBREAK_ACC: Metric = Metric {
    name: "chapterbreak_acc",
    label: "accuracy",
    description: "suffix-identification accuracy",
    unit: "accuracy",
    digits: 3,
    read: Read::Suffix(|s| s.accuracy),
};

pub const CHAPTERBREAK_CHANCE: Metric = Metric {
    name: "chapterbreak_chance",
    label: "chance",
    description: "suffix-identification accuracy by chance (1 / candidates)",
    unit: "accuracy",
    digits: 3,
    read: Read::Suffix(|s| s.chance),
};

/// Keyed by the age of the stored keys in tokens (`staleness[1024]`): the cosine distance
/// between the keys memory holds and those the weights give the same tokens now, averaged
/// over every measurement of the training run. Zero for LongMem's frozen writer.
pub const STALENESS: Metric = Metric {
    name: "staleness",
    label: "staleness",
    description: "cosine distance of stored memory keys from the current weights' keys, by age",
    unit: "cosine distance",
    digits: 4,
    read: Read::Staleness(|rows, segment_len| {
        let mut by_age: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for r in rows {
            let sum = by_age.entry(r.age).or_default();
            *sum = (sum.0 + r.cosine_distance, sum.1 + 1.0);
        }
        by_age
            .into_iter()
            // A cosine distance is never negative; rounding leaves about -1e-8 for equal keys.
            .map(|(age, (total, n))| ((age * segment_len as u64).to_string(), (total / n).max(0.0)))
            .collect()
    }),
};

/// Every metric, in the order of each run's rows.
pub const ALL: [&Metric; 25] = [
    &PERPLEXITY,
    &NLL,
    &FAR_NLL,
    &FAR_PERPLEXITY,
    &HIT_RATE_ANY_HEAD,
    &HIT_RATE_PER_HEAD,
    &HIT_RATE_CHANCE,
    &NEAR_NLL,
    &BUCKET_PERPLEXITY,
    &ACC_BY_DISTANCE,
    &NLL_BY_DISTANCE,
    &HIT_BY_DISTANCE,
    &EVICTED_BY_DISTANCE,
    &ANSWERS_BY_DISTANCE,
    &ACC_4K_64K,
    &POSITIONS_PER_SECOND,
    &MFU,
    &PEAK_RSS_MIB,
    &LATENCY_US,
    &ICL_ACC,
    &ICL_ACC_NORM,
    &ICL_ACC_PAPER,
    &CHAPTERBREAK_ACC,
    &CHAPTERBREAK_CHANCE,
    &STALENESS,
];

/// Every value an evaluation measured, by metric name, in [`ALL`]'s order.
pub fn eval_values(result: &EvalResult) -> Vec<(String, f64)> {
    let mut values = Vec::new();
    for metric in ALL {
        match metric.read {
            Read::Eval(read) => values.extend(read(result).map(|v| (metric.name.to_string(), v))),
            Read::EvalKeyed(read) => values.extend(read(result).into_iter().map(|(k, v)| (metric.keyed(&k), v))),
            Read::Icl(_) | Read::Suffix(_) | Read::Staleness(_) => {}
        }
    }
    values
}

/// Every value of a training run's staleness measurements, by metric name.
pub fn staleness_values(rows: &[StalenessRow], segment_len: usize) -> Vec<(String, f64)> {
    ALL.iter()
        .filter_map(|metric| match metric.read {
            Read::Staleness(read) => Some(read(rows, segment_len).into_iter().map(|(k, v)| (metric.keyed(&k), v))),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Every value of one source's suffix-identification accuracy, by metric name.
pub fn suffix_values(source: &SourceAccuracy) -> Vec<(&'static str, f64)> {
    values_of(source, |read| match read {
        Read::Suffix(f) => Some(f),
        _ => None,
    })
}

/// Every value of one in-context learning row, by metric name, in [`ALL`]'s order.
pub fn icl_values(row: &IclRow) -> Vec<(&'static str, f64)> {
    values_of(row, |read| match read {
        Read::Icl(f) => Some(f),
        _ => None,
    })
}

/// The values of `item` by every metric whose reader `pick` takes, in [`ALL`]'s order.
fn values_of<T>(item: &T, pick: impl Fn(Read) -> Option<fn(&T) -> f64>) -> Vec<(&'static str, f64)> {
    ALL.iter()
        .filter_map(|metric| pick(metric.read).map(|read| (metric.name, read(item))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::result::IclResult;

    const EVAL: &str = include_str!("../../tests/fixtures/results/eval-M16-c4-k8.json");
    const EVAL_CORPUS: &str = include_str!("../../tests/fixtures/results/eval-plain-corpus.json");
    const ICL: &str = include_str!("../../tests/fixtures/results/icl.json");

    #[test]
    fn names_are_unique() {
        let mut names: Vec<String> = ALL
            .iter()
            .map(|m| match m.read {
                Read::EvalKeyed(_) | Read::Staleness(_) => m.keyed("…"),
                _ => m.name.to_string(),
            })
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn an_evaluation_gives_its_rows_in_registry_order() {
        let result: EvalResult = serde_json::from_str(EVAL).unwrap();
        let names: Vec<String> = eval_values(&result).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "perplexity",
                "nll",
                "far_nll",
                "far_perplexity",
                "hit_rate_any_head",
                "hit_rate_per_head",
                "hit_rate_chance",
                "near_nll",
                "perplexity[<5K]",
                "positions_per_second",
                "mfu",
                "peak_rss_mib",
                "latency_us[backbone]",
                "latency_us[joint_attention]",
                "latency_us[memory_write]",
                "latency_us[retrieval]",
                "latency_us[sidenet]",
            ]
        );
        // A corpus without known answers has no near or far metrics.
        let corpus: EvalResult = serde_json::from_str(EVAL_CORPUS).unwrap();
        let names: Vec<String> = eval_values(&corpus).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "perplexity",
                "nll",
                "perplexity[>400]",
                "positions_per_second",
                "mfu",
                "peak_rss_mib",
                "latency_us[backbone]"
            ]
        );
        assert_eq!(LATENCY_US.key_of("latency_us[sidenet]"), Some("sidenet"));
        assert_eq!(LATENCY_US.key_of("latency_us"), None);
        assert_eq!(LATENCY_US.keyed_label("retrieval"), "retrieval µs");
    }

    #[test]
    fn staleness_is_averaged_over_measurements_by_age_in_tokens() {
        let row = |step, age, cosine_distance| StalenessRow {
            step,
            age,
            cosine_distance,
        };
        let rows = [row(10, 0, 0.0), row(10, 1, 0.2), row(20, 0, 0.1), row(20, 1, 0.4)];
        let values = staleness_values(&rows, 64);
        assert_eq!(values.len(), 2);
        assert_eq!(values[0].0, "staleness[0]");
        assert!((values[0].1 - 0.05).abs() < 1e-12);
        assert_eq!(values[1].0, "staleness[64]");
        assert!((values[1].1 - 0.3).abs() < 1e-12);
        assert!(staleness_values(&[], 64).is_empty());
    }

    #[test]
    fn an_icl_row_gives_its_three_accuracies() {
        let result: IclResult = serde_json::from_str(ICL).unwrap();
        let row = &result.rows[1];
        assert_eq!(
            icl_values(row),
            [
                ("icl_acc", row.acc),
                ("icl_acc_norm", row.acc_norm),
                ("icl_acc_paper", row.acc_paper)
            ]
        );
    }
}
