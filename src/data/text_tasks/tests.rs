//! Tests of the text tasks: documents checked against their decoded text.
use super::*;
use crate::tokenizer::TokenizerKind;

/// A haystack of made-up prose: sentences of common words, lines, paragraphs.
fn corpus(tokenizer: &dyn Tokenizer) -> TokenizedCorpus {
    let words = [
        "the", "memory", "of", "a", "river", "holds", "old", "stones", "and", "light", "falls", "on", "it",
    ];
    let docs = (0..4u64)
        .map(|d| {
            let mut rng = ChaCha8Rng::seed_from_u64(d);
            let mut text = String::new();
            for s in 0..300 {
                let n = rng.random_range(4..14);
                let sentence: Vec<&str> = (0..n).map(|_| words[rng.random_range(0..words.len())]).collect();
                text += &sentence.join(" ");
                text += if s % 5 == 4 { ".\n" } else { ". " };
            }
            tokenizer.encode(&text)
        })
        .collect();
    TokenizedCorpus {
        ids: (0..4).map(|d| format!("doc{d}")).collect(),
        docs,
        vocab_size: tokenizer.vocab_size() as i64,
    }
}

fn source(task: TextTask, doc_tokens: usize, tokenizer: TokenizerKind) -> InsertSource {
    let config = InsertConfig {
        task,
        doc_tokens,
        spacing: (doc_tokens / 1024).max(64),
        query_share: 0.4,
        hops: 3,
    };
    config.validate().unwrap();
    let tokenizer: Arc<dyn Tokenizer> = Arc::from(tokenizer.build());
    InsertSource::new(config, &corpus(tokenizer.as_ref()), tokenizer, 7).unwrap()
}

/// The text between `prefix` (found once, as the end of `text`) and the next period.
fn tail_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let at = text.rfind(prefix)? + prefix.len();
    Some(&text[at..])
}

/// Exactly one occurrence of `needle` in `text`; the text after it.
fn once<'a>(text: &'a str, needle: &str) -> &'a str {
    let hits: Vec<usize> = text.match_indices(needle).map(|(i, _)| i).collect();
    assert_eq!(hits.len(), 1, "{needle:?} stated {} times", hits.len());
    &text[hits[0] + needle.len()..]
}

/// For every query of `doc`, its evidence found from the text alone: the query's key
/// (or variable, followed back hop by hop to its value), stated exactly once before
/// the query, with the value the query answers; the recorded source tokens are there.
fn check_evidence(source: &InsertSource, doc: &Document) -> usize {
    let tok = source.tokenizer.as_ref();
    let mut queries = 0;
    for run in doc.answers.chunk_by(|a, b| b.position == a.position + 1) {
        let (answer, len) = (&run[0], run.len());
        queries += 1;
        let before = tok.decode(&doc.tokens[..answer.position]);
        let value = tok.decode(&doc.tokens[answer.position..answer.position + len]);
        assert!(
            value.trim().len() == 7 && value.trim().parse::<u32>().is_ok(),
            "value {value:?}"
        );
        let earlier = tok.decode(&doc.tokens[..answer.source]);
        match source.config.task {
            TextTask::Needle => {
                let key = tail_after(&before, "The special magic number for ").unwrap();
                let key = key.strip_suffix(" mentioned in the provided text is:").unwrap();
                let stated = format!("One of the special magic numbers for {key} is:");
                assert!(once(&before, &stated).starts_with(&value), "{key}: {value}");
                assert!(
                    earlier.ends_with(&stated),
                    "the source tokens follow the needle of {key}"
                );
            }
            TextTask::Variables => {
                let var = tail_after(&before, "Answer: VAR ").unwrap().strip_suffix(" =").unwrap();
                let mut name = var.to_string();
                for hop in 1.. {
                    let rest = once(&before, &format!("VAR {name} = "));
                    match rest.strip_prefix("VAR ") {
                        Some(r) => name = r[..5].to_string(),
                        None => {
                            assert_eq!(hop, source.config.hops, "every hop of {var}");
                            assert!(rest.starts_with(value.trim()), "{var}: {value}");
                            assert!(earlier.ends_with(&format!("VAR {name} =")), "source of {var}");
                            break;
                        }
                    }
                }
            }
        }
        let at = answer.source;
        assert_eq!(
            &doc.tokens[at..at + len],
            &doc.tokens[answer.position..answer.position + len]
        );
    }
    queries
}

#[test]
fn documents_are_deterministic_and_their_evidence_is_where_the_text_states_it() {
    for tokenizer in [TokenizerKind::Gpt2, TokenizerKind::Byte] {
        for task in [TextTask::Needle, TextTask::Variables] {
            let s = source(task, 4096, tokenizer.clone());
            let doc = s.document(0, 3);
            assert_eq!(doc, s.document(0, 3), "deterministic");
            assert_ne!(doc.tokens, s.document(1, 3).tokens, "another row");
            assert_eq!(doc.tokens.len(), 4096);
            assert!(doc.tokens.iter().all(|&t| (t as i64) < s.vocab_size()));
            let queries = check_evidence(&s, &doc);
            assert!(queries >= 3, "{task:?} with {tokenizer}: {queries} queries");
        }
    }
}

#[test]
fn long_documents_have_answers_at_every_distance() {
    let s = source(TextTask::Needle, 131_072, TokenizerKind::Gpt2);
    let doc = s.document(0, 0);
    assert_eq!(doc.tokens.len(), 131_072);
    let mut bands = [0usize; 9];
    for a in &doc.answers {
        let d = a.position - a.source;
        bands[((d as f64).log(4.0).floor() as usize).min(8)] += 1;
    }
    // Factor-4 bands from 64 (one sentence spacing of 128 tokens, roughly) to 65,536
    // tokens back each hold answers, and some lie beyond.
    assert!(bands[3..9].iter().all(|&n| n > 0), "{bands:?}");
    check_evidence(&s, &doc);
}

#[test]
fn bad_settings_are_named() {
    let ok = InsertConfig {
        task: TextTask::Needle,
        doc_tokens: 1024,
        spacing: 64,
        query_share: 0.4,
        hops: 2,
    };
    assert!(ok.validate().is_ok());
    for (bad, key) in [
        (
            InsertConfig {
                spacing: 1,
                ..ok.clone()
            },
            "spacing",
        ),
        (
            InsertConfig {
                query_share: 1.0,
                ..ok.clone()
            },
            "query_share",
        ),
        (InsertConfig { hops: 0, ..ok.clone() }, "hops"),
        (
            InsertConfig {
                doc_tokens: 0,
                ..ok.clone()
            },
            "doc_tokens",
        ),
        (
            InsertConfig {
                doc_tokens: 1 << 20,
                spacing: 16,
                ..ok.clone()
            },
            "spacing",
        ),
    ] {
        assert_eq!(bad.validate().unwrap_err().key, key);
    }
}
