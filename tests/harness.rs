//! The sweep harness: expansion and reuse, errors that write nothing, a sweep killed and
//! resumed, shards in parallel, and the report.

mod common;

use assert_cmd::Command;
use longmem_bench::harness::experiment::{Experiment, Stage};
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn write_experiment(dir: &Path, sweep: &str) -> PathBuf {
    let path = dir.join("mini.toml");
    // Harness tests checkpoint every 5 steps of 30.
    let text = common::mini_experiment("mini", 30, sweep).replace("checkpoint_every = 2", "checkpoint_every = 5");
    std::fs::write(&path, text).unwrap();
    path
}

/// The experiment's base text (no sweep), for tests that edit it.
fn base_text() -> String {
    common::mini_experiment("mini", 30, "").replace("\n[sweep]\n", "\n")
}

const SWEEP: &str = r#"method = ["longmem", "plain"]
"sidenet.layers" = [1, 2]
seed = [1, 2]
"eval.memory_size" = [16, 32]"#;

fn longmem() -> Command {
    Command::cargo_bin("longmem").unwrap()
}

/// `longmem report FILE --out OUT`, which must succeed.
fn write_report(file: &Path, out: &Path) {
    longmem()
        .arg("report")
        .arg(file)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
}

#[test]
fn a_sweep_expands_to_shared_stages_and_evaluation_points() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_experiment(dir.path(), SWEEP);
    let runs = Experiment::load(&file).unwrap().plan().unwrap();
    let count = |stage: Stage, method: &str| {
        runs.iter()
            .filter(|r| r.stage == stage && r.spec.method.to_string() == method)
            .count()
    };
    // One pretraining for everything; LongMem per depth and seed; plain per seed only (the
    // SideNet depth does not change it); two memory sizes per LongMem run, one eval per plain.
    assert_eq!(count(Stage::Pretrain, "pretrain"), 1);
    assert_eq!(count(Stage::Train, "longmem"), 4);
    assert_eq!(count(Stage::Train, "plain"), 2);
    assert_eq!(count(Stage::Eval, "longmem"), 8);
    assert_eq!(count(Stage::Eval, "plain"), 2);
    // Dependencies come first, and ids are stable: the same file plans the same runs.
    let again = Experiment::load(&file).unwrap().plan().unwrap();
    assert_eq!(
        runs.iter().map(|r| &r.id).collect::<Vec<_>>(),
        again.iter().map(|r| &r.id).collect::<Vec<_>>()
    );
    for (i, run) in runs.iter().enumerate() {
        if let Some(dep) = &run.depends_on {
            assert!(
                runs[..i].iter().any(|r| &r.id == dep),
                "{} before its dependency",
                run.id
            );
        }
    }
    let pretrain = runs.iter().find(|r| r.stage == Stage::Pretrain).unwrap();
    assert_eq!(pretrain.spec.train.steps, 20);
    assert!(runs
        .iter()
        .filter(|r| r.stage == Stage::Train)
        .all(|r| r.spec.backbone_weights.as_deref() == Some(&*pretrain.dir.join("backbone.safetensors"))));
}

