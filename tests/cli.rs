//! The command line as a user meets it: output, and errors with a non-zero exit code.

mod common;

use assert_cmd::Command;
use common::fixture;
use longmem_bench::models::{weights, Backbone, BackboneConfig};
use predicates::prelude::*;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn longmem() -> Command {
    Command::cargo_bin("longmem").unwrap()
}

#[test]
fn doctor_reports_versions_and_a_measured_peak() {
    let out = longmem().args(["doctor", "--cpu-n", "256"]).assert().success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(stdout.contains("libtorch 2.13.0"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("cpu") && l.contains("GFLOP/s"))
        .expect("a cpu matmul line");
    let gflops: f64 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(gflops > 0.1, "{line}");
}

#[test]
fn doctor_json_is_machine_readable() {
    let out = longmem()
        .args(["doctor", "--json", "--cpu-n", "128"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["versions"]["libtorch"], "2.13.0");
    assert!(report["matmul"][0]["gflops_median"].as_f64().unwrap() > 0.0);
}

#[test]
fn tokenize_round_trips_through_the_cli() {
    longmem()
        .args(["tokenize", "Hello world"])
        .assert()
        .success()
        .stdout("15496 995\n");
    longmem()
        .args(["tokenize", "--decode", "15496 995"])
        .assert()
        .success()
        .stdout("Hello world\n");
    longmem()
        .args(["tokenize", "--decode", "99999"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("outside the gpt2 vocabulary"));
}

#[test]
fn lm_scores_text_with_local_weights() {
    // A byte-level model the test makes, scored through the CLI and in process.
    let dir = tempfile::tempdir().unwrap();
    let mut config = BackboneConfig::newgpt(257, 2, 2, 16, 64);
    config.dropout = 0.0;
    let vs = VarStore::new(Device::Cpu);
    let model = Backbone::new(&vs.root(), &config);
    let weights_path = dir.path().join("model.safetensors");
    weights::save_safetensors(&vs, &weights_path).unwrap();
    let config_path = dir.path().join("backbone.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();

    let text = "memory matters";
    let out = longmem()
        .args(["lm", "--tokenizer", "byte", "--weights"])
        .arg(&weights_path)
        .arg("--config")
        .arg(&config_path)
        .arg(text)
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let printed: f64 = stdout
        .split("perplexity: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no perplexity in {stdout}"));
    let ids: Vec<i64> = text.bytes().map(i64::from).collect();
    let x = Tensor::from_slice(&ids).unsqueeze(0);
    let logits = tch::no_grad(|| model.forward(&x, false).logits).squeeze_dim(0);
    let n = ids.len() as i64;
    let nll = logits.narrow(0, 0, n - 1).log_softmax(-1, Kind::Float).gather(
        1,
        &x.squeeze_dim(0).narrow(0, 1, n - 1).unsqueeze(1),
        false,
    );
    let expected = (-nll.mean(Kind::Float).double_value(&[])).exp();
    assert!(
        (printed - expected).abs() < 1e-3 * expected,
        "printed {printed}, expected {expected}"
    );
}

#[test]
fn lm_on_the_transformers_fixture_loads_its_config_json() {
    // The GPT-2 fixture has 97 ids: the GPT-2 tokenizer does not fit, and the error says so.
    longmem()
        .args(["lm", "--weights"])
        .arg(fixture("gpt2_tiny/model.safetensors"))
        .arg("hello")
        .assert()
        .failure()
        .stderr(predicate::str::contains("vocab_size is 97").and(predicate::str::contains("--tokenizer")));
}

#[test]
fn lm_with_a_missing_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope/model.safetensors");
    longmem()
        .args(["lm", "--weights"])
        .arg(&missing)
        .arg("hi")
        .assert()
        .failure()
        .stderr(predicate::str::contains("nope/config.json"));
}

#[test]
fn an_unknown_device_is_rejected_with_the_allowed_forms() {
    longmem()
        .args(["lm", "--weights", "x.safetensors", "--device", "tpu", "hi"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("cpu, cuda, cuda:N or auto"));
}
