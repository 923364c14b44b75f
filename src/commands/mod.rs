//! The bodies of the CLI's subcommands.

pub mod doctor;
pub mod lm;
pub mod tokenize;
