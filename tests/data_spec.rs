//! The `[data]` section: what a file may say for each kind (a misspelt key is an error),
//! the length filters of every corpus kind, what a resolved spec serialises to (run ids hash
//! it, so it must not change), and what `plan` counts for an evaluation.

mod common;

use assert_cmd::Command;
use longmem_bench::config::{self, AnySource, Split};
use longmem_bench::config::{DataSpec, FileChecks, Spec};
use longmem_bench::harness::run_id::run_id;
use std::path::Path;

/// A pretrain spec with `data` as its `[data]` section.
fn spec_text(data: &str) -> String {
    format!(
        r#"
out_dir = "out"
method = "pretrain"
[backbone]
style = "newgpt"
n_layer = 2
n_head = 2
n_embd = 16
[data]
{data}
[train]
steps = 3
batch_size = 2
segment_len = 16
"#
    )
}

/// [`spec_text`] resolved as if from `/pinned/exp.toml` without looking at files, so its
/// paths do not depend on this machine.
fn pinned(data: &str) -> Spec {
    let table: toml::Table = spec_text(data).parse().unwrap();
    Spec::from_table(table, Path::new("/pinned/exp.toml"), FileChecks::None).unwrap()
}

/// Specs written before `min_bytes`/`max_bytes` reached every corpus kind serialise as they
/// did then, so their run ids are unchanged (values computed before that change).
#[test]
fn existing_data_sections_keep_their_serialised_form_and_run_ids() {
    let cases = [
        (
            "kind = \"text_dir\"\npath = \"books\"",
            r#"{"kind":"text_dir","path":"/pinned/books","glob":"**/*.txt","tokenizer":"gpt2","holdout":0.1}"#,
            "pretrain-8598444b0a7b",
        ),
        (
            "kind = \"text_dir\"\npath = \"books\"\nglob = \"*.md\"\ntokenizer = \"byte\"\nholdout = 0.25",
            r#"{"kind":"text_dir","path":"/pinned/books","glob":"*.md","tokenizer":"byte","holdout":0.25}"#,
            "pretrain-bbdd2c5d83c7",
        ),
        (
            "kind = \"jsonl\"\npath = \"c.jsonl\"\nfield = \"body\"",
            r#"{"kind":"jsonl","path":"/pinned/c.jsonl","field":"body","tokenizer":"gpt2","holdout":0.1}"#,
            "pretrain-622e25ad0b72",
        ),
        (
            "kind = \"cargo\"\nlock = \"Cargo.lock\"",
            r#"{"kind":"cargo","lock":"/pinned/Cargo.lock","min_bytes":20000,"max_bytes":null,"tokenizer":"gpt2","holdout":0.1}"#,
            "pretrain-72af66dddbfb",
        ),
        (
            "kind = \"cargo\"\nlock = \"Cargo.lock\"\nmin_bytes = 20000\nmax_bytes = 200000\ntokenizer = \"byte\"",
            r#"{"kind":"cargo","lock":"/pinned/Cargo.lock","min_bytes":20000,"max_bytes":200000,"tokenizer":"byte","holdout":0.1}"#,
            "pretrain-31b7634a6152",
        ),
    ];
    for (data, json, id) in cases {
        let spec = pinned(data);
        assert_eq!(serde_json::to_string(&spec.data).unwrap(), json, "{data}");
        assert_eq!(run_id(&spec, None, ""), id, "{data}");
        // A run's saved config.json reads back as the same data (`longmem train` compares).
        assert_eq!(serde_json::from_str::<DataSpec>(json).unwrap(), spec.data);
    }
}

/// Each kind's keys, and a misspelling of one of them.
const KINDS: [(&str, &str, &str); 5] = [
    ("kind = \"recall\"\ndoc_tokens = 64", "doc_tokns = 64", "doc_tokens"),
    (
        "kind = \"demos\"\ndemos_per_doc = 8",
        "demos_per_dok = 8",
        "demos_per_doc",
    ),
    (
        "kind = \"text_dir\"\npath = \"books\"",
        "tokenzer = \"byte\"",
        "tokenizer",
    ),
    ("kind = \"jsonl\"\npath = \"c.jsonl\"", "feild = \"body\"", "field"),
    ("kind = \"cargo\"", "max_byte = 100000", "max_bytes"),
];

