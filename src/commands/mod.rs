//! The bodies of the CLI's subcommands.

pub mod bench;
pub mod doctor;
pub mod eval;
pub mod lm;
pub mod plan;
pub mod report;
pub mod slurm;
pub mod status;
pub mod sweep;
pub mod tokenize;
pub mod train;
