//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

pub fn read_tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// Largest absolute difference between two same-shaped tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a - b).abs().max().double_value(&[])
}

pub fn assert_close(actual: &Tensor, expected: &Tensor, tol: f64, what: &str) {
    let diff = max_abs_diff(actual, expected);
    assert!(diff <= tol, "{what}: max |Δ| = {diff:e} > {tol:e}");
}

/// Reports that the calling test skips itself, or the part of it that needs `resource`
/// (`cuda`, `slurm`, `faiss`, `just`), because `reason`. The line `SKIPPED: <test>: <reason>`
/// goes straight to the process's stderr rather than through `eprintln!`, which the test
/// harness captures for tests that pass, so it shows in `cargo test`'s output and CI's log
/// (`grep SKIPPED` counts them). Where `LONGMEM_REQUIRE` lists `resource` (comma-separated;
/// `just test-cuda` sets `LONGMEM_REQUIRE=cuda`), the test fails instead: a run meant to
/// exercise the resource must not pass without it.
pub fn skip(resource: &str, reason: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let required = std::env::var("LONGMEM_REQUIRE").unwrap_or_default();
    if required.split(',').any(|r| r.trim() == resource) {
        panic!("{test} needs {resource} (LONGMEM_REQUIRE={required}), but {reason}");
    }
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {test}: {reason}");
}

/// libtorch's RNG is global to the process and tests run on parallel threads: hold this
/// from seeding until the seeded tensors exist, so no other test draws in between.
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `[rows, cols]` int64 ids in `0..vocab`, from a local RNG (not libtorch's global one).
pub fn random_ids(seed: u64, rows: i64, cols: i64, vocab: i64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let ids: Vec<i64> = (0..rows * cols).map(|_| rng.random_range(0..vocab)).collect();
    Tensor::from_slice(&ids).view([rows, cols])
}

/// Runs `longmem train spec` and asserts that it fails with every one of `messages` on
/// stderr.
pub fn assert_train_fails(spec: &Path, messages: &[&str]) {
    let out = assert_cmd::Command::cargo_bin("longmem")
        .unwrap()
        .arg("train")
        .arg(spec)
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    for message in messages {
        assert!(stderr.contains(message), "expected {message:?} in: {stderr}");
    }
}

/// A tiny experiment (2-layer newgpt on the recall corpus) with `[sweep]` lines appended;
/// `steps` training steps, a checkpoint every 2 (or 5) steps.
pub fn mini_experiment(name: &str, steps: u64, sweep: &str) -> String {
    format!(
        r#"
name = "{name}"
runs_dir = "runs"
seed = 1
method = "longmem"

[backbone]
style = "newgpt"
n_layer = 2
n_head = 2
n_embd = 16
dropout = 0.0
memory_layer = 1

[memory]
size = 32
chunk = 4
k = 8

[data]
kind = "recall"
doc_tokens = 64

[train]
steps = {steps}
batch_size = 2
segment_len = 16
lr = 1e-3
warmup = 1
log_every = 10
checkpoint_every = 2

[pretrain]
"train.steps" = 20
"data.doc_tokens" = 16

[eval]
documents = 2

[sweep]
{sweep}
"#
    )
}

/// Whether any run under `stage_dir` (e.g. `runs/train`) has written a checkpoint.
pub fn has_checkpoint(stage_dir: &Path) -> bool {
    std::fs::read_dir(stage_dir).ok().is_some_and(|entries| {
        entries.flatten().any(|e| {
            std::fs::read_dir(e.path())
                .map(|files| {
                    files
                        .flatten()
                        .any(|f| f.file_name().to_string_lossy().starts_with("checkpoint"))
                })
                .unwrap_or(false)
        })
    })
}

/// Every planned run of the experiment is done, and its log shows exactly one completion.
pub fn assert_all_done_once(experiment: &Path) {
    let runs = longmem_bench::harness::experiment::Experiment::load(experiment)
        .unwrap()
        .plan()
        .unwrap();
    for run in runs {
        let status = std::fs::read_to_string(run.dir.join("status.json")).unwrap();
        assert!(status.contains("\"done\""), "{}: {status}", run.id);
        let log = std::fs::read_to_string(run.dir.join("log.txt")).unwrap();
        assert_eq!(
            log.lines().filter(|l| l.ends_with(" done")).count(),
            1,
            "{}: {log}",
            run.id
        );
    }
}

/// Every backbone family.
pub const ALL_STYLES: [longmem_bench::models::BlockStyle; 4] = [
    longmem_bench::models::BlockStyle::Gpt2,
    longmem_bench::models::BlockStyle::Newgpt,
    longmem_bench::models::BlockStyle::Llama,
    longmem_bench::models::BlockStyle::Neox,
];

/// A small backbone of `style`: `n_head` query heads of width D / H for gpt2, newgpt and
/// neox; for llama twice as many query heads sharing `n_head` key/value heads
/// (grouped-query attention) of an explicit width 2·D/(2H), so that every family's bank
/// holds `n_head` heads of width D / `n_head`.
pub fn tiny_backbone(
    style: longmem_bench::models::BlockStyle,
    vocab: i64,
    n_layer: i64,
    n_head: i64,
    n_embd: i64,
    n_positions: i64,
) -> longmem_bench::models::BackboneConfig {
    use longmem_bench::models::{BackboneConfig, BlockStyle};
    match style {
        BlockStyle::Gpt2 => BackboneConfig::gpt2(vocab, n_layer, n_head, n_embd, n_positions),
        BlockStyle::Newgpt => BackboneConfig::newgpt(vocab, n_layer, n_head, n_embd, n_positions),
        BlockStyle::Neox => BackboneConfig::neox(vocab, n_layer, n_head, n_embd, n_positions),
        BlockStyle::Llama => {
            let mut c = BackboneConfig::llama(vocab, n_layer, 2 * n_head, n_embd, n_positions);
            let layout = c.rotary.as_mut().expect("llama has a rotary layout");
            layout.n_kv_head = n_head;
            layout.head_dim = n_embd / n_head;
            layout.rotary_dim = n_embd / n_head;
            c.validate().expect("a valid tiny llama");
            c
        }
    }
}

/// The perplexity result (`eval*.json`) an evaluation run wrote into `run_dir`.
pub fn eval_result(run_dir: &Path) -> longmem_bench::eval::result::EvalResult {
    let path = std::fs::read_dir(run_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("eval"))
        .unwrap_or_else(|| panic!("no eval*.json in {}", run_dir.display()));
    longmem_bench::eval::result::EvalResult::read(&path).unwrap()
}
