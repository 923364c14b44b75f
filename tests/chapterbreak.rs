//! Suffix identification (ChapterBreak): batched scoring against a slow reference, what
//! memory does and does not see, and the `[chapterbreak]` section's errors.

mod common;

use longmem_bench::config::Spec;
use longmem_bench::data::chapterbreak::SuffixExample;
use longmem_bench::data::Batch;
use longmem_bench::eval::suffix::{evaluate, examples, score};
use longmem_bench::methods::MethodModel;
use longmem_bench::models::{weights, Backbone, BackboneConfig};
use std::path::Path;
use tch::{nn::VarStore, Device, Kind, Tensor};

const WINDOW: usize = 32;
const ROWS: usize = 4;
/// The recall corpus's vocabulary at its defaults.
const VOCAB: i64 = 97;

fn spec_text(method: &str, chapterbreak: &str) -> String {
    let weights = match method {
        "pretrain" => "",
        _ => "weights = \"backbone.safetensors\"",
    };
    format!(
        r#"
out_dir = "out"
seed = 3
method = "{method}"
[backbone]
style = "newgpt"
n_layer = 2
n_head = 2
n_embd = 16
dropout = 0.0
memory_layer = 1
{weights}
[memory]
size = 4096
chunk = 4
k = 8
[data]
kind = "recall"
doc_tokens = 512
[train]
steps = 1
batch_size = {ROWS}
segment_len = {WINDOW}
[chapterbreak]
{chapterbreak}
"#
    )
}

/// A directory with a random 2-layer newgpt as `backbone.safetensors`, the spec's weights.
fn backbone_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let vs = VarStore::new(Device::Cpu);
    let _ = Backbone::new(&vs.root(), &BackboneConfig::newgpt(VOCAB, 2, 2, 16, 1024));
    weights::save_safetensors(&vs, &dir.path().join("backbone.safetensors")).unwrap();
    dir
}

fn parse(dir: &Path, text: &str) -> Result<Spec, String> {
    Spec::parse(text, &dir.join("spec.toml"))
        .map(|f| f.spec)
        .map_err(|e| e.to_string())
}

/// An example whose candidates differ in length (2, 5 and 3 tokens), so the batched
/// scoring pads, after a context of `len` tokens from `seed`.
fn example(seed: u64, len: usize, vocab: i64) -> SuffixExample {
    let ids = common::random_ids(seed, 1, len as i64 + 10, vocab);
    let ids: Vec<u32> = Vec::<i64>::try_from(ids.view([-1]))
        .unwrap()
        .iter()
        .map(|&t| t as u32)
        .collect();
    SuffixExample {
        source: "made".into(),
        context: ids[..len].to_vec(),
        candidates: vec![
            ids[len..len + 2].to_vec(),
            ids[len + 2..len + 7].to_vec(),
            ids[len + 7..].to_vec(),
        ],
        gold: 1,
        distance: None,
    }
}

/// Each candidate scored alone and unpadded after the memory is rebuilt from scratch: the
/// context but its last `WINDOW + 1 − 5` tokens written window by window, in every row.
fn slow_scores(learner: &mut dyn MethodModel, ex: &SuffixExample) -> Vec<f64> {
    let local = (WINDOW + 1 - 5).min(ex.context.len());
    let (far, near) = ex.context.split_at(ex.context.len() - local);
    let rows = |ids: &[u32]| {
        let ids: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
        Tensor::from_slice(&ids).view([1, -1]).repeat([ROWS as i64, 1])
    };
    if let Some(bank) = learner.bank_mut() {
        bank.reset_all();
        for piece in far.chunks(WINDOW) {
            tch::no_grad(|| learner.forward(&Batch::unlabelled(rows(piece)), false));
        }
    }
    ex.candidates
        .iter()
        .map(|c| {
            let seq: Vec<u32> = near.iter().chain(&c[..c.len() - 1]).copied().collect();
            let logp = tch::no_grad(|| learner.logits_read_only(&rows(&seq)))
                .log_softmax(-1, Kind::Double)
                .get(0);
            (0..c.len())
                .map(|j| logp.double_value(&[(near.len() - 1 + j) as i64, i64::from(c[j])]))
                .sum()
        })
        .collect()
}

fn assert_scores_close(fast: &[f64], slow: &[f64]) {
    assert_eq!(fast.len(), slow.len());
    for (a, b) in fast.iter().zip(slow) {
        assert!((a - b).abs() < 1e-4, "batched {fast:?} vs alone {slow:?}");
    }
}

#[test]
fn batched_suffix_scores_equal_scoring_each_candidate_alone() {
    let _rng = common::rng_lock();
    let dir = backbone_dir();
    for method in ["longmem", "memtrm", "pretrain"] {
        let spec = parse(dir.path(), &spec_text(method, "")).unwrap();
        let mut learner = spec.build_model(Device::Cpu).unwrap();
        let vocab = spec.data.vocab_size();
        // A context that fills memory over several windows, and one shorter than the window.
        for (seed, len) in [(1, 150), (2, 10)] {
            let ex = example(seed, len, vocab);
            let fast = score(learner.as_mut(), &ex, WINDOW, ROWS, Device::Cpu).unwrap();
            let slow = slow_scores(learner.as_mut(), &ex);
            assert_scores_close(&fast, &slow);
        }
    }
}

