//! From a resolved spec to the objects a run needs: the learner (weights built, loaded and
//! frozen as the method requires, memory bank allocated) and the data stream.

use super::spec::Spec;
use crate::data::{RecallSource, SegmentStream};
use crate::memory::{BankConfig, MemoryBank};
use crate::models::{weights, Backbone, LongMem, MemTrm};
use crate::seed::seed_everything;
use crate::train::{Learner, Method};
use anyhow::Context;
use tch::{nn::VarStore, Device};

/// Builds the learner for `spec` on `device`, seeding every RNG from the spec's seed first.
pub fn learner(spec: &Spec, device: Device) -> anyhow::Result<Learner> {
    seed_everything(spec.seed);
    let mut backbone_vs = VarStore::new(device);
    let backbone = Backbone::new(&backbone_vs.root(), &spec.backbone);
    if let Some(path) = &spec.backbone_weights {
        weights::load_safetensors(&backbone_vs, path, spec.backbone.style)
            .with_context(|| format!("loading backbone.weights for method {}", spec.method))?;
    }
    let bank = || {
        MemoryBank::new(BankConfig {
            n_head: spec.backbone.n_head,
            head_dim: spec.backbone.head_dim(),
            capacity: spec.memory.size,
            chunk: spec.memory.chunk,
            batch: spec.batch_size as i64,
            sharing: spec.memory.sharing,
            eviction: spec.memory.eviction,
            kind: spec.memory.dtype.kind(),
            device,
        })
        .context("memory settings")
    };
    Ok(match spec.method {
        Method::Pretrain | Method::Plain => Learner::Backbone {
            vs: backbone_vs,
            model: backbone,
        },
        Method::Longmem => {
            backbone_vs.freeze();
            let side_vs = VarStore::new(device);
            let model = LongMem::new(&side_vs.root(), backbone, spec.sidenet.clone());
            model.init_from_backbone(&backbone_vs, &side_vs);
            Learner::LongMem {
                backbone_vs,
                side_vs,
                model,
                bank: bank()?,
                reset_at_document: spec.memory.reset_at_document,
            }
        }
        Method::Memtrm => {
            let model = MemTrm::new(&backbone_vs.root(), backbone, spec.memtrm.clone());
            Learner::MemTrm {
                vs: backbone_vs,
                model,
                bank: bank()?,
                reset_at_document: spec.memory.reset_at_document,
            }
        }
    })
}

/// The training stream: `batch_size` rows of the recall corpus, seeded from the spec.
pub fn train_stream(spec: &Spec, device: Device) -> SegmentStream<RecallSource> {
    let source = RecallSource {
        config: spec.data.clone(),
        seed: spec.seed,
    };
    SegmentStream::new(source, spec.batch_size, spec.segment_len, device)
}
