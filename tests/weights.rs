//! Weight files: round trip, HF naming rules, and the errors a user sees for a wrong file.

mod common;

use common::max_abs_diff;
use longmem_bench::models::{weights, Backbone, BackboneConfig, BlockStyle};
use longmem_bench::seed::seed_everything;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn tiny(style: BlockStyle) -> BackboneConfig {
    let mut c = common::tiny_backbone(style, 50, 2, 2, 16, 24);
    c.dropout = 0.0;
    c
}

fn build(config: &BackboneConfig, seed: u64) -> (VarStore, Backbone) {
    let _rng = common::rng_lock();
    seed_everything(seed);
    let vs = VarStore::new(Device::Cpu);
    let model = Backbone::new(&vs.root(), config);
    (vs, model)
}

fn tokens() -> Tensor {
    Tensor::from_slice(&[1i64, 5, 9, 2, 49, 0, 7, 7]).view([2, 4])
}

fn logits(model: &Backbone) -> Tensor {
    tch::no_grad(|| model.forward(&tokens(), false).logits)
}

#[test]
fn save_then_load_reproduces_the_model_exactly() {
    for style in common::ALL_STYLES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let config = tiny(style);
        let (vs_a, a) = build(&config, 1);
        weights::save_safetensors(&vs_a, &path).unwrap();
        let (vs_b, b) = build(&config, 2);
        assert!(
            max_abs_diff(&logits(&a), &logits(&b)) > 1e-3,
            "different seeds must differ"
        );
        weights::load_safetensors(&vs_b, &path, &config).unwrap();
        assert_eq!(max_abs_diff(&logits(&a), &logits(&b)), 0.0, "{style}");
        // Only the final file remains: the temporary one was renamed into place.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("model.safetensors")]);
    }
}

fn named(vs: &VarStore) -> Vec<(String, Tensor)> {
    vs.variables().into_iter().collect()
}

#[test]
fn hf_prefix_mask_buffers_and_tied_head_are_accepted_for_gpt2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hf.safetensors");
    let config = tiny(BlockStyle::Gpt2);
    let (vs_a, a) = build(&config, 3);
    let mut hf: Vec<(String, Tensor)> = named(&vs_a)
        .into_iter()
        .map(|(n, t)| (format!("transformer.{n}"), t))
        .collect();
    hf.push((
        "transformer.h.0.attn.bias".into(),
        Tensor::ones([1, 1, 24, 24], (Kind::Float, Device::Cpu)),
    ));
    hf.push(("transformer.h.1.attn.masked_bias".into(), Tensor::from(-1e4f32)));
    hf.push((
        "lm_head.weight".into(),
        Tensor::zeros([50, 16], (Kind::Float, Device::Cpu)),
    ));
    Tensor::write_safetensors(&hf, &path).unwrap();
    let (vs_b, b) = build(&config, 4);
    weights::load_safetensors(&vs_b, &path, &config).unwrap();
    assert_eq!(max_abs_diff(&logits(&a), &logits(&b)), 0.0);
}

fn load_err(file: Vec<(String, Tensor)>, config: &BackboneConfig) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    Tensor::write_safetensors(&file, &path).unwrap();
    let (vs, _) = build(config, 5);
    let before = named(&vs).into_iter().map(|(n, t)| (n, t.copy())).collect::<Vec<_>>();
    let err = weights::load_safetensors(&vs, &path, config).unwrap_err().to_string();
    // A rejected file changes nothing.
    let after = vs.variables();
    for (name, t) in before {
        assert_eq!(max_abs_diff(&t, &after[&name]), 0.0, "{name} changed by a failed load");
    }
    assert!(err.contains("bad.safetensors"), "error must name the file: {err}");
    err
}

#[test]
fn a_missing_tensor_is_named_with_its_expected_shape() {
    let config = tiny(BlockStyle::Gpt2);
    let (vs, _) = build(&config, 6);
    let file: Vec<_> = named(&vs)
        .into_iter()
        .filter(|(n, _)| n != "h.1.mlp.c_fc.weight")
        .collect();
    let err = load_err(file, &config);
    assert!(
        err.contains("`h.1.mlp.c_fc.weight` is missing") && err.contains("[16, 64]"),
        "{err}"
    );
}

#[test]
fn a_misshaped_tensor_is_named_with_both_shapes() {
    let config = tiny(BlockStyle::Newgpt);
    let mut wider = config.clone();
    wider.n_inner = 80;
    let (vs, _) = build(&wider, 7);
    let err = load_err(named(&vs), &config);
    assert!(err.contains("`h.0.mlp.fc_in.bias`"), "{err}");
    assert!(err.contains("[80]") && err.contains("[64]"), "{err}");
}

#[test]
fn extra_layers_in_the_file_are_rejected() {
    let config = tiny(BlockStyle::Gpt2);
    let mut deeper = config.clone();
    deeper.n_layer = 3;
    let (vs, _) = build(&deeper, 8);
    let err = load_err(named(&vs), &config);
    assert!(err.contains("h.2."), "{err}");
}

#[test]
fn a_file_that_is_not_safetensors_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, b"not a safetensors file").unwrap();
    let config = tiny(BlockStyle::Gpt2);
    let (vs, _) = build(&config, 9);
    let err = weights::load_safetensors(&vs, &path, &config).unwrap_err().to_string();
    assert!(
        err.contains("cannot read safetensors file") && err.contains("model.safetensors"),
        "{err}"
    );
}

#[test]
fn same_seed_same_weights_and_logits() {
    for style in common::ALL_STYLES {
        let config = tiny(style);
        let (_, a) = build(&config, 42);
        let (_, b) = build(&config, 42);
        let (_, c) = build(&config, 43);
        assert_eq!(max_abs_diff(&logits(&a), &logits(&b)), 0.0);
        assert!(max_abs_diff(&logits(&a), &logits(&c)) > 1e-4);
    }
}