#[test]
fn malformed_experiments_are_refused_and_nothing_is_written() {
    let cases: [(&str, &str, &str); 7] = [
        (
            "unknown key",
            "method = [\"longmem\"]\nbogus = [1]",
            "unknown field `bogus`",
        ),
        ("wrong type", "\"sidenet.layers\" = [\"two\"]", "sidenet"),
        ("not a list", "seed = 3", "a non-empty list of values"),
        (
            "impossible combination",
            "\"sidenet.layers\" = [1, 3]",
            "a divisor of backbone.n_layer = 2 (at sweep point: sidenet.layers = 3)",
        ),
        (
            "out of range",
            "\"eval.memory_size\" = [30]",
            "a positive multiple of the chunk size 4",
        ),
        (
            "unknown eval key",
            "\"eval.windows\" = [1]",
            "eval.memory_size, eval.chunk, eval.top_k, eval.retrieval or eval.window",
        ),
        (
            "unknown retrieval",
            "\"eval.retrieval\" = [\"exact\", \"best\"]",
            "\"exact\", \"oracle\" or \"random\"",
        ),
    ];
    for (what, sweep, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = write_experiment(dir.path(), sweep);
        let out = longmem().arg("sweep").arg(&file).assert().failure();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains("mini.toml") && stderr.contains(expected),
            "{what}: {stderr}"
        );
        assert!(!dir.path().join("runs").exists(), "{what}: wrote runs");
    }
    // A missing data directory is named before anything runs.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mini.toml");
    let text = base_text().replace(
        "kind = \"recall\"\ndoc_tokens = 64",
        "kind = \"text_dir\"\npath = \"nowhere\"\ntokenizer = \"byte\"",
    );
    std::fs::write(&file, text.replace("\"data.doc_tokens\" = 16\n", "")).unwrap();
    longmem()
        .arg("sweep")
        .arg(&file)
        .assert()
        .failure()
        .stderr(predicates::str::contains("`data.path`").and(predicates::str::contains("nowhere")));
    assert!(!dir.path().join("runs").exists());
    // `plan` still lists it: the data may live on another machine.
    longmem().arg("plan").arg(&file).assert().success();
}

