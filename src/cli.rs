//! The command line: one enum of subcommands, dispatched in `main.rs`.

use crate::device::DeviceSpec;
use crate::tokenizer::TokenizerKind;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "longmem",
    version,
    about = "LongMem study harness: frozen LM + cache memory + SideNet, vs coupled memory and plain context"
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); logs go to stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors in the log.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Versions, devices and each device's measured matmul peak (GFLOP/s).
    Doctor(DoctorArgs),
    /// Encode text with a tokenizer and print the ids (or decode ids back).
    Tokenize(TokenizeArgs),
    /// Score text with a backbone loaded from a local Hugging Face model directory or
    /// safetensors file: perplexity and the most likely next tokens.
    Lm(LmArgs),
    /// Train one method (pretrain, longmem, memtrm, plain) as a TOML spec describes;
    /// resumes from the run's last checkpoint and skips a finished run.
    Train(TrainArgs),
    /// Evaluate a trained run on held-out documents: NLL overall, on answers within and
    /// beyond the local window, and the retrieval hit rate. Writes eval.json in the run.
    Eval(EvalArgs),
    /// Expand an experiment (TOML with a [sweep] grid) and list its runs: which are done,
    /// failed or to do, and an estimate of the work.
    Plan(PlanArgs),
    /// Run an experiment's sweep: shared stages once, finished runs skipped, unfinished
    /// ones resumed, failures recorded while the rest go on.
    Sweep(SweepArgs),
    /// Collect an experiment's results into tables (Parquet, CSV), charts (PNG, SVG) and
    /// results/<name>/REPORT.md.
    Report(ReportArgs),
    /// Each run of an experiment: done, running, interrupted, failed (with the reason) or
    /// pending.
    Status(PlanArgs),
    /// Write (and with --submit, submit) a Slurm job array that runs an experiment's sweep,
    /// one shard of runs per array task.
    Slurm(SlurmArgs),
    /// Microbenchmarks (retrieval, memory write, bank size, each method's forward and
    /// training step, matmul peak) with faiss-cpu side by side; writes BENCH.md and bench.csv.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Output directory for BENCH.md and bench.csv.
    #[arg(long, default_value = "results/bench")]
    pub out: PathBuf,
    /// Device to measure: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Timed samples per benchmark (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
    /// Tiny shapes instead of the paper's (seconds; for tests and smoke checks).
    #[arg(long)]
    pub quick: bool,
    /// Skip the faiss-cpu comparison.
    #[arg(long)]
    pub no_faiss: bool,
    /// Run only these groups (comma-separated): retrieval, scaling, write, models.
    /// The matmul peak and the bank size are always measured.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Vec<crate::bench::Group>,
    /// The Python that runs baselines/faiss_flat.py (needs faiss-cpu and numpy).
    #[arg(long, default_value = "python3")]
    pub python: String,
}

#[derive(Debug, Args)]
pub struct SlurmArgs {
    /// The experiment, e.g. experiments/paper/pg19.toml.
    pub experiment: PathBuf,
    /// Training runs (with their evaluations) per array task; default 1.
    #[arg(long)]
    pub runs_per_task: Option<usize>,
    /// Submit with sbatch and print the job id (otherwise print the script and the command).
    #[arg(long)]
    pub submit: bool,
    /// Overrides of the experiment's [slurm] block.
    #[command(flatten)]
    pub resources: crate::config::SlurmSettings,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The experiment, e.g. experiments/reproduce.toml.
    pub experiment: PathBuf,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The experiment, e.g. experiments/reproduce.toml.
    pub experiment: PathBuf,
    /// Run only shard i of n (0-based), e.g. 0/4: separate processes or cluster tasks can
    /// share one sweep.
    #[arg(long)]
    pub shard: Option<crate::harness::runner::Shard>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The experiment(s): one report over all of their runs.
    #[arg(required = true)]
    pub experiments: Vec<PathBuf>,
    /// Output directory (default: results/<name of the first experiment>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Side of the square matrices timed on the CPU.
    #[arg(long, default_value_t = 1024)]
    pub cpu_n: i64,
    /// Side of the square matrices timed on each CUDA device.
    #[arg(long, default_value_t = 8192)]
    pub cuda_n: i64,
}

