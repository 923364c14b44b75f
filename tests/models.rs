//! LongMem and MemTRM invariants.

mod common;

use common::max_abs_diff;
use longmem_bench::memory::{BankConfig, BankSharing, Eviction, MemoryBank};
use longmem_bench::models::joint::l2_normalize;
use longmem_bench::models::{
    Backbone, BackboneConfig, BlockStyle, JointMode, LongMem, MemTrm, MemTrmConfig, SideNetConfig, TrainableBlocks,
};
use longmem_bench::seed::seed_everything;
use tch::{nn::VarStore, Device, Kind, Tensor};

const B: i64 = 2;
const T: i64 = 8;

fn backbone_config(style: BlockStyle) -> BackboneConfig {
    let mut c = common::tiny_backbone(style, 50, 4, 2, 16, 32);
    c.dropout = 0.0;
    c.memory_layer = 1;
    c
}

struct Setup {
    backbone_vs: VarStore,
    side_vs: VarStore,
    model: LongMem,
}

fn longmem(style: BlockStyle, layers: i64, joint: JointMode) -> Setup {
    let _rng = common::rng_lock();
    seed_everything(5);
    let config = backbone_config(style);
    let mut backbone_vs = VarStore::new(Device::Cpu);
    let backbone = Backbone::new(&backbone_vs.root(), &config);
    backbone_vs.freeze();
    let side_vs = VarStore::new(Device::Cpu);
    let mut side = SideNetConfig::paper(config.n_layer, layers, config.memory_layer).unwrap();
    side.dropout = 0.0;
    side.joint = joint;
    let model = LongMem::new(&side_vs.root(), backbone, side);
    model.init_from_backbone(&backbone_vs, &side_vs);
    Setup {
        backbone_vs,
        side_vs,
        model,
    }
}

fn bank(chunk: i64) -> MemoryBank {
    MemoryBank::new(BankConfig {
        n_head: 2,
        head_dim: 8,
        capacity: 64,
        chunk,
        top_k: 8,
        batch: B,
        sharing: BankSharing::PerStream,
        eviction: Eviction::Fifo,
        kind: Kind::Float,
        device: Device::Cpu,
    })
    .unwrap()
}

/// MemTRM's token-level bank: chunk 1, 4 retrieved tokens.
fn token_bank() -> MemoryBank {
    MemoryBank::new(BankConfig {
        chunk: 1,
        top_k: 4,
        ..bank(1).config().clone()
    })
    .unwrap()
}

fn tokens(seed: u64) -> Tensor {
    common::random_ids(seed, B, T, 50)
}

/// A bank filled by running the model over three earlier segments.
fn filled_bank(model: &LongMem) -> MemoryBank {
    let mut bank = bank(4);
    for s in 0..3 {
        let out = tch::no_grad(|| model.forward(&tokens(100 + s), &bank, false));
        bank.write(&out.memory_keys, &out.memory_values);
    }
    bank
}

#[test]
fn sidenet_layers_start_as_copies_of_their_source_blocks() {
    let s = longmem(BlockStyle::Gpt2, 2, JointMode::Gated);
    let (bb, side) = (s.backbone_vs.variables(), s.side_vs.variables());
    // S = 2, L = 4: layer 0 from block 1, layer 1 from block 3.
    assert!(bb["h.1.attn.c_attn.weight"].equal(&side["h.0.attn.c_attn.weight"]));
    assert!(bb["h.3.mlp.c_proj.bias"].equal(&side["h.1.mlp.c_proj.bias"]));
    assert!(bb["ln_f.weight"].equal(&side["ln_f.weight"]));
    assert_eq!(
        s.model.config.memory_layer, 0,
        "the layer copied from the backbone's memory layer 1"
    );
    // Gate at init: σ(0) = 0.5 for every head.
    assert_eq!(Vec::<f64>::try_from(s.model.gate.sigmoid()).unwrap(), vec![0.5, 0.5]);
}

#[test]
fn with_the_gate_closed_memory_has_no_effect() {
    for style in common::ALL_STYLES {
        let s = longmem(style, 2, JointMode::Gated);
        let full = filled_bank(&s.model);
        let x = tokens(7);
        let empty = tch::no_grad(|| s.model.forward(&x, &bank(4), false).logits);
        let open = tch::no_grad(|| s.model.forward(&x, &full, false).logits);
        assert!(
            max_abs_diff(&empty, &open) > 1e-5,
            "{style}: memory must matter with the gate open"
        );
        let _ = tch::no_grad(|| s.model.gate.shallow_clone().fill_(f64::NEG_INFINITY));
        let closed = tch::no_grad(|| s.model.forward(&x, &full, false).logits);
        assert_eq!(max_abs_diff(&empty, &closed), 0.0, "{style}");
    }
}

