//! The cache memory bank (the LongMem paper, §3.2): it stores keys and values and answers top-k
//! queries. It knows no model.

mod bank;
#[cfg(test)]
pub(crate) use bank::random_bank;
mod spec;

pub use bank::{
    BankConfig, BankError, BankSharing, Eviction, MemoryBank, Policy, Retrieval, Retrieved, RetrievedSlots,
    SearchPrecision,
};
pub use spec::{MemorySpec, StorageDtype};
