//! longmem-bench: a reproducible harness for the LongMem study (Wang et al., NeurIPS 2023)
//! — a frozen language model whose past is cached in a memory bank and read back by a
//! trainable SideNet — against a coupled memory (MemTRM-style) and plain fixed-context
//! models. docs/ARCHITECTURE.md describes the rooms and how a sweep flows through them.
//!
//! The rooms (top-level modules) and the one direction their dependencies point are in
//! docs/ARCHITECTURE.md; tests/architecture.rs checks that no import cycle creeps in.

pub mod bench;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod eval;
pub mod fsutil;
pub mod harness;
pub mod logging;
pub mod memory;
pub mod methods;
pub mod models;
pub mod profile;
pub mod progress;
pub mod report;
pub mod seed;
pub mod tokenizer;
pub mod train;
