//! The harness: specs (TOML → validated config), turning a spec into a run, experiments
//! (sweeps) and running them.

pub mod build;
pub mod data_spec;
pub mod experiment;
pub mod runner;
pub mod slurm;
pub mod spec;
