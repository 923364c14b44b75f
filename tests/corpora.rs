//! Real corpora end to end: local files → tokenised → trained → evaluated, with exact
//! coverage of the held-out documents and per-length buckets.

mod common;

use assert_cmd::Command;
use longmem_bench::config::Spec;
use longmem_bench::config::{self, Split};
use longmem_bench::data::SegmentStream;
use longmem_bench::eval::stream_nll_bucketed;
use longmem_bench::methods::Method;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// 12 documents of 40..=370 bytes in `dir/books`.
fn write_books(dir: &Path) {
    for i in 0..12 {
        let text: String = (0..(40 + 30 * i))
            .map(|j| char::from(b'a' + ((i * 7 + j * 3) % 26) as u8))
            .collect();
        let path = dir.join(format!("books/{:02}/book.txt", i));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn spec_text(method: Method, data: &str) -> String {
    format!(
        r#"
out_dir = "out-{method}"
method = "{method}"
[backbone]
style = "newgpt"
n_layer = 2
n_head = 2
n_embd = 16
dropout = 0.0
memory_layer = 1
{}
[memory]
size = 64
chunk = 4
k = 8
[data]
{data}
[train]
steps = 3
batch_size = 2
segment_len = 16
lr = 1e-3
log_every = 1
"#,
        if method == Method::Pretrain {
            ""
        } else {
            "weights = \"out-pretrain/backbone.safetensors\""
        }
    )
}

const TEXT_DIR: &str = "kind = \"text_dir\"\npath = \"books\"\ntokenizer = \"byte\"\nholdout = 0.25";

#[test]
fn every_held_out_document_is_scored_once_and_matches_a_slow_reference() {
    let dir = tempfile::tempdir().unwrap();
    write_books(dir.path());
    let spec = Spec::parse(&spec_text(Method::Pretrain, TEXT_DIR), &dir.path().join("s.toml")).unwrap();
    let mut learner = {
        let _rng = common::rng_lock();
        spec.build_model(Device::Cpu).unwrap()
    };
    // Held out: the last 3 of 12 documents by path (books/09..11), 310, 340 and 370 bytes.
    let source = config::source(&spec, Split::HeldOut { seed_offset: 0 }, spec.batch_size).unwrap();
    let docs: Vec<Vec<u32>> = (0..2u64)
        .flat_map(|i| (0..2u64).map(move |r| (r, i)))
        .filter(|&(r, i)| longmem_bench::data::DocumentSource::exists(&source, r, i))
        .map(|(r, i)| longmem_bench::data::DocumentSource::document(&source, r, i).tokens)
        .collect();
    assert_eq!(docs.iter().map(Vec::len).collect::<Vec<_>>(), vec![310, 340, 370]);
    let batches = longmem_bench::eval::segments_to_cover(&source, 2, 2, 16);
    let mut stream = SegmentStream::new(source, 2, 16, Device::Cpu);
    let totals = stream_nll_bucketed(learner.as_mut(), &mut stream, batches, &[320, 360], &Default::default());
    assert_eq!(
        totals.tokens,
        (309 + 339 + 369) as f64,
        "each held-out token scored exactly once"
    );
    let buckets: Vec<(String, u64)> = totals
        .by_length
        .iter()
        .map(|b| (b.bucket.clone(), b.documents))
        .collect();
    assert_eq!(
        buckets,
        vec![("<320".into(), 1), ("320-360".into(), 1), (">360".into(), 1)]
    );

    // Slow reference: each document on its own, segment by segment, summing NLLs.
    let mut nll = 0.0;
    for doc in &docs {
        let ids: Vec<i64> = doc.iter().map(|&t| t as i64).collect();
        for start in (0..ids.len() - 1).step_by(16) {
            let end = (start + 16).min(ids.len() - 1);
            let x = Tensor::from_slice(&ids[start..end]).unsqueeze(0);
            let y = Tensor::from_slice(&ids[start + 1..end + 1]);
            let logp = learner.logits_read_only(&x).squeeze_dim(0).log_softmax(-1, Kind::Float);
            nll -= logp
                .gather(1, &y.unsqueeze(1), false)
                .sum(Kind::Double)
                .double_value(&[]);
        }
    }
    let reference = (nll / totals.tokens).exp();
    assert!(
        (totals.perplexity() - reference).abs() < 1e-6 * reference,
        "{} vs {reference}",
        totals.perplexity()
    );
}

#[test]
fn documents_caps_a_corpus_evaluation_to_its_first_held_out_documents() {
    let dir = tempfile::tempdir().unwrap();
    write_books(dir.path());
    let data = "kind = \"text_dir\"\npath = \"books\"\ntokenizer = \"byte\"\nholdout = 0.5";
    let spec = Spec::parse(&spec_text(Method::Pretrain, data), &dir.path().join("s.toml")).unwrap();
    let mut learner = {
        let _rng = common::rng_lock();
        spec.build_model(Device::Cpu).unwrap()
    };
    // Held out: the last 6 of 12 documents by path, 220, 250, ..., 370 bytes, over 2 rows.
    for (documents, lengths) in [
        (Some(1), vec![220]),
        (Some(3), vec![220, 250, 280]),
        (Some(6), vec![220, 250, 280, 310, 340, 370]),
        (Some(100), vec![220, 250, 280, 310, 340, 370]),
        (None, vec![220, 250, 280, 310, 340, 370]),
    ] {
        let (source, per_row) = config::held_out(&spec, 0, spec.batch_size, documents).unwrap();
        assert_eq!(per_row, (lengths.len() as u64).div_ceil(2), "{documents:?}");
        let batches = longmem_bench::eval::segments_to_cover(&source, 2, per_row, 16);
        let mut stream = SegmentStream::new(source, 2, 16, Device::Cpu);
        let totals = stream_nll_bucketed(learner.as_mut(), &mut stream, batches, &[], &Default::default());
        let targets: usize = lengths.iter().map(|n| n - 1).sum();
        assert_eq!(
            totals.tokens, targets as f64,
            "{documents:?}: exactly these documents, once"
        );
        assert_eq!(totals.by_length[0].documents, lengths.len() as u64, "{documents:?}");
    }
}

#[test]
fn train_and_eval_run_on_a_text_directory_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    write_books(dir.path());
    let longmem = || Command::cargo_bin("longmem").unwrap();
    for method in [Method::Pretrain, Method::Longmem] {
        let spec = dir.path().join(format!("{method}.toml"));
        std::fs::write(&spec, spec_text(method, TEXT_DIR)).unwrap();
        longmem().arg("train").arg(&spec).assert().success();
        let out = longmem().arg("eval").arg(&spec).assert().success();
        let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        assert!(
            stdout.contains("length <5K") && stdout.contains("3 documents"),
            "{stdout}"
        );
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out-longmem/eval.json")).unwrap()).unwrap();
    assert_eq!(report["totals"]["tokens"], 309.0 + 339.0 + 369.0);
    assert_eq!(report["totals"]["by_length"][0]["bucket"], "<5K");
    // `--documents 2`: the first two held-out documents, nothing of the third.
    let spec = dir.path().join("longmem.toml");
    longmem()
        .arg("eval")
        .arg(&spec)
        .args(["--documents", "2"])
        .assert()
        .success();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out-longmem/eval.json")).unwrap()).unwrap();
    assert_eq!(report["totals"]["tokens"], 309.0 + 339.0);
    assert_eq!(report["documents_per_row"], 1);
}

#[test]
fn bad_corpora_fail_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("s.toml");
    // A missing directory is a spec error naming the key.
    std::fs::write(&spec, spec_text(Method::Pretrain, TEXT_DIR)).unwrap();
    common::assert_train_fails(&spec, &["`data.path`"]);
    // A malformed JSONL line is named with its file and line.
    std::fs::write(dir.path().join("c.jsonl"), "{\"text\": \"fine\"}\n{\"body\": 1}\n").unwrap();
    std::fs::write(
        &spec,
        spec_text(Method::Pretrain, "kind = \"jsonl\"\npath = \"c.jsonl\""),
    )
    .unwrap();
    common::assert_train_fails(&spec, &["c.jsonl:2", "no `text` field"]);
    assert!(
        !dir.path().join("out-pretrain").exists(),
        "nothing is written on bad input"
    );
    // The holdout must leave something to train on.
    std::fs::write(dir.path().join("c.jsonl"), "{\"text\": \"only one\"}\n").unwrap();
    std::fs::write(
        &spec,
        spec_text(Method::Pretrain, "kind = \"jsonl\"\npath = \"c.jsonl\"\nholdout = 0.5"),
    )
    .unwrap();
    common::assert_train_fails(&spec, &["no training documents"]);
    assert!(!dir.path().join("out-pretrain").exists());
}

#[test]
fn the_cargo_corpus_spec_resolves_to_this_projects_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::parse(
        &spec_text(Method::Pretrain, "kind = \"cargo\"\nmin_bytes = 50000"),
        &dir.path().join("s.toml"),
    )
    .unwrap();
    let text = serde_json::to_string(&spec.data).unwrap();
    assert!(
        text.contains("Cargo.lock") && text.contains("\"tokenizer\":\"gpt2\""),
        "{text}"
    );
    assert_eq!(spec.backbone.vocab_size, 50257, "the vocabulary follows the tokenizer");
    let source = config::source(&spec, Split::HeldOut { seed_offset: 0 }, 2).unwrap();
    assert!(
        longmem_bench::data::DocumentSource::document(&source, 0, 0)
            .tokens
            .len()
            > 10_000
    );
}
