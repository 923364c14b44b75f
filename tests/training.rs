//! Training: every method trains, a resumed run ends exactly where an uninterrupted one
//! does, a diverging run names its step, and specs fail loudly and early.

mod common;

use assert_cmd::Command;
use longmem_bench::config::{self, Spec};
use longmem_bench::methods::Method;
use longmem_bench::models::{weights, Backbone};
use longmem_bench::train::{train, Outcome};
use predicates::prelude::*;
use std::path::Path;
use tch::{nn::VarStore, Device, Tensor};

/// A tiny spec for `method` writing to `dir/out`; backbone weights (when the method needs
/// them) at `dir/backbone.safetensors`.
fn spec_text(method: Method, steps: u64, extra: &str) -> String {
    let weights = if method == Method::Pretrain {
        ""
    } else {
        "weights = \"backbone.safetensors\""
    };
    format!(
        r#"
seed = 3
out_dir = "out"
method = "{method}"

[backbone]
style = "newgpt"
n_layer = 2
n_head = 2
n_embd = 16
dropout = 0.1
memory_layer = 1
{weights}

[memory]
size = 32
chunk = 4
k = 8

[memtrm]
qk_norm = true

[sidenet]
layers = 2

[data]
kind = "recall"
doc_tokens = 48

[train]
steps = {steps}
batch_size = 2
segment_len = 16
lr = 1e-3
warmup = 1
log_every = 1
{extra}
"#
    )
}

fn write_backbone(dir: &Path) {
    let _rng = common::rng_lock();
    let spec = Spec::parse(&spec_text(Method::Pretrain, 2, ""), &dir.join("s.toml")).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let _ = Backbone::new(&vs.root(), &spec.backbone);
    weights::save_safetensors(&vs, &dir.join("backbone.safetensors")).unwrap();
}

fn run(dir: &Path, method: Method, steps: u64, stop_after: Option<u64>) -> Outcome {
    let spec = Spec::parse(&spec_text(method, steps, ""), &dir.join("spec.toml")).unwrap();
    let _rng = common::rng_lock();
    let mut learner = spec.build_model(Device::Cpu).unwrap();
    let mut stream = config::train_stream(&spec, Device::Cpu).unwrap();
    train(learner.as_mut(), &mut stream, &spec.train, &spec.out_dir, stop_after).unwrap()
}

fn tensors(path: &Path) -> Vec<(String, Tensor)> {
    let mut t = Tensor::read_safetensors(path).unwrap();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

#[test]
fn a_resumed_run_ends_exactly_like_an_uninterrupted_one() {
    for method in [Method::Pretrain, Method::Longmem, Method::Memtrm, Method::Plain] {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_backbone(a.path());
        std::fs::copy(
            a.path().join("backbone.safetensors"),
            b.path().join("backbone.safetensors"),
        )
        .unwrap();
        let Outcome::Finished(whole) = run(a.path(), method, 6, None) else {
            panic!("{method}: not finished")
        };
        assert!(matches!(
            run(b.path(), method, 6, Some(3)),
            Outcome::Stopped { step: 3 }
        ));
        let Outcome::Finished(resumed) = run(b.path(), method, 6, None) else {
            panic!("{method}: not finished")
        };
        assert_eq!(resumed.resumed_from, Some(3));
        assert_eq!(whole.final_loss, resumed.final_loss, "{method}");
        let file = match method {
            Method::Pretrain | Method::Plain => "backbone.safetensors",
            Method::Longmem => "sidenet.safetensors",
            Method::Memtrm => "memtrm.safetensors",
            Method::Frozen => unreachable!("frozen has no training stage"),
        };
        let (wa, wb) = (
            tensors(&a.path().join("out").join(file)),
            tensors(&b.path().join("out").join(file)),
        );
        assert_eq!(wa.len(), wb.len());
        for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
            assert_eq!(na, nb);
            assert!(ta.equal(tb), "{method}: `{na}` differs after resume");
        }
        // Training changed the weights it trains.
        if method == Method::Longmem {
            let gate = wa.iter().find(|(n, _)| n == "mem_gate").unwrap();
            assert!(gate.1.abs().sum(tch::Kind::Float).double_value(&[]) > 0.0);
        }
        let log_a = std::fs::read_to_string(a.path().join("out/train_log.csv")).unwrap();
        let log_b = std::fs::read_to_string(b.path().join("out/train_log.csv")).unwrap();
        assert_eq!(log_a, log_b, "{method}: loss curves differ");
        assert_eq!(log_a.lines().count(), 7);
    }
}

