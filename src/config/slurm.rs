//! The `[slurm]` block of an experiment: the resources `longmem slurm` (cluster/slurm.rs)
//! asks for.

use serde::{Deserialize, Serialize};

/// The `[slurm]` block of an experiment, and the same flags on the command line (where each
/// one given wins over the file's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    #[arg(long)]
    pub partition: Option<String>,
    #[arg(long)]
    pub account: Option<String>,
    #[arg(long)]
    pub qos: Option<String>,
    /// Time limit per task, e.g. "04:00:00".
    #[arg(long)]
    pub time: Option<String>,
    /// GPUs per task (`--gres=gpu:N`).
    #[arg(long)]
    pub gpus_per_task: Option<u32>,
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// Memory per task, e.g. "32G".
    #[arg(long)]
    pub mem: Option<String>,
    /// Array tasks running at once (`--array=…%N`).
    #[arg(long)]
    pub max_parallel: Option<u32>,
    /// Seconds before the time limit at which the task is told to checkpoint (default 120).
    #[arg(long)]
    pub signal_seconds: Option<u32>,
    /// More `#SBATCH` lines, verbatim (e.g. "--constraint=a100"); repeatable.
    #[arg(long = "sbatch")]
    #[serde(default)]
    pub extra: Vec<String>,
}

impl SlurmSettings {
    /// These settings with every one `over` gives replaced, and its extra lines added.
    pub fn with(mut self, over: &SlurmSettings) -> Self {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f.clone(); } )* };
        }
        take!(
            partition,
            account,
            qos,
            time,
            gpus_per_task,
            cpus_per_task,
            mem,
            max_parallel,
            signal_seconds
        );
        self.extra.extend(over.extra.iter().cloned());
        self
    }
}
