//! `longmem`: parse, dispatch one subcommand, print the error chain, set the exit code.

use clap::Parser;
use longmem_bench::cli::{Cli, Command};
use longmem_bench::{commands, logging};
use std::process::ExitCode;

fn main() -> ExitCode {
    longmem_bench::device::keep_freed_memory();
    let cli = Cli::parse();
    logging::init(cli.verbose, cli.quiet);
    let result = match &cli.command {
        Command::Doctor(args) => commands::doctor::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
        Command::Lm(args) => commands::lm::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Sweep(args) => commands::sweep::run(args),
        Command::Report(args) => commands::report::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Slurm(args) => commands::slurm::run(args),
        Command::Bench(args) => commands::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
