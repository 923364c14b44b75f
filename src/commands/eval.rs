//! `longmem eval <spec>`: evaluates a trained run on held-out documents: NLL and perplexity
//! over all tokens and per document-length bucket, over answers within the local window
//! ("near") and beyond it ("far"), and the retrieval hit rate on far answers. Writes
//! `eval.json` (or `eval-window<N>.json`) in the run's directory. A spec with an `[icl]`
//! section is also evaluated on in-context learning, with demonstrations in memory
//! (`icl.json`).

use crate::cli::EvalArgs;
use crate::data::SegmentStream;
use crate::device::measure_matmul_peak;
use crate::eval::cost::{forward_flops_per_token, CostReport};
use crate::eval::icl::{self, IclRow, IclSpec, IclSummary, IclTask};
use crate::eval::{segments_to_cover, stream_nll_bucketed, NllTotals, PAPER_LENGTH_EDGES};
use crate::fsutil::write_json_atomic;
use crate::harness::build;
use crate::harness::spec::Spec;
use crate::models::{weights, BlockStyle};
use crate::profile::StageClock;
use crate::train::{Learner, Method};
use anyhow::{bail, Context};
use serde::Serialize;

#[derive(Serialize)]
struct EvalReport<'a> {
    method: String,
    /// Local window the evaluation ran with ("far" is always relative to the spec's).
    window: usize,
    /// Memory gates closed (the no-memory ablation).
    memory_gates_closed: bool,
    /// Held-out documents per batch row: as asked (generators), or the most any row reads
    /// (corpora, whose first `--documents` held-out documents are read, each once).
    documents_per_row: u64,
    totals: &'a NllTotals,
    perplexity: f64,
    far_nll: f64,
    near_nll: f64,
    far_hit_rate_any_head: Option<f64>,
    cost: CostReport,
    /// σ(g_h) per head of the memory layer's gate, for memory methods.
    memory_gates: Option<Vec<f64>>,
    /// The memory the evaluation ran with, for memory methods.
    memory: Option<MemorySettings>,
}

/// Memory size M, chunk size c and retrieved tokens K (evaluation-time settings).
#[derive(Serialize)]
struct MemorySettings {
    size: i64,
    chunk: i64,
    top_k: i64,
}

impl MemorySettings {
    fn of(spec: &Spec, learner: &Learner) -> Option<Self> {
        learner.bank().map(|_| Self {
            size: spec.memory.size,
            chunk: spec.memory.chunk,
            top_k: spec.memory.k,
        })
    }
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let spec = Spec::load(&args.spec)?;
    let out = spec.out_dir.clone();
    evaluate_spec(spec, args, &out)
}

/// Evaluates the run trained by `spec` (weights in `spec.out_dir`) as `args` say, writing
/// the reports into `out`. `args.spec` only names the spec in messages.
pub fn evaluate_spec(spec: Spec, args: &EvalArgs, out: &std::path::Path) -> anyhow::Result<()> {
    if let Some(edges) = &args.length_buckets {
        if edges.is_empty() || edges.windows(2).any(|w| w[0] >= w[1]) {
            bail!("--length-buckets {edges:?}: give increasing token counts, e.g. 5000,10000,100000");
        }
    }
    let overrides = args.memory_size.is_some() || args.chunk.is_some() || args.top_k.is_some();
    if overrides && !matches!(spec.method, Method::Longmem | Method::Memtrm) {
        bail!(
            "--memory-size, --chunk and --top-k set a memory model's memory; {} has none",
            spec.method
        );
    }
    let spec = spec
        .with_memory(args.memory_size, args.chunk, args.top_k)
        .map_err(|e| anyhow::anyhow!("{e} (from --memory-size/--chunk/--top-k)"))?;
    let device = spec.device.resolve()?;
    if args.window.is_some() && !matches!(spec.method, Method::Plain | Method::Pretrain) {
        bail!(
            "--window evaluates a plain backbone with a longer local window; {} uses memory instead",
            spec.method
        );
    }
    let window = match args.window {
        None => spec.segment_len,
        Some(w) => long_window(&spec, w)?,
    };
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
    if args.no_memory {
        close_memory_gates(&learner, &spec)?;
    }
    if !args.icl_only {
        perplexity(args, &spec, &mut learner, window, device, out)?;
    }
    match &spec.icl {
        Some(icl) if args.window.is_none() && !args.no_icl => in_context(args, &spec, icl, &mut learner, device, out),
        Some(_) => Ok(()),
        None if args.icl_only => bail!(
            "{} has no [icl] section to evaluate; add one (see experiments/icl/)",
            args.spec.display()
        ),
        None => Ok(()),
    }
}