#[test]
fn a_misspelt_data_key_is_an_error_naming_the_file_the_key_and_the_allowed_keys() {
    for (data, typo, meant) in KINDS {
        let text = spec_text(&format!("{data}\n{typo}"));
        let err = Spec::parse(&text, Path::new("/specs/typo.toml"))
            .unwrap_err()
            .to_string();
        let key = typo.split(' ').next().unwrap();
        assert!(
            err.contains("/specs/typo.toml")
                && err.contains(&format!("unknown field `{key}`"))
                && err.contains(&format!("`{meant}`")),
            "{data}: {err}"
        );
    }
    // Keys of another kind are no exception: `min_bytes` is a corpus key, not a recall one.
    let err = Spec::parse(&spec_text("kind = \"recall\"\nmin_bytes = 3"), Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `min_bytes`"), "{err}");
}

#[test]
fn plan_rejects_a_misspelt_data_key_in_an_experiment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("books")).unwrap();
    let file = dir.path().join("typo.toml");
    let data = "kind = \"text_dir\"\npath = \"books\"\ntokenzer = \"byte\"";
    // Each unknown key in turn, as the user fixes them.
    for (extra, key) in [("\nbogus_key = 3", "bogus_key"), ("", "tokenzer")] {
        std::fs::write(&file, corpus_experiment(&format!("{data}{extra}"))).unwrap();
        let out = Command::cargo_bin("longmem")
            .unwrap()
            .arg("plan")
            .arg(&file)
            .assert()
            .failure();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains("typo.toml")
                && stderr.contains(&format!("unknown field `{key}`"))
                && stderr.contains("`tokenizer`")
                && stderr.contains("in `data`"),
            "{stderr}"
        );
    }
}

/// The documents of `spec`'s training and held-out parts, by id.
fn ids(spec: &Spec) -> (Vec<String>, Vec<String>) {
    let part = |split| match config::source(spec, split, 1).unwrap() {
        AnySource::Corpus(c) => c.corpus.ids.clone(),
        _ => unreachable!("a corpus"),
    };
    (part(Split::Train), part(Split::HeldOut { seed_offset: 0 }))
}

