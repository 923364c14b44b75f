//! Our backbone equals the reference implementations on the same weights:
//! - `gpt2` against Hugging Face `transformers`' GPT2LMHeadModel;
//! - `newgpt` against the plain-PyTorch LongMem block in `fixtures/make_reference.py`;
//! - `llama` against `LlamaForCausalLM` (grouped-query attention and tied head; explicit
//!   `head_dim`, attention and MLP biases and `llama3` rope scaling) and
//!   `Qwen2ForCausalLM` (q/k/v biases), and `neox` against `GPTNeoXForCausalLM` (partial
//!   rotary, parallel and sequential residual), each loaded from its HF model directory.
//!
//! Every comparison prints its largest |Δlogit|.
//!
//! Fixtures are made by that script (committed), so CI needs no Python.

mod common;

use common::{assert_close, fixture, read_tensors};
use longmem_bench::models::{weights, Backbone, BackboneConfig, BlockStyle};
use tch::{nn::VarStore, Device};

const TOL: f64 = 1e-4;

fn check(dir: &str, config: BackboneConfig) {
    check_weights(dir, &fixture(&format!("{dir}/model.safetensors")), config);
}

fn check_weights(dir: &str, weights_path: &std::path::Path, config: BackboneConfig) {
    let vs = VarStore::new(Device::Cpu);
    let model = Backbone::new(&vs.root(), &config);
    weights::load_safetensors(&vs, weights_path, &config).unwrap();
    let expected = read_tensors(&fixture(&format!("{dir}/expected.safetensors")));
    let out = tch::no_grad(|| model.forward(&expected["ids"], false));

    assert_close(&out.logits, &expected["logits"], TOL, "logits");
    println!(
        "{dir}: max |Δlogit| = {:.2e}",
        common::max_abs_diff(&out.logits, &expected["logits"])
    );
    assert_eq!(out.hidden.len() as i64, config.n_layer + 1);
    for (i, h) in out.hidden.iter().enumerate() {
        assert_close(h, &expected[&format!("hidden.{i}")], TOL, &format!("hidden[{i}]"));
    }
    assert_close(&out.memory_qkv.k, &expected["memory_k"], TOL, "memory-layer keys");
    assert_close(&out.memory_qkv.v, &expected["memory_v"], TOL, "memory-layer values");
    // The comparison is not vacuous: the logits carry signal well above the tolerance.
    assert!(expected["logits"].std(false).double_value(&[]) > 100.0 * TOL);
}

#[test]
fn gpt2_matches_transformers() {
    let config = BackboneConfig::from_hf_gpt2_config(&fixture("gpt2_tiny/config.json")).unwrap();
    assert_eq!(
        (config.n_layer, config.n_head, config.n_embd, config.vocab_size),
        (3, 4, 32, 97)
    );
    assert_eq!(config.dropout, 0.0);
    check("gpt2_tiny", config);
}

#[test]
fn newgpt_matches_pytorch_reference() {
    let text = std::fs::read_to_string(fixture("newgpt_tiny/config.toml")).unwrap();
    let config: BackboneConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    assert_eq!(config.style, BlockStyle::Newgpt);
    check("newgpt_tiny", config);
}

/// A Hugging Face model directory's config, read by its `model_type`, and its weights
/// loaded from the directory itself.
fn check_hf_dir(dir: &str, style: BlockStyle) -> BackboneConfig {
    let path = fixture(dir);
    let config = longmem_bench::models::hf::config_of_dir(&path).unwrap();
    assert_eq!(config.style, style, "{dir}");
    check_weights(dir, &path, config.clone());
    config
}

#[test]
fn llama_with_grouped_query_attention_and_tied_head_matches_transformers() {
    let config = check_hf_dir("llama_gqa_tied", BlockStyle::Llama);
    let layout = config.rotary.unwrap();
    assert_eq!((config.n_head, layout.n_kv_head, layout.head_dim), (4, 2, 8));
    assert!(layout.tied_head && !layout.qkv_bias);
}

#[test]
fn qwen2_with_qkv_biases_matches_transformers() {
    let config = check_hf_dir("qwen2_bias", BlockStyle::Llama);
    let layout = config.rotary.unwrap();
    assert!(layout.qkv_bias && !layout.out_bias && !layout.tied_head);
    assert_eq!((layout.n_kv_head, layout.theta), (1, 1e6));
}

#[test]
fn llama_with_llama3_rope_scaling_and_biases_matches_transformers() {
    let config = check_hf_dir("llama3_scaled", BlockStyle::Llama);
    let layout = config.rotary.unwrap();
    assert_eq!(layout.head_dim, 16, "explicit head_dim wider than n_embd / n_head");
    assert!(matches!(layout.scaling, Some(longmem_bench::models::RopeScaling::Llama3 { factor, .. }) if factor == 8.0));
    assert!(layout.qkv_bias && layout.out_bias && layout.mlp_bias);
}

#[test]
fn pythia_style_neox_matches_transformers_in_both_residual_modes() {
    let parallel = check_hf_dir("neox_parallel", BlockStyle::Neox).rotary.unwrap();
    assert_eq!((parallel.rotary_dim, parallel.parallel_residual), (4, true));
    let sequential = check_hf_dir("neox_sequential", BlockStyle::Neox).rotary.unwrap();
    assert_eq!((sequential.rotary_dim, sequential.parallel_residual), (2, false));
}
