//! Tokenizers behind one trait: byte-level (no files) and GPT-2 BPE (r50k)
//! from the data shipped inside the `tiktoken-rs` crate. Neither downloads anything.

mod bpe;
mod byte;

pub use bpe::Gpt2Bpe;
pub use byte::ByteLevel;
use serde::{Deserialize, Serialize};

/// Text ↔ token ids.
pub trait Tokenizer: Send + Sync {
    /// Number of ids, including the end-of-text id.
    fn vocab_size(&self) -> usize;
    /// Id that separates documents in a stream.
    fn end_of_text(&self) -> u32;
    /// Text → ids (ordinary text only: an `<|endoftext|>` in the text is encoded as text).
    fn encode(&self, text: &str) -> Vec<u32>;
    /// Ids → text; byte sequences that are not valid UTF-8 become U+FFFD.
    fn decode(&self, ids: &[u32]) -> String;
}

/// Which tokenizer a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// One id per byte (256) plus end-of-text: vocabulary 257.
    Byte,
    /// GPT-2's byte-level BPE, `r50k_base`: vocabulary 50257.
    Gpt2,
}

impl TokenizerKind {
    pub fn build(self) -> Box<dyn Tokenizer> {
        match self {
            TokenizerKind::Byte => Box::new(ByteLevel),
            TokenizerKind::Gpt2 => Box::new(Gpt2Bpe::new()),
        }
    }
}

/// The text both tokenizers decode their end-of-text id to.
pub const END_OF_TEXT: &str = "<|endoftext|>";

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &[&str] = &[
        "",
        "Review: a gripping, tender film. Sentiment: positive. ",
        "fn main() {\n    println!(\"héllo, wörld — ✓\");\n}\n",
        "  leading and trailing spaces \t\n",
        "日本語のテキストと emoji 🎉🚀",
    ];

    #[test]
    fn both_tokenizers_round_trip() {
        for kind in [TokenizerKind::Byte, TokenizerKind::Gpt2] {
            let tok = kind.build();
            for text in SAMPLES {
                let ids = tok.encode(text);
                assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
                assert_eq!(tok.decode(&ids), *text, "{kind:?} round trip");
            }
        }
    }

    #[test]
    fn end_of_text_is_the_last_id_and_decodes_to_its_marker() {
        for kind in [TokenizerKind::Byte, TokenizerKind::Gpt2] {
            let tok = kind.build();
            assert_eq!(tok.end_of_text() as usize, tok.vocab_size() - 1);
            let mut ids = tok.encode("a");
            ids.push(tok.end_of_text());
            ids.extend(tok.encode("b"));
            assert_eq!(tok.decode(&ids), format!("a{END_OF_TEXT}b"));
        }
    }

    #[test]
    fn gpt2_bpe_matches_known_ids() {
        // Ids of GPT-2's tokenizer for "Hello world" (HF `GPT2TokenizerFast`).
        let tok = TokenizerKind::Gpt2.build();
        assert_eq!(tok.encode("Hello world"), vec![15496, 995]);
        assert_eq!(tok.vocab_size(), 50257);
        // BPE compresses English text well below one id per byte.
        let text = SAMPLES[1];
        assert!(tok.encode(text).len() * 3 < text.len());
    }

    #[test]
    fn byte_level_is_one_id_per_byte() {
        let tok = TokenizerKind::Byte.build();
        assert_eq!(tok.encode("é!"), vec![0xC3, 0xA9, b'!' as u32]);
        assert_eq!(tok.vocab_size(), 257);
    }
}