#[test]
fn a_diverging_run_stops_with_the_step_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = spec_text(Method::Pretrain, 50, "").replace("lr = 1e-3", "lr = 1e12\ngrad_clip = 1e30");
    let spec = Spec::parse(&text, &dir.path().join("spec.toml")).unwrap();
    let _rng = common::rng_lock();
    let mut learner = spec.build_model(Device::Cpu).unwrap();
    let mut stream = config::train_stream(&spec, Device::Cpu).unwrap();
    let err = train(learner.as_mut(), &mut stream, &spec.train, &spec.out_dir, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at step") && err.contains("train.lr"), "{err}");
}

fn spec_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_backbone(dir.path());
    Spec::parse(text, &dir.path().join("bad.toml")).unwrap_err().to_string()
}

#[test]
fn spec_errors_name_the_file_the_key_and_what_is_allowed() {
    let base = spec_text(Method::Longmem, 4, "");
    let cases = [
        (base.replace("[memory]", "[memory]\nsizes = 3"), "unknown field `sizes`"),
        (base.replace("size = 32", "size = \"big\""), "invalid type"),
        (base.replace("size = 32", "size = 30"), "`memory.size` = 30"),
        (base.replace("k = 8", "k = 6"), "`memory.k` = 6"),
        (base.replace("layers = 2\n", "layers = 3\n"), "`sidenet.layers` = 3"),
        (
            base.replace("memory_layer = 1", "memory_layer = 5"),
            "`backbone.memory_layer` = 5",
        ),
        (
            base.replace("segment_len = 16", "segment_len = 1"),
            "`train.segment_len` = 1",
        ),
        (
            base.replace("doc_tokens = 48", "doc_tokens = 50"),
            "`data.doc_tokens` = 50",
        ),
        (
            base.replace("weights = \"backbone.safetensors\"", ""),
            "`backbone.weights` = (missing)",
        ),
        (
            base.replace("backbone.safetensors", "nope.safetensors"),
            "an existing .safetensors file or Hugging Face model directory",
        ),
        (
            base.replace("method = \"longmem\"", "method = \"magic\""),
            "unknown variant `magic`",
        ),
    ];
    for (text, expected) in cases {
        let err = spec_error(&text);
        assert!(
            err.contains("bad.toml") && err.contains(expected),
            "expected {expected:?} in: {err}"
        );
    }
    // toml reports where: the line of the unknown key.
    let err = spec_error(&base.replace("[memory]", "[memory]\nsizes = 3"));
    assert!(err.contains("line"), "{err}");
}

#[test]
fn the_cli_trains_skips_a_finished_run_and_refuses_a_foreign_out_dir() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("pretrain.toml");
    std::fs::write(&spec, spec_text(Method::Pretrain, 3, "")).unwrap();
    let longmem = || Command::cargo_bin("longmem").unwrap();
    longmem()
        .arg("train")
        .arg(&spec)
        .assert()
        .success()
        .stdout(predicate::str::contains("trained pretrain (3 steps"));
    assert!(dir.path().join("out/backbone.safetensors").is_file());
    assert!(dir.path().join("out/config.json").is_file());
    longmem()
        .arg("train")
        .arg(&spec)
        .assert()
        .success()
        .stdout(predicate::str::contains("already trained"));
    // The same run from another working directory, through a relative path: same config.
    longmem()
        .current_dir(dir.path())
        .args(["train", "pretrain.toml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("already trained"));
    std::fs::write(&spec, spec_text(Method::Pretrain, 4, "")).unwrap();
    common::assert_train_fails(&spec, &["holds a run of a different config"]);
    // A bad spec fails before anything is written.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        spec_text(Method::Pretrain, 3, "").replace("out_dir = \"out\"", "out_dir = \"never\"\nbogus = 1"),
    )
    .unwrap();
    common::assert_train_fails(&bad, &["bogus"]);
    assert!(!dir.path().join("never").exists());
}

