//! Model benchmarks: one evaluation forward (memory full, the segment written after it, as
//! in evaluation) and one training step of LongMem, MemTRM and plain, at fixed shapes with
//! random weights. Evaluation forwards are given as a fraction of the matmul peak, counting
//! only useful FLOPs ([`crate::eval::cost`]).

use super::{measure, measure_each, BenchRow, Scale};
use crate::config::AdamWConfig;
use crate::config::{RawBackbone, RawDataSpec, RawTrain, Spec, SpecBuilder};
use crate::data::Batch;
use crate::data::RecallConfig;
use crate::device::DeviceSpec;
use crate::memory::MemorySpec;
use crate::methods::forward_flops_per_token;
use crate::methods::{masked_nll, Method, MethodModel};
use crate::models::BlockStyle;
use crate::profile::{Stage, StageClock};
use crate::train::optim::AdamW;
use tch::{Device, Kind, Tensor};

/// A GPT-2-style backbone, its memory and its SideNet, at one size.
#[derive(Debug, Clone, Copy)]
pub struct ModelShape {
    pub name: &'static str,
    pub n_layer: i64,
    pub n_head: i64,
    pub n_embd: i64,
    pub vocab: i64,
    /// Segment length = the local window.
    pub window: i64,
    pub batch: i64,
    pub memory: i64,
    pub chunk: i64,
    pub k: i64,
    pub sidenet_layers: i64,
    /// The methods to time, and whether to time their training step too.
    pub methods: &'static [Method],
    pub train: bool,
}

impl ModelShape {
    pub fn all(scale: Scale) -> Vec<ModelShape> {
        const ALL: &[Method] = &[Method::Longmem, Method::Memtrm, Method::Plain];
        match scale {
            Scale::Quick => vec![ModelShape {
                name: "quick",
                n_layer: 2,
                n_head: 2,
                n_embd: 32,
                vocab: 256,
                window: 32,
                batch: 2,
                memory: 256,
                chunk: 4,
                k: 16,
                sidenet_layers: 1,
                methods: ALL,
                train: true,
            }],
            Scale::Paper => vec![
                ModelShape {
                    name: "small",
                    n_layer: 4,
                    n_head: 4,
                    n_embd: 256,
                    vocab: 8192,
                    window: 256,
                    batch: 8,
                    memory: 4096,
                    chunk: 4,
                    k: 32,
                    sidenet_layers: 2,
                    methods: ALL,
                    train: true,
                },
                ModelShape {
                    name: "medium",
                    n_layer: 8,
                    n_head: 8,
                    n_embd: 512,
                    vocab: 16384,
                    window: 512,
                    batch: 4,
                    memory: 16384,
                    chunk: 4,
                    k: 64,
                    sidenet_layers: 4,
                    methods: ALL,
                    train: true,
                },
                // The paper's: GPT-2 medium (24 × 1024, 16 heads), 1024-token segments,
                // M = 65536, c = 4, K = 64, a 12-layer SideNet. Evaluation only.
                ModelShape {
                    name: "paper (GPT-2 medium)",
                    n_layer: 24,
                    n_head: 16,
                    n_embd: 1024,
                    vocab: 50257,
                    window: 1024,
                    batch: 1,
                    memory: 65536,
                    chunk: 4,
                    k: 64,
                    sidenet_layers: 12,
                    methods: &[Method::Longmem, Method::Plain],
                    train: false,
                },
            ],
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "L={} D={} H={} V={} T={} B={} M={} c={} K={} S={}",
            self.n_layer,
            self.n_embd,
            self.n_head,
            self.vocab,
            self.window,
            self.batch,
            self.memory,
            self.chunk,
            self.k,
            self.sidenet_layers
        )
    }

    /// The run spec of `method` at this shape (built-in recall data, random weights).
    pub fn spec(&self, method: Method, device: Device) -> anyhow::Result<Spec> {
        let mut backbone = RawBackbone::new(BlockStyle::Gpt2, self.n_layer, self.n_head, self.n_embd);
        backbone.n_positions = Some(self.window);
        backbone.vocab_size = Some(self.vocab);
        backbone.dropout = Some(0.0);
        let data = RawDataSpec::Recall(RecallConfig::with_doc_tokens(4 * self.window as usize));
        let memory = MemorySpec {
            size: self.memory,
            chunk: self.chunk,
            k: self.k,
            ..MemorySpec::default()
        };
        let spec = SpecBuilder::new(
            method,
            backbone,
            data,
            RawTrain::new(1, self.batch as usize, self.window as usize),
        )
        .device(DeviceSpec::of(device))
        .memory(memory)
        .sidenet(|s| {
            s.layers = Some(self.sidenet_layers);
            s.dropout = 0.0;
        })
        // The same bank for both memory methods.
        .memtrm(|m| m.chunk = self.chunk)
        .build(&format!("<bench shape {}>", self.name))?;
        Ok(spec)
    }
}