/// Every eval run's measured NLL totals (not its timings), by run id.
fn totals(runs_dir: &Path) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(runs_dir.join("eval")).unwrap() {
        let dir = entry.unwrap().path();
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("eval") && name.ends_with(".json") {
                let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
                out.push((
                    format!("{}/{name}", dir.file_name().unwrap().to_string_lossy()),
                    v["totals"].clone(),
                ));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn a_sweep_killed_mid_run_resumes_to_the_same_numbers() {
    let sweep = "method = [\"longmem\", \"plain\"]\n\"eval.memory_size\" = [16, 32]";
    // Uninterrupted.
    let clean = tempfile::tempdir().unwrap();
    let file = write_experiment(clean.path(), sweep);
    longmem().args(["-q", "sweep"]).arg(&file).assert().success();
    // Killed (SIGKILL) while the LongMem run trains, then run again.
    let killed = tempfile::tempdir().unwrap();
    let file = write_experiment(killed.path(), sweep);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("longmem"))
        .args(["-q", "sweep"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let train = killed.path().join("runs/train");
    let start = Instant::now();
    let checkpointed = || common::has_checkpoint(&train);
    while !checkpointed() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(checkpointed(), "the sweep reached no checkpoint");
    let planned = Experiment::load(&file).unwrap().plan().unwrap();
    let done = planned
        .iter()
        .filter(|r| std::fs::read_to_string(r.dir.join("status.json")).is_ok_and(|s| s.contains("\"done\"")))
        .count();
    assert!(done < planned.len(), "killed after the sweep finished");
    longmem().args(["-q", "sweep"]).arg(&file).assert().success();
    common::assert_all_done_once(&file);
    assert_eq!(totals(&killed.path().join("runs")), totals(&clean.path().join("runs")));
    // A finished sweep is skipped whole.
    let out = longmem().arg("sweep").arg(&file).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("0 runs ran"), "{stdout}");
}

#[test]
fn two_shards_in_parallel_equal_one_process_and_the_report_has_every_run() {
    let sweep = "method = [\"longmem\", \"plain\"]\nseed = [1, 2]\n\"eval.memory_size\" = [16, 32]";
    let single = tempfile::tempdir().unwrap();
    let file = write_experiment(single.path(), sweep);
    longmem().args(["-q", "sweep"]).arg(&file).assert().success();
    let sharded = tempfile::tempdir().unwrap();
    let file = write_experiment(sharded.path(), sweep);
    let spawn = |shard: &str| {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("longmem"))
            .args(["-q", "sweep", "--shard", shard])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn("0/2"), spawn("1/2"));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let runs = sharded.path().join("runs");
    common::assert_all_done_once(&file);
    assert_eq!(totals(&runs), totals(&single.path().join("runs")));
    // The report: one row per run and metric, every swept parameter a column, and the summary
    // over seeds; charts for the memory-size sweep.
    let out = sharded.path().join("results");
    write_report(&file, &out);
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    for column in ["experiment", "run", "method", "seed", "memory_size", "metric", "value"] {
        assert!(header.split(',').any(|c| c == column), "{column} in {header}");
    }
    let perplexity_rows = csv.lines().filter(|l| l.contains(",perplexity,")).count();
    assert_eq!(
        perplexity_rows,
        2 * 2 + 2,
        "LongMem: 2 seeds x 2 memory sizes; plain: 2 seeds"
    );
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(summary.lines().next().unwrap().contains("ci95_low"));
    assert!(summary
        .lines()
        .any(|l| l.starts_with("mini,plain,") && l.contains(",perplexity,2,")));
    assert!(std::fs::metadata(out.join("runs.parquet")).unwrap().len() > 100);
    for chart in [
        "perplexity_vs_memory.png",
        "perplexity_vs_memory.svg",
        "beyond_window_perplexity.png",
    ] {
        assert!(std::fs::metadata(out.join(chart)).unwrap().len() > 1000, "{chart}");
    }
    let report = std::fs::read_to_string(out.join("REPORT.md")).unwrap();
    assert!(report.contains("## Perplexity vs memory size") && report.contains("# Published numbers"));
    // The same numbers: the sharded sweep's report equals the single process's.
    let single_out = single.path().join("results");
    let single_file = single.path().join("mini.toml");
    write_report(&single_file, &single_out);
    let values = |csv: &str| -> Vec<String> {
        let mut v: Vec<String> = csv
            .lines()
            .filter(|l| l.contains(",perplexity,") || l.contains(",far_nll,"))
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    let single_csv = std::fs::read_to_string(single_out.join("runs.csv")).unwrap();
    assert_eq!(values(&csv), values(&single_csv));
}

#[test]
fn the_report_reads_run_directories_without_the_corpus() {
    // A finished sweep over a text corpus whose directory is then deleted, as on a machine
    // that has the runs but not the data: the report reads the runs and comes out the same.
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    for i in 0..4 {
        let text = format!("document {i} says {}. ", i * 7).repeat(8 + 4 * i);
        std::fs::write(corpus.join(format!("d{i}.txt")), text).unwrap();
    }
    let file = dir.path().join("mini.toml");
    let text = base_text()
        .replace(
            "kind = \"recall\"\ndoc_tokens = 64",
            "kind = \"text_dir\"\npath = \"corpus\"\ntokenizer = \"byte\"\nholdout = 0.5",
        )
        .replace("\"data.doc_tokens\" = 16\n", "")
        .replace("steps = 30", "steps = 4")
        .replace("\"train.steps\" = 20", "\"train.steps\" = 4");
    std::fs::write(&file, text + "\n[sweep]\nmethod = [\"longmem\", \"plain\"]\n").unwrap();
    longmem().args(["-q", "sweep"]).arg(&file).assert().success();
    let report = |out: &Path| {
        write_report(&file, out);
        let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
        (read("REPORT.md"), read("runs.csv"))
    };
    let with_corpus = report(&dir.path().join("with"));
    std::fs::remove_dir_all(&corpus).unwrap();
    let without = report(&dir.path().join("without"));
    assert!(without.0.contains("5 planned, 5 finished"), "{}", without.0);
    assert!(
        without.0.contains("- longmem trained with memory size M = 32"),
        "{}",
        without.0
    );
    assert_eq!(without, with_corpus);
}

#[test]
fn a_failing_run_is_marked_failed_with_its_reason_and_the_sweep_goes_on() {
    // Two plain runs; the one at an absurd learning rate diverges (a NaN loss).
    let dir = tempfile::tempdir().unwrap();
    let file = write_experiment(
        dir.path(),
        "method = [\"plain\"]\n\"train.lr\" = [1e-3, 1e12]\n\"train.grad_clip\" = [1e30]",
    );
    let out = longmem().args(["-q", "sweep"]).arg(&file).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("2 of 5 runs failed"), "{stderr}");
    let runs = Experiment::load(&file).unwrap().plan().unwrap();
    let status = |stage: Stage, lr: f64| {
        let run = runs.iter().find(|r| r.stage == stage && r.spec.train.lr == lr).unwrap();
        std::fs::read_to_string(run.dir.join("status.json")).unwrap()
    };
    // The diverging run names its reason; its evaluation names the failed upstream run; the
    // healthy run and its evaluation finished.
    assert!(status(Stage::Train, 1e12).contains("failed") && status(Stage::Train, 1e12).contains("train.lr"));
    assert!(status(Stage::Eval, 1e12).contains("upstream run"));
    assert!(status(Stage::Train, 1e-3).contains("\"done\""));
    assert!(status(Stage::Eval, 1e-3).contains("\"done\""));
}

#[test]
fn method_presets_from_baselines_are_referenced_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_experiment(dir.path(), "preset = [\"longmem\", \"memtrm\", \"plain\"]");
    let runs = Experiment::load(&file).unwrap().plan().unwrap();
    let trained = |method: &str| {
        runs.iter()
            .find(|r| r.stage == Stage::Train && r.spec.method.to_string() == method)
            .unwrap_or_else(|| panic!("no {method} run"))
    };
    // The preset sets the method; its section defaults fill what the experiment leaves
    // unset (MemTRM's token-level chunk), and the experiment's own keys win (memory size).
    let memtrm = trained("memtrm");
    assert_eq!((memtrm.spec.memory.chunk, memtrm.spec.memory.size), (1, 32));
    assert_eq!(memtrm.params.get("preset").map(String::as_str), Some("memtrm"));
    assert_eq!(trained("longmem").spec.memory.chunk, 4);
    trained("plain");
    let file = write_experiment(dir.path(), "preset = [\"memtrm-xl\"]");
    let err = Experiment::load(&file).unwrap().plan().unwrap_err().to_string();
    assert!(
        err.contains("`preset` = memtrm-xl") && err.contains("longmem, memtrm, plain"),
        "{err}"
    );
}

