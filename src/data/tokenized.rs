//! Tokenised corpora: documents tokenised in parallel (rayon) and cached on disk, keyed by a
//! BLAKE3 hash of the tokenizer and every document's id and text, so a corpus is tokenised
//! once per machine. A cache file is written atomically; one that fails to parse is
//! re-tokenised (it holds the same tokens, so nothing measured changes).

use super::loaders::{DataError, TextDocument};
use super::stream::{Document, DocumentSource};
use crate::fsutil::write_atomic;
use crate::tokenizer::TokenizerKind;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"LMTOKv1\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedCorpus {
    pub ids: Vec<String>,
    pub docs: Vec<Vec<u32>>,
    pub vocab_size: i64,
}

impl TokenizedCorpus {
    pub fn total_tokens(&self) -> usize {
        self.docs.iter().map(Vec::len).sum()
    }
}

/// The cache key of `docs` under `tokenizer`.
pub fn cache_key(docs: &[TextDocument], tokenizer: &TokenizerKind) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(format!("tokenizer={tokenizer:?}\n").as_bytes());
    if let TokenizerKind::Hf(path) = tokenizer {
        // The tokenizer's files, not only their path: editing them invalidates the cache.
        let dir = if path.is_dir() {
            path.clone()
        } else {
            path.parent().unwrap_or(path).to_path_buf()
        };
        for name in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
            hasher.update(&std::fs::read(dir.join(name)).unwrap_or_default());
        }
    }
    if let TokenizerKind::FairseqDict(path) = tokenizer {
        hasher.update(&std::fs::read(path).unwrap_or_default());
    }
    for doc in docs {
        hasher.update(&(doc.id.len() as u64).to_le_bytes());
        hasher.update(doc.id.as_bytes());
        hasher.update(&(doc.text.len() as u64).to_le_bytes());
        hasher.update(doc.text.as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}

/// Tokenises `docs` with `tokenizer`, reading and writing the cache under `cache_dir`.
pub fn tokenize_cached(
    docs: &[TextDocument],
    tokenizer: &TokenizerKind,
    cache_dir: &Path,
) -> Result<TokenizedCorpus, DataError> {
    let tok = tokenizer.build();
    let vocab_size = tok.vocab_size() as i64;
    let path = cache_dir.join(format!("{}.tokens", cache_key(docs, tokenizer)));
    if let Ok(bytes) = std::fs::read(&path) {
        match decode(&bytes) {
            Some((ids, tokens)) if ids.len() == docs.len() => {
                tracing::debug!(cache = %path.display(), "tokens from cache");
                return Ok(TokenizedCorpus {
                    ids,
                    docs: tokens,
                    vocab_size,
                });
            }
            _ => tracing::warn!(cache = %path.display(), "unreadable token cache; tokenising again"),
        }
    }
    // Each document starts with the tokenizer's beginning-of-text ids (none but for a
    // model's own tokenizer that adds a BOS).
    let tokens: Vec<Vec<u32>> = docs
        .par_iter()
        .map(|d| [tok.begin_of_text(), &tok.encode(&d.text)].concat())
        .collect();
    let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
    std::fs::create_dir_all(cache_dir).map_err(|source| DataError::Io {
        path: cache_dir.to_path_buf(),
        source,
    })?;
    write_atomic(&path, &encode(&ids, &tokens)).map_err(|source| DataError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(TokenizedCorpus {
        ids,
        docs: tokens,
        vocab_size,
    })
}

/// Where token caches live: `$LONGMEM_CACHE/tokens`, else `~/.cache/longmem-bench/tokens`.
pub fn default_cache_dir() -> PathBuf {
    let root = std::env::var_os("LONGMEM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/longmem-bench"));
    root.join("tokens")
}

fn encode(ids: &[String], docs: &[Vec<u32>]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend((docs.len() as u64).to_le_bytes());
    for (id, tokens) in ids.iter().zip(docs) {
        out.extend((id.len() as u64).to_le_bytes());
        out.extend(id.as_bytes());
        out.extend((tokens.len() as u64).to_le_bytes());
        for t in tokens {
            out.extend(t.to_le_bytes());
        }
    }
    out
}

/// Reads little-endian fields off a byte slice; `None` past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

fn decode(bytes: &[u8]) -> Option<(Vec<String>, Vec<Vec<u32>>)> {
    let mut cursor = Cursor {
        bytes: bytes.strip_prefix(MAGIC)?,
    };
    let n = cursor.u64()? as usize;
    let (mut ids, mut docs) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let len = cursor.u64()? as usize;
        ids.push(String::from_utf8(cursor.take(len)?.to_vec()).ok()?);
        let count = cursor.u64()? as usize;
        let raw = cursor.take(count.checked_mul(4)?)?;
        docs.push(
            raw.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
    }
    cursor.bytes.is_empty().then_some((ids, docs))
}

/// A tokenised corpus as a document source: row r's i-th document is document
/// `i·rows + r`, so rows read disjoint documents; for training the corpus cycles (mod n),
/// for evaluation (`cycle = false`) every document is read exactly once.
#[derive(Debug, Clone)]
pub struct CorpusSource {
    pub corpus: Arc<TokenizedCorpus>,
    pub rows: u64,
    pub cycle: bool,
}

impl CorpusSource {
    /// The same source over the corpus's first `n` documents only (all of them when it has
    /// fewer): without cycling, a stream then reads exactly those, each once.
    pub fn first_documents(self, n: u64) -> Self {
        let n = (n as usize).min(self.corpus.docs.len());
        let corpus = TokenizedCorpus {
            ids: self.corpus.ids[..n].to_vec(),
            docs: self.corpus.docs[..n].to_vec(),
            vocab_size: self.corpus.vocab_size,
        };
        Self {
            corpus: Arc::new(corpus),
            ..self
        }
    }
}

impl DocumentSource for CorpusSource {
    fn document(&self, row: u64, index: u64) -> Document {
        let n = self.corpus.docs.len() as u64;
        let i = ((index * self.rows + row) % n) as usize;
        Document {
            tokens: self.corpus.docs[i].clone(),
            answers: Vec::new(),
        }
    }

    fn vocab_size(&self) -> i64 {
        self.corpus.vocab_size
    }

    fn exists(&self, row: u64, index: u64) -> bool {
        self.cycle || index * self.rows + row < self.corpus.docs.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<TextDocument> {
        (0..20)
            .map(|i| TextDocument {
                id: format!("doc{i}"),
                text: format!("Document {i}: {}", "memory matters. ".repeat(i)),
            })
            .collect()
    }

    #[test]
    fn tokens_equal_the_tokenizer_and_come_back_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let docs = docs();
        let first = tokenize_cached(&docs, &TokenizerKind::Gpt2, dir.path()).unwrap();
        let tok = TokenizerKind::Gpt2.build();
        for (d, t) in docs.iter().zip(&first.docs) {
            assert_eq!(&tok.encode(&d.text), t);
        }
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
        let second = tokenize_cached(&docs, &TokenizerKind::Gpt2, dir.path()).unwrap();
        assert_eq!(first, second);
        // Another tokenizer or other text is another cache entry.
        let bytes = tokenize_cached(&docs, &TokenizerKind::Byte, dir.path()).unwrap();
        assert_eq!(bytes.docs[3].len(), docs[3].text.len());
        assert_ne!(
            cache_key(&docs, &TokenizerKind::Gpt2),
            cache_key(&docs[1..], &TokenizerKind::Gpt2)
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_corrupt_cache_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let docs = docs();
        let good = tokenize_cached(&docs, &TokenizerKind::Gpt2, dir.path()).unwrap();
        let path = dir
            .path()
            .join(format!("{}.tokens", cache_key(&docs, &TokenizerKind::Gpt2)));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(tokenize_cached(&docs, &TokenizerKind::Gpt2, dir.path()).unwrap(), good);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn rows_read_disjoint_documents_and_the_corpus_cycles() {
        let corpus = TokenizedCorpus {
            ids: vec!["a".into(), "b".into(), "c".into()],
            docs: vec![vec![1], vec![2], vec![3]],
            vocab_size: 10,
        };
        let source = CorpusSource {
            corpus: Arc::new(corpus),
            rows: 2,
            cycle: true,
        };
        let first: Vec<u32> = (0..2).map(|r| source.document(r, 0).tokens[0]).collect();
        assert_eq!(first, vec![1, 2]);
        assert_eq!(source.document(0, 1).tokens, vec![3]);
        assert_eq!(source.document(1, 1).tokens, vec![1]);
        assert!(source.exists(1, 1));
        let once = CorpusSource { cycle: false, ..source };
        assert!(once.exists(0, 1) && !once.exists(1, 1));
        let first = once.clone().first_documents(2);
        assert_eq!(first.corpus.ids, vec!["a", "b"]);
        assert!(first.exists(1, 0) && !first.exists(0, 1));
        assert_eq!(once.clone().first_documents(9).corpus, once.corpus);
    }
}