#[test]
fn a_gpt2_segment_longer_than_its_position_table_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let text = spec_text(Method::Pretrain, 3, "").replace("style = \"newgpt\"", "style = \"gpt2\"\nn_positions = 8");
    let err = Spec::parse(&text, &dir.path().join("s.toml")).unwrap_err().to_string();
    assert!(
        err.contains("`train.segment_len` = 16") && err.contains("n_positions = 8"),
        "{err}"
    );
}

#[test]
fn eval_reports_memory_methods_and_the_long_window_reference() {
    let dir = tempfile::tempdir().unwrap();
    write_backbone(dir.path());
    let longmem = || Command::cargo_bin("longmem").unwrap();
    for (method, steps) in [(Method::Longmem, 3), (Method::Plain, 3)] {
        let spec = dir.path().join(format!("{method}.toml"));
        let text = spec_text(method, steps, "").replace("out_dir = \"out\"", &format!("out_dir = \"{method}\""));
        std::fs::write(&spec, text).unwrap();
        longmem()
            .arg("eval")
            .arg(&spec)
            .assert()
            .failure()
            .stderr(predicate::str::contains("train the run first"));
        longmem().arg("train").arg(&spec).assert().success();
        let out = longmem()
            .args(["eval", "--documents", "2"])
            .arg(&spec)
            .assert()
            .success();
        let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        assert!(stdout.contains("far") && stdout.contains("perplexity"), "{stdout}");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(format!("{method}/eval.json"))).unwrap())
                .unwrap();
        assert_eq!(report["window"], 16);
        assert_eq!(report["far_hit_rate_any_head"].is_number(), method == Method::Longmem);
        // Cost: stage latencies that account for the wall time, and an MFU in (0, 1].
        let cost = &report["cost"];
        let stages = cost["latency_us_per_position"].as_object().unwrap();
        assert_eq!(
            stages.contains_key("retrieval"),
            method == Method::Longmem,
            "{stages:?}"
        );
        let stage_sum: f64 = stages.values().map(|v| v.as_f64().unwrap()).sum();
        let per_position = 1e6 / cost["positions_per_second"].as_f64().unwrap();
        assert!(
            stage_sum > 0.0 && stage_sum <= per_position * 1.01,
            "{stage_sum} vs {per_position}"
        );
        let mfu = cost["mfu"].as_f64().unwrap();
        assert!(mfu > 0.0 && mfu <= 1.0, "{mfu}");
        assert!(cost["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
        // Two heads, each gate a probability; plain models have none.
        match method {
            Method::Longmem => {
                let gates = report["memory_gates"].as_array().unwrap();
                assert_eq!(gates.len(), 2);
                assert!(gates.iter().all(|g| (0.0..=1.0).contains(&g.as_f64().unwrap())));
            }
            _ => assert!(report["memory_gates"].is_null()),
        }
        let ablation = longmem()
            .args(["eval", "--no-memory", "--documents", "2"])
            .arg(&spec)
            .assert();
        if method == Method::Longmem {
            ablation.success();
            let closed: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.path().join("longmem/eval-nomemory.json")).unwrap())
                    .unwrap();
            assert_eq!(closed["memory_gates_closed"], true);
            assert_eq!(closed["totals"]["tokens"], report["totals"]["tokens"]);
            assert_ne!(
                closed["totals"]["nll"], report["totals"]["nll"],
                "memory changed the numbers"
            );
            // Memory size, chunk and top-K are evaluation-time settings; the spec's are
            // M = 32, c = 4, K = 8. Documents of 48 tokens all fall in the first bucket.
            longmem()
                .args(["eval", "--documents", "2", "--memory-size", "16", "--top-k", "4"])
                .args(["--length-buckets", "40,100"])
                .arg(&spec)
                .assert()
                .success();
            let small: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.path().join("longmem/eval-M16-c4-k4.json")).unwrap())
                    .unwrap();
            assert_eq!(report["memory"]["size"], 32);
            assert_eq!(
                (small["memory"]["size"].as_i64(), small["memory"]["top_k"].as_i64()),
                (Some(16), Some(4))
            );
            assert_eq!(small["totals"]["tokens"], report["totals"]["tokens"]);
            assert_ne!(
                small["totals"]["nll"], report["totals"]["nll"],
                "a smaller memory changed the numbers"
            );
            assert_eq!(small["totals"]["by_length"][0]["bucket"], "40-100");
            longmem()
                .args(["eval", "--top-k", "6"])
                .arg(&spec)
                .assert()
                .failure()
                .stderr(predicate::str::contains(
                    "top-K 6 is invalid: a positive multiple of the chunk size 4",
                ));
        } else {
            ablation.failure().stderr(predicate::str::contains("has no memory"));
        }
    }
    // The newgpt (ALiBi) plain backbone runs at twice its training window; "far" stays
    // relative to the 16-token training window, so the same tokens are scored.
    let plain = dir.path().join("plain.toml");
    longmem()
        .args(["eval", "--documents", "2", "--window", "32"])
        .arg(&plain)
        .assert()
        .success();
    let long: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("plain/eval-window32.json")).unwrap()).unwrap();
    let short: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("plain/eval.json")).unwrap()).unwrap();
    assert_eq!(long["window"], 32);
    // Same documents, same scored tokens, whatever the window.
    assert!(long["totals"]["far_tokens"].as_f64().unwrap() > 0.0);
    assert_eq!(long["totals"]["tokens"], short["totals"]["tokens"]);
    assert_eq!(long["totals"]["far_tokens"], short["totals"]["far_tokens"]);
    longmem()
        .args(["eval", "--window", "32"])
        .arg(dir.path().join("longmem.toml"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("uses memory instead"));
}