#[test]
fn retrieval_bounds_and_held_out_data_are_evaluation_settings_that_keep_exact_ids() {
    let dir = tempfile::tempdir().unwrap();
    let load = |name: &str, sweep: &str, eval: &str| {
        let text = common::mini_experiment(name, 30, sweep).replace("[eval]\ndocuments = 2", eval);
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        Experiment::load(&path).and_then(|e| e.plan())
    };
    let evals = |runs: &[longmem_bench::harness::experiment::PlannedRun]| -> Vec<(String, Option<String>)> {
        runs.iter()
            .filter(|r| r.stage == Stage::Eval)
            .map(|r| (r.id.clone(), r.params.get("retrieval").cloned()))
            .collect()
    };
    let eval = "[eval]\ndocuments = 2";
    let exact = load("exact", "\"eval.memory_size\" = [16, 32]", eval).unwrap();
    let bounds = load(
        "bounds",
        "\"eval.memory_size\" = [16, 32]\n\"eval.retrieval\" = [\"exact\", \"oracle\", \"random\"]",
        eval,
    )
    .unwrap();
    let (exact, bounds) = (evals(&exact), evals(&bounds));
    assert_eq!((exact.len(), bounds.len()), (2, 6));
    // Exact retrieval is the evaluation without the key: same runs, same ids, no column.
    for (id, retrieval) in &exact {
        assert_eq!(*retrieval, None);
        assert!(bounds.contains(&(id.clone(), None)), "{id}");
    }
    let named: Vec<&str> = bounds.iter().filter_map(|(_, r)| r.as_deref()).collect();
    assert_eq!(named, ["oracle", "random", "oracle", "random"]);
    let ids: std::collections::BTreeSet<&String> = bounds.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 6, "each bound is a run of its own");

    // Held-out data changes and rows are evaluation settings: new eval ids, same training.
    let longer = load(
        "longer",
        "",
        "[eval]\ndocuments = 2\nrows = 1\ndata = { doc_tokens = 128 }",
    )
    .unwrap();
    let base = load("base", "", eval).unwrap();
    let id_of = |runs: &[longmem_bench::harness::experiment::PlannedRun], stage: Stage| {
        runs.iter().find(|r| r.stage == stage).map(|r| r.id.clone()).unwrap()
    };
    assert_eq!(id_of(&longer, Stage::Train), id_of(&base, Stage::Train));
    assert_ne!(id_of(&longer, Stage::Eval), id_of(&base, Stage::Eval));
    for (eval, wanted) in [
        ("[eval]\ndata = { doc_tokens = 30 }", "a positive multiple of 4"),
        ("[eval]\ndata = { n_keyz = 3 }", "unknown field `n_keyz`"),
        ("[eval]\nrows = 0", "a positive number of batch rows"),
    ] {
        let err = load("bad", "", eval).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains(wanted), "{eval}: {err}");
    }
}

