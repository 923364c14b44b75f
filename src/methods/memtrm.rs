//! MemTRM-style coupled memory (Wu et al., ICLR 2022, as the LongMem paper compares with it):
//! the memory layer's keys and values are written by the backbone itself, and a subset of the
//! backbone's blocks (models/memtrm.rs `TrainableBlocks`) trains, so stored keys go stale as
//! the writer changes.

use super::{
    memory_bank, memory_step, sorted, BuildError, MemoryRead, Method, MethodDef, MethodModel, ModelSpec, StepOutput,
};
use crate::data::Batch;
use crate::memory::MemoryBank;
use crate::models::MemTrm;
use crate::profile::StageClock;
use tch::{nn::VarStore, Device, Tensor};

pub struct MemTrmDef;

pub static MEMTRM: MemTrmDef = MemTrmDef;

impl MethodDef for MemTrmDef {
    fn name(&self) -> &'static str {
        "memtrm"
    }
    fn has_memory(&self) -> bool {
        true
    }
    fn weights_file(&self) -> &'static str {
        "memtrm.safetensors"
    }
    fn sections(&self) -> &'static [&'static str] {
        &["memory", "memtrm"]
    }
    fn build(&self, spec: &ModelSpec, device: Device) -> Result<Box<dyn MethodModel>, BuildError> {
        let (vs, backbone) = super::backbone_store(Method::Memtrm, spec, device)?;
        let model = MemTrm::new(&vs.root(), backbone, spec.memtrm.clone());
        Ok(Box::new(MemTrmModel {
            vs,
            model,
            bank: memory_bank(spec, device)?,
            reset_at_document: spec.memory.reset_at_document,
        }))
    }
}

/// The backbone with its memory gate (and temperature) in one store, and the bank.
pub struct MemTrmModel {
    vs: VarStore,
    model: MemTrm,
    bank: MemoryBank,
    reset_at_document: bool,
}

impl MethodModel for MemTrmModel {
    fn method(&self) -> Method {
        Method::Memtrm
    }
    fn trained_vs(&self) -> &VarStore {
        &self.vs
    }
    fn trainable(&self) -> Vec<(String, Tensor)> {
        sorted(
            self.vs
                .variables()
                .into_iter()
                .filter(|(name, _)| self.model.is_trainable(name))
                .collect(),
        )
    }
    fn freeze_the_rest(&mut self) {
        for (name, var) in self.vs.variables() {
            let _ = var.set_requires_grad(self.model.is_trainable(&name));
        }
    }
    /// Keys at the memory layer depend only on the blocks below it, which never see memory,
    /// so tokens alone decide them (under the current, training weights).
    fn memory_keys(&self, inputs: &Tensor) -> Option<Tensor> {
        let (_, qkv) = tch::no_grad(|| self.model.backbone.hidden_states(inputs, false, None));
        Some(qkv.k)
    }
    fn memory_gate(&self) -> Option<&Tensor> {
        Some(&self.model.gate)
    }
    fn bank(&self) -> Option<&MemoryBank> {
        Some(&self.bank)
    }
    fn bank_mut(&mut self) -> Option<&mut MemoryBank> {
        Some(&mut self.bank)
    }
    fn logits_read_only(&self, inputs: &Tensor) -> Tensor {
        let clock = StageClock::disabled();
        tch::no_grad(|| {
            self.model
                .forward_timed(inputs, &self.bank, false, &clock)
                .backbone
                .logits
        })
    }
    fn forward_timed(&mut self, batch: &Batch, train: bool, clock: &StageClock) -> StepOutput {
        let model = &self.model;
        memory_step(&mut self.bank, batch, self.reset_at_document, clock, |bank| {
            let out = model.forward_timed(&batch.inputs, bank, train, clock);
            MemoryRead {
                logits: out.backbone.logits,
                keys: out.memory_keys,
                values: out.memory_values,
                retrieved_chunks: out.retrieved_chunks,
            }
        })
    }
}
