//! Backbone-only methods: `pretrain` (the backbone trained from scratch, so the study needs no
//! downloaded weights), `plain` (the pretrained backbone continually trained on the same
//! data, the fair-compute control of the LongMem paper's Table 1) and `frozen` (the
//! pretrained backbone evaluated as it is, the paper's GPT-2*). There is no memory; in the
//! two that train, every backbone weight trains.

use super::{backbone_store, BuildError, Method, MethodDef, MethodModel, ModelSpec, StepOutput};
use crate::data::Batch;
use crate::models::Backbone;
use crate::profile::{Stage, StageClock};
use tch::{nn::VarStore, Device, Tensor};

/// The backbone-only methods share a definition and differ only in name (and `frozen` in
/// having no training stage, [`Method::trains`]).
pub struct BackboneOnly(Method);

pub static PRETRAIN: BackboneOnly = BackboneOnly(Method::Pretrain);
pub static PLAIN: BackboneOnly = BackboneOnly(Method::Plain);
pub static FROZEN: BackboneOnly = BackboneOnly(Method::Frozen);

impl MethodDef for BackboneOnly {
    fn name(&self) -> &'static str {
        match self.0 {
            Method::Pretrain => "pretrain",
            Method::Frozen => "frozen",
            _ => "plain",
        }
    }
    fn has_memory(&self) -> bool {
        false
    }
    fn weights_file(&self) -> &'static str {
        "backbone.safetensors"
    }
    fn sections(&self) -> &'static [&'static str] {
        &[]
    }
    fn build(&self, spec: &ModelSpec, device: Device) -> Result<Box<dyn MethodModel>, BuildError> {
        let (vs, model) = backbone_store(self.0, spec, device)?;
        Ok(Box::new(BackboneModel {
            method: self.0,
            vs,
            model,
        }))
    }
}

/// A backbone whose every weight trains.
pub struct BackboneModel {
    method: Method,
    vs: VarStore,
    model: Backbone,
}

impl MethodModel for BackboneModel {
    fn method(&self) -> Method {
        self.method
    }
    fn trained_vs(&self) -> &VarStore {
        &self.vs
    }
    fn logits_read_only(&self, inputs: &Tensor) -> Tensor {
        tch::no_grad(|| self.model.forward(inputs, false).logits)
    }
    fn forward_timed(&mut self, batch: &Batch, train: bool, clock: &StageClock) -> StepOutput {
        StepOutput {
            logits: clock.time(Stage::Backbone, || self.model.forward(&batch.inputs, train).logits),
            retrieved_chunks: None,
            written_keys: None,
        }
    }
}