#[test]
fn the_frozen_backbone_and_long_windows_are_evaluation_points_of_every_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let sweep =
        "preset = [\"longmem\", \"plain\", \"frozen\"]\n\"eval.memory_size\" = [16, 32]\n\"eval.window\" = [16, 32]";
    let file = write_experiment(dir.path(), sweep);
    let runs = Experiment::load(&file).unwrap().plan().unwrap();
    let of = |stage: Stage, method: &str| -> Vec<&longmem_bench::harness::experiment::PlannedRun> {
        runs.iter()
            .filter(|r| r.stage == stage && r.spec.method.to_string() == method)
            .collect()
    };
    // The frozen backbone trains nothing: its evaluations wait for the pretraining alone.
    let pretrain = &of(Stage::Pretrain, "pretrain")[0];
    assert!(of(Stage::Train, "frozen").is_empty());
    let frozen = of(Stage::Eval, "frozen");
    assert!(frozen
        .iter()
        .all(|r| r.depends_on.as_deref() == Some(pretrain.id.as_str())));
    // Windows are points of the methods without memory (16 is the trained segment, under
    // no key), memory sizes of the methods with memory.
    let windows = |method: &str| -> Vec<Option<String>> {
        of(Stage::Eval, method)
            .iter()
            .map(|r| r.params.get("window").cloned())
            .collect()
    };
    assert_eq!(windows("plain"), [None, Some("32".into())]);
    assert_eq!(windows("frozen"), [None, Some("32".into())]);
    assert_eq!(windows("longmem"), [None, None]);
    let sizes: Vec<&str> = of(Stage::Eval, "longmem")
        .iter()
        .map(|r| r.params["memory_size"].as_str())
        .collect();
    assert_eq!(sizes, ["16", "32"]);
    // Shards (and so Slurm array tasks) share out every run but the pretraining, the frozen
    // backbone's evaluations included, each exactly once.
    let mut owned: Vec<&str> = ["0/2", "1/2"]
        .iter()
        .flat_map(|s| longmem_bench::harness::runner::shard_runs(&runs, Some(s.parse().unwrap())))
        .map(|r| r.id.as_str())
        .collect();
    owned.sort();
    let mut expected: Vec<&str> = runs
        .iter()
        .filter(|r| r.stage != Stage::Pretrain)
        .map(|r| r.id.as_str())
        .collect();
    expected.sort();
    assert_eq!(owned, expected);

    longmem().arg("sweep").arg(&file).assert().success();
    // The frozen backbone's numbers are the pretrained weights' own: the same evaluation of
    // a plain spec that loads the pretraining run's weights gives the same totals.
    let at_trained = frozen.iter().find(|r| !r.params.contains_key("window")).unwrap();
    let result = |path: PathBuf| longmem_bench::eval::result::EvalResult::read(&path).unwrap();
    let frozen_result = result(at_trained.dir.join("eval.json"));
    let mut as_plain = at_trained.spec.clone();
    as_plain.method = longmem_bench::methods::Method::Plain;
    let out = tempfile::tempdir().unwrap();
    let options = longmem_bench::harness::stage::EvalOptions {
        documents: Some(2),
        no_icl: true,
        seed_offset: 1000,
        ..Default::default()
    };
    longmem_bench::harness::stage::evaluate_run(&longmem_bench::harness::stage::EvalRequest {
        spec: &as_plain,
        weights_dir: &pretrain.dir,
        out_dir: out.path(),
        options: &options,
        spec_name: &file,
    })
    .unwrap();
    let reference = result(out.path().join("eval.json"));
    assert_eq!(frozen_result.totals, reference.totals);
    assert_eq!(frozen_result.method, "frozen");
    // Plain trained on: other numbers than the backbone it started from.
    let plain = of(Stage::Eval, "plain");
    let plain_at_trained = plain.iter().find(|r| !r.params.contains_key("window")).unwrap();
    assert_ne!(
        result(plain_at_trained.dir.join("eval.json")).totals,
        frozen_result.totals
    );
    // The long window is its own file, read with a 32-token window.
    let long = frozen.iter().find(|r| r.params.contains_key("window")).unwrap();
    assert_eq!(result(long.dir.join("eval-window32.json")).window, 32);

    // The report lists both, the long windows under their own labels.
    let out = dir.path().join("report");
    write_report(&file, &out);
    let report = std::fs::read_to_string(out.join("REPORT.md")).unwrap();
    for label in ["| frozen |", "| frozen W=32 |", "| plain W=32 |", "| plain |"] {
        assert!(report.contains(label), "{label} missing from\n{report}");
    }
    // A window shorter than trained, or longer than a gpt2 backbone's positions, is refused
    // at planning.
    let gpt2 = "style = \"gpt2\"\nn_positions = 16";
    for (bad, style) in [("8", "style = \"newgpt\""), ("0", "style = \"newgpt\""), ("32", gpt2)] {
        let file = write_experiment(dir.path(), &format!("preset = [\"plain\"]\n\"eval.window\" = [{bad}]"));
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace("style = \"newgpt\"", style)).unwrap();
        let err = Experiment::load(&file).and_then(|e| e.plan()).unwrap_err().to_string();
        assert!(err.contains("eval.window") && err.contains("mini.toml"), "{bad}: {err}");
    }
}

