//! Our backbone equals the reference implementations on the same weights:
//! - `gpt2` against Hugging Face `transformers`' GPT2LMHeadModel;
//! - `newgpt` against the plain-PyTorch LongMem block in `fixtures/make_reference.py`.
//!
//! Fixtures are made by that script (committed), so CI needs no Python.

mod common;

use common::{assert_close, fixture, read_tensors};
use longmem_bench::models::{weights, Backbone, BackboneConfig, BlockStyle};
use tch::{nn::VarStore, Device};

const TOL: f64 = 1e-4;

fn check(dir: &str, config: BackboneConfig) {
    let vs = VarStore::new(Device::Cpu);
    let model = Backbone::new(&vs.root(), &config);
    weights::load_safetensors(&vs, &fixture(&format!("{dir}/model.safetensors")), config.style).unwrap();
    let expected = read_tensors(&fixture(&format!("{dir}/expected.safetensors")));
    let out = tch::no_grad(|| model.forward(&expected["ids"], false));

    assert_close(&out.logits, &expected["logits"], TOL, "logits");
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
