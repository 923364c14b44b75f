//! Evaluation. Evaluation never trains.

pub mod cost;
mod describe;
pub mod distance;
pub mod icl;
mod json;
pub mod perplexity;
pub mod result;
pub mod run;
pub mod score;
pub mod suffix;

use crate::memory::{MemorySpec, Retrieval};

/// The file an evaluation writes: `<stem>.json`, then what it changed: `-window<N>` (a longer
/// local window), `-nomemory` (gates closed), `-M<size>-c<chunk>-k<K>` (another memory than
/// the trained one), `-oracle` or `-random` (a retrieval bound), e.g. `eval-M64-c4-k32.json`.
pub fn result_file_name(
    stem: &str,
    window: Option<usize>,
    no_memory: bool,
    memory: Option<&MemorySpec>,
    retrieval: Retrieval,
) -> String {
    let mut name = stem.to_string();
    if let Some(w) = window {
        name += &format!("-window{w}");
    }
    if no_memory {
        name += "-nomemory";
    }
    if let Some(m) = memory {
        name += &format!("-M{}-c{}-k{}", m.size, m.chunk, m.k);
    }
    if retrieval != Retrieval::Exact {
        name += &format!("-{retrieval}");
    }
    name + ".json"
}

pub use perplexity::{
    segments_to_cover, stream_nll, stream_nll_bucketed, stream_nll_scored, tokens_to_cover, BucketTotals, NllTotals,
    Scoring, PAPER_LENGTH_EDGES,
};
