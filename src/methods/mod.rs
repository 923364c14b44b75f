//! The compared methods (the LongMem paper, §3 and its baselines): one file each, owning
//! what makes it that method: how its model is built from the model part of a resolved spec,
//! which weights train and in which file they are saved, its step's memory operations, its
//! FLOP shape, and which spec sections reach its run id.
//!
//! [`Method`] is the registry: adding a method is one new file implementing [`MethodDef`] and
//! [`MethodModel`], plus one variant and one line in [`Method::def`].

mod flops;
mod longmem;
mod memtrm;
mod plain;

pub use flops::{forward_flops_per_token, FlopShape};

use crate::data::Batch;
use crate::memory::{BankConfig, BankError, BankSharing, MemoryBank, MemorySpec};
use crate::models::{weights, BackboneConfig, MemTrmConfig, SideNetConfig};
use crate::profile::{Stage, StageClock};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// The methods of the study.
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
    /// The backbone as it is, never trained further: what every other method starts from
    /// (the paper's GPT-2* baseline). It has no training stage; it is only evaluated.
    Frozen,
}

impl Method {
    /// Every method, in the order tables list them.
    pub const ALL: [Method; 5] = [
        Method::Pretrain,
        Method::Longmem,
        Method::Memtrm,
        Method::Plain,
        Method::Frozen,
    ];

    /// The registry: what each method is.
    pub fn def(self) -> &'static dyn MethodDef {
        match self {
            Method::Pretrain => &plain::PRETRAIN,
            Method::Longmem => &longmem::LONGMEM,
            Method::Memtrm => &memtrm::MEMTRM,
            Method::Plain => &plain::PLAIN,
            Method::Frozen => &plain::FROZEN,
        }
    }

    /// Whether the method has a training stage (every method but `frozen`).
    pub fn trains(self) -> bool {
        self != Method::Frozen
    }

    /// Whether the method reads and writes a memory bank.
    pub fn has_memory(self) -> bool {
        self.def().has_memory()
    }

    /// Whether the method starts from a trained backbone (`backbone.weights` is required).
    pub fn needs_backbone_weights(self) -> bool {
        self != Method::Pretrain
    }

    /// The file its trained weights are saved in, in the run directory.
    pub fn weights_file(self) -> &'static str {
        self.def().weights_file()
    }

    /// The method-specific spec sections that reach its run id (of `memory`, `sidenet`,
    /// `memtrm`); the others do not change what it trains.
    pub fn sections(self) -> &'static [&'static str] {
        self.def().sections()
    }

    /// Builds the method's model from `spec` on `device`: weights built (and the backbone's
    /// loaded), frozen as the method requires, memory bank allocated. Seeds no RNG.
    pub fn build(self, spec: &ModelSpec, device: Device) -> Result<Box<dyn MethodModel>, BuildError> {
        self.def().build(spec, device)
    }

    /// The shape whose useful forward FLOPs per position this method's model costs at local
    /// window `window`.
    pub fn flop_shape<'a>(self, spec: &ModelSpec<'a>, window: usize) -> FlopShape<'a> {
        let memory = self
            .has_memory()
            .then(|| (spec.memory.size / spec.memory.chunk, spec.memory.k));
        let sidenet_layers = self.def().sidenet_layers(spec);
        FlopShape {
            backbone: spec.backbone,
            window: window as i64,
            sidenet_layers,
            backbone_head: sidenet_layers == 0,
            memory,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.def().name())
    }
}

/// What a method is, independently of any run: the registry's entries.
pub trait MethodDef: Sync {
    /// The name in specs, run ids and tables.
    fn name(&self) -> &'static str;
    fn has_memory(&self) -> bool;
    fn weights_file(&self) -> &'static str;
    /// See [`Method::sections`].
    fn sections(&self) -> &'static [&'static str];
    /// SideNet blocks its forward runs besides the backbone's (0: it runs the backbone's head).
    fn sidenet_layers(&self, _spec: &ModelSpec) -> i64 {
        0
    }
    fn build(&self, spec: &ModelSpec, device: Device) -> Result<Box<dyn MethodModel>, BuildError>;
}

