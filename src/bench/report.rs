//! `longmem bench`: runs every benchmark, then writes `bench.csv` and `BENCH.md`.

use super::faiss::{Faiss, FaissRun};
use super::models::{bench_shape, ModelShape};
use super::retrieval::{bank_bytes, retrieval_rows, write_rows, Problem, RetrievalShape};
use super::{BenchRow, Scale, Timing};
use crate::device::{device_name, measure_matmul_peak, Versions};
use crate::fsutil::write_atomic;
use crate::harness::runner::{git_commit, now};
use anyhow::Context;
use std::fmt::Write as _;
use std::time::Duration;
use tch::{Device, Kind};

/// The goals of the performance issue, with what was measured against each.
struct Goals {
    /// Whether the shapes are the paper's (the goals are about those); not with --quick.
    judged: bool,
    /// faiss median / our full retrieval median at the paper's shape (≥ 2).
    faiss_over_retrieve: Option<f64>,
    faiss_over_search: Option<f64>,
    /// Query rows whose top-k ids agree with faiss: (in order, as sets).
    faiss_ids_agree: Option<(f64, f64)>,
    /// (retrieval + write) / frozen backbone forward, GPT-2 medium, M = 65536 (≤ 0.15).
    memory_share: Option<f64>,
    /// LongMem eval GFLOP/s per model shape: (shape, width, rate); the goal is an MFU
    /// ≥ 0.70 at width ≥ 512.
    longmem_gflops: Vec<(String, i64, f64)>,
    /// Bank bytes per token / ideal, per dtype (≤ 1.05).
    bank_ratio: Vec<(&'static str, f64)>,
}

/// What `longmem bench` measures and where it writes.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Output directory for BENCH.md and bench.csv.
    pub out: std::path::PathBuf,
    pub device: crate::device::DeviceSpec,
    /// Timed samples per benchmark (after one warm-up).
    pub samples: usize,
    /// Tiny shapes instead of the paper's.
    pub quick: bool,
    pub no_faiss: bool,
    /// Only these groups (empty: all).
    pub only: Vec<super::Group>,
    /// The Python that runs baselines/faiss_flat.py.
    pub python: String,
}

/// Runs the benchmarks `args` select and writes BENCH.md and bench.csv.
pub fn run(args: &BenchOptions) -> anyhow::Result<()> {
    let device = args.device.resolve()?;
    let scale = if args.quick { Scale::Quick } else { Scale::Paper };
    let samples = args.samples.max(1);
    let started = now();
    // Before anything is written: the bench's own output must not make the tree look dirty.
    let commit = git_commit();
    let wanted = |group: super::Group| args.only.is_empty() || args.only.contains(&group);
    let mut rows = vec![];
    let mut faiss = Faiss::new(&args.python, !args.no_faiss);

    let n = if device.is_cuda() { 8192 } else { 1024 };
    tracing::info!("matmul peak");
    let first_peak = measure_matmul_peak(device, Kind::Float, n, 5, Duration::from_millis(200));

    let paper = match scale {
        Scale::Paper => RetrievalShape::paper(),
        Scale::Quick => RetrievalShape::quick(),
    };
    let mut goals = Goals {
        judged: scale == Scale::Paper,
        faiss_over_retrieve: None,
        faiss_over_search: None,
        faiss_ids_agree: None,
        memory_share: None,
        longmem_gflops: vec![],
        bank_ratio: vec![],
    };
    let bench = Bench { device, samples, paper };
    if wanted(super::Group::Retrieval) {
        rows.extend(bench.retrieval(&mut faiss, &mut goals)?);
    }
    if wanted(super::Group::Scaling) {
        rows.extend(bench.scaling(scale, wanted(super::Group::Retrieval), &mut faiss)?);
    }
    if wanted(super::Group::Write) {
        tracing::info!("memory write");
        rows.extend(write_rows(&paper, device));
    }
    for bytes in bank_bytes(&paper) {
        goals.bank_ratio.push((bytes.dtype, bytes.ratio()));
        rows.push(bytes.row());
    }
    if wanted(super::Group::Models) {
        rows.extend(bench.models(scale, &mut goals)?);
    }

    let last_peak = measure_matmul_peak(device, Kind::Float, n, 5, Duration::from_millis(200));
    // The MFU denominator: the higher of the two peaks, so that a slow moment while measuring
    // the peak cannot inflate every MFU.
    let peak_gflops = first_peak.gflops_median.max(last_peak.gflops_median);
    for row in &mut rows {
        row.set_peak(peak_gflops);
    }
    let peak_rows = [("at the start", &first_peak), ("at the end", &last_peak)].map(|(when, peak)| BenchRow {
        samples: peak.samples,
        gflops: Some(peak.gflops_median),
        note: format!(
            "best {:.1} GFLOP/s; the same measurement as `longmem doctor`",
            peak.gflops_max
        ),
        ..BenchRow::untimed("peak", &format!("matmul f32, {when}"), format!("n={n}"))
    });
    rows.splice(0..0, peak_rows);

    let header = Header {
        date: started,
        commit,
        device,
        peak_gflops,
        samples,
        faiss: faiss.note.clone(),
    };
    write_outputs(&args.out, &header, &rows, &goals)
}

