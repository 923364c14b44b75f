//! Memory-augmented in-context learning: the batched evaluation against a slow reference,
//! memory invariants, and the `[icl]` section's errors.

mod common;

use longmem_bench::config::Spec;
use longmem_bench::data::loaders::Example;
use longmem_bench::eval::icl::{evaluate, loglik_choices, paper_argmax_correct, score_queries, IclTask};
use longmem_bench::methods::MethodModel;
use longmem_bench::models::{weights, Backbone, BackboneConfig};
use longmem_bench::tokenizer::Tokenizer;
use std::path::Path;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// SST-2-style files with a handful of byte-level examples, and a tiny text corpus.
fn write_task_files(dir: &Path) {
    let mut train = String::from("sentence\tlabel\n");
    for i in 0..12 {
        train.push_str(&format!(
            "film {i} was {}\t{}\n",
            if i % 2 == 0 { "bad" } else { "good" },
            i % 2
        ));
    }
    std::fs::write(dir.join("train.tsv"), train).unwrap();
    std::fs::write(
        dir.join("dev.tsv"),
        "sentence\tlabel\nit was good\t1\nit was bad\t0\nmeh\t0\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("corpus")).unwrap();
    std::fs::write(dir.join("corpus/a.txt"), "some text to train on. ".repeat(20)).unwrap();
    std::fs::write(dir.join("corpus/b.txt"), "more text to hold out. ".repeat(20)).unwrap();
}

/// [`write_task_files`], and a random 2-layer byte-level gpt2 as `backbone.safetensors`.
fn write_task_files_and_backbone(dir: &Path) {
    write_task_files(dir);
    let config = BackboneConfig::gpt2(257, 2, 2, 16, 128);
    let vs = VarStore::new(Device::Cpu);
    let _ = Backbone::new(&vs.root(), &config);
    weights::save_safetensors(&vs, &dir.join("backbone.safetensors")).unwrap();
}

fn spec(dir: &Path, text: &str) -> Result<Spec, String> {
    Spec::parse(text, &dir.join("spec.toml"))
        .map(|f| f.spec)
        .map_err(|e| e.to_string())
}

fn byte_spec(dir: &Path, method: &str, extra: &str) -> Spec {
    spec(dir, &byte_spec_text(method, extra, "")).unwrap()
}

/// [`byte_spec`]'s text, `icl_extra` added to its `[icl]` section.
fn byte_spec_text(method: &str, extra: &str, icl_extra: &str) -> String {
    format!(
        r#"
out_dir = "out"
method = "{method}"
[backbone]
style = "gpt2"
n_layer = 2
n_head = 2
n_embd = 16
n_positions = 128
dropout = 0.0
{extra}
[data]
kind = "text_dir"
path = "corpus"
tokenizer = "byte"
holdout = 0.5
[train]
steps = 1
batch_size = 4
segment_len = 128
[icl]
task = "sst2"
train_file = "train.tsv"
test_file = "dev.tsv"
local_shots = [1, 2]
memory_shots = [0, 3]
seeds = 2
{icl_extra}
"#
    )
}

/// Each query's label log-probabilities and next-token distribution, scoring each
/// (query, label) sequence alone and unpadded.
fn slow_reference(
    learner: &dyn MethodModel,
    tok: &dyn Tokenizer,
    task: &IclTask,
    local: &[Example],
    tests: &[Example],
) -> Vec<(Vec<f64>, Tensor)> {
    let context: String = local
        .iter()
        .map(|ex| task.template.demonstration(&ex.text, &ex.label))
        .collect();
    let mut out = Vec::new();
    for test in tests {
        let prompt = tok.encode(&format!("{context}{}", task.template.query(&test.text)));
        let mut sums = Vec::new();
        let mut next = None;
        for word in &task.label_words {
            let cont = tok.encode(&format!(" {word}"));
            let ids: Vec<i64> = prompt.iter().chain(&cont).map(|&t| t as i64).collect();
            let logp = learner
                .logits_read_only(&Tensor::from_slice(&ids).view([1, -1]))
                .log_softmax(-1, Kind::Double)
                .get(0);
            sums.push(
                (0..cont.len())
                    .map(|j| logp.double_value(&[(prompt.len() - 1 + j) as i64, cont[j] as i64]))
                    .sum(),
            );
            // Byte level: every label opens with a space, so the paper's argmax is read
            // after it, one position past the prompt.
            next.get_or_insert_with(|| logp.get(prompt.len() as i64));
        }
        out.push((sums, next.unwrap()));
    }
    out
}

#[test]
fn batched_icl_scoring_equals_scoring_each_sequence_alone() {
    let _rng = common::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    write_task_files(dir.path());
    let spec = byte_spec(dir.path(), "pretrain", "");
    let mut learner = spec.build_model(Device::Cpu).unwrap();
    let tok = spec.data.tokenizer().unwrap();
    let icl = spec.icl.clone().unwrap();
    let task = IclTask::from_spec(&icl, &spec.data, 7).unwrap();
    assert_eq!(task.label_words, ["negative", "positive"]);
    let (demos, tests) = task.sample(1, 5).unwrap();
    assert_eq!(tests.len(), 3);
    // 3 queries × 2 labels in batches of 4 rows: the second batch is part padding rows.
    let fast = score_queries(
        learner.as_ref(),
        tok.as_ref(),
        &task,
        &demos[..2],
        &tests,
        128,
        4,
        Device::Cpu,
    )
    .unwrap();
    let slow = slow_reference(learner.as_ref(), tok.as_ref(), &task, &demos[..2], &tests);
    for (f, (sums, next)) in fast.iter().zip(&slow) {
        for (a, b) in f.label_logp.iter().zip(sums) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        let next_fast = Tensor::from_slice(&f.next_logp).to_kind(Kind::Double);
        common::assert_close(&next_fast, next, 1e-4, "next-token log-probabilities");
    }
    // The rows and summaries aggregate exactly these scores.
    let (rows, summary) = evaluate(learner.as_mut(), tok.as_ref(), &task, &icl, 128, 4, Device::Cpu).unwrap();
    // No memory: one memory setting, whatever the spec lists.
    assert_eq!(rows.len(), 2 * 2);
    assert!(rows.iter().all(|r| r.memory_shots == 0 && r.examples == 3));
    let row = rows.iter().find(|r| r.seed == 1 && r.local_shots == 2).unwrap();
    let expected_acc = slow
        .iter()
        .zip(&tests)
        .filter(|((sums, _), t)| {
            let (best, _) = loglik_choices(sums, &task.label_words);
            task.label_words[best] == t.label
        })
        .count() as f64
        / 3.0;
    assert_eq!(row.acc, expected_acc);
    let expected_paper = slow
        .iter()
        .zip(&tests)
        .filter(|((_, next), t)| {
            paper_argmax_correct(
                &Vec::<f32>::try_from(next.to_kind(Kind::Float)).unwrap(),
                &t.label,
                tok.as_ref(),
            )
        })
        .count() as f64
        / 3.0;
    assert_eq!(row.acc_paper, expected_paper);
    assert_eq!(summary.len(), 2);
    let mean = (rows[0].acc + rows[2].acc) / 2.0;
    assert!((summary[0].acc_mean - mean).abs() < 1e-12);
}

#[test]
fn memory_holds_the_demonstrations_and_closed_gates_ignore_them() {
    let _rng = common::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    write_task_files_and_backbone(dir.path());
    let spec = byte_spec(
        dir.path(),
        "longmem",
        "memory_layer = 1\nweights = \"backbone.safetensors\"\n[memory]\nsize = 4096\nchunk = 4\nk = 16",
    );
    let mut learner = spec.build_model(Device::Cpu).unwrap();
    let tok = spec.data.tokenizer().unwrap();
    let icl = spec.icl.clone().unwrap();
    let task = IclTask::from_spec(&icl, &spec.data, 7).unwrap();
    let (rows, _) = evaluate(learner.as_mut(), tok.as_ref(), &task, &icl, 128, 4, Device::Cpu).unwrap();
    assert_eq!(rows.len(), 2 * 2 * 2);
    for row in rows.iter().filter(|r| r.memory_shots == 3) {
        // The three demonstrations after the most local ones, byte for byte.
        let (demos, _) = task.sample(row.seed, 2 + 3).unwrap();
        let bytes: usize = demos[2..]
            .iter()
            .map(|ex| task.template.demonstration(&ex.text, &ex.label).len())
            .sum();
        // Memory retrieves whole chunks of 4: a last partial chunk waits for more tokens.
        assert_eq!(
            (row.memory_tokens_written, row.memory_tokens_kept),
            (bytes, bytes / 4 * 4)
        );
    }
    // Gates closed: memory cannot change a prediction.
    let gate = learner.memory_gate().unwrap().shallow_clone();
    let _ = tch::no_grad(|| gate.shallow_clone().fill_(f64::NEG_INFINITY));
    let (closed, _) = evaluate(learner.as_mut(), tok.as_ref(), &task, &icl, 128, 4, Device::Cpu).unwrap();
    for pair in closed.chunks(4) {
        // Per seed: memory 0 (local 1, 2), then memory 3 (local 1, 2).
        assert_eq!(pair[0].acc, pair[2].acc);
        assert_eq!(pair[1].acc_norm, pair[3].acc_norm);
        assert_eq!(pair[1].acc_paper, pair[3].acc_paper);
    }
}

#[test]
fn a_prompt_longer_than_the_window_is_an_error_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    write_task_files(dir.path());
    let spec = byte_spec(dir.path(), "pretrain", "");
    let mut learner = spec.build_model(Device::Cpu).unwrap();
    let tok = spec.data.tokenizer().unwrap();
    let mut icl = spec.icl.clone().unwrap();
    icl.local_shots = vec![8];
    let task = IclTask::from_spec(&icl, &spec.data, 7).unwrap();
    let err = evaluate(learner.as_mut(), tok.as_ref(), &task, &icl, 128, 4, Device::Cpu).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("icl.local_shots") && text.contains("window of 128"),
        "{text}"
    );
    // More demonstrations than the file has.
    icl.local_shots = vec![2];
    icl.memory_shots = vec![20];
    let text = format!("{:#}", task.sample(0, 22).unwrap_err());
    assert!(text.contains("has 12") && text.contains("icl.memory_shots"), "{text}");
}

