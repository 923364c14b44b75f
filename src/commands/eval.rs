//! `longmem eval <spec>`: evaluates a trained run on held-out documents of its corpus:
//! NLL and perplexity over all tokens, over answers within the local window ("near") and
//! beyond it ("far"), and the retrieval hit rate on far answers. Writes `eval.json`.

use crate::cli::EvalArgs;
use crate::data::{RecallSource, SegmentStream};
use crate::eval::{stream_nll, NllTotals};
use crate::fsutil::write_json_atomic;
use crate::harness::build;
use crate::harness::spec::Spec;
use crate::models::{weights, BlockStyle};
use crate::train::Method;
use anyhow::{bail, Context};
use serde::Serialize;

#[derive(Serialize)]
struct EvalReport<'a> {
    method: String,
    /// Local window the evaluation ran with ("far" is always relative to the spec's).
    window: usize,
    held_out_seed: u64,
    documents_per_row: usize,
    totals: &'a NllTotals,
    perplexity: f64,
    far_nll: f64,
    near_nll: f64,
    far_hit_rate_any_head: Option<f64>,
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let spec = Spec::load(&args.spec)?;
    let device = spec.device.resolve()?;
    if args.window.is_some() && !matches!(spec.method, Method::Plain | Method::Pretrain) {
        bail!(
            "--window evaluates a plain backbone with a longer local window; {} uses memory instead",
            spec.method
        );
    }
    let mut learner = build::learner(&spec, device)?;
    let file = spec.out_dir.join(learner.weights_file());
    if !file.is_file() {
        bail!(
            "{} does not exist: train the run first (`longmem train {}`)",
            file.display(),
            args.spec.display()
        );
    }
    weights::load_safetensors(learner.trained_vs(), &file, spec.backbone.style)
        .with_context(|| format!("loading the trained weights of {}", spec.out_dir.display()))?;
    // Held-out documents: another seed than training's.
    let seed = spec.seed.wrapping_add(args.seed_offset);
    let source = RecallSource {
        config: spec.data.clone(),
        seed,
    };
    let window = match args.window {
        None => spec.segment_len,
        Some(w) => long_window(&spec, w)?,
    };
    let mut stream = SegmentStream::new(source, spec.batch_size, window, device).with_far_reference(spec.segment_len);
    // Whole documents, so evaluations with different windows score the same documents.
    let segments_per_document = spec.data.doc_tokens.saturating_sub(1).div_ceil(window).max(1);
    let totals = stream_nll(&mut learner, &mut stream, args.documents * segments_per_document);
    let hit_rate = learner.bank().map(|_| totals.hit_rate_any_head());
    let report = EvalReport {
        method: spec.method.to_string(),
        window,
        held_out_seed: seed,
        documents_per_row: args.documents,
        totals: &totals,
        perplexity: totals.perplexity(),
        far_nll: totals.far_mean(),
        near_nll: totals.near_mean(),
        far_hit_rate_any_head: hit_rate,
    };
    let path = match args.window {
        None => spec.out_dir.join("eval.json"),
        Some(w) => spec.out_dir.join(format!("eval-window{w}.json")),
    };
    write_json_atomic(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    let hit = hit_rate.map_or("-".to_string(), |h| format!("{h:.3}"));
    println!(
        "{} ({}, window {window}): perplexity {:.3}  NLL all {:.4}  near {:.4}  far {:.4}  far hit rate {hit}  ({:.0} far tokens) -> {}",
        spec.out_dir.display(),
        spec.method,
        totals.perplexity(),
        totals.mean(),
        totals.near_mean(),
        totals.far_mean(),
        totals.far_tokens,
        path.display()
    );
    Ok(())
}

/// The long-window plain reference (DESIGN.md §2.4): window T + M "when it fits", i.e. within
/// a gpt2 backbone's position table; ALiBi (`newgpt`) runs at any length.
fn long_window(spec: &Spec, window: usize) -> anyhow::Result<usize> {
    if window < spec.segment_len {
        bail!(
            "--window {window} is shorter than the spec's segment_len = {}",
            spec.segment_len
        );
    }
    if spec.backbone.style == BlockStyle::Gpt2 && window as i64 > spec.backbone.n_positions {
        bail!(
            "--window {window} does not fit this gpt2 backbone (n_positions = {}); \
             the long-window reference needs a larger position table or a newgpt (ALiBi) backbone",
            spec.backbone.n_positions
        );
    }
    Ok(window)
}