/// What every benchmark group shares: where it runs, how many samples, the paper's shape.
struct Bench {
    device: Device,
    samples: usize,
    paper: RetrievalShape,
}

impl Bench {
    /// Exact retrieval at the paper's shape, with faiss beside it.
    fn retrieval(&self, faiss: &mut Faiss, goals: &mut Goals) -> anyhow::Result<Vec<BenchRow>> {
        tracing::info!(shape = self.paper.describe(), "retrieval");
        let problem = Problem::random(self.paper, self.device);
        let (mut found, ours) = retrieval_rows("retrieval", &problem, self.device, self.samples, true);
        if let Some(run) = faiss.run(&problem, self.samples)? {
            goals.faiss_over_retrieve = Some(run.timing.median() / ours.retrieve.median());
            goals.faiss_over_search = Some(run.timing.median() / ours.search.median());
            goals.faiss_ids_agree = Some((run.same_order, run.same_set));
            found.push(faiss_row("retrieval", &self.paper, &run, &ours.retrieve));
        }
        Ok(found)
    }

    /// Retrieval over memory size x chunk size; faiss on the two axes through the paper's
    /// shape (unless the retrieval group already measured that point).
    fn scaling(&self, scale: Scale, retrieval_measured: bool, faiss: &mut Faiss) -> anyhow::Result<Vec<BenchRow>> {
        let (memories, chunks): (&[i64], &[i64]) = match scale {
            Scale::Paper => (&[4096, 16384, 65536, 262144], &[1, 2, 4, 8]),
            Scale::Quick => (&[512, 2048], &[1, 4]),
        };
        let paper = self.paper;
        let mut rows = vec![];
        for &memory in memories {
            for &chunk in chunks {
                let shape = RetrievalShape { memory, chunk, ..paper };
                tracing::info!(shape = shape.describe(), "retrieval scaling");
                let problem = Problem::random(shape, self.device);
                let (found, ours) = retrieval_rows("scaling", &problem, self.device, self.samples, false);
                rows.extend(found);
                let on_axes = chunk == paper.chunk || memory == paper.memory;
                let measured = retrieval_measured && chunk == paper.chunk && memory == paper.memory;
                if on_axes && !measured {
                    if let Some(run) = faiss.run(&problem, self.samples)? {
                        rows.push(faiss_row("scaling", &shape, &run, &ours.retrieve));
                    }
                }
            }
        }
        Ok(rows)
    }

    /// Each method's forward and training step at every model shape of `scale`.
    fn models(&self, scale: Scale, goals: &mut Goals) -> anyhow::Result<Vec<BenchRow>> {
        let mut rows = vec![];
        for shape in ModelShape::all(scale) {
            tracing::info!(shape = shape.name, "models");
            let result = bench_shape(&shape, self.device, self.samples)
                .with_context(|| format!("benchmarking the {} models", shape.name))?;
            rows.extend(result.rows);
            goals.longmem_gflops.extend(result.longmem_gflops);
            if shape.memory == RetrievalShape::paper().memory && shape.window == 1024 {
                goals.memory_share = result.memory_share;
            }
        }
        Ok(rows)
    }
}

/// Writes bench.csv and BENCH.md into `out`, each atomically.
fn write_outputs(out: &std::path::Path, header: &Header, rows: &[BenchRow], goals: &Goals) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let csv_path = out.join("bench.csv");
    write_atomic(&csv_path, &csv_bytes(rows)?).with_context(|| format!("writing {}", csv_path.display()))?;
    let md_path = out.join("BENCH.md");
    write_atomic(&md_path, markdown(header, rows, goals).as_bytes())
        .with_context(|| format!("writing {}", md_path.display()))?;
    println!("wrote {} and {}", md_path.display(), csv_path.display());
    Ok(())
}

fn faiss_row(group: &str, shape: &RetrievalShape, run: &FaissRun, ours: &Timing) -> BenchRow {
    BenchRow::timed(group, "faiss-cpu IndexFlatIP search", shape.describe(), &run.timing)
        .with_flops(shape.scoring_flops())
        .with_tokens(shape.queries as f64)
        .with_note(format!(
            "ids: {:.3}% same order, {:.3}% same set; {:.2}x our full retrieval's time",
            100.0 * run.same_order,
            100.0 * run.same_set,
            run.timing.median() / ours.median()
        ))
}

fn csv_bytes(rows: &[BenchRow]) -> anyhow::Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(vec![]);
    for row in rows {
        writer.serialize(row)?;
    }
    Ok(writer.into_inner()?)
}

struct Header {
    date: String,
    commit: String,
    device: Device,
    peak_gflops: f64,
    samples: usize,
    faiss: String,
}

fn markdown(header: &Header, rows: &[BenchRow], goals: &Goals) -> String {
    let mut md = header_markdown(header);
    md.push_str(&goals_markdown(header, goals));
    md.push_str(&tables_markdown(rows, goals.judged));
    md
}

