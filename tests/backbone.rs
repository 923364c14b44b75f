//! Invariants of the backbone that hold for any weights.

mod common;

use common::max_abs_diff;
use longmem_bench::models::attention::{alibi_causal_bias, alibi_slopes};
use longmem_bench::models::{Attention, AttentionOutput, Backbone, BackboneConfig, BlockStyle, LayerAttention, Qkv};
use longmem_bench::seed::seed_everything;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn model(style: BlockStyle) -> (VarStore, Backbone) {
    let _rng = common::rng_lock();
    seed_everything(11);
    let mut config = common::tiny_backbone(style, 40, 4, 2, 16, 32);
    config.dropout = 0.0;
    let vs = VarStore::new(Device::Cpu);
    let m = Backbone::new(&vs.root(), &config);
    (vs, m)
}

fn ids(rows: &[&[i64]]) -> Tensor {
    let t = rows[0].len() as i64;
    Tensor::from_slice(&rows.concat()).view([rows.len() as i64, t])
}

const STYLES: [BlockStyle; 4] = common::ALL_STYLES;

#[test]
fn a_future_token_never_changes_past_logits() {
    for style in STYLES {
        let (_vs, m) = model(style);
        let a = tch::no_grad(|| m.forward(&ids(&[&[3, 1, 4, 1, 5, 9, 2, 6]]), false).logits);
        let b = tch::no_grad(|| m.forward(&ids(&[&[3, 1, 4, 1, 5, 0, 0, 0]]), false).logits);
        assert_eq!(max_abs_diff(&a.narrow(1, 0, 5), &b.narrow(1, 0, 5)), 0.0, "{style}");
        assert!(max_abs_diff(&a.narrow(1, 5, 1), &b.narrow(1, 5, 1)) > 1e-6, "{style}");
    }
}

#[test]
fn batched_rows_equal_rows_run_alone() {
    for style in STYLES {
        let (_vs, m) = model(style);
        let (r0, r1): (&[i64], &[i64]) = (&[1, 2, 3, 4, 5, 6], &[9, 8, 7, 6, 5, 4]);
        let both = tch::no_grad(|| m.forward(&ids(&[r0, r1]), false).logits);
        let one = tch::no_grad(|| m.forward(&ids(&[r1]), false).logits);
        assert!(max_abs_diff(&both.get(1), &one.get(0)) < 1e-5, "{style}");
    }
}

#[test]
fn output_shapes_and_hidden_states() {
    for style in STYLES {
        let (_vs, m) = model(style);
        let out = tch::no_grad(|| m.forward(&ids(&[&[1, 2, 3], &[4, 5, 6]]), false));
        assert_eq!(out.logits.size(), [2, 3, 40]);
        assert_eq!(out.hidden.len(), 5);
        assert!(out.hidden.iter().all(|h| h.size() == [2, 3, 16]));
        assert_eq!(out.memory_qkv.k.size(), [2, 2, 3, 8]);
        // hidden[L] is after the final LN: the head applied to it gives the logits.
        assert!(max_abs_diff(&m.head(&out.hidden[4]), &out.logits) < 1e-6);
    }
}

/// A hook that zeroes the memory layer's attention context.
struct Silence;
impl LayerAttention for Silence {
    fn attend(&self, _attn: &Attention, qkv: &Qkv, _train: bool) -> AttentionOutput {
        AttentionOutput::local(qkv.q.zeros_like())
    }
}

/// A hook that does what the layer would do anyway.
struct Plain;
impl LayerAttention for Plain {
    fn attend(&self, attn: &Attention, qkv: &Qkv, train: bool) -> AttentionOutput {
        AttentionOutput::local(attn.local(qkv, train))
    }
}