#[test]
fn reports_show_memory_staleness_by_age_and_the_accuracy_heat_map() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_experiment(dir.path(), "preset = [\"longmem\", \"memtrm\", \"plain\"]");
    // Set for every method of the sweep: plain resolves it to 0 and measures nothing.
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "checkpoint_every = 5",
        "checkpoint_every = 5\nstaleness_every = 10\nstaleness_window = 3",
    );
    std::fs::write(&file, text).unwrap();
    let runs = Experiment::load(&file).unwrap().plan().unwrap();
    for run in runs.iter().filter(|r| r.stage == Stage::Train) {
        let expected = if run.spec.method.has_memory() { 10 } else { 0 };
        assert_eq!(run.spec.train.staleness_every, expected, "{}", run.spec.method);
    }
    longmem().arg("sweep").arg(&file).assert().success();
    let out = dir.path().join("report");
    write_report(&file, &out);
    // summary.csv: `staleness[<age in tokens>]` per memory method, ages 0, 16 and 32 (three
    // 16-token segments); LongMem's frozen writer 0 (up to rounding), MemTRM's trained one above.
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let header: Vec<&str> = summary.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (method, metric, mean) = (column("method"), column("metric"), column("mean"));
    let staleness = |who: &str, age: u32| -> Option<f64> {
        summary.lines().skip(1).find_map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            (cells[method] == who && cells[metric] == format!("staleness[{age}]")).then(|| cells[mean].parse().unwrap())
        })
    };
    for age in [0, 16, 32] {
        assert!(staleness("longmem", age).unwrap().abs() < 1e-6, "age {age}");
        assert!(staleness("memtrm", age).unwrap() > 0.0, "age {age}");
        assert_eq!(staleness("plain", age), None);
    }
    assert!(staleness("memtrm", 32).unwrap() > staleness("memtrm", 0).unwrap());
    let report = std::fs::read_to_string(out.join("REPORT.md")).unwrap();
    assert!(
        report.contains("## Memory staleness") && report.contains("| age 0 | age 16 | age 32 |"),
        "{report}"
    );
    for chart in ["staleness_by_age.png", "accuracy_heat_map.png", "accuracy_heat_map.svg"] {
        assert!(std::fs::metadata(out.join(chart)).unwrap().len() > 1000, "{chart}");
    }
}

