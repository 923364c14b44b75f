//! Evaluating a trained model: the long-text evaluation (held-out documents → an
//! [`EvalResult`]) and in-context learning (→ an [`IclResult`]). Building the model and
//! writing the files is the caller's (harness/stage.rs).

use super::cost::CostReport;
use super::distance::distance_edges;
use super::icl::{self, IclTask};
use super::result::{EvalResult, IclResult, MemorySettings, SuffixResult};
use super::{segments_to_cover, stream_nll_scored, Scoring};
use crate::config::{self, ChapterBreakSpec, IclProtocol, IclSpec, Spec};
use crate::data::SegmentStream;
use crate::device::measure_matmul_peak;
use crate::memory::{BankSharing, Retrieval};
use crate::methods::{forward_flops_per_token, MethodModel};
use crate::profile::StageClock;

/// What the long-text evaluation reads and how it buckets.
#[derive(Debug, Clone)]
pub struct PerplexitySettings<'a> {
    /// Local window (the spec's segment length, or longer for the long-window reference).
    pub window: usize,
    /// Held-out documents per batch row (generators; default 8), or the first this many
    /// held-out documents (corpora; default all).
    pub documents: Option<u64>,
    /// Generators draw held-out documents from the spec's seed plus this.
    pub seed_offset: u64,
    /// Document-length bucket edges in tokens.
    pub length_edges: &'a [usize],
    /// The memory gates are closed (recorded in the result).
    pub gates_closed: bool,
    /// Exact retrieval, or the oracle or random bound (memory methods).
    pub retrieval: Retrieval,
}

/// Scores `spec`'s held-out documents with `model`: whole documents, so evaluations with
/// different windows score the same ones; a corpus's held-out documents are each read once.
pub fn perplexity(
    model: &mut dyn MethodModel,
    spec: &Spec,
    settings: &PerplexitySettings,
) -> anyhow::Result<EvalResult> {
    let device = model.trained_vs().device();
    let shared = model.bank().is_some_and(|b| b.config().sharing == BankSharing::Shared);
    if settings.retrieval == Retrieval::Oracle && shared {
        anyhow::bail!(
            "the oracle retrieval bound needs a bank per stream: a shared bank's chunks are no one row's; \
             set memory.sharing = \"per-stream\" or evaluate exact or random retrieval"
        );
    }
    let window = settings.window;
    // A corpus is capped to its first `documents` held-out documents, each read once.
    let (source, documents) = config::held_out(spec, settings.seed_offset, spec.batch_size, settings.documents)?;
    let batches = segments_to_cover(&source, spec.batch_size, documents, window);
    let mut stream = SegmentStream::new(source, spec.batch_size, window, device).with_far_reference(spec.segment_len);
    let clock = StageClock::new(device);
    let start = std::time::Instant::now();
    let scoring = Scoring {
        length_edges: settings.length_edges,
        // Distances are measured in windows of the spec's own length, as "far" is.
        distance_edges: distance_edges(spec.segment_len),
        retrieval: settings.retrieval,
        seed: spec.seed.wrapping_add(settings.seed_offset),
        clock: &clock,
    };
    let totals = stream_nll_scored(model, &mut stream, batches, &scoring);
    let wall = start.elapsed().as_secs_f64();
    let positions = (batches * spec.batch_size * window) as f64;
    let cost = cost_report(spec, &clock, wall, positions, window, device);
    Ok(EvalResult {
        method: spec.method.to_string(),
        window,
        memory_gates_closed: settings.gates_closed,
        retrieval: (settings.retrieval != Retrieval::Exact).then_some(settings.retrieval),
        documents_per_row: documents,
        perplexity: totals.perplexity(),
        far_nll: totals.far_mean(),
        near_nll: totals.near_mean(),
        far_hit_rate_any_head: model.bank().map(|_| totals.hit_rate_any_head()),
        totals,
        cost,
        memory_gates: memory_gates(model),
        memory: memory_settings(spec, model),
    })
}

/// In-context learning with `spec`'s `[icl]` section `icl`: demonstrations in the prompt and
/// in memory, per seed.
pub fn in_context(
    model: &mut dyn MethodModel,
    spec: &Spec,
    icl: &IclSpec,
    seed_offset: u64,
    gates_closed: bool,
) -> anyhow::Result<IclResult> {
    let device = model.trained_vs().device();
    let tokenizer = spec.data.tokenizer().expect("specs with [icl] have text data");
    let task = IclTask::from_spec(icl, &spec.data, spec.seed.wrapping_add(seed_offset))?;
    let evaluate = match icl.protocol {
        IclProtocol::Harness => icl::evaluate,
        IclProtocol::Released => icl::released::evaluate,
    };
    let (rows, summary) = evaluate(
        model,
        tokenizer.as_ref(),
        &task,
        icl,
        spec.segment_len,
        spec.batch_size,
        device,
    )?;
    Ok(IclResult {
        method: spec.method.to_string(),
        memory_gates_closed: gates_closed,
        window: spec.segment_len,
        settings: icl.clone(),
        memory: memory_settings(spec, model),
        summary,
        rows,
    })
}

/// Sets every memory gate logit to −∞: σ = 0, so the joint attention is exactly local.
/// `false` for a model without memory.
pub fn close_memory_gates(model: &dyn MethodModel) -> bool {
    let Some(gate) = model.memory_gate() else {
        return false;
    };
    let _ = tch::no_grad(|| gate.shallow_clone().fill_(f64::NEG_INFINITY));
    true
}

/// The memory the evaluation runs with, for memory methods.
/// Suffix identification with `spec`'s `[chapterbreak]` section `cb`: its file's examples,
/// or the built-in ones from held-out documents (seeded from the seed plus `seed_offset`).
pub fn suffix_identification(
    model: &mut dyn MethodModel,
    spec: &Spec,
    cb: &ChapterBreakSpec,
    seed_offset: u64,
    gates_closed: bool,
) -> anyhow::Result<SuffixResult> {
    let examples = super::suffix::examples(spec, cb, seed_offset)?;
    let device = model.trained_vs().device();
    let sources = super::suffix::evaluate(model, &examples, spec.segment_len, spec.batch_size, device)?;
    Ok(SuffixResult {
        method: spec.method.to_string(),
        memory_gates_closed: gates_closed,
        window: spec.segment_len,
        settings: cb.clone(),
        memory: memory_settings(spec, model),
        sources,
    })
}

fn memory_settings(spec: &Spec, model: &dyn MethodModel) -> Option<MemorySettings> {
    model.bank().map(|_| MemorySettings {
        size: spec.memory.size,
        chunk: spec.memory.chunk,
        top_k: spec.memory.k,
    })
}

/// σ(g_h) of each head's memory gate.
fn memory_gates(model: &dyn MethodModel) -> Option<Vec<f64>> {
    let gate = model.memory_gate()?;
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
    // The model and its bank are built from `spec`, so the spec gives their shape.
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