#[test]
fn f16_on_a_machine_without_cuda_is_refused_not_run_in_f32() {
    if tch::Cuda::is_available() {
        common::skip("no-cuda", "this machine has CUDA, so f16 would run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text = spec_text(Method::Pretrain, 2, "precision = \"f16\"").replace("seed = 3", "seed = 3\ndevice = \"auto\"");
    let spec = Spec::parse(&text, &dir.path().join("spec.toml")).unwrap();
    let _rng = common::rng_lock();
    let mut learner = spec.build_model(Device::Cpu).unwrap();
    let mut stream = config::train_stream(&spec, Device::Cpu).unwrap();
    let err = train(learner.as_mut(), &mut stream, &spec.train, &spec.out_dir, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs a CUDA device"), "{err}");
    assert!(!spec.out_dir.exists(), "nothing is written");
}

#[test]
fn staleness_is_zero_for_longmem_and_grows_with_age_for_memtrm() {
    let read = |dir: &Path| -> Vec<(u64, u64, f64)> {
        std::fs::read_to_string(dir.join("out/staleness.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].parse().unwrap())
            })
            .collect()
    };
    let mut by_method = Vec::new();
    for method in [Method::Longmem, Method::Memtrm] {
        let dir = tempfile::tempdir().unwrap();
        write_backbone(dir.path());
        // No dropout: written and re-derived keys then differ only by what training changed.
        let text =
            spec_text(method, 8, "staleness_every = 4\nstaleness_window = 3").replace("dropout = 0.1", "dropout = 0.0");
        let spec = Spec::parse(&text, &dir.path().join("spec.toml")).unwrap();
        let _rng = common::rng_lock();
        let mut learner = spec.build_model(Device::Cpu).unwrap();
        let mut stream = config::train_stream(&spec, Device::Cpu).unwrap();
        train(learner.as_mut(), &mut stream, &spec.train, &spec.out_dir, None).unwrap();
        let rows = read(dir.path());
        assert_eq!(
            rows.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
            vec![(4, 0), (4, 1), (4, 2), (8, 0), (8, 1), (8, 2)]
        );
        by_method.push(rows);
    }
    // LongMem's writer is the frozen backbone: its cached keys never go stale.
    assert!(by_method[0].iter().all(|r| r.2.abs() < 1e-6), "{:?}", by_method[0]);
    // MemTRM trains the block that writes its keys: older keys have drifted further.
    let memtrm = &by_method[1];
    assert!(memtrm.iter().all(|r| r.2 > 0.0), "{memtrm:?}");
    assert!(memtrm[5].2 > memtrm[3].2, "age 2 more stale than age 0: {memtrm:?}");
}
