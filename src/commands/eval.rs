//! `longmem eval <spec>`: evaluates a trained run on held-out documents (`eval.json`, or
//! `eval-window<N>.json`, `eval-nomemory.json`, `eval-M…-c…-k….json`) and, for a spec with an
//! `[icl]` section, on in-context learning (`icl.json`), and for one with a `[chapterbreak]`
//! section, on suffix identification (`chapterbreak.json`); see harness/stage.rs.

use crate::cli::EvalArgs;
use crate::config::Spec;
use crate::harness::experiment::EvalPoint;
use crate::harness::stage::{evaluate_run, EvalOptions, EvalRequest};

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let file = Spec::load(&args.spec)?;
    let options = EvalOptions {
        documents: args.documents,
        window: args.window,
        no_memory: args.no_memory,
        memory: EvalPoint {
            memory_size: args.memory_size,
            chunk: args.chunk,
            top_k: args.top_k,
            retrieval: args.retrieval.filter(|r| *r != crate::memory::Retrieval::Exact),
            window: None,
        },
        length_buckets: args.length_buckets.clone(),
        data: args
            .doc_tokens
            .map(|n| toml::Table::from_iter([("doc_tokens".to_string(), toml::Value::from(n as i64))])),
        rows: args.rows,
        icl_only: args.icl_only,
        no_icl: args.no_icl,
        chapterbreak_only: args.chapterbreak_only,
        no_chapterbreak: args.no_chapterbreak,
        seed_offset: args.seed_offset,
    };
    let outcome = evaluate_run(&EvalRequest {
        spec: &file.spec,
        weights_dir: &file.out_dir,
        out_dir: &file.out_dir,
        options: &options,
        spec_name: &args.spec,
    })?;
    print!("{}", outcome.describe(&file.out_dir.display().to_string()));
    Ok(())
}
