//! Byte-level tokenizer: id = byte value, plus one end-of-text id (256).

use super::{Tokenizer, END_OF_TEXT};

#[derive(Debug, Clone, Copy, Default)]
pub struct ByteLevel;

impl Tokenizer for ByteLevel {
    fn vocab_size(&self) -> usize {
        257
    }

    fn end_of_text(&self) -> u32 {
        256
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }

    fn decode(&self, ids: &[u32]) -> String {
        let mut out = String::new();
        let mut bytes = Vec::new();
        for &id in ids {
            match u8::try_from(id) {
                Ok(byte) => bytes.push(byte),
                Err(_) => {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                    bytes.clear();
                    out.push_str(END_OF_TEXT);
                }
            }
        }
        out.push_str(&String::from_utf8_lossy(&bytes));
        out
    }
}
