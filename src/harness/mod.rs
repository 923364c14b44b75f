//! The harness: specs (TOML → validated config) and turning a spec into a run.

pub mod build;
pub mod data_spec;
pub mod spec;
