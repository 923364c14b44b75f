//! The released LongMem checkpoint's path: scripts/convert_fairseq.py on a synthetic
//! checkpoint in the fairseq layout (tests/fixtures/make_fairseq_fixture.py), the converted
//! weights evaluated through a spec's `sidenet.weights` against a PyTorch forward of the
//! same fairseq tensors, and the fairseq dictionary as the spec's tokenizer.

mod common;

use longmem_bench::config::Spec;
use longmem_bench::data::Batch;
use longmem_bench::harness::experiment::{Experiment, Stage};
use std::path::Path;
use std::process::Command;
use tch::{Device, Kind};

fn converted(name: &str) -> String {
    common::fixture("longmem_fairseq/converted")
        .join(name)
        .display()
        .to_string()
}

/// The synthetic release's spec (sections as converted/longmem.toml gives them), in `dir`.
fn spec_text(memory: &str) -> String {
    format!(
        r#"
seed = 1
method = "longmem"
[backbone]
style = "newgpt"
vocab_size = 68
n_layer = 4
n_head = 4
n_embd = 32
n_inner = 128
layer_norm_eps = 1e-6
gelu = "tanh"
memory_layer = 3
dropout = 0.0
weights = "{backbone}"
[sidenet]
layers = 2
memory_layer = 1
gelu = "erf"
layer_norm_eps = 1e-5
dropout = 0.0
weights = "{sidenet}"
[memory]
{memory}
[data]
kind = "text_dir"
path = "corpus"
tokenizer = "{dict}"
[train]
steps = 1
batch_size = 2
segment_len = 16
"#,
        backbone = converted("backbone.safetensors"),
        sidenet = converted("sidenet.safetensors"),
        dict = converted("dict.txt"),
    )
}

fn corpus_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("corpus")).unwrap();
    for name in ["a", "b", "c"] {
        std::fs::write(
            dir.path().join(format!("corpus/{name}.txt")),
            "the the the. ".repeat(40),
        )
        .unwrap();
    }
    dir
}

fn parse(dir: &Path, text: &str) -> Spec {
    let text = format!("out_dir = \"out\"\n{text}");
    Spec::parse(&text, &dir.join("spec.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .spec
}

#[test]
fn converted_release_gives_the_pytorch_logits_with_and_without_memory() {
    let dir = corpus_dir();
    // 16 tokens of memory and K = 16: segment a's whole cache is retrieved for segment b.
    let spec = parse(dir.path(), &spec_text("size = 16\nchunk = 4\nk = 16"));
    assert!(!spec.trains(), "given SideNet weights, nothing trains");
    assert_eq!(spec.data.vocab_size(), 68, "the dictionary's 64 lines and 4 specials");
    let mut model = spec.build_model(Device::Cpu).unwrap();
    let expected = common::read_tensors(&common::fixture("longmem_fairseq/expected.safetensors"));
    let mut worst: f64 = 0.0;
    for part in ["a", "b"] {
        let ids = expected[&format!("ids_{part}")].to_kind(Kind::Int64);
        let logits = tch::no_grad(|| model.forward(&Batch::unlabelled(ids), false)).logits;
        let want = &expected[&format!("logits_{part}")];
        let diff = common::max_abs_diff(&logits.to_kind(Kind::Float), want);
        println!(
            "segment {part}: max |Δlogit| = {diff:e} (logits span {:.2})",
            want.abs().max().double_value(&[])
        );
        assert!(diff < 1e-4, "segment {part}: max |Δlogit| = {diff:e}");
        worst = worst.max(diff);
    }
    // The memory moved segment b's logits: without it they differ by far more than that.
    let mut fresh = spec.build_model(Device::Cpu).unwrap();
    let ids_b = expected["ids_b"].to_kind(Kind::Int64);
    let alone = tch::no_grad(|| fresh.forward(&Batch::unlabelled(ids_b), false)).logits;
    let moved = common::max_abs_diff(&alone.to_kind(Kind::Float), &expected["logits_b"]);
    assert!(
        moved > 100.0 * worst.max(1e-6),
        "memory changes segment b's logits by {moved:e}"
    );
}

#[test]
fn a_spec_with_sidenet_weights_plans_evaluations_only() {
    let dir = corpus_dir();
    let text = format!("{}\n[eval]\ndocuments = 1\n", spec_text("size = 16\nchunk = 4\nk = 16"));
    let file = dir.path().join("released.toml");
    std::fs::write(&file, text).unwrap();
    let runs = Experiment::load(&file).unwrap().plan().unwrap();
    assert!(!runs.is_empty());
    assert!(
        runs.iter().all(|r| r.stage == Stage::Eval),
        "{:?}",
        runs.iter().map(|r| r.stage).collect::<Vec<_>>()
    );
    // Missing weights are named with their key.
    let bad = spec_text("size = 16\nchunk = 4\nk = 16").replace("sidenet.safetensors", "nope.safetensors");
    let err = Spec::parse(&format!("out_dir = \"o\"\n{bad}"), &dir.path().join("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sidenet.weights") && err.contains("nope.safetensors"),
        "{err}"
    );
}

#[test]
fn longmem_eval_writes_a_spec_with_sidenet_weights_into_its_new_out_dir() {
    let dir = corpus_dir();
    let text = format!("out_dir = \"out\"\n{}", spec_text("size = 16\nchunk = 4\nk = 16"));
    std::fs::write(dir.path().join("spec.toml"), text).unwrap();
    assert!(
        !dir.path().join("out").exists(),
        "nothing trained, so no run directory yet"
    );
    assert_cmd::Command::cargo_bin("longmem")
        .unwrap()
        .args(["-q", "eval", "spec.toml", "--documents", "1"])
        .current_dir(dir.path())
        .assert()
        .success();
    assert!(dir.path().join("out/eval.json").is_file());
}

#[test]
fn the_converter_reproduces_the_committed_conversion() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has_torch = Command::new(&python)
        .args(["-c", "import torch, safetensors"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_torch {
        common::skip(
            "torch",
            &format!("{python} cannot import torch and safetensors (pip install torch safetensors)"),
        );
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let release = common::fixture("longmem_fairseq");
    let status = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/convert_fairseq.py"))
        .arg("--backbone")
        .arg(release.join("gpt2_medium/checkpoint_last.pt"))
        .arg("--sidenet")
        .arg(release.join("longmem_gpt2_medium/checkpoint_last.pt"))
        .arg("--dict")
        .arg(release.join("gpt2_bpe/dict.txt"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    for name in [
        "backbone.safetensors",
        "sidenet.safetensors",
        "dict.txt",
        "longmem.toml",
    ] {
        let ours = std::fs::read(out.path().join(name)).unwrap();
        assert!(
            ours == std::fs::read(converted(name)).unwrap(),
            "{name} differs from the committed conversion"
        );
    }
}
