//! A Hugging Face `tokenizer.json`, through the `tokenizers` crate (the maintained HF
//! implementation), with the model's special tokens as its files say:
//!
//! - end of text (the id that separates documents): `eos_token` of `tokenizer_config.json`,
//!   else `eos_token_id` of `generation_config.json` (the first, if a list), else a token
//!   spelt `<|endoftext|>`, `</s>` or `<|end_of_text|>`;
//! - beginning of text: the ids `tokenizer.json`'s post-processor puts before a text (as
//!   `encode(text, add_special_tokens=True)` does; Llama's `<s>`), or, where it puts none,
//!   `bos_token` when `tokenizer_config.json` sets `add_bos_token`. Every document of a
//!   corpus starts with them.
//!
//! Ordinary text is encoded without special tokens.

use super::Tokenizer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("no tokenizer at {0}: point at a tokenizer.json, a model directory that holds one, or a fairseq dict.txt")]
    Missing(PathBuf),
    #[error("cannot load the tokenizer {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error(
        "{path}: no end-of-text token found (eos_token in tokenizer_config.json, eos_token_id in \
         generation_config.json, or a <|endoftext|> / </s> token); add one of them"
    )]
    NoEndOfText { path: PathBuf },
}

pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    /// One past the largest id (added tokens included), computed once.
    vocab_size: usize,
    end_of_text: u32,
    begin_of_text: Vec<u32>,
    path: PathBuf,
}

impl HfTokenizer {
    /// The tokenizer at `path`: a `tokenizer.json`, or a directory holding one (and
    /// possibly `tokenizer_config.json` / `generation_config.json` beside it).
    pub fn load(path: &Path) -> Result<Self, TokenizerError> {
        let (file, dir) = if path.is_dir() {
            (path.join("tokenizer.json"), path.to_path_buf())
        } else {
            (
                path.to_path_buf(),
                path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            )
        };
        if !file.is_file() {
            return Err(TokenizerError::Missing(path.to_path_buf()));
        }
        let load_error = |reason: String| TokenizerError::Load {
            path: file.clone(),
            reason,
        };
        let inner = tokenizers::Tokenizer::from_file(&file).map_err(|e| load_error(e.to_string()))?;
        let json = |name: &str| -> Option<serde_json::Value> {
            let text = std::fs::read_to_string(dir.join(name)).ok()?;
            serde_json::from_str(&text).ok()
        };
        let (config, generation) = (json("tokenizer_config.json"), json("generation_config.json"));
        // A special token is a string or an object {"content": ...}.
        let token = |value: Option<&serde_json::Value>| -> Option<u32> {
            let value = value?;
            let text = value.as_str().or_else(|| value.get("content")?.as_str())?;
            inner.token_to_id(text)
        };
        let id_of = |value: Option<&serde_json::Value>| -> Option<u32> {
            let value = value?;
            value
                .as_u64()
                .or_else(|| value.as_array()?.first()?.as_u64())
                .map(|id| id as u32)
        };
        let end_of_text = token(config.as_ref().and_then(|c| c.get("eos_token")))
            .or_else(|| id_of(generation.as_ref().and_then(|g| g.get("eos_token_id"))))
            .or_else(|| {
                ["<|endoftext|>", "</s>", "<|end_of_text|>"]
                    .iter()
                    .find_map(|t| inner.token_to_id(t))
            })
            .ok_or_else(|| TokenizerError::NoEndOfText { path: file.clone() })?;
        let plain = inner.encode("a", false).map_err(|e| load_error(e.to_string()))?;
        let special = inner.encode("a", true).map_err(|e| load_error(e.to_string()))?;
        let added = special.get_ids().len().saturating_sub(plain.get_ids().len());
        let prefix_len = (0..=added)
            .rev()
            .find(|&n| special.get_ids()[n..].starts_with(plain.get_ids()))
            .unwrap_or(0);
        let mut begin_of_text = special.get_ids()[..prefix_len].to_vec();
        let add_bos = config
            .as_ref()
            .and_then(|c| c.get("add_bos_token"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if begin_of_text.is_empty() && add_bos {
            begin_of_text.extend(token(config.as_ref().and_then(|c| c.get("bos_token"))));
        }
        let largest = inner
            .get_vocab(true)
            .into_values()
            .max()
            .map_or(0, |id| id as usize + 1);
        Ok(Self {
            vocab_size: largest.max(inner.get_vocab_size(true)),
            inner,
            end_of_text,
            begin_of_text,
            path: file,
        })
    }

    /// The `tokenizer.json` this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Tokenizer for HfTokenizer {
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn end_of_text(&self) -> u32 {
        self.end_of_text
    }

    fn begin_of_text(&self) -> &[u32] {
        &self.begin_of_text
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_else(|e| panic!("{}: cannot encode text: {e}", self.path.display()))
    }

    fn decode(&self, ids: &[u32]) -> String {
        self.inner
            .decode(ids, false)
            .unwrap_or_else(|e| panic!("{}: cannot decode ids: {e}", self.path.display()))
    }
}

/// The tokenizer at `path`, loaded once per process and shared.
pub(super) fn shared(path: &Path) -> Result<Arc<HfTokenizer>, TokenizerError> {
    static LOADED: LazyLock<Mutex<HashMap<PathBuf, Arc<HfTokenizer>>>> = LazyLock::new(Default::default);
    let mut loaded = LOADED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(tokenizer) = loaded.get(path) {
        return Ok(Arc::clone(tokenizer));
    }
    let tokenizer = Arc::new(HfTokenizer::load(path)?);
    loaded.insert(path.to_path_buf(), Arc::clone(&tokenizer));
    Ok(tokenizer)
}

impl Tokenizer for Arc<HfTokenizer> {
    fn vocab_size(&self) -> usize {
        self.as_ref().vocab_size()
    }

    fn end_of_text(&self) -> u32 {
        self.as_ref().end_of_text()
    }

    fn begin_of_text(&self) -> &[u32] {
        self.as_ref().begin_of_text()
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        self.as_ref().encode(text)
    }

    fn decode(&self, ids: &[u32]) -> String {
        self.as_ref().decode(ids)
    }
}
