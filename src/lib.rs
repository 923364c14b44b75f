//! longmem-bench: a reproducible harness for the LongMem study (Wang et al., NeurIPS 2023)
//! — a frozen language model whose past is cached in a memory bank and read back by a
//! trainable SideNet — against a coupled memory (MemTRM-style) and plain fixed-context
//! models. `../shared/DESIGN.md` is the brief every module follows.
//!
//! Layers, top to bottom: [`cli`]/[`commands`] → [`models`] → tensors; [`tokenizer`],
//! [`device`] and [`seed`] are shared utilities.

pub mod cli;
pub mod commands;
pub mod data;
pub mod device;
pub mod logging;
pub mod memory;
pub mod models;
pub mod seed;
pub mod tokenizer;