/// Where, when and how the benchmarks were measured.
fn header_markdown(header: &Header) -> String {
    let v = Versions::current();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut md = String::from("# longmem-bench: benchmarks\n\n");
    let _ = writeln!(
        md,
        "Measured {} by `longmem bench` on `{}`: {}, {} torch threads, device `{}`. \
         longmem-bench {} ({} build), tch {}, libtorch {}, commit `{}`. faiss: {}.\n",
        header.date,
        host.trim(),
        crate::device::cpu_description(),
        tch::get_num_threads(),
        device_name(header.device),
        v.longmem_bench,
        if cfg!(debug_assertions) { "dev" } else { "release" },
        v.tch,
        v.libtorch,
        header.commit,
        header.faiss
    );
    let _ = writeln!(
        md,
        "Every time is the median of {} samples after one warm-up, with the range (min–max). \
         MFU = useful FLOPs / time / the measured f32 matmul peak ({:.1} GFLOP/s, the higher of \
         its measurements at the start and at the end). \
         All numbers are in `bench.csv`.\n",
        header.samples, header.peak_gflops
    );
    md
}

/// The goals table: each goal of the performance issue with what was measured against it.
fn goals_markdown(header: &Header, goals: &Goals) -> String {
    let mut md = String::new();
    md.push_str("## Goals\n\n| goal | target | measured | met |\n|---|---|---|---|\n");
    let met = |ok: bool| match (goals.judged, ok) {
        (false, _) => "– (--quick shapes)",
        (true, true) => "yes",
        (true, false) => "**no**",
    };
    match (
        goals.faiss_over_retrieve,
        goals.faiss_over_search,
        goals.faiss_ids_agree,
    ) {
        (Some(full), Some(search), Some((order, set))) => {
            let _ = writeln!(
                md,
                "| exact retrieval vs faiss-cpu IndexFlatIP, same ids | ≥ 2× faster | {full:.2}× (search alone {search:.2}×); top-k ids agree on {:.3}% of query rows in order, {:.3}% as sets | {} |",
                100.0 * order,
                100.0 * set,
                met(full >= 2.0 && set > 0.999)
            );
        }
        _ => {
            let _ = writeln!(
                md,
                "| exact retrieval vs faiss-cpu IndexFlatIP | ≥ 2× faster | faiss not run: {} | – |",
                header.faiss
            );
        }
    }
    match goals.memory_share {
        Some(share) => {
            let _ = writeln!(
                md,
                "| retrieval + memory write / backbone forward (GPT-2 medium, M = 65536, 1024-token segments) | ≤ 15% | {:.1}% | {} |",
                100.0 * share,
                met(share <= 0.15)
            );
        }
        None => md.push_str(
            "| retrieval + memory write / backbone forward | ≤ 15% | not measured at this scale (--quick) | – |\n",
        ),
    }
    for (name, width, rate) in &goals.longmem_gflops {
        let mfu = rate / header.peak_gflops;
        let _ = writeln!(
            md,
            "| LongMem evaluation forward MFU, width ≥ 512 | ≥ 70% | {:.1}% ({name}, width {width}) | {} |",
            100.0 * mfu,
            if *width >= 512 {
                met(mfu >= 0.70)
            } else {
                "– (width < 512)"
            }
        );
    }
    for (dtype, ratio) in &goals.bank_ratio {
        let _ = writeln!(
            md,
            "| bank bytes per cached token / (2·width·bytes + chunk key), {dtype} | ≤ 1.05 | {ratio:.4} | {} |",
            met(*ratio <= 1.05)
        );
    }
    md.push('\n');
    md
}

/// One table per benchmark group, in a fixed order; empty groups are left out.
fn tables_markdown(rows: &[BenchRow], judged: bool) -> String {
    let mut md = String::new();
    for (group, title) in [
        ("peak", "Matmul peak"),
        (
            "retrieval",
            if judged {
                "Retrieval at the paper's shape"
            } else {
                "Retrieval (--quick shape)"
            },
        ),
        ("scaling", "Retrieval scaling over memory size M and chunk size c"),
        ("write", "Memory write"),
        ("bank", "Memory bank size"),
        ("model", "Models (random weights, memory full)"),
    ] {
        let in_group: Vec<&BenchRow> = rows.iter().filter(|r| r.group == group).collect();
        if in_group.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {title}\n");
        md.push_str("| benchmark | shape | median ms | min–max ms | GFLOP/s | MFU | tokens/s | note |\n");
        md.push_str("|---|---|---:|---:|---:|---:|---:|---|\n");
        for r in in_group {
            let opt = |x: Option<f64>, digits: usize| x.map_or(String::new(), |x| format!("{x:.digits$}"));
            let ms = |x: f64| if x.is_nan() { String::new() } else { format!("{x:.2}") };
            let range = if r.min_ms.is_nan() {
                String::new()
            } else {
                format!("{:.2}–{:.2}", r.min_ms, r.max_ms)
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.name,
                r.shape,
                ms(r.median_ms),
                range,
                opt(r.gflops, 1),
                r.mfu.map_or(String::new(), |m| format!("{:.1}%", 100.0 * m)),
                opt(r.tokens_per_s, 0),
                r.note
            );
        }
        md.push('\n');
    }
    md
}
