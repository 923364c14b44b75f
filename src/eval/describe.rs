//! The human-readable lines `longmem eval` and `longmem sweep` print for a result.

use super::result::{EvalResult, IclResult, SuffixResult};
use std::path::Path;

impl EvalResult {
    /// What the evaluation found, for a person: `label` names the run, `path` the file.
    pub fn describe(&self, label: &str, path: &Path) -> String {
        let totals = &self.totals;
        // Corpora without known answers have no near/far tokens: print "-" rather than NaN.
        let known = |count: f64, value: f64, digits: usize| {
            if count > 0.0 {
                format!("{value:.digits$}")
            } else {
                "-".to_string()
            }
        };
        let hit = self.far_hit_rate_any_head.map_or("-".to_string(), |h| {
            let per_head = known(totals.far_tokens, totals.hit_rate_per_head(), 3);
            let chance = known(totals.far_tokens, totals.hit_rate_chance(), 3);
            format!(
                "{} (per head {per_head}, chance per head {chance})",
                known(totals.far_tokens, h, 3)
            )
        });
        let mut lines = vec![format!(
            "{label} ({}, window {}): perplexity {:.3}  NLL all {:.4}  near {}  far {}  far hit rate {hit}  ({:.0} far tokens) -> {}",
            self.method,
            self.window,
            totals.perplexity(),
            totals.mean(),
            known(totals.near_tokens, totals.near_mean(), 4),
            known(totals.far_tokens, totals.far_mean(), 4),
            totals.far_tokens,
            path.display()
        )];
        if let Some(gates) = &self.memory_gates {
            let shown: Vec<String> = gates.iter().map(|g| format!("{g:.3}")).collect();
            lines.push(format!("  memory gates σ(g) per head: {}", shown.join(" ")));
        }
        let c = &self.cost;
        let stages: Vec<String> = c
            .latency_us_per_position
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        lines.push(format!(
            "  cost: {:.0} positions/s, µs per position: {}; peak RSS {:.0} MiB; {:.2} GFLOP/s of {:.0} measured (MFU {:.1}%)",
            c.positions_per_second,
            stages.join(", "),
            c.peak_rss_bytes.unwrap_or(0) as f64 / (1 << 20) as f64,
            c.achieved_gflops,
            c.peak_gflops,
            100.0 * c.mfu
        ));
        for b in &totals.by_length {
            lines.push(format!(
                "  length {:<10} {:>5} documents  {:>10.0} tokens  perplexity {:.3}",
                b.bucket,
                b.documents,
                b.tokens,
                b.perplexity()
            ));
        }
        lines.join("\n")
    }
}

impl IclResult {
    /// One line per (local, memory) setting, then the file.
    pub fn describe(&self, label: &str, path: &Path) -> String {
        let mut lines: Vec<String> = self
            .summary
            .iter()
            .map(|s| {
                format!(
                    "{label} ({}) ICL {}: {} local + {} in memory: paper {:.3} ± {:.3}  acc {:.3} ± {:.3}  acc_norm {:.3} ± {:.3}  ({} seeds)",
                    self.method,
                    s.task,
                    s.local_shots,
                    s.memory_shots,
                    s.acc_paper_mean,
                    s.acc_paper_std,
                    s.acc_mean,
                    s.acc_std,
                    s.acc_norm_mean,
                    s.acc_norm_std,
                    s.seeds
                )
            })
            .collect();
        lines.push(format!("  -> {}", path.display()));
        lines.join("\n")
    }
}

impl SuffixResult {
    /// What the suffix-identification evaluation found, a line per source, for the terminal.
    pub fn describe(&self, label: &str, path: &Path) -> String {
        let mut lines: Vec<String> = self
            .sources
            .iter()
            .map(|s| {
                let distance = s.mean_distance.map_or(String::new(), |d| format!(", evidence {d:.0} tokens back"));
                format!(
                    "{label} ({}) ChapterBreak {}: accuracy {:.3} ({} of {}; chance {:.3}; context {:.0} tokens{distance})",
                    self.method, s.source, s.accuracy, s.correct, s.examples, s.chance, s.mean_context_tokens
                )
            })
            .collect();
        lines.push(format!("  -> {}", path.display()));
        lines.join("\n")
    }
}
