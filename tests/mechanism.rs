//! The mechanism works (issue acceptance): on the built-in recall corpus, whose answer
//! tokens are predictable only from facts beyond the local window, a short LongMem
//! adaptation of a small pretrained backbone beats the fair-compute plain control (the same
//! backbone continually trained on the same data for the same steps) on those tokens.
//!
//! Why the margin is safe: everything is seeded and runs on CPU, so the numbers are the same
//! on every run of the same build; across machines only float reduction order can differ.
//! The asserted margin (0.15 nats) is under half of the measured gap (printed below, about
//! 0.35 nats at K = 32), and both runs share the backbone, data and step count.

mod common;

use longmem_bench::config::Spec;
use longmem_bench::config::{self, Split};
use longmem_bench::data::SegmentStream;
use longmem_bench::eval::{stream_nll, NllTotals};
use longmem_bench::methods::MethodModel;
use longmem_bench::train::{train, Outcome};
use std::path::Path;
use tch::Device;

const BACKBONE: &str = r#"
[backbone]
style = "gpt2"
n_layer = 2
n_head = 4
n_embd = 64
dropout = 0.0
memory_layer = 1
n_positions = 32
"#;

/// Short documents, facts queried within the window: the backbone learns in-context lookup.
fn pretrain_spec(steps: u64) -> String {
    format!(
        r#"
seed = 1
out_dir = "pretrain"
method = "pretrain"
{BACKBONE}
[data]
kind = "recall"
doc_tokens = 32
[train]
steps = {steps}
batch_size = 32
segment_len = 32
lr = 1e-3
warmup = 20
log_every = 100
"#
    )
}

/// Long documents: most facts are queried after they have left the 32-token window.
fn adapt_spec(method: &str, steps: u64) -> String {
    format!(
        r#"
seed = 1
out_dir = "{method}"
method = "{method}"
{BACKBONE}
weights = "pretrain/backbone.safetensors"
[memory]
size = 256
chunk = 4
k = 32
[sidenet]
layers = 2
dropout = 0.0
[data]
kind = "recall"
doc_tokens = 256
[train]
steps = {steps}
batch_size = 16
segment_len = 32
lr = 1e-3
warmup = 20
log_every = 100
"#
    )
}

fn run(dir: &Path, text: &str) -> (Spec, Box<dyn MethodModel>) {
    let spec = Spec::parse(text, &dir.join("spec.toml")).unwrap();
    let mut learner = spec.build_model(Device::Cpu).unwrap();
    let mut stream = config::train_stream(&spec, Device::Cpu).unwrap();
    let outcome = train(learner.as_mut(), &mut stream, &spec.train, &spec.out_dir, None).unwrap();
    assert!(matches!(outcome, Outcome::Finished(_)));
    (spec.spec, learner)
}

/// Held-out documents (another seed), 32 segments of 16 rows.
fn evaluate(spec: &Spec, learner: &mut dyn MethodModel) -> NllTotals {
    let source = config::source(spec, Split::HeldOut { seed_offset: 998 }, spec.batch_size).unwrap();
    let mut stream = SegmentStream::new(source, spec.batch_size, spec.segment_len, Device::Cpu);
    stream_nll(learner, &mut stream, 32)
}

#[test]
fn longmem_beats_the_plain_control_on_beyond_window_tokens() {
    let _rng = common::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let clock = std::time::Instant::now();
    run(dir.path(), &pretrain_spec(2500));
    let (spec, mut longmem) = run(dir.path(), &adapt_spec("longmem", 1000));
    let (_, mut plain) = run(dir.path(), &adapt_spec("plain", 1000));
    let (lm, pl) = (evaluate(&spec, longmem.as_mut()), evaluate(&spec, plain.as_mut()));
    // The same trained LongMem with its gates closed: memory then has no effect.
    let gate = longmem.memory_gate().expect("LongMem has memory gates");
    let _ = tch::no_grad(|| gate.shallow_clone().fill_(f64::NEG_INFINITY));
    let closed = evaluate(&spec, longmem.as_mut());
    println!(
        "far-answer NLL: longmem {:.3} (hit rate {:.2}), same model without memory {:.3}, plain {:.3}; \
         near: {:.3} vs {:.3}; all: {:.3} vs {:.3}; uniform over the 32 values {:.3}; {} far tokens; {:.1} s",
        lm.far_mean(),
        lm.hit_rate_any_head(),
        closed.far_mean(),
        pl.far_mean(),
        lm.near_mean(),
        pl.near_mean(),
        lm.mean(),
        pl.mean(),
        (32f64).ln(),
        lm.far_tokens,
        clock.elapsed().as_secs_f64()
    );
    assert!(lm.far_tokens > 1000.0, "too few beyond-window answers to compare");
    assert!(
        lm.far_mean() < pl.far_mean() - 0.15,
        "LongMem {:.3} vs plain {:.3} on beyond-window tokens",
        lm.far_mean(),
        pl.far_mean()
    );
    // Memory is what helps: without it the same model is far worse on those tokens, and
    // retrieval finds the fact's chunk for most of them.
    assert!(
        closed.far_mean() > lm.far_mean() + 0.5,
        "gates closed: {:.3}",
        closed.far_mean()
    );
    assert!(lm.hit_rate_any_head() > 0.5, "hit rate {:.2}", lm.hit_rate_any_head());
    // Each head finds the source chunk more often than picking chunks at random would
    // (measured 0.416 vs 0.323; the margin asserted is under half the gap).
    let (per_head, chance) = (lm.hit_rate_per_head(), lm.hit_rate_chance());
    assert!(
        per_head > chance + 0.04,
        "per-head hit rate {per_head:.3} vs chance {chance:.3}"
    );
}
