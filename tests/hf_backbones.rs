//! Backbones researchers hold on disk: Hugging Face model directories of the llama and neox
//! families (sharded, half-precision weights; their configs in every spelling transformers
//! has written; what is refused), their own `tokenizer.json`, specs that point at them, and
//! tiny LongMem and MemTRM sweeps on each family.

mod common;

use common::{fixture, max_abs_diff};
use longmem_bench::config::{FileChecks, Spec};
use longmem_bench::models::{hf, weights, Backbone, BlockStyle, RopeScaling};
use longmem_bench::tokenizer::TokenizerKind;
use std::path::Path;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn logits_of(dir: &Path, ids: &Tensor) -> Tensor {
    let config = hf::config_of_dir(dir).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let model = Backbone::new(&vs.root(), &config);
    weights::load_safetensors(&vs, dir, &config).unwrap();
    tch::no_grad(|| model.forward(ids, false).logits)
}

fn ids() -> Tensor {
    Tensor::from_slice(&[5i64, 17, 3, 99, 42, 7, 64, 1]).view([1, 8])
}

/// Copies `tensors` into `dir` as `model-0000{i}-of-00002.safetensors` shards with an index,
/// beside the fixture's config.json.
fn write_shards(dir: &Path, tensors: &[(String, Tensor)], kind: Kind) {
    std::fs::copy(fixture("llama_gqa_tied/config.json"), dir.join("config.json")).unwrap();
    let half = tensors.len() / 2;
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [&tensors[..half], &tensors[half..]].into_iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let converted: Vec<(String, Tensor)> = part.iter().map(|(n, t)| (n.clone(), t.to_kind(kind))).collect();
        Tensor::write_safetensors(&converted, dir.join(&file)).unwrap();
        for (name, _) in part {
            weight_map.insert(name.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn sharded_and_half_precision_model_directories_load() {
    let source = fixture("llama_gqa_tied");
    let reference = logits_of(&source, &ids());
    let tensors = Tensor::read_safetensors(source.join("model.safetensors")).unwrap();
    assert!(tensors.iter().any(|(n, _)| n.starts_with("model.layers.")), "HF names");

    let sharded = tempfile::tempdir().unwrap();
    write_shards(sharded.path(), &tensors, Kind::Float);
    assert_eq!(weights::safetensors_files(sharded.path()).unwrap().len(), 2);
    assert_eq!(max_abs_diff(&logits_of(sharded.path(), &ids()), &reference), 0.0);

    let bf16 = tempfile::tempdir().unwrap();
    write_shards(bf16.path(), &tensors, Kind::BFloat16);
    let diff = max_abs_diff(&logits_of(bf16.path(), &ids()), &reference);
    // bf16 keeps 8 bits of mantissa: close to, but not exactly, the f32 model.
    assert!(diff > 0.0 && diff < 0.05, "bf16 weights converted to f32: {diff}");

    let empty = tempfile::tempdir().unwrap();
    let err = weights::safetensors_files(empty.path()).unwrap_err().to_string();
    assert!(err.contains("model.safetensors.index.json"), "{err}");
}

#[test]
fn the_models_tokenizer_json_matches_the_python_tokenizer() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("llama_gqa_tied/tokenizer_expected.json")).unwrap())
            .unwrap();
    let tok = TokenizerKind::Hf(fixture("llama_gqa_tied")).load().unwrap();
    let text = expected["text"].as_str().unwrap();
    let want: Vec<u32> = expected["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let got = tok.encode(text);
    assert_eq!(got, want);
    assert!(got.len() * 3 < text.len() * 2, "the merges apply: {} ids", got.len());
    assert_eq!(tok.decode(&got), text, "round trip");
    assert_eq!(tok.vocab_size() as u64, expected["vocab_size"].as_u64().unwrap());
    // tokenizer_config.json names <|endoftext|> as EOS and adds no BOS.
    assert_eq!(tok.decode(&[tok.end_of_text()]), "<|endoftext|>");
    assert!(tok.begin_of_text().is_empty());

    // A config that asks for a BOS gets it at every document's start.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("llama_gqa_tied/tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": {"content": "<|endoftext|>"}, "add_bos_token": true}"#,
    )
    .unwrap();
    let with_bos = TokenizerKind::Hf(dir.path().into()).load().unwrap();
    assert_eq!(with_bos.begin_of_text(), &[tok.end_of_text()]);
    // No EOS configured: the <|endoftext|> token is found by name.
    assert_eq!(with_bos.end_of_text(), tok.end_of_text());
}

fn write_config(dir: &Path, json: &str) -> std::path::PathBuf {
    let path = dir.join("config.json");
    std::fs::write(&path, json).unwrap();
    path
}

#[test]
fn configs_in_older_spellings_load_and_unsupported_ones_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // transformers 4.x: top-level rope_theta / rope_scaling, NeoX's rotary_pct and base.
    let llama = r#"{"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 500000.0,
        "rope_scaling": {"type": "linear", "factor": 4.0}, "tie_word_embeddings": true}"#;
    let config = hf::config_of_file(&write_config(dir.path(), llama)).unwrap();
    let layout = config.rotary.unwrap();
    assert_eq!((layout.theta, layout.n_kv_head, layout.head_dim), (500000.0, 2, 16));
    assert_eq!(layout.scaling, Some(RopeScaling::Linear { factor: 4.0 }));
    assert!(layout.tied_head);
    let neox = r#"{"model_type": "gpt_neox", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 256,
        "num_hidden_layers": 2, "num_attention_heads": 4, "rotary_pct": 0.25, "rotary_emb_base": 10000,
        "use_parallel_residual": false}"#;
    let config = hf::config_of_file(&write_config(dir.path(), neox)).unwrap();
    assert_eq!(config.style, BlockStyle::Neox);
    let layout = config.rotary.unwrap();
    assert_eq!((layout.rotary_dim, layout.parallel_residual), (4, false));

    for (json, key, mention) in [
        (llama.replace("\"linear\"", "\"yarn\""), "rope_scaling", "yarn"),
        (llama.replace("\"llama\"", "\"gemma\""), "model_type", "gemma"),
        (
            llama.replace("\"rope_theta\"", "\"sliding_window\": 4096, \"rope_theta\""),
            "sliding_window",
            "4096",
        ),
        (
            llama.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"),
            "n_kv_head",
            "3",
        ),
    ] {
        let err = hf::config_of_file(&write_config(dir.path(), &json))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(mention), "{err}");
    }
}

