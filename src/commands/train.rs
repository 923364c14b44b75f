//! `longmem train <spec>`: trains one method as a spec describes, resumably.

use crate::cli::TrainArgs;
use crate::fsutil::write_json_atomic;
use crate::harness::build;
use crate::harness::spec::Spec;
use crate::train::{train, Outcome, TrainSummary};
use anyhow::{bail, Context};

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let spec = Spec::load(&args.spec)?;
    train_spec(&spec, args.stop_after).map(|_| ())
}

/// Trains the run `spec` describes in `spec.out_dir`: skips it when finished, resumes it
/// from its last checkpoint otherwise, and refuses a directory that holds another config.
pub fn train_spec(spec: &Spec, stop_after: Option<u64>) -> anyhow::Result<Outcome> {
    let device = spec.device.resolve()?;
    let out = &spec.out_dir;
    let config_path = out.join("config.json");
    let summary_path = out.join("train_summary.json");
    if config_path.exists() {
        let existing =
            std::fs::read_to_string(&config_path).with_context(|| format!("reading {}", config_path.display()))?;
        let same = serde_json::from_str::<Spec>(&existing).is_ok_and(|s| s.same_training(spec));
        if !same {
            bail!(
                "{} holds a run of a different config (see {}); choose another out_dir or delete that directory",
                out.display(),
                config_path.display()
            );
        }
        if let Ok(text) = std::fs::read_to_string(&summary_path) {
            if let Ok(summary) = serde_json::from_str::<TrainSummary>(&text) {
                println!(
                    "{}: already trained ({} steps, final loss {:.4})",
                    out.display(),
                    summary.steps,
                    summary.final_loss
                );
                return Ok(Outcome::Finished(summary));
            }
        }
    }
    let span = tracing::info_span!("train", method = %spec.method, out = %out.display());
    let _enter = span.enter();
    // Everything that can fail on bad input (weights, data) happens before anything is written.
    let mut learner = build::learner(spec, device)?;
    let mut stream = build::train_stream(spec, device)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating out_dir {}", out.display()))?;
    write_json_atomic(&config_path, spec).with_context(|| format!("writing {}", config_path.display()))?;
    let outcome = train(&mut learner, &mut stream, &spec.train, out, stop_after)?;
    match &outcome {
        Outcome::Finished(s) => println!(
            "{}: trained {} ({} steps, final loss {:.4}, {:.0} tokens/s) -> {}",
            out.display(),
            spec.method,
            s.steps,
            s.final_loss,
            s.tokens_per_second,
            out.join(learner.weights_file()).display()
        ),
        Outcome::Stopped { step } => println!("{}: stopped after step {step} (checkpoint written)", out.display()),
    }
    Ok(outcome)
}
