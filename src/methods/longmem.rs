//! LongMem (Wang et al., NeurIPS 2023, §3): the backbone frozen, its memory layer's keys and
//! values cached in a memory bank, and a trainable SideNet (models/longmem.rs) that reads the
//! bank through joint attention. Only the SideNet's weights train and are saved.

use super::{
    backbone_store, memory_bank, memory_step, BuildError, MemoryRead, Method, MethodDef, MethodModel, ModelSpec,
    StepOutput,
};
use crate::data::Batch;
use crate::memory::MemoryBank;
use crate::models::LongMem;
use crate::profile::StageClock;
use tch::{nn::VarStore, Device, Tensor};

pub struct LongMemDef;

pub static LONGMEM: LongMemDef = LongMemDef;

impl MethodDef for LongMemDef {
    fn name(&self) -> &'static str {
        "longmem"
    }
    fn has_memory(&self) -> bool {
        true
    }
    fn weights_file(&self) -> &'static str {
        "sidenet.safetensors"
    }
    fn sections(&self) -> &'static [&'static str] {
        &["memory", "sidenet"]
    }
    fn sidenet_layers(&self, spec: &ModelSpec) -> i64 {
        spec.sidenet.layers
    }
    fn build(&self, spec: &ModelSpec, device: Device) -> Result<Box<dyn MethodModel>, BuildError> {
        let (mut backbone_vs, backbone) = backbone_store(Method::Longmem, spec, device)?;
        backbone_vs.freeze();
        let side_vs = VarStore::new(device);
        let model = LongMem::new(&side_vs.root(), backbone, spec.sidenet.clone());
        model.init_from_backbone(&backbone_vs, &side_vs);
        Ok(Box::new(LongMemModel {
            _backbone_vs: backbone_vs,
            side_vs,
            model,
            bank: memory_bank(spec, device)?,
            reset_at_document: spec.memory.reset_at_document,
        }))
    }
}

/// The frozen backbone, the SideNet and the bank.
pub struct LongMemModel {
    /// Keeps the frozen backbone's weights alive.
    _backbone_vs: VarStore,
    side_vs: VarStore,
    model: LongMem,
    bank: MemoryBank,
    reset_at_document: bool,
}

impl MethodModel for LongMemModel {
    fn method(&self) -> Method {
        Method::Longmem
    }
    fn trained_vs(&self) -> &VarStore {
        &self.side_vs
    }
    /// Keys at the memory layer depend only on the frozen blocks below it, which never see
    /// memory, so tokens alone decide them.
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
        tch::no_grad(|| self.model.forward_timed(inputs, &self.bank, false, &clock).logits)
    }
    fn forward_timed(&mut self, batch: &Batch, train: bool, clock: &StageClock) -> StepOutput {
        let model = &self.model;
        memory_step(&mut self.bank, batch, self.reset_at_document, clock, |bank| {
            let out = model.forward_timed(&batch.inputs, bank, train, clock);
            MemoryRead {
                logits: out.logits,
                keys: out.memory_keys,
                values: out.memory_values,
                retrieved_chunks: out.retrieved_chunks,
            }
        })
    }
}
