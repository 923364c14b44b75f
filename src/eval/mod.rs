//! Evaluation. Evaluation never trains.

pub mod cost;
mod describe;
pub mod icl;
mod json;
pub mod perplexity;
pub mod result;
pub mod run;

use crate::memory::MemorySpec;

/// The file an evaluation writes: `<stem>.json`, then what it changed: `-window<N>` (a longer
/// local window), `-nomemory` (gates closed), `-M<size>-c<chunk>-k<K>` (another memory than
/// the trained one), e.g. `eval-M64-c4-k32.json`.
pub fn result_file_name(stem: &str, window: Option<usize>, no_memory: bool, memory: Option<&MemorySpec>) -> String {
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
    name + ".json"
}

pub use perplexity::{
    segments_to_cover, stream_nll, stream_nll_bucketed, tokens_to_cover, BucketTotals, NllTotals, PAPER_LENGTH_EDGES,
};