/// What one model shape measured: its rows, and for LongMem the share of its forward that
/// retrieval and the memory write take, relative to the frozen backbone's forward.
pub struct ModelResult {
    pub rows: Vec<BenchRow>,
    /// `(shape name, width, LongMem eval GFLOP/s)`.
    pub longmem_gflops: Option<(String, i64, f64)>,
    /// (retrieval + write) / backbone forward, from LongMem's stage clock.
    pub memory_share: Option<f64>,
}

pub fn bench_shape(shape: &ModelShape, device: Device, samples: usize) -> anyhow::Result<ModelResult> {
    let mut result = ModelResult {
        rows: vec![],
        longmem_gflops: None,
        memory_share: None,
    };
    for &method in shape.methods {
        let spec = shape.spec(method, device)?;
        let mut learner = spec.build_model(device)?;
        fill_memory(learner.as_mut(), shape, device);
        let batch = random_batch(shape, device);
        let describe = format!("{} ({})", shape.name, shape.describe());
        let positions = (shape.batch * shape.window) as f64;
        let flops = forward_flops_per_token(&spec.flop_shape(shape.window as usize)) * positions;
        let (timing, clock) = time_eval_forward(learner.as_mut(), &batch, device, samples);
        let stages: Vec<String> = Stage::ALL
            .iter()
            .filter(|&&s| clock.spent(s).as_nanos() > 0)
            .map(|&s| format!("{} {:.0} ms", s.name(), clock.spent(s).as_secs_f64() * 1e3))
            .collect();
        let row = BenchRow::timed("model", &format!("{method} eval forward"), describe.clone(), &timing)
            .with_flops(flops)
            .with_tokens(positions)
            .with_note(format!("median sample: {}", stages.join(", ")));
        if method == Method::Longmem {
            result.longmem_gflops = Some((shape.name.into(), shape.n_embd, row.gflops.unwrap_or(f64::NAN)));
            let memory = clock.spent(Stage::Retrieval) + clock.spent(Stage::MemoryWrite);
            result.memory_share = Some(memory.as_secs_f64() / clock.spent(Stage::Backbone).as_secs_f64());
        }
        result.rows.push(row);
        if shape.train {
            let timing = time_train_step(learner.as_mut(), &batch, device, samples);
            result.rows.push(
                BenchRow::timed("model", &format!("{method} train step"), describe, &timing)
                    .with_tokens(positions)
                    .with_note("forward + backward + AdamW on the trained weights"),
            );
        }
    }
    Ok(result)
}

/// Times evaluation forwards (one warm-up, then `samples`), each with its own stage clock;
/// returns the timing and the stage clock of the median sample.
fn time_eval_forward(
    learner: &mut dyn MethodModel,
    batch: &Batch,
    device: Device,
    samples: usize,
) -> (super::Timing, StageClock) {
    let mut timed = measure_each(device, 1, samples, || {
        let clock = StageClock::new(device);
        let _ = tch::no_grad(|| learner.forward_timed(batch, false, &clock));
        clock
    });
    let timing = super::Timing::from_seconds(timed.iter().map(|(s, _)| *s).collect());
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (_, clock) = timed.swap_remove(timed.len() / 2);
    (timing, clock)
}

fn time_train_step(learner: &mut dyn MethodModel, batch: &Batch, device: Device, samples: usize) -> super::Timing {
    learner.freeze_the_rest();
    let mut optimizer = AdamW::new(learner.trainable(), AdamWConfig::default());
    measure(device, 1, samples, || {
        let out = learner.forward(batch, true);
        let (nll, count) = masked_nll(&out.logits, &batch.targets, &batch.loss_mask);
        let loss = nll / count.clamp_min(1.0);
        optimizer.zero_grad();
        loss.backward();
        learner.after_backward();
        optimizer.step(1e-4);
    })
}

/// Fills a memory method's bank with random keys and values, so retrieval searches all M.
fn fill_memory(learner: &mut dyn MethodModel, shape: &ModelShape, device: Device) {
    if let Some(bank) = learner.bank_mut() {
        let head_dim = shape.n_embd / shape.n_head;
        let keys = Tensor::randn(
            [shape.batch, shape.n_head, shape.memory, head_dim],
            (Kind::Float, device),
        );
        bank.write(&keys, &keys);
    }
}

fn random_batch(shape: &ModelShape, device: Device) -> Batch {
    let tokens = || Tensor::randint(shape.vocab, [shape.batch, shape.window], (Kind::Int64, device));
    let mut batch = Batch::unlabelled(tokens());
    batch.targets = tokens();
    batch.loss_mask = Tensor::ones([shape.batch, shape.window], (Kind::Float, device));
    batch
}
