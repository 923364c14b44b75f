//! `longmem bench`: the benchmarks (bench/), with the command line's options.

use crate::bench::{self, BenchOptions};
use crate::cli::BenchArgs;

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    bench::run(&BenchOptions {
        out: args.out.clone(),
        device: args.device,
        samples: args.samples,
        quick: args.quick,
        no_faiss: args.no_faiss,
        only: args.only.clone(),
        python: args.python.clone(),
    })
}
