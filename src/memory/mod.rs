//! The cache memory bank of the LongMem paper: it stores keys and values and answers top-k
//! queries. It knows no model.

mod bank;

pub use bank::{BankConfig, BankError, BankSharing, Eviction, MemoryBank, Retrieved};
