//! `longmem report <experiment>...`: tables, charts and REPORT.md from finished runs.

use crate::cli::ReportArgs;
use crate::harness::experiment::Experiment;

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let out = match &args.out {
        Some(out) => out.clone(),
        None => {
            // Beside the experiments' folder, as runs/ is: experiments/x.toml → results/<name>/.
            let first = Experiment::load(&args.experiments[0])?;
            let dir = first
                .file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            crate::fsutil::resolve_path(&std::fs::canonicalize(dir)?, std::path::Path::new("../results"))
                .join(first.name)
        }
    };
    let report = crate::report::write_report(&args.experiments, &out)?;
    println!("report: {}", report.display());
    Ok(())
}
