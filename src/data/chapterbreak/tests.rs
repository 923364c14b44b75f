//! Tests of the suffix examples: built-in invariants on generated documents, and the
//! ChapterBreak JSON reader on small files written here.
use super::*;
use crate::data::recall::RecallConfig;
use crate::data::stream::Answer;
use crate::tokenizer::ByteLevel;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn recall_doc(seed: u64) -> Document {
    let config: RecallConfig = toml::from_str("doc_tokens = 1024").expect("valid recall config");
    config.generate(&mut ChaCha8Rng::seed_from_u64(seed))
}

#[test]
fn builtin_examples_hold_their_invariants() {
    let (window, n) = (64, 4);
    let mut total = 0;
    for seed in 0..40 {
        let doc = recall_doc(seed);
        let examples = builtin_examples(&doc, window, n, &mut ChaCha8Rng::seed_from_u64(seed));
        total += examples.len();
        for ex in &examples {
            let len = ex.candidates[0].len();
            let local = window + 1 - len;
            let start = ex.context.len();
            assert_eq!(
                ex.context,
                doc.tokens[..start],
                "the context is the document before the span"
            );
            assert_eq!(ex.candidates.len(), n);
            assert_eq!(
                ex.candidates[ex.gold],
                doc.tokens[start..start + len],
                "gold is the true continuation"
            );
            assert!(
                ex.distance.expect("built in") > local,
                "the evidence lies beyond the local part"
            );
            let (far, recent) = ex.context.split_at(start - local);
            let seen = occurrences(&ex.candidates[ex.gold], &ex.context);
            for (i, c) in ex.candidates.iter().enumerate() {
                assert_eq!(
                    occurrences(c, &ex.context),
                    seen,
                    "candidate {i} occurs as often as the truth"
                );
                assert_eq!(c.len(), len, "candidates share one length");
                assert!(!occurs(c, recent), "candidate {i} occurs in the local part");
                assert!(
                    occurs(c, far),
                    "candidate {i} has its evidence wholly beyond the window"
                );
                assert!(ex.candidates[..i].iter().all(|o| o != c), "candidates are distinct");
            }
        }
        let golds: std::collections::BTreeSet<usize> = examples.iter().map(|e| e.gold).collect();
        assert!(
            examples.len() < 8 || golds.len() > 1,
            "the true candidate's place varies"
        );
    }
    assert!(total >= 15, "40 recall documents of 1024 tokens give examples: {total}");
}

#[test]
fn builtin_examples_need_evidence_beyond_the_window() {
    // Three facts' values at 0..3, 10..13, 20..23, queried at 150, 160, 170.
    let mut tokens: Vec<u32> = (100..300).collect();
    let mut answers = Vec::new();
    for (f, q) in [(0, 150), (10, 160), (20, 170)] {
        for j in 0..3 {
            tokens[q + j] = tokens[f + j];
            answers.push(Answer {
                position: q + j,
                source: f + j,
            });
        }
    }
    let doc = Document { tokens, answers };
    let rng = &mut ChaCha8Rng::seed_from_u64(0);
    let starts = |examples: Vec<SuffixExample>| examples.iter().map(|e| e.context.len()).collect::<Vec<_>>();
    // A value already queried occurs twice in the context, the truth once: not drawn. So
    // the query at 160 has one distractor (170's values) and the one at 170 none.
    assert_eq!(starts(builtin_examples(&doc, 16, 2, rng)), [150, 160]);
    assert_eq!(starts(builtin_examples(&doc, 16, 3, rng)), [150]);
    assert!(builtin_examples(&doc, 16, 4, rng).is_empty(), "too few distractors");
    // The local part keeps window − 2 tokens before a 3-token span: at 149 each fact
    // ends just before it, at 150 each fact's last value is inside it.
    assert_eq!(starts(builtin_examples(&doc, 149, 1, rng)), [150, 160, 170]);
    assert!(
        builtin_examples(&doc, 150, 1, rng).is_empty(),
        "evidence ends within the window"
    );
}

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("longmem-chapterbreak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path
}

fn options(sources: Option<&[String]>) -> ReadOptions<'_> {
    ReadOptions {
        sources,
        examples: None,
        context_tokens: Some(5),
        candidate_tokens: 3,
    }
}

const FILE: &str = r#"{
  "pg19": {"b2": [{"ctx": "zzzzz later", "pos": "yes!", "negs": ["no", "never"]}],
           "b1": [{"ctx": "abcdefgh", "pos": "xyz1", "negs": ["qq"], "extra": 1}]},
  "ao3": {"c": [{"ctx": "hi", "pos": "p", "negs": ["n"]}]}
}"#;

#[test]
fn reads_chapterbreak_json_in_sorted_order_gold_first() {
    let path = write("ok.json", FILE);
    let sources = ["pg19".to_string()];
    let examples = read_chapterbreak(&path, &ByteLevel, options(Some(&sources))).expect("reads");
    assert_eq!(examples.len(), 2);
    let enc = |s: &str| ByteLevel.encode(s);
    assert_eq!(
        examples[0].context,
        enc("defgh"),
        "book b1 first, context cut to its last 5 tokens"
    );
    assert_eq!(
        examples[0].candidates,
        vec![enc("xyz"), enc("qq")],
        "pos first, cut to 3 tokens"
    );
    assert_eq!((examples[0].gold, examples[0].source.as_str()), (0, "pg19"));
    assert_eq!(examples[1].candidates.len(), 3);
    let all = read_chapterbreak(&path, &ByteLevel, options(None)).expect("reads");
    let names: Vec<&str> = all.iter().map(|e| e.source.as_str()).collect();
    assert_eq!(names, ["ao3", "pg19", "pg19"], "every source, sorted");
    let first = ReadOptions {
        examples: Some(1),
        ..options(None)
    };
    assert_eq!(
        read_chapterbreak(&path, &ByteLevel, first).expect("reads").len(),
        2,
        "one per source"
    );
}

#[test]
fn chapterbreak_errors_name_the_problem() {
    let path = write("ok2.json", FILE);
    let missing = ["books3".to_string()];
    let err = read_chapterbreak(&path, &ByteLevel, options(Some(&missing)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("books3") && err.contains("chapterbreak.sources") && err.contains("ao3"),
        "{err}"
    );

    let empty = write(
        "empty.json",
        r#"{"pg19": {"b": [{"ctx": "a", "pos": "b", "negs": []}]}}"#,
    );
    let err = read_chapterbreak(&empty, &ByteLevel, options(None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("negs") && err.contains("book b"), "{err}");

    let bad = write("bad.json", r#"{"pg19": {"b": [{"ctx": "a"}]}}"#);
    let err = read_chapterbreak(&bad, &ByteLevel, options(None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.json") && err.contains("not ChapterBreak JSON") && err.contains("pos"),
        "{err}"
    );

    let err = read_chapterbreak(&bad.with_file_name("absent.json"), &ByteLevel, options(None)).unwrap_err();
    assert!(err.to_string().contains("absent.json"), "{err}");
}
