//! The `[memory]` section of a run spec: the bank's size, chunking, retrieval count, sharing,
//! eviction, storage type and reset policy. The file's form has defaults for every field, so
//! one type serves the file and the resolved spec.

use serde::{Deserialize, Serialize};

/// Memory settings (one serde form for the file and the resolved spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySpec {
    /// Memory size M in tokens.
    pub size: i64,
    /// Chunk size c. In the file: LongMem's (MemTRM takes `memtrm.chunk`); in a resolved
    /// spec: the chunk size the bank uses.
    pub chunk: i64,
    /// Retrieved tokens per query, K.
    pub k: i64,
    pub sharing: super::BankSharing,
    pub eviction: super::Eviction,
    pub dtype: StorageDtype,
    pub reset_at_document: bool,
    /// MiB of scores the dense search (every CUDA search) may hold at once; it scores
    /// queries in tiles under this, with the same results (default 2,048). Left out of the
    /// JSON (and so of run ids) when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_budget_mib: Option<i64>,
}

impl Default for MemorySpec {
    fn default() -> Self {
        Self {
            size: 1024,
            chunk: 4,
            k: 16,
            sharing: super::BankSharing::PerStream,
            eviction: super::Eviction::Fifo,
            dtype: StorageDtype::F32,
            reset_at_document: true,
            search_budget_mib: None,
        }
    }
}

/// The bank's storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDtype {
    F32,
    F16,
    Bf16,
}

impl StorageDtype {
    pub fn kind(self) -> tch::Kind {
        match self {
            StorageDtype::F32 => tch::Kind::Float,
            StorageDtype::F16 => tch::Kind::Half,
            StorageDtype::Bf16 => tch::Kind::BFloat16,
        }
    }
}