/// The same filter as the cargo corpus's (whose own test is in src/data/cargo_corpus.rs).
#[test]
fn length_filters_leave_out_short_and_long_text_dir_and_jsonl_documents() {
    let dir = tempfile::tempdir().unwrap();
    // Documents of 10, 20, ..., 80 bytes, as files and as JSON lines.
    let mut lines = String::new();
    for i in 1..=8 {
        let text = "ab".repeat(5 * i);
        let path = dir.path().join(format!("books/{i}.txt"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &text).unwrap();
        lines.push_str(&format!("{{\"text\": \"{text}\"}}\n"));
    }
    std::fs::write(dir.path().join("c.jsonl"), lines).unwrap();
    let at = dir.path().join("s.toml");
    let text_dir = |keys: &str| {
        let data = format!("kind = \"text_dir\"\npath = \"books\"\ntokenizer = \"byte\"\nholdout = 0.25\n{keys}");
        Spec::parse(&spec_text(&data), &at).unwrap()
    };
    // No filter: every document (the default for text_dir and jsonl).
    assert_eq!(ids(&text_dir("")).0.len() + ids(&text_dir("")).1.len(), 8);
    // 20 to 60 bytes: documents 2..=6; the last 2 of 5 (ceil(0.25 × 5)) held out.
    let (train, held) = ids(&text_dir("min_bytes = 20\nmax_bytes = 60"));
    assert_eq!(
        (train, held),
        (
            vec!["2.txt".into(), "3.txt".into(), "4.txt".into()],
            vec!["5.txt".into(), "6.txt".into()]
        )
    );
    let jsonl = Spec::parse(
        &spec_text("kind = \"jsonl\"\npath = \"c.jsonl\"\ntokenizer = \"byte\"\nholdout = 0.25\nmin_bytes = 50"),
        &at,
    )
    .unwrap();
    let (train, held) = ids(&jsonl);
    let lines: Vec<String> = train
        .iter()
        .chain(&held)
        .map(|id| id.rsplit(':').next().unwrap().to_string())
        .collect();
    assert_eq!(lines, vec!["5", "6", "7", "8"]);
    // The limits reach the run id only when set.
    let json = |spec: &Spec| serde_json::to_string(&spec.data).unwrap();
    assert_eq!(json(&text_dir("min_bytes = 0")), json(&text_dir("")));
    let capped = text_dir("max_bytes = 60");
    assert!(json(&capped).contains("\"max_bytes\":60"));
    assert_eq!(serde_json::from_str::<DataSpec>(&json(&capped)).unwrap(), capped.data);
    // Limits that leave nothing, or contradict each other, are errors that say so.
    let none = text_dir("min_bytes = 1000");
    let err = config::source(&none, Split::Train, 1).unwrap_err().to_string();
    assert!(err.contains("none of its 8 documents is at least 1000 bytes"), "{err}");
    let data = "kind = \"jsonl\"\npath = \"c.jsonl\"\nmin_bytes = 50\nmax_bytes = 40";
    let err = Spec::parse(&spec_text(data), &at).unwrap_err().to_string();
    assert!(
        err.contains("`data.max_bytes` = 40") && err.contains("at least data.min_bytes = 50"),
        "{err}"
    );
}

/// A two-method experiment (longmem, plain) whose `[data]` section is `data`.
fn corpus_experiment(data: &str) -> String {
    common::mini_experiment("corpus", 4, "method = [\"longmem\", \"plain\"]")
        .replace("kind = \"recall\"\ndoc_tokens = 64", data)
        .replace("\"data.doc_tokens\" = 16\n", "")
}

/// `plan`'s lines for the eval stage: their token counts.
fn planned_eval_tokens(file: &Path) -> (Vec<String>, String) {
    let out = Command::cargo_bin("longmem")
        .unwrap()
        .arg("plan")
        .arg(file)
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let tokens = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("eval "))
        .map(|l| l.split_whitespace().nth(4).unwrap().to_string())
        .collect();
    (tokens, stdout)
}

#[test]
fn plan_counts_the_held_out_tokens_an_evaluation_reads() {
    let dir = tempfile::tempdir().unwrap();
    // 10 documents of 100, 200, ..., 1000 bytes; 0.2 held out: the last two, 900 + 1000 bytes.
    for i in 1..=10 {
        let path = dir.path().join(format!("books/{i:02}.txt"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x".repeat(100 * i)).unwrap();
    }
    let file = dir.path().join("corpus.toml");
    let data = "kind = \"text_dir\"\npath = \"books\"\ntokenizer = \"byte\"\nholdout = 0.2";
    std::fs::write(&file, corpus_experiment(data)).unwrap();
    let (tokens, stdout) = planned_eval_tokens(&file);
    assert_eq!(tokens, vec!["1.90e3"; 2], "{stdout}");
    // `[eval] documents` caps it: the first held-out document.
    std::fs::write(&file, corpus_experiment(data).replace("documents = 2", "documents = 1")).unwrap();
    assert_eq!(planned_eval_tokens(&file).0, vec!["9.00e2"; 2]);
    // A generator: documents per row × rows × document length (2 × 2 × 64).
    std::fs::write(&file, common::mini_experiment("recall", 4, "method = [\"plain\"]")).unwrap();
    assert_eq!(planned_eval_tokens(&file).0, vec!["2.56e2"]);
    // Data not on this machine: the rough estimate (2 rows × 16 tokens × 64), with a note.
    std::fs::write(&file, corpus_experiment(&data.replace("books", "elsewhere"))).unwrap();
    let (tokens, stdout) = planned_eval_tokens(&file);
    assert_eq!(tokens, vec!["2.05e3"; 2], "{stdout}");
    assert!(
        stdout.contains("note: ") && stdout.contains("elsewhere") && stdout.contains("estimated"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("note: ").count(),
        1,
        "one note per data section: {stdout}"
    );
}