#[test]
fn the_attention_hook_acts_at_the_memory_layer_only() {
    for style in STYLES {
        let (_vs, m) = model(style);
        let x = ids(&[&[1, 2, 3, 4, 5]]);
        let plain = tch::no_grad(|| m.forward(&x, false));
        let same = tch::no_grad(|| m.forward_with(&x, false, Some(&Plain)));
        assert_eq!(max_abs_diff(&plain.logits, &same.logits), 0.0);
        let silenced = tch::no_grad(|| m.forward_with(&x, false, Some(&Silence)));
        let layer = m.config.memory_layer as usize;
        for i in 0..=layer {
            assert_eq!(
                max_abs_diff(&plain.hidden[i], &silenced.hidden[i]),
                0.0,
                "{style} hidden[{i}]"
            );
        }
        assert!(max_abs_diff(&plain.hidden[layer + 1], &silenced.hidden[layer + 1]) > 1e-6);
    }
}

#[test]
fn dropout_acts_in_training_only() {
    let _rng = common::rng_lock();
    seed_everything(3);
    let config = BackboneConfig::gpt2(40, 2, 2, 16, 32); // dropout 0.1
    let vs = VarStore::new(Device::Cpu);
    let m = Backbone::new(&vs.root(), &config);
    let x = ids(&[&[1, 2, 3, 4, 5]]);
    let eval_a = tch::no_grad(|| m.forward(&x, false).logits);
    let eval_b = tch::no_grad(|| m.forward(&x, false).logits);
    assert_eq!(max_abs_diff(&eval_a, &eval_b), 0.0);
    let train = tch::no_grad(|| m.forward(&x, true).logits);
    assert!(max_abs_diff(&eval_a, &train) > 1e-6);
}

#[test]
fn alibi_matches_its_definition() {
    let slopes = alibi_slopes(4);
    let expected = [0.25f64, 0.0625, 0.015625, 0.00390625]; // 2^(-8k/4)
    for (k, e) in expected.iter().enumerate() {
        assert!((slopes.double_value(&[k as i64]) - e).abs() < 1e-9);
    }
    let bias = alibi_causal_bias(&slopes, 3);
    assert_eq!(bias.size(), [4, 3, 3]);
    assert_eq!(bias.double_value(&[0, 2, 0]), -0.5); // slope 0.25 × distance 2
    assert_eq!(bias.double_value(&[1, 1, 1]), 0.0);
    assert_eq!(bias.double_value(&[0, 0, 1]), f64::NEG_INFINITY);
    assert_eq!(bias.kind(), Kind::Float);
}

/// Plain softmax attention with an additive bias: the slow reference for `local`.
fn reference_attention(qkv: &Qkv, bias: &Tensor) -> Tensor {
    let d = qkv.q.size()[3] as f64;
    let scores = qkv.q.matmul(&qkv.k.transpose(-1, -2)) / d.sqrt() + bias;
    scores.softmax(-1, Kind::Float).matmul(&qkv.v)
}

#[test]
fn local_attention_and_its_gradients_equal_the_softmax_reference() {
    for style in STYLES {
        let (_vs, m) = model(style);
        let attn = &m.blocks()[0].attn;
        let x = {
            let _rng = common::rng_lock();
            tch::manual_seed(4);
            Tensor::randn([2, 6, 16], (Kind::Float, Device::Cpu))
        };
        let run = |fast: bool| {
            let input = x.copy().set_requires_grad(true);
            let qkv = attn.qkv(&input);
            let ctx = if fast {
                attn.local(&qkv, false)
            } else {
                // Rotated queries and keys, keys and values repeated per query head.
                reference_attention(&attn.local_inputs(&qkv), &attn.position_bias(6, Device::Cpu))
            };
            let loss = (attn.project_out(&ctx) * Tensor::arange(16, (Kind::Float, Device::Cpu))).sum(Kind::Float);
            loss.backward();
            (ctx.detach(), input.grad())
        };
        let (fast, fast_grad) = run(true);
        let (slow, slow_grad) = run(false);
        assert!(max_abs_diff(&fast, &slow) < 1e-5, "{style} values");
        assert!(max_abs_diff(&fast_grad, &slow_grad) < 1e-4, "{style} gradients");
        assert!(fast_grad.abs().sum(Kind::Float).double_value(&[]) > 1e-3);
    }
}
