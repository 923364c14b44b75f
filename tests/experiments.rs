//! The committed experiment files plan on any machine, without their weights and data (as
//! `longmem plan` does), and the paper's evaluation-only experiments plan the stages they
//! are for.

use longmem_bench::harness::experiment::{Experiment, PlannedRun, Stage};
use std::path::{Path, PathBuf};

fn experiment_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            experiment_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            // Single-run specs name their out_dir; experiment files do not.
            let text = std::fs::read_to_string(&path).unwrap();
            if !text.lines().any(|l| l.trim_start().starts_with("out_dir")) {
                out.push(path);
            }
        }
    }
}

fn plan(rel: &str) -> Vec<PlannedRun> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    Experiment::load(&path)
        .and_then(|e| e.plan_checking(false))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn every_committed_experiment_plans_without_its_files() {
    let mut files = Vec::new();
    experiment_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments"), &mut files);
    assert!(files.len() >= 10, "{files:?}");
    for file in files {
        let runs = Experiment::load(&file)
            .and_then(|e| e.plan_checking(false))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!runs.is_empty(), "{} plans no runs", file.display());
    }
}

#[test]
fn the_papers_evaluation_experiments_plan_their_stages() {
    let stages = |runs: &[PlannedRun], stage: Stage| runs.iter().filter(|r| r.stage == stage).count();
    let released = plan("experiments/paper/released.toml");
    assert_eq!(stages(&released, Stage::Train), 0, "the released SideNet is given");
    assert_eq!(
        (stages(&released, Stage::Eval), stages(&released, Stage::ChapterBreak)),
        (3, 1)
    );
    let icl = plan("experiments/paper/icl-released.toml");
    assert_eq!((stages(&icl, Stage::Train), stages(&icl, Stage::Icl)), (0, 1));
    assert_eq!(icl[0].spec.memory.chunk, 2, "the authors evaluate ICL at chunk size 2");
    let cb = plan("experiments/paper/chapterbreak.toml");
    assert_eq!(stages(&cb, Stage::ChapterBreak), 9, "3 methods x 3 context lengths");
    // The same train runs as paper/pg19.toml: training once serves both files.
    let ids = |runs: &[PlannedRun]| {
        let mut ids: Vec<String> = runs
            .iter()
            .filter(|r| r.stage == Stage::Train)
            .map(|r| r.id.clone())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&cb), ids(&plan("experiments/paper/pg19.toml")));
}
