//! What trains, per method: which weights, which of them take gradients, and the order of a
//! step's memory operations (reset at document boundaries → read → write), which is the
//! same in training and evaluation.

use crate::data::Batch;
use crate::memory::{BankSharing, MemoryBank};
use crate::models::{Backbone, LongMem, MemTrm};
use crate::profile::{Stage, StageClock};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Kind, Tensor};

/// The methods of the study (DESIGN.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Backbone trained from scratch (so the study needs no downloaded weights).
    Pretrain,
    /// Frozen backbone + memory bank + trainable SideNet.
    Longmem,
    /// Memory inside the backbone, a subset of its blocks trained.
    Memtrm,
    /// The backbone alone, continually trained on the same data (fair-compute control).
    Plain,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Method::Pretrain => "pretrain",
            Method::Longmem => "longmem",
            Method::Memtrm => "memtrm",
            Method::Plain => "plain",
        };
        f.write_str(name)
    }
}

/// One forward pass's outputs that training and evaluation need.
#[derive(Debug)]
pub struct StepOutput {
    /// `[B, T, V]`
    pub logits: Tensor,
    /// `[B, H, T, K/c]` retrieved chunk indices, for memory methods.
    pub retrieved_chunks: Option<Tensor>,
    /// `[B, H, T, d]` the keys this step wrote to memory, for memory methods.
    pub written_keys: Option<Tensor>,
}

pub enum Learner {
    /// Pretraining or plain continual training: every backbone weight trains.
    Backbone { vs: VarStore, model: Backbone },
    LongMem {
        backbone_vs: VarStore,
        side_vs: VarStore,
        model: LongMem,
        bank: MemoryBank,
        reset_at_document: bool,
    },
    MemTrm {
        vs: VarStore,
        model: MemTrm,
        bank: MemoryBank,
        reset_at_document: bool,
    },
}

impl Learner {
    /// The weights this method changes (what checkpoints save).
    pub fn trained_vs(&self) -> &VarStore {
        match self {
            Learner::Backbone { vs, .. } | Learner::MemTrm { vs, .. } => vs,
            Learner::LongMem { side_vs, .. } => side_vs,
        }
    }

