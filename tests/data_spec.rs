//! The `[data]` section: what a file may say for each kind, and what a resolved spec
//! serialises to (run ids hash it, so it must not change).

use longmem_bench::harness::experiment::run_id;
use longmem_bench::harness::spec::{FileChecks, Spec};
use std::path::Path;

/// A pretrain spec with `data` as its `[data]` section, resolved as if from
/// `/pinned/exp.toml` without looking at files, so its paths do not depend on this machine.
fn pinned(data: &str) -> Spec {
    let text = format!(
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
    );
    let table: toml::Table = text.parse().unwrap();
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
    }
}