#[test]
fn an_empty_bank_gives_plain_local_attention_in_both_modes() {
    let gated = longmem(BlockStyle::Newgpt, 2, JointMode::Gated);
    let concat = longmem(BlockStyle::Newgpt, 2, JointMode::Concat);
    let x = tokens(8);
    let a = tch::no_grad(|| gated.model.forward(&x, &bank(4), false).logits);
    let _ = tch::no_grad(|| gated.model.gate.shallow_clone().fill_(3.0));
    let b = tch::no_grad(|| gated.model.forward(&x, &bank(4), false).logits);
    let c = tch::no_grad(|| concat.model.forward(&x, &bank(4), false).logits);
    assert_eq!(max_abs_diff(&a, &b), 0.0, "the gate is irrelevant without memory");
    assert!(max_abs_diff(&a, &c) < 1e-5, "concat without memory is local attention");
    // With memory, concat differs from gated.
    let full = filled_bank(&gated.model);
    let g = tch::no_grad(|| gated.model.forward(&x, &full, false).logits);
    let c = tch::no_grad(|| concat.model.forward(&x, &full, false).logits);
    assert!(max_abs_diff(&g, &c) > 1e-5);
}

#[test]
fn identity_sidenet_with_s_equal_l_reproduces_the_backbone_stream() {
    for style in common::ALL_STYLES {
        let s = longmem(style, 4, JointMode::Gated);
        // Zero every output projection and MLP output: each block becomes the identity.
        tch::no_grad(|| {
            for (name, mut var) in s.side_vs.variables() {
                let out = [
                    "c_proj",
                    "out_proj",
                    "fc_out",
                    "o_proj",
                    "down_proj",
                    "attention.dense.",
                    "dense_4h_to_h",
                ]
                .iter()
                .any(|p| name.contains(p));
                if name.starts_with("h.") && out {
                    let _ = var.zero_();
                }
            }
        });
        let x = tokens(9);
        let full = filled_bank(&s.model);
        let out = tch::no_grad(|| s.model.forward(&x, &full, false));
        let reference = tch::no_grad(|| s.model.backbone.forward(&x, false));
        for (i, h) in out.side_hidden.iter().enumerate() {
            assert!(max_abs_diff(h, &reference.hidden[i]) < 1e-5, "{style} layer {i}");
        }
    }
}