/// The mini experiment with `sweep`, its text edited by `(from, to)` replacements, written;
/// its path and text.
fn edited_experiment(dir: &Path, sweep: &str, edits: &[(&str, &str)]) -> (PathBuf, String) {
    let file = write_experiment(dir, sweep);
    let mut text = std::fs::read_to_string(&file).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} is not in the experiment");
        text = text.replace(from, to);
    }
    std::fs::write(&file, &text).unwrap();
    (file, text)
}

/// `file` rewritten as `text` is refused by `longmem sweep` with a message holding `needle`.
fn sweep_refuses(file: &Path, text: &str, needle: &str) {
    std::fs::write(file, text).unwrap();
    longmem()
        .arg("sweep")
        .arg(file)
        .assert()
        .failure()
        .stderr(predicates::str::contains(needle));
}

/// Answer tokens of every evaluation of `file`'s sweep: (all of them, those at least
/// `far` tokens from their evidence), per run.
fn answers_by_run(file: &Path, far: usize) -> Vec<(String, f64, f64)> {
    let runs = Experiment::load(file).unwrap().plan().unwrap();
    runs.iter()
        .filter(|r| r.stage == Stage::Eval)
        .map(|run| {
            let buckets = common::eval_result(&run.dir).totals.by_distance;
            let sum = |min: usize| buckets.iter().filter(|b| b.from >= min).map(|b| b.tokens).sum();
            (run.id.clone(), sum(0), sum(far))
        })
        .collect()
}

#[test]
fn the_variable_tracking_corpus_trains_and_evaluates_with_answers_by_distance() {
    let dir = tempfile::tempdir().unwrap();
    let (file, text) = edited_experiment(
        dir.path(),
        "preset = [\"longmem\", \"memtrm\"]",
        &[(
            "kind = \"recall\"\ndoc_tokens = 64",
            "kind = \"variables\"\ndoc_tokens = 1024\nhops = 2\nn_var_symbols = 256",
        )],
    );
    longmem().arg("sweep").arg(&file).assert().success();
    for (id, answers, far) in answers_by_run(&file, 16) {
        assert!(
            answers > 10.0 && far > 0.0,
            "{id}: {answers} answers, {far} beyond the window"
        );
    }
    // Its settings are checked like every generator's, naming the key.
    sweep_refuses(
        &file,
        &text.replace("n_var_symbols = 256", "n_var_symbols = 2"),
        "data.n_var_symbols",
    );
}

