//! Data: built-in generators that need no files, loaders for local corpora,
//! and the streaming of documents into batches of segments in Transformer-XL order.

pub mod cargo_corpus;
pub mod classify;
pub mod loaders;
pub mod needle;
pub mod recall;
pub mod stream;
pub mod tokenized;
pub mod variables;

pub use needle::{NeedleConfig, NeedleOrder, NeedleSource};
pub use recall::{RecallConfig, RecallSource};
pub use stream::{Answer, Batch, Document, DocumentSource, SegmentStream, StreamState};
pub use variables::{VariablesConfig, VariablesSource};