#[test]
fn gradients_reach_the_sidenet_and_gates_and_nothing_else() {
    let s = longmem(BlockStyle::Gpt2, 2, JointMode::Gated);
    let full = filled_bank(&s.model);
    let x = tokens(10);
    let out = s.model.forward(&x, &full, true);
    let loss = out
        .logits
        .view([-1, 50])
        .cross_entropy_for_logits(&tokens(11).view([-1]));
    loss.backward();
    for (name, var) in s.side_vs.variables() {
        assert!(var.grad().defined(), "SideNet `{name}` got no gradient");
    }
    assert!(s.model.gate.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    for (name, var) in s.backbone_vs.variables() {
        assert!(
            !var.requires_grad() && !var.grad().defined(),
            "backbone `{name}` must stay frozen"
        );
    }
    assert!(!out.memory_keys.requires_grad(), "nothing flows into memory");
}

fn memtrm(qk_norm: bool) -> (VarStore, MemTrm) {
    let _rng = common::rng_lock();
    seed_everything(6);
    let vs = VarStore::new(Device::Cpu);
    let backbone = Backbone::new(&vs.root(), &backbone_config(BlockStyle::Gpt2));
    let config = MemTrmConfig {
        trainable: TrainableBlocks::Odd,
        qk_norm,
        joint: JointMode::Gated,
    };
    let model = MemTrm::new(&vs.root(), backbone, config);
    (vs, model)
}

#[test]
fn memtrm_trains_odd_blocks_and_gates_only() {
    let (vs, model) = memtrm(true);
    let trainable: Vec<String> = {
        let mut v: Vec<String> = vs.variables().into_keys().filter(|n| model.is_trainable(n)).collect();
        v.sort();
        v
    };
    assert!(trainable
        .iter()
        .all(|n| n.starts_with("h.1.") || n.starts_with("h.3.") || n.starts_with("mem_")));
    assert!(trainable.contains(&"mem_gate".to_string()) && trainable.contains(&"mem_log_temperature".to_string()));
    assert!(!model.is_trainable("wte.weight") && !model.is_trainable("ln_f.weight"));
    assert!(!model.is_trainable("h.0.attn.c_attn.weight") && model.is_trainable("h.1.attn.c_attn.weight"));
}

#[test]
fn memtrm_memory_matters_and_its_keys_are_normalised() {
    for qk_norm in [false, true] {
        let (_vs, model) = memtrm(qk_norm);
        let mut bank = token_bank();
        let x = tokens(12);
        let empty = tch::no_grad(|| model.forward(&x, &bank, false));
        bank.write(&empty.memory_keys, &empty.memory_values);
        let with_memory = tch::no_grad(|| model.forward(&tokens(13), &bank, false));
        let plain = tch::no_grad(|| model.backbone.forward(&tokens(13), false));
        assert!(max_abs_diff(&with_memory.backbone.logits, &plain.logits) > 1e-5);
        if qk_norm {
            let norms = empty.memory_keys.norm_scalaropt_dim(2, [-1], false);
            assert!(max_abs_diff(&norms, &norms.ones_like()) < 1e-5);
        } else {
            // Without memory contents (and without qk-norm) MemTRM is the plain backbone.
            let plain = tch::no_grad(|| model.backbone.forward(&x, false));
            assert_eq!(max_abs_diff(&empty.backbone.logits, &plain.logits), 0.0);
        }
    }
}

#[test]
fn half_precision_joint_attention_stays_finite_with_an_empty_bank() {
    // Under f16 autocast the masked memory scores must not overflow into an all -inf row.
    for mode in [JointMode::Gated, JointMode::Concat] {
        let s = longmem(BlockStyle::Newgpt, 2, mode);
        let empty = bank(4);
        let attn = &s.model.backbone.blocks()[1].attn;
        let x = {
            let _rng = common::rng_lock();
            tch::manual_seed(2);
            Tensor::randn([B, T, 16], (Kind::Float, Device::Cpu))
        };
        let qkv = attn.qkv(&x);
        let half = longmem_bench::models::Qkv {
            q: qkv.q.to_kind(Kind::Half),
            k: qkv.k.to_kind(Kind::Half),
            v: qkv.v.to_kind(Kind::Half),
        };
        let hook = longmem_bench::models::JointAttention::new(&empty, &s.model.gate, mode);
        let out = tch::no_grad(|| longmem_bench::models::LayerAttention::attend(&hook, attn, &half, false).context);
        assert_eq!(out.kind(), Kind::Half);
        assert!(bool::try_from(out.isfinite().all()).unwrap(), "{mode:?}");
    }
}

#[test]
fn memtrm_returns_the_chunks_its_memory_layer_queries_retrieve() {
    for qk_norm in [false, true] {
        let (_vs, model) = memtrm(qk_norm);
        let mut bank = token_bank();
        for s in 0..2 {
            let out = tch::no_grad(|| model.forward(&tokens(20 + s), &bank, false));
            bank.write(&out.memory_keys, &out.memory_values);
        }
        let out = tch::no_grad(|| model.forward(&tokens(30), &bank, false));
        let q = &out.backbone.memory_qkv.q;
        let queries = match &model.log_temperature {
            Some(log_t) => l2_normalize(q) * log_t.exp().view([1, -1, 1, 1]),
            None => q.shallow_clone(),
        };
        let expected = bank.retrieve(&queries, 4).unwrap().chunk_index;
        assert!(
            bool::try_from(expected.ge(0).all()).unwrap(),
            "the bank holds 16 tokens"
        );
        assert!(out.retrieved_chunks.equal(&expected), "qk-norm {qk_norm}");
        let backbone_chunks = out
            .backbone
            .retrieved_chunks
            .as_ref()
            .expect("the memory layer read memory");
        assert!(backbone_chunks.equal(&expected));
    }
}

/// The read path, exactly: with no position signal (a one-block gpt2 whose position table is
/// zero), MemTRM's concat joint attention at block 0 over a bank holding the previous segment
/// token by token, all of it retrieved, is plain causal attention over both segments. So its
/// logits for the second segment equal the backbone's on the two segments read as one.
#[test]
fn concat_memory_over_the_previous_segment_equals_attention_over_both_segments() {
    let _rng = common::rng_lock();
    seed_everything(8);
    let mut config = BackboneConfig::gpt2(50, 1, 2, 16, 32);
    config.dropout = 0.0;
    config.memory_layer = 0;
    let vs = VarStore::new(Device::Cpu);
    let backbone = Backbone::new(&vs.root(), &config);
    let model = MemTrm::new(
        &vs.root(),
        backbone,
        MemTrmConfig {
            trainable: TrainableBlocks::All,
            qk_norm: false,
            joint: JointMode::Concat,
        },
    );
    tch::no_grad(|| {
        let mut wpe = vs.variables()["wpe.weight"].shallow_clone();
        let _ = wpe.zero_();
    });
    let (first, second) = (tokens(21), tokens(22));
    let both = tch::no_grad(|| model.backbone.forward(&Tensor::cat(&[&first, &second], 1), false));
    let reference = both.logits.narrow(1, T, T);
    // Token by token, and in chunks of 2 and 4 tokens (all of them retrieved either way).
    for chunk in [1, 2, 4] {
        let mut bank = MemoryBank::new(BankConfig {
            capacity: T,
            chunk,
            top_k: T,
            ..bank(1).config().clone()
        })
        .unwrap();
        let out = tch::no_grad(|| model.forward(&first, &bank, false));
        bank.write(&out.memory_keys, &out.memory_values);
        let read = tch::no_grad(|| model.forward(&second, &bank, false));
        let diff = max_abs_diff(&read.backbone.logits, &reference);
        assert!(
            diff < 1e-5,
            "chunk {chunk}: memory read differs from attention over both segments by {diff}"
        );
    }
    // And memory matters: without it the second segment's logits are others.
    let alone = tch::no_grad(|| model.backbone.forward(&second, false));
    assert!(max_abs_diff(&alone.logits, &reference) > 1e-3);
}