#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// byte, gpt2, or a Hugging Face tokenizer.json (or model directory holding one).
    #[arg(long, default_value_t = TokenizerKind::Gpt2)]
    pub tokenizer: TokenizerKind,
    /// Treat the input as whitespace-separated ids and print the decoded text.
    #[arg(long)]
    pub decode: bool,
    /// The text (or ids with --decode).
    pub input: String,
}

#[derive(Debug, Args)]
pub struct LmArgs {
    /// A Hugging Face model directory (config.json and model.safetensors or shards), or a
    /// `.safetensors` file (HF names for gpt2, llama, neox; this project's for newgpt).
    #[arg(long)]
    pub weights: PathBuf,
    /// Model config: an HF `config.json` (gpt2, llama, mistral, qwen2, gpt_neox), or a TOML
    /// backbone config (any style). Default: the `config.json` in or beside the weights.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// byte, gpt2, or a Hugging Face tokenizer.json (or model directory holding one).
    /// Default: the model directory's tokenizer.json where it has one, else gpt2.
    #[arg(long)]
    pub tokenizer: Option<TokenizerKind>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// How many next-token candidates to print.
    #[arg(long, default_value_t = 5)]
    pub top: i64,
    /// The text to score.
    pub text: String,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The training spec (TOML), e.g. experiments/tiny/longmem.toml.
    pub spec: PathBuf,
    /// Stop (with a checkpoint) after this many steps, as an interruption would.
    #[arg(long)]
    pub stop_after: Option<u64>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The spec the run was trained with.
    pub spec: PathBuf,
    /// Held-out documents to evaluate, whole. For the built-in generators, N per batch row
    /// (default 8); for a corpus, its first N held-out documents in id order, each read once
    /// (default all): this bounds evaluation time.
    #[arg(long)]
    pub documents: Option<u64>,
    /// Evaluate a plain backbone with this local window instead of the spec's segment
    /// length (the long-window reference, T + M when it fits); "far" stays relative to the
    /// spec's segment length.
    #[arg(long)]
    pub window: Option<usize>,
    /// Ablation: evaluate the same trained memory model with its memory gates closed, so
    /// memory has no effect (writes eval-nomemory.json).
    #[arg(long, conflicts_with = "window")]
    pub no_memory: bool,
    /// Memory size M in tokens for this evaluation (default: the spec's `memory.size`); no
    /// retraining needed. Files get an `-M<size>-c<chunk>-k<K>` suffix when any of these is set.
    #[arg(long)]
    pub memory_size: Option<i64>,
    /// Chunk size c in tokens (default: the spec's).
    #[arg(long)]
    pub chunk: Option<i64>,
    /// Memory tokens retrieved per query, K (default: the spec's `memory.k`).
    #[arg(long)]
    pub top_k: Option<i64>,
    /// What a memory model retrieves: exact (the top K/c chunks, as trained), or a bound:
    /// oracle (each query's evidence chunk put into its set) or random (K/c chunks at
    /// random); writes eval-oracle.json or eval-random.json.
    #[arg(long, value_enum)]
    pub retrieval: Option<crate::memory::Retrieval>,
    /// Held-out documents of this many tokens from the built-in generators (recall, needle,
    /// variables; default: the spec's `data.doc_tokens`), e.g. longer than those trained on.
    #[arg(long)]
    pub doc_tokens: Option<usize>,
    /// Batch rows (streams) to evaluate with (default: the spec's `train.batch_size`).
    #[arg(long)]
    pub rows: Option<usize>,
    /// Document-length bucket edges in tokens, comma-separated (default: the paper's
    /// 5000,10000,100000,500000,1000000).
    #[arg(long, value_delimiter = ',')]
    pub length_buckets: Option<Vec<usize>>,
    /// Run only the spec's `[icl]` evaluation (writes icl.json), not the perplexity one.
    #[arg(long, conflicts_with = "window")]
    pub icl_only: bool,
    /// Skip the spec's `[icl]` evaluation.
    #[arg(long, conflicts_with = "icl_only")]
    pub no_icl: bool,
    /// Run only the spec's `[chapterbreak]` evaluation (writes chapterbreak.json).
    #[arg(long, conflicts_with_all = ["window", "icl_only", "no_icl"])]
    pub chapterbreak_only: bool,
    /// Skip the spec's `[chapterbreak]` evaluation.
    #[arg(long, conflicts_with = "chapterbreak_only")]
    pub no_chapterbreak: bool,
    /// Held-out documents use the spec's seed plus this offset.
    #[arg(long, default_value_t = 1000)]
    pub seed_offset: u64,
}