    /// Name of the final weights file.
    pub fn weights_file(&self) -> &'static str {
        match self {
            Learner::Backbone { .. } => "backbone.safetensors",
            Learner::LongMem { .. } => "sidenet.safetensors",
            Learner::MemTrm { .. } => "memtrm.safetensors",
        }
    }

    /// Parameters that take gradients, sorted by name.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut params: Vec<(String, Tensor)> = match self {
            Learner::Backbone { vs, .. } => vs.variables().into_iter().collect(),
            Learner::LongMem { side_vs, .. } => side_vs.variables().into_iter().collect(),
            Learner::MemTrm { vs, model, .. } => vs
                .variables()
                .into_iter()
                .filter(|(name, _)| model.is_trainable(name))
                .collect(),
        };
        params.sort_by(|a, b| a.0.cmp(&b.0));
        params
    }

    /// Makes exactly [`Learner::trainable`] require gradients (MemTRM freezes the rest; the
    /// LongMem backbone is frozen at construction).
    pub fn freeze_the_rest(&mut self) {
        if let Learner::MemTrm { vs, model, .. } = self {
            for (name, var) in vs.variables() {
                let _ = var.set_requires_grad(model.is_trainable(&name));
            }
        }
    }

    /// The memory-layer keys the current weights write for `inputs` `[B, T]` (evaluation
    /// mode), `[B, H, T, d]`; `None` for methods without memory. Keys at the memory layer
    /// depend only on the blocks below it, which never see memory, so tokens alone decide
    /// them.
    pub fn memory_keys(&self, inputs: &Tensor) -> Option<Tensor> {
        let backbone = match self {
            Learner::Backbone { .. } => return None,
            Learner::LongMem { model, .. } => &model.backbone,
            Learner::MemTrm { model, .. } => &model.backbone,
        };
        let (_, qkv) = tch::no_grad(|| backbone.hidden_states(inputs, false, None));
        Some(qkv.k)
    }

    /// The memory layer's per-head gate logits `[H]`, for memory methods.
    pub fn memory_gate(&self) -> Option<&Tensor> {
        match self {
            Learner::Backbone { .. } => None,
            Learner::LongMem { model, .. } => Some(&model.gate),
            Learner::MemTrm { model, .. } => Some(&model.gate),
        }
    }

    pub fn bank(&self) -> Option<&MemoryBank> {
        match self {
            Learner::Backbone { .. } => None,
            Learner::LongMem { bank, .. } | Learner::MemTrm { bank, .. } => Some(bank),
        }
    }

    pub fn bank_mut(&mut self) -> Option<&mut MemoryBank> {
        match self {
            Learner::Backbone { .. } => None,
            Learner::LongMem { bank, .. } | Learner::MemTrm { bank, .. } => Some(bank),
        }
    }

    /// Resets memory where a row starts a document, reads, then writes the segment.
    pub fn forward(&mut self, batch: &Batch, train: bool) -> StepOutput {
        self.forward_timed(batch, train, &StageClock::disabled())
    }

    /// Next-token logits `[B, T, V]` for `inputs` in evaluation mode, reading memory but
    /// writing nothing to it (for scoring prompts against a fixed memory).
    pub fn logits_read_only(&self, inputs: &Tensor) -> Tensor {
        let clock = StageClock::disabled();
        tch::no_grad(|| match self {
            Learner::Backbone { model, .. } => model.forward(inputs, false).logits,
            Learner::LongMem { model, bank, .. } => model.forward_timed(inputs, bank, false, &clock).logits,
            Learner::MemTrm { model, bank, .. } => model.forward_timed(inputs, bank, false, &clock).backbone.logits,
        })
    }

    /// [`Learner::forward`], charging each stage's time to `clock`.
    pub fn forward_timed(&mut self, batch: &Batch, train: bool, clock: &StageClock) -> StepOutput {
        match self {
            Learner::Backbone { model, .. } => StepOutput {
                logits: clock.time(Stage::Backbone, || model.forward(&batch.inputs, train).logits),
                retrieved_chunks: None,
                written_keys: None,
            },
            Learner::LongMem {
                model,
                bank,
                reset_at_document,
                ..
            } => memory_step(bank, batch, *reset_at_document, clock, |bank| {
                let out = model.forward_timed(&batch.inputs, bank, train, clock);
                (out.logits, out.memory_keys, out.memory_values, out.retrieved_chunks)
            }),
            Learner::MemTrm {
                model,
                bank,
                reset_at_document,
                ..
            } => memory_step(bank, batch, *reset_at_document, clock, |bank| {
                let out = model.forward_timed(&batch.inputs, bank, train, clock);
                (
                    out.backbone.logits,
                    out.memory_keys,
                    out.memory_values,
                    out.retrieved_chunks,
                )
            }),
        }
    }
}

/// The memory methods' step, in one place: reset the rows that start a document, read
/// (`forward` returns logits, the keys and values to cache, and the retrieved chunks), then
/// write the segment, so a segment never retrieves itself.
fn memory_step(
    bank: &mut MemoryBank,
    batch: &Batch,
    reset_at_document: bool,
    clock: &StageClock,
    forward: impl FnOnce(&MemoryBank) -> (Tensor, Tensor, Tensor, Tensor),
) -> StepOutput {
    reset_rows(bank, &batch.reset, reset_at_document);
    let (logits, keys, values, retrieved_chunks) = forward(bank);
    clock.time(Stage::MemoryWrite, || bank.write(&keys, &values));
    StepOutput {
        logits,
        retrieved_chunks: Some(retrieved_chunks),
        written_keys: Some(keys),
    }
}

/// Per-stream banks reset the rows that start a document; a shared bank (the paper's
/// code) is reset whole when any row does.
fn reset_rows(bank: &mut MemoryBank, reset: &[bool], enabled: bool) {
    if !enabled {
        return;
    }
    match bank.config().sharing {
        BankSharing::PerStream => {
            for (row, _) in reset.iter().enumerate().filter(|(_, &r)| r) {
                bank.reset_stream(row);
            }
        }
        BankSharing::Shared => {
            if reset.iter().any(|&r| r) {
                bank.reset_all();
            }
        }
    }
}

/// Sum of next-token negative log-likelihoods over the positions where `mask` is 1, and
/// their count: `([], [])` f32 scalars.
pub fn masked_nll(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
    let logp = logits.log_softmax(-1, Kind::Float);
    let nll = -logp.gather(-1, &targets.unsqueeze(-1), false).squeeze_dim(-1);
    ((nll * mask).sum(Kind::Float), mask.sum(Kind::Float))
}