#[test]
fn an_empty_candidate_or_context_is_an_error_not_a_panic() {
    let _rng = common::rng_lock();
    let dir = backbone_dir();
    let spec = parse(dir.path(), &spec_text("pretrain", "")).unwrap();
    let mut learner = spec.build_model(Device::Cpu).unwrap();
    let mut ex = example(5, 40, VOCAB);
    ex.candidates[2].clear();
    let err = score(learner.as_mut(), &ex, WINDOW, ROWS, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("candidates of 0 to 5 tokens"), "{err}");
    let mut ex = example(5, 40, VOCAB);
    ex.context.clear();
    let err = score(learner.as_mut(), &ex, WINDOW, ROWS, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty context"), "{err}");
}

#[test]
fn memory_reads_the_far_context_and_a_plain_model_sees_only_the_local_part() {
    let _rng = common::rng_lock();
    let dir = backbone_dir();
    let vocab = VOCAB;
    let ex = example(4, 200, vocab);
    let mut other = ex.clone();
    // The far part differs, the last 28 tokens (the local part) do not.
    other.context[..100]
        .iter_mut()
        .for_each(|t| *t = (*t + 1) % vocab as u32);
    for method in ["longmem", "pretrain"] {
        let spec = parse(dir.path(), &spec_text(method, "")).unwrap();
        let mut learner = spec.build_model(Device::Cpu).unwrap();
        if let Some(gate) = learner.memory_gate() {
            // Half open, whatever the initialisation.
            let _ = tch::no_grad(|| gate.shallow_clone().fill_(0.0));
        }
        let a = score(learner.as_mut(), &ex, WINDOW, ROWS, Device::Cpu).unwrap();
        let b = score(learner.as_mut(), &other, WINDOW, ROWS, Device::Cpu).unwrap();
        let moved = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        match method {
            "pretrain" => assert_eq!(a, b, "no memory: the far part is unseen"),
            _ => assert!(moved > 1e-5, "memory must carry the far part: scores moved {moved}"),
        }
        // Scoring again gives the same numbers: the memory is rebuilt per example.
        assert_eq!(score(learner.as_mut(), &ex, WINDOW, ROWS, Device::Cpu).unwrap(), a);
    }
}

#[test]
fn built_in_examples_are_scored_per_source_against_chance() {
    let _rng = common::rng_lock();
    let dir = backbone_dir();
    let spec = parse(dir.path(), &spec_text("longmem", "examples = 12\ncandidates = 4")).unwrap();
    let cb = spec.chapterbreak.clone().unwrap();
    let found = examples(&spec, &cb, 0).unwrap();
    assert_eq!(found.len(), 12);
    assert!(found
        .iter()
        .all(|e| e.candidates.len() == 4 && e.distance.unwrap() > WINDOW - 2));
    assert_eq!(found, examples(&spec, &cb, 0).unwrap(), "deterministic from the seed");
    let mut learner = spec.build_model(Device::Cpu).unwrap();
    let sources = evaluate(learner.as_mut(), &found, WINDOW, ROWS, Device::Cpu).unwrap();
    assert_eq!(sources.len(), 1);
    let s = &sources[0];
    assert_eq!((s.source.as_str(), s.examples), ("builtin", 12));
    assert!((s.chance - 0.25).abs() < 1e-12);
    // Correct counts what the scores say, example by example.
    let correct = found
        .iter()
        .filter(|ex| {
            let scores = score(learner.as_mut(), ex, WINDOW, ROWS, Device::Cpu).unwrap();
            let best = (0..scores.len())
                .reduce(|a, b| if scores[b] > scores[a] { b } else { a })
                .unwrap();
            best == ex.gold
        })
        .count();
    assert_eq!(s.correct, correct);
    assert_eq!(s.accuracy, correct as f64 / 12.0);
}

#[test]
fn chapterbreak_section_errors_name_the_key() {
    let dir = backbone_dir();
    let cases = [
        ("candidates = 1", "chapterbreak.candidates"),
        ("examples = 0", "chapterbreak.examples"),
        ("sorces = [\"pg19\"]", "sorces"),
        ("file = \"cb.json\"", "chapterbreak.file"),
        ("sources = [\"pg19\"]", "chapterbreak.sources"),
        ("context_tokens = 100", "chapterbreak.context_tokens"),
    ];
    for (line, key) in cases {
        let err = parse(dir.path(), &spec_text("longmem", line)).unwrap_err();
        assert!(err.contains(key), "{line}: {err}");
    }
    // Text data without answers has no built-in analogue: it needs a file.
    std::fs::create_dir_all(dir.path().join("corpus")).unwrap();
    std::fs::write(dir.path().join("corpus/a.txt"), "some text. ".repeat(50)).unwrap();
    let text = spec_text("longmem", "").replace(
        "kind = \"recall\"\ndoc_tokens = 512",
        "kind = \"text_dir\"\npath = \"corpus\"\ntokenizer = \"byte\"",
    );
    assert!(text.contains("text_dir"));
    let err = Spec::parse(&text, &dir.path().join("spec.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("chapterbreak") && err.contains("a `file` of ChapterBreak JSON"),
        "{err}"
    );
    // With a file, a missing one is named.
    let text = text.replace("[chapterbreak]\n", "[chapterbreak]\nfile = \"cb.json\"\n");
    let err = Spec::parse(&text, &dir.path().join("spec.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cb.json") && err.contains("an existing ChapterBreak JSON file"),
        "{err}"
    );
}