fn spec(text: &str, dir: &Path) -> Result<Spec, String> {
    let path = dir.join("spec.toml");
    Spec::from_table(toml::from_str(text).unwrap(), &path, FileChecks::All).map_err(|e| e.to_string())
}

#[test]
fn a_spec_pointing_at_a_model_directory_takes_its_shape_and_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs.jsonl");
    let lines: Vec<String> = (0..20)
        .map(|i| {
            serde_json::json!({ "text": format!("the memory bank holds the keys of document {i}. ").repeat(20) })
                .to_string()
        })
        .collect();
    std::fs::write(&docs, lines.join("\n")).unwrap();
    let model = fixture("llama_gqa_tied");
    let text = format!(
        r#"
method = "longmem"
[backbone]
weights = "{}"
[memory]
size = 64
chunk = 4
k = 8
[data]
kind = "jsonl"
path = "{}"
[train]
steps = 1
batch_size = 1
segment_len = 16
"#,
        model.display(),
        docs.display()
    );
    let resolved = spec(&text, dir.path()).unwrap();
    assert_eq!(resolved.backbone, {
        let mut c = hf::config_of_dir(&model).unwrap();
        c.memory_layer = resolved.backbone.memory_layer;
        c
    });
    assert_eq!(resolved.backbone.n_kv_head(), 2);
    match &resolved.data {
        longmem_bench::config::DataSpec::Jsonl { corpus, .. } => {
            assert_eq!(
                corpus.tokenizer,
                TokenizerKind::Hf(model.clone()),
                "the model's own tokenizer"
            );
        }
        other => panic!("{other:?}"),
    }
    // Keys that disagree with config.json are named with both values.
    let err = spec(&text.replace("[backbone]\n", "[backbone]\nn_layer = 4\n"), dir.path()).unwrap_err();
    assert!(
        err.contains("backbone.n_layer") && err.contains('3') && err.contains("config.json"),
        "{err}"
    );
    let err = spec(
        &text.replace("[backbone]\n", "[backbone]\ntie_word_embeddings = false\n"),
        dir.path(),
    )
    .unwrap_err();
    assert!(
        err.contains("backbone.tie_word_embeddings") && err.contains("false") && err.contains("true"),
        "{err}"
    );
    // An explicit tokenizer wins; one that is not there is refused.
    let explicit = text.replace("kind = \"jsonl\"", "kind = \"jsonl\"\ntokenizer = \"byte\"");
    let err = spec(&explicit.replace("\"byte\"", "\"no/such/tokenizer.json\""), dir.path()).unwrap_err();
    assert!(err.contains("data.tokenizer") && err.contains("no/such"), "{err}");
    assert!(spec(&explicit, dir.path()).is_ok());
    // Without the directory the section must state the shape.
    let err = spec(&text.replace(&model.display().to_string(), "absent/model"), dir.path()).unwrap_err();
    assert!(err.contains("backbone.weights"), "{err}");
}

/// The tiny sweep of `tests/harness.rs` on `backbone` instead of newgpt: pretraining, then
/// LongMem, MemTRM and the plain and frozen baselines, trained and evaluated.
fn tiny_sweep(backbone: &str) -> Vec<(String, f64)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.toml");
    let text = common::mini_experiment("tiny", 20, "preset = [\"longmem\", \"memtrm\", \"plain\", \"frozen\"]")
        .replace("style = \"newgpt\"\nn_layer = 2\nn_head = 2\nn_embd = 16\n", backbone);
    std::fs::write(&file, text).unwrap();
    assert_cmd::Command::cargo_bin("longmem")
        .unwrap()
        .args(["-q", "sweep"])
        .arg(&file)
        .assert()
        .success();
    let runs = longmem_bench::harness::experiment::Experiment::load(&file)
        .unwrap()
        .plan()
        .unwrap();
    let mut nll = vec![];
    for run in runs
        .iter()
        .filter(|r| r.stage == longmem_bench::harness::experiment::Stage::Eval)
    {
        let result = common::eval_result(&run.dir);
        let mean = result.totals.nll / result.totals.tokens;
        assert!(mean.is_finite() && mean > 0.0, "{}: {mean}", run.id);
        println!("{backbone:?} {}: NLL {mean:.4}", run.id);
        nll.push((run.id.clone(), mean));
    }
    assert_eq!(nll.len(), 4, "{nll:?}");
    nll
}

#[test]
fn tiny_longmem_and_memtrm_sweep_on_a_llama_backbone_with_grouped_query_attention() {
    tiny_sweep("style = \"llama\"\nn_layer = 2\nn_head = 4\nn_kv_head = 2\nn_embd = 16\n");
}

#[test]
fn tiny_longmem_and_memtrm_sweep_on_a_neox_backbone() {
    tiny_sweep("style = \"neox\"\nn_layer = 2\nn_head = 2\nn_embd = 16\nrotary_pct = 0.5\n");
}
