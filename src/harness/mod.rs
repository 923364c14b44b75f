//! The harness: experiments (a base spec and a sweep grid expanded into runs with ids), the
//! runner that executes them (status, locks, dependencies, resume), and the stages a run goes
//! through (training, evaluation) as library functions.

pub mod experiment;
pub mod run_id;
pub mod runner;
pub mod stage;
pub mod sweep;
