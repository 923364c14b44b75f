//! `longmem train <spec>`: trains one method as a spec describes, resumably.

use crate::cli::TrainArgs;
use crate::config::Spec;
use crate::harness::stage::{train_run, TrainRequest, TrainResult};

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let file = Spec::load(&args.spec)?;
    let dir = file.out_dir.display();
    let request = TrainRequest {
        spec: &file.spec,
        dir: &file.out_dir,
        stop_after: args.stop_after,
    };
    match train_run(&request)? {
        TrainResult::AlreadyTrained(s) => {
            println!(
                "{dir}: already trained ({} steps, final loss {:.4})",
                s.steps, s.final_loss
            )
        }
        TrainResult::Trained { summary: s, weights } => println!(
            "{dir}: trained {} ({} steps, final loss {:.4}, {:.0} tokens/s) -> {}",
            file.spec.method,
            s.steps,
            s.final_loss,
            s.tokens_per_second,
            weights.display()
        ),
        TrainResult::Stopped { step } => println!("{dir}: stopped after step {step} (checkpoint written)"),
    }
    Ok(())
}