#[derive(Serialize)]
struct IclReport<'a> {
    method: String,
    memory_gates_closed: bool,
    window: usize,
    settings: &'a IclSpec,
    memory: Option<MemorySettings>,
    summary: Vec<IclSummary>,
    rows: Vec<IclRow>,
}

/// The in-context learning evaluation: `icl.json` (`icl-nomemory.json` with the gates closed).
fn in_context(
    args: &EvalArgs,
    spec: &Spec,
    icl: &IclSpec,
    learner: &mut Learner,
    device: tch::Device,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let tokenizer = spec.data.tokenizer().expect("specs with [icl] have text data");
    let task = IclTask::from_spec(icl, &spec.data, spec.seed.wrapping_add(args.seed_offset))?;
    let (rows, summary) = icl::evaluate(
        learner,
        tokenizer.as_ref(),
        &task,
        icl,
        spec.segment_len,
        spec.batch_size,
        device,
    )?;
    let path = out.join(output_name("icl", args, spec));
    for s in &summary {
        println!(
            "{} ({}) ICL {}: {} local + {} in memory: paper {:.3} ± {:.3}  acc {:.3} ± {:.3}  acc_norm {:.3} ± {:.3}  ({} seeds)",
            spec.out_dir.display(),
            spec.method,
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
        );
    }
    let report = IclReport {
        method: spec.method.to_string(),
        memory_gates_closed: args.no_memory,
        window: spec.segment_len,
        settings: icl,
        memory: MemorySettings::of(spec, learner),
        summary,
        rows,
    };
    write_json_atomic(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    println!("  -> {}", path.display());
    Ok(())
}

/// The long-text evaluation: `eval.json` (or `eval-window<N>.json`, `eval-nomemory.json`).
fn perplexity(
    args: &EvalArgs,
    spec: &Spec,
    learner: &mut Learner,
    window: usize,
    device: tch::Device,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let spec = spec.clone();
    // Whole documents, so evaluations with different windows score the same documents; a
    // corpus's held-out documents are each read exactly once.
    let (source, documents) = build::held_out(&spec, args.seed_offset, spec.batch_size, args.documents)?;
    let batches = segments_to_cover(&source, spec.batch_size, documents, window);
    let mut stream = SegmentStream::new(source, spec.batch_size, window, device).with_far_reference(spec.segment_len);
    let clock = StageClock::new(device);
    let start = std::time::Instant::now();
    let edges = args
        .length_buckets
        .clone()
        .unwrap_or_else(|| PAPER_LENGTH_EDGES.to_vec());
    let totals = stream_nll_bucketed(learner, &mut stream, batches, &edges, &clock);
    let wall = start.elapsed().as_secs_f64();
    let cost = cost_report(
        &spec,
        &clock,
        wall,
        (batches * spec.batch_size * window) as f64,
        window,
        device,
    );
    let hit_rate = learner.bank().map(|_| totals.hit_rate_any_head());
    let report = EvalReport {
        method: spec.method.to_string(),
        window,
        memory_gates_closed: args.no_memory,
        documents_per_row: documents,
        totals: &totals,
        perplexity: totals.perplexity(),
        far_nll: totals.far_mean(),
        near_nll: totals.near_mean(),
        far_hit_rate_any_head: hit_rate,
        cost,
        memory_gates: memory_gates(learner),
        memory: MemorySettings::of(&spec, learner),
    };
    let path = out.join(output_name("eval", args, &spec));
    write_json_atomic(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    // Corpora without known answers have no near/far tokens: print "-" rather than NaN.
    let known = |count: f64, value: f64, digits: usize| {
        if count > 0.0 {
            format!("{value:.digits$}")
        } else {
            "-".to_string()
        }
    };
    let hit = hit_rate.map_or("-".to_string(), |h| {
        let per_head = known(totals.far_tokens, totals.hit_rate_per_head(), 3);
        let chance = known(totals.far_tokens, totals.hit_rate_chance(), 3);
        format!(
            "{} (per head {per_head}, chance per head {chance})",
            known(totals.far_tokens, h, 3)
        )
    });
    println!(
        "{} ({}, window {window}): perplexity {:.3}  NLL all {:.4}  near {}  far {}  far hit rate {hit}  ({:.0} far tokens) -> {}",
        spec.out_dir.display(),
        spec.method,
        totals.perplexity(),
        totals.mean(),
        known(totals.near_tokens, totals.near_mean(), 4),
        known(totals.far_tokens, totals.far_mean(), 4),
        totals.far_tokens,
        path.display()
    );
    if let Some(gates) = &report.memory_gates {
        let shown: Vec<String> = gates.iter().map(|g| format!("{g:.3}")).collect();
        println!("  memory gates σ(g) per head: {}", shown.join(" "));
    }
    let c = &report.cost;
    let stages: Vec<String> = c
        .latency_us_per_position
        .iter()
        .map(|(k, v)| format!("{k} {v:.2}"))
        .collect();
    println!(
        "  cost: {:.0} positions/s, µs per position: {}; peak RSS {:.0} MiB; {:.2} GFLOP/s of {:.0} measured (MFU {:.1}%)",
        c.positions_per_second,
        stages.join(", "),
        c.peak_rss_bytes.unwrap_or(0) as f64 / (1 << 20) as f64,
        c.achieved_gflops,
        c.peak_gflops,
        100.0 * c.mfu
    );
    for b in &totals.by_length {
        println!(
            "  length {:<10} {:>5} documents  {:>10.0} tokens  perplexity {:.3}",
            b.bucket,
            b.documents,
            b.tokens,
            b.perplexity()
        );
    }
    Ok(())
}

/// The file name for what `args` changed (see [`crate::eval::result_file_name`]).
fn output_name(stem: &str, args: &EvalArgs, spec: &Spec) -> String {
    let overrides = args.memory_size.is_some() || args.chunk.is_some() || args.top_k.is_some();
    crate::eval::result_file_name(stem, args.window, args.no_memory, overrides.then_some(&spec.memory))
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

/// Sets every memory gate logit to −∞: σ = 0, so the joint attention is exactly local.
fn close_memory_gates(learner: &Learner, spec: &Spec) -> anyhow::Result<()> {
    let Some(gate) = learner.memory_gate() else {
        bail!("--no-memory ablates a memory model; {} has no memory", spec.method)
    };
    let _ = tch::no_grad(|| gate.shallow_clone().fill_(f64::NEG_INFINITY));
    Ok(())
}

/// σ(g_h) of each head's memory gate.
fn memory_gates(learner: &Learner) -> Option<Vec<f64>> {
    let gate = learner.memory_gate()?;
    Vec::<f64>::try_from(gate.sigmoid().to_kind(tch::Kind::Double)).ok()
}

/// Throughput, stage latencies, peak memory and MFU of the evaluation that just ran.
fn cost_report(
    spec: &Spec,
    clock: &StageClock,
    wall: f64,
    positions: f64,
    window: usize,
    device: tch::Device,
) -> CostReport {
    // The learner and its bank are built from `spec`, so the spec gives their shape.
    let shape = spec.flop_shape(window);
    // The same matmul peak `longmem doctor` measures, in this process.
    let n = if device.is_cuda() { 8192 } else { 1024 };
    let peak = measure_matmul_peak(device, tch::Kind::Float, n, 3, std::time::Duration::from_millis(200));
    CostReport::new(
        clock,
        wall,
        positions,
        forward_flops_per_token(&shape),
        peak.gflops_median,
    )
}