#[test]
fn icl_settings_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    write_task_files(dir.path());
    let base = |data: &str, icl: &str| {
        format!(
            "out_dir = \"out\"\nmethod = \"pretrain\"\n[backbone]\nstyle = \"gpt2\"\nn_layer = 1\nn_head = 1\nn_embd = 8\n\
             [data]\n{data}\n[train]\nsteps = 1\nbatch_size = 1\nsegment_len = 8\n[icl]\n{icl}\n"
        )
    };
    let recall = "kind = \"recall\"\ndoc_tokens = 16";
    let text_dir = "kind = \"text_dir\"\npath = \"corpus\"\ntokenizer = \"byte\"\nholdout = 0.5";
    let demos = "kind = \"demos\"\ndemos_per_doc = 4";
    let cases = [
        (base(recall, "task = \"builtin\""), "`icl`"),
        (base(text_dir, "task = \"builtin\""), "`icl.task` = builtin"),
        (base(demos, "task = \"imdb\""), "`icl.task` = imdb"),
        (
            base(text_dir, "task = \"sst2\"\ntest_file = \"dev.tsv\""),
            "`icl.train_file` = (missing)",
        ),
        (
            base(
                text_dir,
                "task = \"sst2\"\ntrain_file = \"nope.tsv\"\ntest_file = \"dev.tsv\"",
            ),
            "nope.tsv",
        ),
        (base(demos, "seeds = 0"), "`icl.seeds` = 0"),
        (base(demos, "local_shots = []"), "`icl.local_shots`"),
        (base(demos, "shots = 3"), "unknown field `shots`"),
    ];
    for (text, expected) in cases {
        let err = spec(dir.path(), &text).unwrap_err();
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
    // A built-in task on its own corpus is fine, and the paper's settings are the defaults.
    let ok = spec(dir.path(), &base(demos, "")).unwrap();
    let icl = ok.icl.unwrap();
    assert_eq!(
        (icl.local_shots, icl.memory_shots, icl.seeds),
        (vec![4, 20], vec![2000], 6)
    );
}

