//! The fused memory attention (read in place from the bank) against the unfused reference
//! (gather `[B, H, T, K, d]`, then tensor ops): values and gradients, on both of its paths
//! (the CPU loops and the tiled ATen ops), with part-filled and empty banks, grouped-query
//! heads, a shared bank and a half-precision bank. CUDA runs in tests/cuda.rs.

use longmem_bench::memory::{BankConfig, BankSharing, Eviction, MemoryBank};
use longmem_bench::models::fused::{memory_attention, FusedPath};
use longmem_bench::models::{Backbone, BackboneConfig, JointAttention, JointMode, LayerAttention};
use tch::{nn::VarStore, Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-5;

fn bank(n_head: i64, head_dim: i64, sharing: BankSharing, kind: Kind) -> MemoryBank {
    MemoryBank::new(BankConfig {
        n_head,
        head_dim,
        capacity: 32,
        chunk: 2,
        top_k: 6,
        batch: 2,
        sharing,
        eviction: Eviction::Fifo,
        kind,
        device: Device::Cpu,
    })
    .expect("a valid bank")
}

/// Row 0 holds 13 chunks; row 1 holds `row1_tokens` / 2 chunks (0: empty, 1: fewer than the
/// 3 each query retrieves). A shared bank holds both rows' writes.
fn filled(n_head: i64, head_dim: i64, sharing: BankSharing, kind: Kind, row1_tokens: i64) -> MemoryBank {
    let mut bank = bank(n_head, head_dim, sharing, kind);
    let write = |bank: &mut MemoryBank, t: i64| {
        let keys = Tensor::randn([2, n_head, t, head_dim], (Kind::Float, Device::Cpu));
        bank.write(&keys, &keys.randn_like());
    };
    write(&mut bank, 24);
    if sharing == BankSharing::PerStream {
        bank.reset_stream(1);
    }
    write(&mut bank, 2);
    if row1_tokens == 0 && sharing == BankSharing::PerStream {
        bank.reset_stream(1);
    }
    bank
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// The reference: the retrieved pairs gathered, softmax over the valid ones. Rows with
/// nothing valid take their log-sum-exp over zeros, then −inf, so that no NaN reaches the
/// gradient.
fn reference(q: &Tensor, bank: &MemoryBank, scale: f64) -> (Tensor, Tensor) {
    let r = bank.retrieve(q, bank.config().top_k).unwrap();
    let any = r.mask.any_dim(-1, true);
    let keys = r.keys.to_kind(Kind::Float);
    let scores = (q.unsqueeze(3).matmul(&keys.transpose(-1, -2)).squeeze_dim(3) * scale)
        .masked_fill(&r.mask.logical_not(), f64::NEG_INFINITY)
        .masked_fill(&any.logical_not(), 0.0);
    let lse = scores.logsumexp([-1], true);
    let probs = (scores - &lse).exp().masked_fill(&r.mask.logical_not(), 0.0);
    let out = probs.unsqueeze(3).matmul(&r.values.to_kind(Kind::Float)).squeeze_dim(3);
    let lse = lse.masked_fill(&any.logical_not(), f64::NEG_INFINITY).squeeze_dim(-1);
    (out, lse)
}

/// Values and query gradients of `out·w + lse·u` (both outputs take gradient).
fn check_against_reference(bank: &MemoryBank, q_heads: i64, label: &str) {
    let d = bank.config().head_dim;
    let q = Tensor::randn([2, q_heads, 5, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let w = Tensor::randn([2, q_heads, 5, d], (Kind::Float, Device::Cpu));
    let u = Tensor::randn([2, q_heads, 5], (Kind::Float, Device::Cpu));
    let scale = 0.3;
    let grad = |out: &Tensor, lse: &Tensor| {
        // −inf lse rows take no gradient: their weight is zeroed so the loss stays finite.
        let finite = lse.isfinite();
        let loss = (out * &w).sum(Kind::Float) + (lse.where_self(&finite, &lse.zeros_like()) * &u).sum(Kind::Float);
        Tensor::run_backward(&[loss], &[&q], false, false).remove(0)
    };
    let (want_out, want_lse) = reference(&q, bank, scale);
    let want_grad = grad(&want_out, &want_lse);
    for path in [FusedPath::Auto, FusedPath::Tiled] {
        let slots = bank.retrieve_slots(&q, bank.config().top_k).unwrap();
        let (out, lse) = memory_attention(&q, bank, &slots, scale, path);
        assert!(max_diff(&out, &want_out) < TOLERANCE, "{label} {path:?}: values");
        assert!(
            lse.isfinite().equal(&want_lse.isfinite()),
            "{label} {path:?}: rows with nothing valid"
        );
        let finite = want_lse.isfinite();
        let zero = lse.zeros_like();
        assert!(
            max_diff(&lse.where_self(&finite, &zero), &want_lse.where_self(&finite, &zero)) < TOLERANCE,
            "{label} {path:?}: log-sum-exp"
        );
        let got_grad = grad(&out, &lse);
        let diff = max_diff(&got_grad, &want_grad);
        assert!(diff < TOLERANCE, "{label} {path:?}: query gradient differs by {diff}");
        assert!(
            want_grad.abs().max().double_value(&[]) > 1e-3,
            "{label}: a gradient to compare"
        );
    }
}

#[test]
fn fused_memory_attention_equals_the_gathered_reference() {
    tch::manual_seed(11);
    for (row1, label) in [(2, "part-filled row"), (0, "empty row")] {
        check_against_reference(&filled(2, 8, BankSharing::PerStream, Kind::Float, row1), 2, label);
    }
    check_against_reference(
        &filled(2, 8, BankSharing::PerStream, Kind::Float, 2),
        4,
        "grouped-query heads",
    );
    check_against_reference(&filled(2, 8, BankSharing::Shared, Kind::Float, 2), 2, "shared bank");
    check_against_reference(
        &filled(2, 24, BankSharing::PerStream, Kind::Half, 2),
        2,
        "f16 bank, d = 24",
    );
}

/// Joint attention, fused and unfused, through a real block's projections: the context and
/// the gradients of the block input, the gate and MemTRM's temperature.
#[test]
fn joint_attention_fused_equals_unfused_in_values_and_gradients() {
    tch::manual_seed(5);
    let vs = VarStore::new(Device::Cpu);
    let backbone = Backbone::new(&vs.root(), &BackboneConfig::newgpt(30, 2, 2, 16, 32));
    let attn = &backbone.blocks()[1].attn;
    let bank = filled(2, 8, BankSharing::PerStream, Kind::Float, 2);
    let x = Tensor::randn([2, 8, 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let gate = Tensor::from_slice(&[0.3f32, -0.7]).set_requires_grad(true);
    let log_t = Tensor::from_slice(&[0.5f32, 1.1]).set_requires_grad(true);
    let w = Tensor::randn([2, 2, 8, 8], (Kind::Float, Device::Cpu));
    for mode in [JointMode::Gated, JointMode::Concat] {
        for qk_norm in [false, true] {
            let run = |path: Option<FusedPath>| {
                let hook = JointAttention::new(&bank, &gate, mode)
                    .with_log_temperature(qk_norm.then_some(&log_t))
                    .with_path(path);
                let out = hook.attend(attn, &attn.qkv(&x), false);
                let loss = (&out.context * &w).sum(Kind::Float);
                let grads = Tensor::run_backward(&[loss], &[&x, &gate, &log_t], false, false);
                (out.context.detach(), out.retrieved_chunks.unwrap(), grads)
            };
            let (want, want_chunks, want_grads) = run(None);
            for path in [FusedPath::Auto, FusedPath::Tiled] {
                let label = format!("{mode:?}, qk-norm {qk_norm}, {path:?}");
                let (got, chunks, grads) = run(Some(path));
                assert!(chunks.equal(&want_chunks), "{label}: retrieved chunks");
                assert!(max_diff(&got, &want) < TOLERANCE, "{label}: context");
                for (name, (g, wg)) in ["input", "gate", "temperature"]
                    .iter()
                    .zip(grads.iter().zip(&want_grads))
                {
                    let unused = match *name {
                        "temperature" => !qk_norm,
                        "gate" => mode == JointMode::Concat,
                        _ => false,
                    };
                    if unused {
                        continue;
                    }
                    let diff = max_diff(g, wg);
                    assert!(diff < TOLERANCE, "{label}: {name} gradient differs by {diff}");
                    assert!(
                        wg.abs().max().double_value(&[]) > 1e-4,
                        "{label}: {name} gradient is not zero"
                    );
                }
            }
        }
    }
}

/// The fused backward reads the bank again: a write between forward and backward must fail
/// loudly (torch's version check), never give a gradient from other memory.
#[test]
fn writing_the_bank_before_the_backward_is_an_error() {
    let mut bank = filled(2, 8, BankSharing::PerStream, Kind::Float, 2);
    let q = Tensor::randn([2, 2, 5, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let slots = bank.retrieve_slots(&q, 6).unwrap();
    let (out, _) = memory_attention(&q, &bank, &slots, 0.3, FusedPath::Auto);
    let keys = Tensor::randn([2, 2, 4, 8], (Kind::Float, Device::Cpu));
    bank.write(&keys, &keys);
    let error = out.sum(Kind::Float).f_backward().expect_err("a write before backward");
    assert!(
        error.to_string().contains("modified by an inplace operation"),
        "{error}"
    );
    // Held back instead, the write lands after the backward.
    let slots = bank.retrieve_slots(&q, 6).unwrap();
    let before = bank.len_tokens(1);
    let (out, _) = memory_attention(&q, &bank, &slots, 0.3, FusedPath::Auto);
    bank.write_after_backward(&keys, &keys);
    assert_eq!(bank.len_tokens(1), before, "held back until the flush");
    out.sum(Kind::Float).backward();
    bank.flush();
    assert_eq!(bank.len_tokens(1), before + 4);
}
