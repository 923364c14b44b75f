//! A fairseq dictionary over GPT-2 BPE (`gpt2_bpe/dict.txt`, as the released LongMem
//! checkpoint uses): text is GPT-2 BPE (r50k), then each BPE id is looked up in the
//! dictionary, whose line n (`"<gpt2-bpe-id> <count>"`) is index 4 + n, after fairseq's
//! `<s>` = 0 (begin of text), `<pad>` = 1, `</s>` = 2 (end of text) and `<unk>` = 3. Lines
//! whose symbol is not a BPE id (fairseq's `madeupword0000` padding) take an index but no
//! text.

use super::{Gpt2Bpe, Tokenizer, TokenizerError, END_OF_TEXT};
use std::path::{Path, PathBuf};

/// fairseq's special symbols, in index order.
const SPECIALS: [&str; 4] = ["<s>", "<pad>", "</s>", "<unk>"];
const BOS: u32 = 0;
const EOS: u32 = 2;
const UNK: u32 = 3;
/// GPT-2 BPE ids (r50k_base, end-of-text included).
const BPE_VOCAB: usize = 50257;

pub struct FairseqDict {
    bpe: Gpt2Bpe,
    /// BPE id → dictionary index (`<unk>` where the dictionary lacks it).
    index_of: Vec<u32>,
    /// Dictionary index → BPE id, `None` for specials and padding words.
    bpe_of: Vec<Option<u32>>,
    path: PathBuf,
}

impl FairseqDict {
    /// Reads `dict.txt` at `path`.
    pub fn load(path: &Path) -> Result<Self, TokenizerError> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TokenizerError::Missing(path.into()),
            _ => TokenizerError::Load {
                path: path.into(),
                reason: e.to_string(),
            },
        })?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, TokenizerError> {
        let bad = |line: usize, reason: String| TokenizerError::Load {
            path: path.into(),
            reason: format!("line {line}: {reason} (a fairseq dict.txt has lines \"<symbol> <count>\")"),
        };
        let mut index_of = vec![UNK; BPE_VOCAB];
        let mut bpe_of: Vec<Option<u32>> = vec![None; SPECIALS.len()];
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = line.strip_suffix(" #fairseq:overwrite").unwrap_or(line);
            let Some((symbol, count)) = line.rsplit_once(' ') else {
                return Err(bad(line_no, format!("`{line}` has no count")));
            };
            if count.parse::<u64>().is_err() {
                return Err(bad(line_no, format!("count `{count}` is not a number")));
            }
            let index = bpe_of.len() as u32;
            let id = match symbol.parse::<u32>() {
                Ok(id) if (id as usize) < BPE_VOCAB => Some(id),
                Ok(id) => return Err(bad(line_no, format!("{id} is not a GPT-2 BPE id (0..{BPE_VOCAB})"))),
                Err(_) => None,
            };
            if let Some(id) = id {
                if index_of[id as usize] != UNK {
                    return Err(bad(line_no, format!("BPE id {id} is listed twice")));
                }
                index_of[id as usize] = index;
            }
            bpe_of.push(id);
        }
        Ok(Self {
            bpe: Gpt2Bpe::new(),
            index_of,
            bpe_of,
            path: path.into(),
        })
    }

    /// The `dict.txt` this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Tokenizer for FairseqDict {
    fn vocab_size(&self) -> usize {
        self.bpe_of.len()
    }

    fn end_of_text(&self) -> u32 {
        EOS
    }

    /// `<s>`: LongMem's data and evaluation scripts open every text with it.
    fn begin_of_text(&self) -> &[u32] {
        &[BOS]
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe
            .encode(text)
            .into_iter()
            .map(|id| self.index_of[id as usize])
            .collect()
    }

    fn decode(&self, ids: &[u32]) -> String {
        let mut out = String::new();
        let mut run: Vec<u32> = Vec::new();
        for &index in ids {
            match self.bpe_of.get(index as usize).copied().flatten() {
                Some(id) => run.push(id),
                None => {
                    out.push_str(&self.bpe.decode(&run));
                    run.clear();
                    out.push_str(match index {
                        EOS => END_OF_TEXT,
                        i if (i as usize) < SPECIALS.len() => SPECIALS[i as usize],
                        _ => "<unk>",
                    });
                }
            }
        }
        out.push_str(&self.bpe.decode(&run));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dictionary listing some BPE ids in an order of its own, and a padding word.
    fn dict(ids: &[u32]) -> String {
        let mut text: String = ids.iter().map(|id| format!("{id} {}\n", 1000 - id % 1000)).collect();
        text.push_str("madeupword0000 0\n");
        text
    }

    #[test]
    fn maps_bpe_ids_through_the_dictionary_and_back() {
        let bpe = Gpt2Bpe::new();
        let sample = "Review: a gripping film. Sentiment: positive.";
        let mut ids = bpe.encode(sample);
        ids.sort_unstable();
        ids.dedup();
        ids.reverse();
        let d = FairseqDict::parse(&dict(&ids), Path::new("dict.txt")).unwrap();
        assert_eq!(d.vocab_size(), 4 + ids.len() + 1);
        let encoded = d.encode(sample);
        let expected: Vec<u32> = bpe
            .encode(sample)
            .iter()
            .map(|id| 4 + ids.iter().position(|x| x == id).unwrap() as u32)
            .collect();
        assert_eq!(encoded, expected, "line n is index 4 + n");
        assert_eq!(d.decode(&encoded), sample);
        // A BPE id the dictionary lacks is <unk>; </s> ends a text.
        let unk = d.encode(" zebra");
        assert!(unk.iter().all(|&i| i == UNK), "{unk:?}");
        let mut with_eos = encoded.clone();
        with_eos.push(d.end_of_text());
        assert_eq!(d.decode(&with_eos), format!("{sample}{END_OF_TEXT}"));
        assert_eq!(d.decode(&[0, 3, (4 + ids.len()) as u32]), "<s><unk><unk>");
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        for (text, needle) in [
            ("13 5\n262\n", "line 2"),
            ("13 five\n", "count `five`"),
            ("60000 1\n", "60000 is not a GPT-2 BPE id"),
            ("13 1\n13 2\n", "listed twice"),
        ] {
            let err = FairseqDict::parse(text, Path::new("d/dict.txt"))
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("d/dict.txt") && err.contains(needle), "{text:?}: {err}");
        }
        let err = FairseqDict::load(Path::new("/nonexistent/dict.txt"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/dict.txt"), "{err}");
    }
}
