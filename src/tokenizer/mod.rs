//! Tokenizers behind one trait: byte-level (no files), GPT-2 BPE (r50k) from the data
//! shipped inside the `tiktoken-rs` crate, a Hugging Face `tokenizer.json` through the
//! `tokenizers` crate ([`HfTokenizer`]), and a fairseq `dict.txt` over GPT-2 BPE
//! ([`FairseqDict`], the released LongMem checkpoint's). None downloads anything.

mod bpe;
mod byte;
mod fairseq;
mod hf;

pub use bpe::Gpt2Bpe;
pub use byte::ByteLevel;
pub use fairseq::FairseqDict;
pub use hf::{HfTokenizer, TokenizerError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Text ↔ token ids.
pub trait Tokenizer: Send + Sync {
    /// Number of ids, including the end-of-text id.
    fn vocab_size(&self) -> usize;
    /// Id that separates documents in a stream.
    fn end_of_text(&self) -> u32;
    /// Ids every document starts with (a model's BOS); none for the built-in tokenizers.
    fn begin_of_text(&self) -> &[u32] {
        &[]
    }
    /// Text → ids (ordinary text only: an `<|endoftext|>` in the text is encoded as text).
    fn encode(&self, text: &str) -> Vec<u32>;
    /// Ids → text; byte sequences that are not valid UTF-8 become U+FFFD.
    fn decode(&self, ids: &[u32]) -> String;
}

/// Which tokenizer a run uses: `"byte"`, `"gpt2"`, the path of a fairseq dictionary over
/// GPT-2 BPE (a `.txt` file: `dict.txt`), or the path of a Hugging Face `tokenizer.json`
/// (or of a model directory holding one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenizerKind {
    /// One id per byte (256) plus end-of-text: vocabulary 257.
    Byte,
    /// GPT-2's byte-level BPE, `r50k_base`: vocabulary 50257.
    Gpt2,
    /// A Hugging Face `tokenizer.json`, or a directory holding one.
    Hf(PathBuf),
    /// A fairseq `dict.txt` over GPT-2 BPE.
    FairseqDict(PathBuf),
}

impl TokenizerKind {
    /// The tokenizer; an `Hf` one is read from its files once per process (specs, data
    /// and metadata all ask for it).
    pub fn load(&self) -> Result<Box<dyn Tokenizer>, TokenizerError> {
        Ok(match self {
            TokenizerKind::Byte => Box::new(ByteLevel),
            TokenizerKind::Gpt2 => Box::new(Gpt2Bpe::new()),
            TokenizerKind::Hf(path) => Box::new(hf::shared(path)?),
            TokenizerKind::FairseqDict(path) => Box::new(FairseqDict::load(path)?),
        })
    }

    /// [`TokenizerKind::load`] for a tokenizer already checked to load (specs check an
    /// `Hf` tokenizer's files when they are resolved); panics with the reason otherwise.
    pub fn build(&self) -> Box<dyn Tokenizer> {
        self.load().unwrap_or_else(|e| panic!("{e}"))
    }

    /// An `Hf` path made absolute against `base`.
    pub fn resolved(self, base: &Path) -> Self {
        match self {
            TokenizerKind::Hf(path) if path.is_relative() => TokenizerKind::Hf(base.join(path)),
            TokenizerKind::FairseqDict(path) if path.is_relative() => TokenizerKind::FairseqDict(base.join(path)),
            other => other,
        }
    }
}

impl std::fmt::Display for TokenizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenizerKind::Byte => f.write_str("byte"),
            TokenizerKind::Gpt2 => f.write_str("gpt2"),
            TokenizerKind::Hf(path) | TokenizerKind::FairseqDict(path) => write!(f, "{}", path.display()),
        }
    }
}

impl std::str::FromStr for TokenizerKind {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "byte" => TokenizerKind::Byte,
            "gpt2" => TokenizerKind::Gpt2,
            path if path.ends_with(".txt") => TokenizerKind::FairseqDict(PathBuf::from(path)),
            path => TokenizerKind::Hf(PathBuf::from(path)),
        })
    }
}

impl Serialize for TokenizerKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TokenizerKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(text.parse().expect("infallible"))
    }
}

/// The text the built-in tokenizers decode their end-of-text id to.
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
