//! Evaluation (DESIGN.md §3). Evaluation never trains.

pub mod perplexity;

pub use perplexity::{stream_nll, NllTotals};
