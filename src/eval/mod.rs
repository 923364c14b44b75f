//! Evaluation (DESIGN.md §3). Evaluation never trains.

pub mod cost;
pub mod icl;
pub mod perplexity;

pub use perplexity::{segments_to_cover, stream_nll, stream_nll_bucketed, BucketTotals, NllTotals, PAPER_LENGTH_EDGES};
