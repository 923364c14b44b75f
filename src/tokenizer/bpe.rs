//! GPT-2 byte-level BPE (`r50k_base`), from the merges shipped inside `tiktoken-rs`.

use super::Tokenizer;
use tiktoken_rs::CoreBPE;

pub struct Gpt2Bpe {
    bpe: &'static CoreBPE,
}

impl Gpt2Bpe {
    pub fn new() -> Self {
        Self {
            bpe: tiktoken_rs::r50k_base_singleton(),
        }
    }
}

impl Default for Gpt2Bpe {
    fn default() -> Self {
        Self::new()
    }
}

impl Tokenizer for Gpt2Bpe {
    fn vocab_size(&self) -> usize {
        50257
    }

    fn end_of_text(&self) -> u32 {
        50256
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    fn decode(&self, ids: &[u32]) -> String {
        let bytes = self
            .bpe
            .decode_bytes(ids)
            .expect("ids come from this tokenizer's vocabulary (< 50257)");
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
