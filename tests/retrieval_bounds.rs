//! The evaluation-time retrieval bounds on the needle corpus: the oracle retrieves every
//! answer's evidence chunk that memory holds, random retrieval hits it about as often as
//! chance says, and with the memory gates closed neither changes a single score (the
//! memory then has no effect, whatever is retrieved). Untrained models: these are
//! properties of the mechanism, not of learning.

mod common;

use longmem_bench::config::{self, Spec, Split};
use longmem_bench::data::SegmentStream;
use longmem_bench::eval::distance::distance_edges;
use longmem_bench::eval::run::close_memory_gates;
use longmem_bench::eval::{stream_nll_scored, NllTotals, Scoring};
use longmem_bench::memory::Retrieval;
use longmem_bench::methods::MethodModel;
use longmem_bench::models::weights::save_safetensors;
use longmem_bench::profile::StageClock;
use std::path::Path;
use tch::Device;

/// `method`'s spec over an untrained backbone saved in `dir` (memory methods start from one).
fn spec(dir: &Path, method: &str, memory_size: i64) -> Spec {
    spec_with(dir, method, memory_size, "")
}

/// [`spec`] with `memory` added to its `[memory]` section.
fn spec_with(dir: &Path, method: &str, memory_size: i64, memory: &str) -> Spec {
    let weights = dir.join("backbone.safetensors");
    if !weights.exists() {
        let backbone = spec_text("pretrain", memory_size, "");
        let pretrain = Spec::parse(&backbone, &dir.join("spec.toml")).unwrap().spec;
        let model = pretrain.build_model(Device::Cpu).unwrap();
        save_safetensors(model.trained_vs(), &weights).unwrap();
    }
    let text = spec_text(
        method,
        memory_size,
        &format!("weights = {:?}", weights.display().to_string()),
    )
    .replace("[memory]\n", &format!("[memory]\n{memory}\n"));
    Spec::parse(&text, &dir.join("spec.toml")).unwrap().spec
}

fn spec_text(method: &str, memory_size: i64, weights: &str) -> String {
    format!(
        r#"
seed = 4
out_dir = "unused"
method = "{method}"
[backbone]
style = "gpt2"
n_layer = 2
n_head = 2
n_embd = 32
n_positions = 32
dropout = 0.0
memory_layer = 1
{weights}
[memory]
size = {memory_size}
chunk = 4
k = 8
[sidenet]
dropout = 0.0
[data]
kind = "needle"
doc_tokens = 1024
n_key_symbols = 64
[train]
steps = 1
batch_size = 2
segment_len = 32
"#
    )
}

fn score(spec: &Spec, model: &mut dyn MethodModel, retrieval: Retrieval) -> NllTotals {
    let source = config::source(spec, Split::HeldOut { seed_offset: 1000 }, spec.batch_size).unwrap();
    let mut stream = SegmentStream::new(source, spec.batch_size, spec.segment_len, Device::Cpu);
    let clock = StageClock::disabled();
    let scoring = Scoring {
        length_edges: &[],
        distance_edges: distance_edges(spec.segment_len),
        retrieval,
        seed: 7,
        clock: &clock,
    };
    // Two documents per row.
    stream_nll_scored(model, &mut stream, 2 * 1024 / 32, &scoring)
}