/// The part of a resolved spec that decides a method's model.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec<'a> {
    pub backbone: &'a BackboneConfig,
    /// Pretrained backbone weights (safetensors), loaded at build.
    pub backbone_weights: Option<&'a Path>,
    pub memory: &'a MemorySpec,
    pub sidenet: &'a SideNetConfig,
    pub memtrm: &'a MemTrmConfig,
    /// Batch rows: one memory stream per row.
    pub batch_size: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("loading backbone.weights {path} for method {method}: {source}")]
    Weights {
        method: Method,
        path: PathBuf,
        /// Boxed: the weights error is large, and every build result carries this type.
        source: Box<weights::WeightsError>,
    },
    #[error("loading sidenet.weights {path}: {source}")]
    SideNetWeights {
        path: PathBuf,
        source: Box<weights::WeightsError>,
    },
    #[error("memory settings: {0}")]
    Memory(#[from] BankError),
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

/// One compared method instantiated for a run: its model's weights (which of them train and
/// which are frozen), its memory bank when it has one, and its step (reset memory at document
/// boundaries → read → forward → write), the same in training and evaluation. The trainer,
/// the evaluators and the benchmarks drive every method through this.
pub trait MethodModel {
    fn method(&self) -> Method;

    /// The file its trained weights are saved in ([`Method::weights_file`]).
    fn weights_file(&self) -> &'static str {
        self.method().weights_file()
    }

    /// The weights this method changes (what checkpoints and its weights file save).
    fn trained_vs(&self) -> &VarStore;

    /// Parameters that take gradients, sorted by name.
    fn trainable(&self) -> Vec<(String, Tensor)> {
        sorted(self.trained_vs().variables().into_iter().collect())
    }

    /// Makes exactly [`MethodModel::trainable`] require gradients.
    fn freeze_the_rest(&mut self) {}

    /// The memory-layer keys the current weights write for `inputs` `[B, T]` (evaluation
    /// mode), `[B, H, T, d]`; `None` for methods without memory.
    fn memory_keys(&self, _inputs: &Tensor) -> Option<Tensor> {
        None
    }

    /// The memory layer's per-head gate logits `[H]`, for memory methods.
    fn memory_gate(&self) -> Option<&Tensor> {
        None
    }

    fn bank(&self) -> Option<&MemoryBank> {
        None
    }

    fn bank_mut(&mut self) -> Option<&mut MemoryBank> {
        None
    }

    /// Lands the memory write a training forward held back for its backward pass.
    fn after_backward(&mut self) {
        if let Some(bank) = self.bank_mut() {
            bank.flush();
        }
    }

    /// Next-token logits `[B, T, V]` for `inputs` in evaluation mode, reading memory but
    /// writing nothing to it (for scoring prompts against a fixed memory).
    fn logits_read_only(&self, inputs: &Tensor) -> Tensor;

    /// Resets memory where a row starts a document, reads, then writes the segment,
    /// charging each stage's time to `clock`.
    fn forward_timed(&mut self, batch: &Batch, train: bool, clock: &StageClock) -> StepOutput;

    /// [`MethodModel::forward_timed`] without a clock.
    fn forward(&mut self, batch: &Batch, train: bool) -> StepOutput {
        self.forward_timed(batch, train, &StageClock::disabled())
    }
}

fn sorted(mut params: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
}

/// The backbone's weights for `spec`: built under a fresh store, loaded from
/// `spec.backbone_weights` when given.
fn backbone_store(
    method: Method,
    spec: &ModelSpec,
    device: Device,
) -> Result<(VarStore, crate::models::Backbone), BuildError> {
    let vs = VarStore::new(device);
    let backbone = crate::models::Backbone::new(&vs.root(), spec.backbone);
    if let Some(path) = spec.backbone_weights {
        weights::load_safetensors(&vs, path, spec.backbone).map_err(|source| BuildError::Weights {
            method,
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
    }
    Ok((vs, backbone))
}

/// The memory bank of a memory method's spec.
fn memory_bank(spec: &ModelSpec, device: Device) -> Result<MemoryBank, BankError> {
    let mut bank = MemoryBank::new(BankConfig {
        n_head: spec.backbone.n_kv_head(),
        head_dim: spec.backbone.head_dim(),
        capacity: spec.memory.size,
        chunk: spec.memory.chunk,
        top_k: spec.memory.k,
        batch: spec.batch_size as i64,
        sharing: spec.memory.sharing,
        eviction: spec.memory.eviction,
        kind: spec.memory.dtype.kind(),
        device,
    })?;
    if let Some(mib) = spec.memory.search_budget_mib {
        bank.set_search_budget(mib.saturating_mul(1 << 20));
    }
    Ok(bank)
}

/// What a memory model's forward returns to its step.
struct MemoryRead {
    logits: Tensor,
    keys: Tensor,
    values: Tensor,
    retrieved_chunks: Tensor,
}

/// The memory methods' step, in one place: reset the rows that start a document, read
/// (`forward`), then write the segment, so a segment never retrieves itself. When gradients
/// flow, the write waits for the backward pass (the fused memory attention recomputes from
/// the bank there): it lands at the next step, or when [`MethodModel::after_backward`]
/// flushes it.
fn memory_step(
    bank: &mut MemoryBank,
    batch: &Batch,
    reset_at_document: bool,
    clock: &StageClock,
    forward: impl FnOnce(&MemoryBank) -> MemoryRead,
) -> StepOutput {
    clock.time(Stage::MemoryWrite, || bank.flush());
    reset_rows(bank, &batch.reset, reset_at_document);
    let read = forward(bank);
    if read.logits.requires_grad() {
        bank.write_after_backward(&read.keys, &read.values);
    } else {
        clock.time(Stage::MemoryWrite, || bank.write(&read.keys, &read.values));
    }
    StepOutput {
        logits: read.logits,
        retrieved_chunks: Some(read.retrieved_chunks),
        written_keys: Some(read.keys),
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
