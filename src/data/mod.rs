//! Data (DESIGN.md §4): built-in generators that need no files, and the streaming of
//! documents into batches of segments in Transformer-XL order.

pub mod recall;
pub mod stream;

pub use recall::{RecallConfig, RecallSource};
pub use stream::{Answer, Batch, Document, DocumentSource, SegmentStream, StreamState};