#[test]
fn a_text_task_in_a_corpus_trains_and_evaluates_with_answers_by_distance() {
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("texts");
    std::fs::create_dir(&texts).unwrap();
    for d in 0..6 {
        let line = format!("Document {d} tells of a river that keeps the memory of old stones.\n");
        std::fs::write(texts.join(format!("{d}.txt")), line.repeat(40)).unwrap();
    }
    let data = format!(
        "kind = \"text_dir\"\npath = \"{}\"\ntokenizer = \"byte\"\nholdout = 0.34\n\
         insert = {{ task = \"needle\", doc_tokens = 1024, spacing = 64 }}",
        texts.display()
    );
    let (file, text) = edited_experiment(
        dir.path(),
        "preset = [\"longmem\", \"plain\"]",
        &[
            ("kind = \"recall\"\ndoc_tokens = 64", &data),
            ("\"data.doc_tokens\" = 16", "\"data.insert.doc_tokens\" = 256"),
            ("[eval]\n", "[eval]\ndata = { doc_tokens = 4096 }\n"),
        ],
    );
    longmem().arg("sweep").arg(&file).assert().success();
    for (id, answers, far) in answers_by_run(&file, 1024) {
        // 7-digit values of 7 byte tokens; held-out documents of 4,096 tokens ask some
        // needles more than 1,024 tokens back.
        assert!(answers >= 70.0, "{id}: {answers} answers");
        assert!(far > 0.0, "{id}: no answers beyond 1,024 tokens");
    }
    // A bad setting of the inserted task is named.
    sweep_refuses(
        &file,
        &text.replace("spacing = 64", "spacing = 1"),
        "data.insert.spacing",
    );
}

#[test]
fn a_parquet_corpus_trains_and_evaluates_every_held_out_row_once() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("pg19");
    std::fs::create_dir(&shards).unwrap();
    for s in 0..3 {
        let texts: Vec<String> = (0..4)
            .map(|d| format!("Book {s}-{d} tells of a river that keeps the memory of old stones. ").repeat(8))
            .collect();
        let mut frame = df!("text" => texts).unwrap();
        let file = std::fs::File::create(shards.join(format!("train-{s:05}.parquet"))).unwrap();
        ParquetWriter::new(file).finish(&mut frame).unwrap();
    }
    let data = format!(
        "kind = \"parquet\"\npath = \"{}\"\ntokenizer = \"byte\"\nholdout = 0.25",
        shards.join("train-*.parquet").display()
    );
    let (file, text) = edited_experiment(
        dir.path(),
        "preset = [\"plain\"]",
        &[
            ("kind = \"recall\"\ndoc_tokens = 64", &data),
            ("\"data.doc_tokens\" = 16\n", ""),
            ("[eval]\ndocuments = 2\n", "[eval]\n"),
        ],
    );
    longmem().arg("sweep").arg(&file).assert().success();
    let runs = Experiment::load(&file).unwrap().plan().unwrap();
    let eval = runs.iter().find(|r| r.stage == Stage::Eval).unwrap();
    let result = common::eval_result(&eval.dir);
    // The last 3 of 12 rows are held out, each read once: every byte scored, give or take
    // the document's first and an end-of-text.
    let row_bytes = "Book 0-0 tells of a river that keeps the memory of old stones. ".len() as f64 * 8.0;
    let documents: u64 = result.totals.by_length.iter().map(|b| b.documents).sum();
    assert_eq!(documents, 3, "{:?}", result.totals.by_length);
    let tokens = result.totals.tokens;
    assert!(
        (tokens - 3.0 * row_bytes).abs() <= 3.0,
        "{tokens} tokens for 3 rows of {row_bytes}"
    );
    // A column the shards lack is named with the ones they have.
    let no_column = text.replace("holdout = 0.25", "holdout = 0.25\ntext_column = \"content\"");
    sweep_refuses(&file, &no_column, "no column `content` (it has: `text`)");
}
