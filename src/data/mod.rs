//! Data: built-in generators that need no files, loaders for local corpora,
//! and the streaming of documents into batches of segments in Transformer-XL order.

pub mod cargo_corpus;
pub mod chapterbreak;
pub mod classify;
pub mod loaders;
pub mod needle;
pub mod parquet;
pub mod recall;
pub mod stream;
pub mod text_tasks;
pub mod tokenized;
pub mod variables;

pub use needle::{NeedleConfig, NeedleOrder, NeedleSource};
pub use recall::{RecallConfig, RecallSource};
pub use stream::{Answer, Batch, Document, DocumentSource, SegmentStream, StreamState};
pub use variables::{VariablesConfig, VariablesSource};

/// A generator's document 3 of row 0, checked for what every built-in generator promises:
/// deterministic, different for another row or index, `tokens` long, ids inside the
/// vocabulary (never padding), more than `min_answers` answers, each the same token as its
/// evidence.
#[cfg(test)]
pub(crate) fn checked_document(source: &impl DocumentSource, tokens: usize, min_answers: usize) -> Document {
    let doc = source.document(0, 3);
    assert_eq!(doc, source.document(0, 3), "deterministic");
    assert_ne!(doc.tokens, source.document(1, 3).tokens, "another row");
    assert_ne!(doc.tokens, source.document(0, 4).tokens, "another document");
    assert_eq!(doc.tokens.len(), tokens);
    let vocab = source.vocab_size() as u32;
    assert!(doc.tokens.iter().all(|&t| t > 0 && t < vocab));
    assert!(doc.answers.len() > min_answers, "{} answers", doc.answers.len());
    for answer in &doc.answers {
        assert_eq!(doc.tokens[answer.source], doc.tokens[answer.position]);
    }
    doc
}