/// `icl.memory_size` gives the ICL evaluation its own memory: a 16-token trained memory
/// keeps 16 tokens of the three demonstrations, one of 4,096 keeps them all, and the
/// result records the memory it ran with.
#[test]
fn icl_memory_size_sets_the_memory_the_demonstrations_go_to() {
    let _rng = common::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    write_task_files_and_backbone(dir.path());
    let extra = "memory_layer = 1\nweights = \"backbone.safetensors\"\n[memory]\nsize = 16\nchunk = 4\nk = 16";
    let run = |icl_memory: &str| {
        let path = dir.path().join("spec.toml");
        std::fs::write(&path, byte_spec_text("longmem", extra, icl_memory)).unwrap();
        let cli = |args: &[&str]| {
            assert_cmd::Command::cargo_bin("longmem")
                .unwrap()
                .args(args)
                .arg(&path)
                .assert()
                .success()
        };
        if icl_memory.is_empty() {
            cli(&["train"]);
        }
        cli(&["eval", "--icl-only"]);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/icl.json")).unwrap()).unwrap();
        let rows = json["rows"].as_array().unwrap();
        let row = rows.iter().find(|r| r["memory_shots"] == 3).unwrap();
        (
            row["memory_tokens_written"].as_u64().unwrap(),
            row["memory_tokens_kept"].as_u64().unwrap(),
            json["memory"]["size"].as_i64().unwrap(),
        )
    };
    let (written, kept, size) = run("");
    assert!(written > 16, "{written} tokens of three demonstrations");
    assert_eq!((kept, size), (16, 16));
    let (written_again, kept, size) = run("memory_size = 4096");
    assert_eq!(written_again, written);
    assert_eq!((kept, size), (written / 4 * 4, 4096));
}

