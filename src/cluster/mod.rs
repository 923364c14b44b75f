//! Running experiments on clusters: Slurm job arrays whose tasks are sweep shards.

pub mod slurm;