#[test]
fn the_oracle_retrieves_all_evidence_memory_holds_and_random_retrieval_hits_by_chance() {
    let _rng = common::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    for method in ["longmem", "memtrm"] {
        // M = 1024 holds a whole document: nothing is evicted.
        let spec = spec(dir.path(), method, 1024);
        let mut model = spec.build_model(Device::Cpu).unwrap();
        let exact = score(&spec, model.as_mut(), Retrieval::Exact);
        let oracle = score(&spec, model.as_mut(), Retrieval::Oracle);
        let random = score(&spec, model.as_mut(), Retrieval::Random);
        assert!(exact.far_tokens > 100.0, "{method}: {} far answers", exact.far_tokens);
        assert_eq!(oracle.far_tokens, exact.far_tokens);
        assert_eq!(
            oracle.hit_rate_any_head(),
            1.0,
            "{method}: every far answer's evidence is in memory"
        );
        assert_eq!(oracle.hit_rate_per_head(), 1.0, "{method}");
        // Evidence by distance: nothing evicted, and every answer at least 4 windows from
        // its evidence (so before its segment) hits.
        for bucket in oracle.by_distance.iter().filter(|b| b.from >= 128) {
            assert_eq!(bucket.evicted, 0.0, "{method} {}", bucket.bucket);
            assert_eq!(bucket.hits_any_head, bucket.tokens, "{method} {}", bucket.bucket);
        }
        // Random picks: the per-head hit rate is what chance gives, within sampling noise.
        let (got, chance) = (random.hit_rate_per_head(), random.hit_rate_chance());
        assert!(
            (got - chance).abs() < 0.05,
            "{method}: random {got:.3} against chance {chance:.3}"
        );
        assert!(
            exact.nll != oracle.nll,
            "{method}: with open gates the oracle changes the scores"
        );
        // Gates closed: memory has no effect, so no retrieval changes any score.
        assert!(close_memory_gates(model.as_ref()));
        let closed: Vec<NllTotals> = [Retrieval::Exact, Retrieval::Oracle, Retrieval::Random]
            .into_iter()
            .map(|r| score(&spec, model.as_mut(), r))
            .collect();
        for totals in &closed[1..] {
            assert_eq!(totals.nll, closed[0].nll, "{method}");
            assert_eq!(totals.far_nll, closed[0].far_nll, "{method}");
            let nll = |t: &NllTotals| t.by_distance.iter().map(|b| b.nll).collect::<Vec<_>>();
            assert_eq!(nll(totals), nll(&closed[0]), "{method}");
        }
    }
}

#[test]
fn a_small_memory_evicts_distant_evidence_and_the_oracle_cannot_bring_it_back() {
    let _rng = common::rng_lock();
    // M = 128 tokens: evidence more than 4 windows back has always been evicted.
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), "longmem", 128);
    let mut model = spec.build_model(Device::Cpu).unwrap();
    let oracle = score(&spec, model.as_mut(), Retrieval::Oracle);
    let far: Vec<_> = oracle.by_distance.iter().filter(|b| b.from >= 512).collect();
    assert!(!far.is_empty());
    for bucket in far {
        assert_eq!(bucket.evicted, bucket.tokens, "{}", bucket.bucket);
        assert_eq!(bucket.hits_any_head, 0.0, "{}", bucket.bucket);
    }
    // 4-16 windows back: evidence before the segment, some of it still in memory (the oracle
    // then retrieves it), the rest evicted.
    let between = oracle
        .by_distance
        .iter()
        .find(|b| b.from == 128)
        .expect("answers 4-16 windows back");
    assert!(between.evicted > 0.0 && between.evicted < between.tokens, "{between:?}");
    assert_eq!(
        between.hits_any_head + between.evicted,
        between.tokens,
        "{}",
        between.bucket
    );
}

#[test]
fn the_oracle_on_a_shared_bank_is_a_clear_error() {
    let _rng = common::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_with(dir.path(), "longmem", 1024, "sharing = \"shared\"");
    let mut model = spec.build_model(Device::Cpu).unwrap();
    let settings = longmem_bench::eval::run::PerplexitySettings {
        window: spec.segment_len,
        documents: Some(1),
        seed_offset: 1000,
        length_edges: &[],
        gates_closed: false,
        retrieval: Retrieval::Oracle,
    };
    let err = longmem_bench::eval::run::perplexity(model.as_mut(), &spec, &settings)
        .unwrap_err()
        .to_string();
    assert!(err.contains("memory.sharing = \"per-stream\""), "{err}");
}