#[test]
fn released_protocol_encodes_lines_and_drops_the_partial_memory_slice() {
    let _rng = common::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    write_task_files_and_backbone(dir.path());
    let extra = "memory_layer = 1\nweights = \"backbone.safetensors\"\n[memory]\nsize = 4096\nchunk = 4\nk = 16";
    // Each demonstration line takes one more token (end of text): 0 or 1 in the prompt fit.
    let text = byte_spec_text("longmem", extra, "protocol = \"released\"").replace("[1, 2]", "[0, 1]");
    let spec = spec(dir.path(), &text).unwrap();
    let mut learner = spec.build_model(Device::Cpu).unwrap();
    let tok = spec.data.tokenizer().unwrap();
    let icl = spec.icl.clone().unwrap();
    let task = IclTask::from_spec(&icl, &spec.data, 7).unwrap();
    let (rows, summary) =
        longmem_bench::eval::icl::released::evaluate(learner.as_mut(), tok.as_ref(), &task, &icl, 128, 4, Device::Cpu)
            .unwrap();
    assert_eq!(rows.len(), 2 * 2 * 2);
    assert_eq!(
        rows.iter().map(|r| r.seed).collect::<Vec<_>>(),
        [1, 1, 1, 1, 2, 2, 2, 2],
        "seeds 1 and 2"
    );
    assert_eq!(summary.len(), 4);
    let line = |text: String| text.len() + 1; // bytes, then end of text (no begin id)
    for row in &rows {
        let memory = task.draw(row.seed, 1, row.memory_shots).unwrap();
        let total: usize = memory
            .iter()
            .map(|ex| line(task.template.demonstration(&ex.text, &ex.label)))
            .sum();
        assert_eq!(
            row.memory_tokens_written,
            total / 128 * 128,
            "whole 128-token slices only"
        );
        assert!(
            row.memory_shots == 0 || total > 128,
            "3 lines make more than one slice: {total}"
        );
    }
    // With memory empty, the paper's accuracy is the argmax after each prompt, scored alone.
    for row in rows.iter().filter(|r| r.memory_shots == 0) {
        let (demos, tests) = (
            task.draw(row.seed, 0, row.local_shots).unwrap(),
            task.test_queries().unwrap(),
        );
        let mut context: Vec<u32> = Vec::new();
        for ex in &demos {
            context.extend(tok.encode(&task.template.demonstration(&ex.text, &ex.label)));
            context.push(tok.end_of_text());
        }
        learner.bank_mut().unwrap().reset_all();
        let correct = tests
            .iter()
            .filter(|t| {
                let mut prompt = context.clone();
                prompt.extend(tok.encode(&task.template.query(&t.text)));
                let ids: Vec<i64> = prompt.iter().map(|&x| i64::from(x)).collect();
                let input = Tensor::from_slice(&ids).view([1, -1]).repeat([4, 1]);
                let logits = learner.logits_read_only(&input).get(0).get(ids.len() as i64 - 1);
                paper_argmax_correct(&Vec::<f32>::try_from(logits).unwrap(), &t.label, tok.as_ref())
            })
            .count();
        assert_eq!(
            row.acc_paper,
            correct as f64 / tests.len() as f64,
            "seed {} n {}",
            row.seed,
            row.local_shots
        );
    }
}

#[test]
fn the_released_protocol_reads_label_first_lines_as_the_authors_script() {
    let dir = tempfile::tempdir().unwrap();
    write_task_files(dir.path());
    std::fs::write(
        dir.path().join("subj.csv"),
        "0,\"a moving, personal story\"\n1,the film opens in paris .\n",
    )
    .unwrap();
    let text = byte_spec_text("pretrain", "", "protocol = \"released\"")
        .replace("task = \"sst2\"", "task = \"subj\"")
        .replace("\"train.tsv\"", "\"subj.csv\"")
        .replace("\"dev.tsv\"", "\"subj.csv\"");
    let spec = spec(dir.path(), &text).unwrap();
    let task = IclTask::from_spec(spec.icl.as_ref().unwrap(), &spec.data, 1).unwrap();
    let tests = task.test_queries().unwrap();
    let got: Vec<(&str, &str)> = tests.iter().map(|e| (e.text.as_str(), e.label.as_str())).collect();
    // Label first; subj's quotes stripped; 0 is subjective, as the script maps it.
    assert_eq!(
        got,
        [
            ("a moving, personal story", "subjective"),
            ("the film opens in paris .", "objective")
        ]
    );
    assert_eq!(task.template.query("x"), "Input: x Type:");
}
