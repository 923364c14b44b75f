//! Specs made in code (benchmarks, tests): typed sections in place of formatted TOML, resolved
//! and validated exactly like a file.

use super::backbone::RawBackbone;
use super::resolver::Resolver;
use super::sections::{RawMemTrm, RawSideNet};
use super::spec::RawSpec;
use super::train::RawTrain;
use super::{RawDataSpec, Spec, SpecError};
use crate::device::DeviceSpec;
use crate::memory::MemorySpec;
use crate::methods::Method;

/// A spec under construction. `build` resolves it; no files are checked and, unlike a
/// file, a method that normally starts from a pretrained backbone may start from random
/// weights (leave `backbone.weights` unset).
#[derive(Debug, Clone)]
pub struct SpecBuilder {
    raw: RawSpec,
}

impl SpecBuilder {
    pub fn new(method: Method, backbone: RawBackbone, data: RawDataSpec, train: RawTrain) -> Self {
        Self {
            raw: RawSpec {
                seed: 0,
                device: DeviceSpec::Cpu,
                out_dir: None,
                method,
                backbone,
                memory: MemorySpec::default(),
                sidenet: RawSideNet::default(),
                memtrm: RawMemTrm::default(),
                data,
                train,
                icl: None,
                chapterbreak: None,
            },
        }
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.raw.seed = seed;
        self
    }

    pub fn device(mut self, device: DeviceSpec) -> Self {
        self.raw.device = device;
        self
    }

    pub fn memory(mut self, memory: MemorySpec) -> Self {
        self.raw.memory = memory;
        self
    }

    /// Sets the `[sidenet]` section's settings.
    pub fn sidenet(mut self, edit: impl FnOnce(&mut RawSideNet)) -> Self {
        edit(&mut self.raw.sidenet);
        self
    }

    /// Sets the `[memtrm]` section's settings.
    pub fn memtrm(mut self, edit: impl FnOnce(&mut RawMemTrm)) -> Self {
        edit(&mut self.raw.memtrm);
        self
    }

    /// Resolves the spec; `name` stands for the file in error messages.
    pub fn build(self, name: &str) -> Result<Spec, SpecError> {
        self.raw.resolve(&Resolver::in_code(name))
    }
}
