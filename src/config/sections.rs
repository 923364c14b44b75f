//! The memory methods' sections: `[memory]` (the bank; the memory module's `MemorySpec`),
//! `[sidenet]` (LongMem) and `[memtrm]` (MemTRM), resolved against the backbone.

use super::resolver::{Resolver, SpecError};
use crate::fsutil::resolve_path;
use crate::memory::MemorySpec;
use crate::methods::Method;
use crate::models::{BackboneConfig, Gelu, JointMode, MemTrmConfig, SideNetConfig, TrainableBlocks};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSideNet {
    /// S; default L/2.
    pub layers: Option<i64>,
    /// Default: the layer initialised from the backbone's memory layer (or the nearest).
    pub memory_layer: Option<i64>,
    pub gelu: Gelu,
    pub layer_norm_eps: f64,
    pub dropout: f64,
    pub joint: JointMode,
    /// Trained SideNet weights (`h.{i}.*`, `ln_f`, `mem_gate`; e.g. converted from the
    /// released LongMem checkpoint by scripts/convert_fairseq.py): the run evaluates them
    /// and has no training stage.
    pub weights: Option<PathBuf>,
}

impl Default for RawSideNet {
    fn default() -> Self {
        Self {
            layers: None,
            memory_layer: None,
            gelu: Gelu::Erf,
            layer_norm_eps: 1e-5,
            dropout: 0.1,
            joint: JointMode::Gated,
            weights: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMemTrm {
    pub trainable: TrainableBlocks,
    pub qk_norm: bool,
    pub joint: JointMode,
    /// Chunk size of MemTRM's bank; 1 = token-level retrieval as the original.
    pub chunk: i64,
}

impl Default for RawMemTrm {
    fn default() -> Self {
        Self {
            trainable: TrainableBlocks::Odd,
            qk_norm: false,
            joint: JointMode::Gated,
            chunk: 1,
        }
    }
}

/// The bank `method` uses: MemTRM's chunk is `memtrm.chunk`, everyone else's `memory.chunk`;
/// size and K must be multiples of it.
pub(super) fn resolve_memory(
    m: &MemorySpec,
    memtrm: &RawMemTrm,
    method: Method,
    r: &Resolver,
) -> Result<MemorySpec, SpecError> {
    let (chunk, chunk_key) = if method == Method::Memtrm {
        (memtrm.chunk, "memtrm.chunk")
    } else {
        (m.chunk, "memory.chunk")
    };
    if chunk <= 0 {
        return Err(r.invalid(chunk_key, &chunk, "a positive number of tokens"));
    }
    for (key, value) in [("memory.size", m.size), ("memory.k", m.k)] {
        if value <= 0 || value % chunk != 0 {
            return Err(r.invalid(key, &value, &format!("a positive multiple of {chunk_key} = {chunk}")));
        }
    }
    if let Some(mib) = m.search_budget_mib.filter(|&mib| mib <= 0) {
        return Err(r.invalid("memory.search_budget_mib", &mib, "a positive number of MiB"));
    }
    Ok(MemorySpec { chunk, ..m.clone() })
}

impl RawSideNet {
    /// `weights` made absolute, for method longmem (other methods ignore the section).
    pub(super) fn resolve_weights(&self, method: Method, r: &Resolver) -> Result<Option<PathBuf>, SpecError> {
        let Some(w) = self.weights.as_ref().filter(|_| method == Method::Longmem) else {
            return Ok(None);
        };
        let w = resolve_path(r.base(), w);
        if r.checks_weights() && !w.is_file() {
            return Err(r.invalid(
                "sidenet.weights",
                &w.display(),
                "an existing .safetensors file of SideNet weights (scripts/convert_fairseq.py writes one)",
            ));
        }
        Ok(Some(w))
    }

    /// The SideNet over `backbone`.
    pub(super) fn resolve(&self, backbone: &BackboneConfig, r: &Resolver) -> Result<SideNetConfig, SpecError> {
        let layers = self.layers.unwrap_or(backbone.n_layer / 2).max(1);
        if backbone.n_layer % layers != 0 {
            return Err(r.invalid(
                "sidenet.layers",
                &layers,
                &format!("a divisor of backbone.n_layer = {}", backbone.n_layer),
            ));
        }
        let mut sidenet =
            SideNetConfig::paper(backbone.n_layer, layers, backbone.memory_layer).expect("depth checked above");
        if let Some(ml) = self.memory_layer {
            if !(0..layers).contains(&ml) {
                return Err(r.invalid("sidenet.memory_layer", &ml, &format!("a SideNet layer in 0..{layers}")));
            }
            sidenet.memory_layer = ml;
        }
        sidenet.gelu = self.gelu;
        sidenet.layer_norm_eps = self.layer_norm_eps;
        sidenet.dropout = self.dropout;
        sidenet.joint = self.joint;
        Ok(sidenet)
    }
}

impl RawMemTrm {
    /// MemTRM over `backbone`.
    pub(super) fn resolve(&self, backbone: &BackboneConfig, r: &Resolver) -> Result<MemTrmConfig, SpecError> {
        if let TrainableBlocks::List(blocks) = &self.trainable {
            if let Some(bad) = blocks.iter().find(|&&i| !(0..backbone.n_layer).contains(&i)) {
                return Err(r.invalid(
                    "memtrm.trainable",
                    bad,
                    &format!("block indices in 0..{}", backbone.n_layer),
                ));
            }
        }
        Ok(MemTrmConfig {
            trainable: self.trainable.clone(),
            qk_norm: self.qk_norm,
            joint: self.joint,
        })
    }
}
