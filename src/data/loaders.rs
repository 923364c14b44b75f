//! Loaders for the corpora users hold locally: a directory of plain-text
//! documents (one per file, PG-19 style), JSONL with a text field (Parquet shards: see
//! parquet.rs), and the in-context learning tasks' usual files. Every error names the file, and the line where there is one.

use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One document of a text corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextDocument {
    /// Where it came from: a path relative to the corpus root, or `file:line`.
    pub id: String,
    pub text: String,
}

/// One labelled example of a classification task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub text: String,
    pub label: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no documents (looked for files matching `{glob}`); check the path and the glob")]
    EmptyCorpus { path: PathBuf, glob: String },
    #[error("{path}: no {what} in the file")]
    Empty { path: PathBuf, what: &'static str },
    #[error("{path}:{line}: {problem}")]
    Malformed {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{path}: not a Parquet file polars can read ({problem})")]
    Parquet { path: PathBuf, problem: String },
    #[error("{path}: no column `{column}` (it has: {have}); set data.{key} to one of them")]
    NoColumn {
        path: PathBuf,
        column: String,
        key: &'static str,
        have: String,
    },
    #[error("{path}: column `{column}` holds {dtype}, not text; set data.text_column to a string column")]
    NotText {
        path: PathBuf,
        column: String,
        dtype: String,
    },
    #[error("invalid glob `{glob}`: {problem}")]
    Glob { glob: String, problem: String },
    #[error("{path} is not valid UTF-8 text ({problem}); convert it or exclude it with the glob")]
    NotUtf8 { path: PathBuf, problem: String },
    #[error("{path}: none of its {documents} documents is {limits}; lower data.min_bytes or raise data.max_bytes")]
    NoneWithinLengths {
        path: PathBuf,
        documents: usize,
        limits: String,
    },
}

/// Length limits on a corpus's documents, in bytes of text: documents shorter than
/// `min_bytes` or longer than `max_bytes` are left out. The default keeps every document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LengthFilter {
    pub min_bytes: usize,
    pub max_bytes: Option<usize>,
}

/// Where a document's length puts it against a [`LengthFilter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Within,
    TooShort,
    TooLong,
}

/// The documents a [`LengthFilter`] kept, and how many it left out on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithinLengths {
    pub documents: Vec<TextDocument>,
    pub too_short: usize,
    pub too_long: usize,
}

impl LengthFilter {
    /// Whether a document of `bytes` bytes is kept.
    pub fn judge(&self, bytes: usize) -> Length {
        if bytes < self.min_bytes {
            Length::TooShort
        } else if self.max_bytes.is_some_and(|max| bytes > max) {
            Length::TooLong
        } else {
            Length::Within
        }
    }

    /// The documents within the limits (text length in bytes), in their order.
    pub fn apply(&self, docs: Vec<TextDocument>) -> WithinLengths {
        let mut out = WithinLengths {
            documents: Vec::with_capacity(docs.len()),
            too_short: 0,
            too_long: 0,
        };
        for doc in docs {
            match self.judge(doc.text.len()) {
                Length::Within => out.documents.push(doc),
                Length::TooShort => out.too_short += 1,
                Length::TooLong => out.too_long += 1,
            }
        }
        out
    }

    /// [`LengthFilter::apply`] on the documents read from `origin`, logging how many it
    /// left out; an error when it leaves none.
    pub fn keep(&self, docs: Vec<TextDocument>, origin: &Path) -> Result<Vec<TextDocument>, DataError> {
        if *self == LengthFilter::default() {
            return Ok(docs);
        }
        let read = docs.len();
        let kept = self.apply(docs);
        tracing::info!(
            corpus = %origin.display(),
            documents = kept.documents.len(),
            too_short = kept.too_short,
            too_long = kept.too_long,
            "length filter"
        );
        if kept.documents.is_empty() {
            return Err(DataError::NoneWithinLengths {
                path: origin.to_path_buf(),
                documents: read,
                limits: self.to_string(),
            });
        }
        Ok(kept.documents)
    }
}

impl std::fmt::Display for LengthFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.max_bytes {
            Some(max) => write!(f, "within {} to {max} bytes", self.min_bytes),
            None => write!(f, "at least {} bytes", self.min_bytes),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    String::from_utf8(bytes).map_err(|e| DataError::NotUtf8 {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })
}

/// Every file below `root` whose path relative to `root` matches `glob` (e.g. `**/*.txt`),
/// in sorted path order, with that relative path.
pub(super) fn matching_files(root: &Path, glob: &str) -> Result<Vec<(PathBuf, String)>, DataError> {
    let matcher: GlobMatcher = Glob::new(glob)
        .map_err(|e| DataError::Glob {
            glob: glob.to_string(),
            problem: e.to_string(),
        })?
        .compile_matcher();
    if !root.is_dir() {
        return Err(DataError::Io {
            path: root.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        });
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.map_err(|e| DataError::Io {
            path: e.path().map_or_else(|| root.to_path_buf(), Path::to_path_buf),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("directory loop")),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(root).unwrap_or(entry.path());
        if matcher.is_match(relative) {
            files.push((entry.path().to_path_buf(), relative.display().to_string()));
        }
    }
    Ok(files)
}

/// Every file below `root` whose path relative to `root` matches `glob` (e.g. `**/*.txt`),
/// in sorted path order, one document per file. Empty files are skipped.
pub fn text_dir(root: &Path, glob: &str) -> Result<Vec<TextDocument>, DataError> {
    let mut docs = Vec::new();
    for (path, relative) in matching_files(root, glob)? {
        let text = read_text(&path)?;
        if !text.is_empty() {
            docs.push(TextDocument { id: relative, text });
        }
    }
    if docs.is_empty() {
        return Err(DataError::EmptyCorpus {
            path: root.to_path_buf(),
            glob: glob.to_string(),
        });
    }
    Ok(docs)
}

/// One document per line of a JSONL file: the string under `field`. Blank lines are skipped.
pub fn jsonl(path: &Path, field: &str) -> Result<Vec<TextDocument>, DataError> {
    let text = read_text(path)?;
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |problem: String| DataError::Malformed {
            path: path.to_path_buf(),
            line: line_no,
            problem,
        };
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| malformed(format!("not JSON: {e}")))?;
        let text = match value.get(field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => return Err(malformed(format!("`{field}` is not a string but {other}"))),
            None => {
                return Err(malformed(format!(
                    "no `{field}` field; set the text field to one the file has"
                )))
            }
        };
        docs.push(TextDocument {
            id: format!("{}:{line_no}", path.display()),
            text,
        });
    }
    if docs.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: "JSON lines",
        });
    }
    Ok(docs)
}

/// How a classification task's file is laid out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum TaskFormat {
    /// GLUE SST-2 `train.tsv` / `dev.tsv`: a header `sentence<TAB>label`, labels 0/1.
    Sst2,
    /// SST-5 `stsa.fine.*`: one example per line, `<label 0-4> <text>`.
    Sst5,
    /// `<label>,<text>` lines without a header, read as LongMem's ICL script reads mr, mpqa
    /// and subj: the label is the first character, the text starts at the third (subj's
    /// with its surrounding quotes removed: `strip_quotes`).
    LabelFirst { strip_quotes: bool },
    /// Any CSV or TSV with a header row and named text and label columns.
    Table {
        text_column: String,
        label_column: String,
        delimiter: Delimiter,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delimiter {
    Comma,
    Tab,
}

/// Reads a classification task file. Labels are returned as written in the file.
pub fn task_examples(path: &Path, format: &TaskFormat) -> Result<Vec<Example>, DataError> {
    let examples = match format {
        TaskFormat::Sst2 => table(path, "sentence", "label", b'\t')?,
        TaskFormat::Table {
            text_column,
            label_column,
            delimiter,
        } => {
            let d = match delimiter {
                Delimiter::Comma => b',',
                Delimiter::Tab => b'\t',
            };
            table(path, text_column, label_column, d)?
        }
        TaskFormat::Sst5 => label_first(path, ' ', "a label 0-4 (SST-5 stsa.fine format)", false)?,
        TaskFormat::LabelFirst { strip_quotes } => label_first(path, ',', "a one-digit label", *strip_quotes)?,
    };
    if examples.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: "examples",
        });
    }
    Ok(examples)
}

fn table(path: &Path, text_column: &str, label_column: &str, delimiter: u8) -> Result<Vec<Example>, DataError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(delimiter == b',')
        .from_reader(file);
    let malformed = |line: usize, problem: String| DataError::Malformed {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let headers = reader.headers().map_err(|e| malformed(1, e.to_string()))?.clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            malformed(
                1,
                format!(
                    "no `{name}` column (the header has: {})",
                    headers.iter().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    };
    let (text_at, label_at) = (column(text_column)?, column(label_column)?);
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            malformed(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let get = |at: usize, name: &str| {
            record
                .get(at)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| malformed(line, format!("empty or missing `{name}`")))
        };
        out.push(Example {
            text: get(text_at, text_column)?,
            label: get(label_at, label_column)?,
        });
    }
    Ok(out)
}

/// Lines `<digit><separator><text>` (SST-5's labels are 0-4).
fn label_first(path: &Path, separator: char, what: &str, strip_quotes: bool) -> Result<Vec<Example>, DataError> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |problem: &str| DataError::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            problem: problem.into(),
        };
        let (label, sentence) = line
            .split_once(separator)
            .ok_or_else(|| malformed(&format!("expected `<label>{separator}<text>`")))?;
        let digit = label.len() == 1 && label.bytes().all(|b| b.is_ascii_digit());
        if !digit || (separator == ' ' && label > "4") {
            return Err(malformed(&format!("the label must be {what}")));
        }
        let sentence = if strip_quotes {
            sentence.trim_matches('"')
        } else {
            sentence
        };
        if sentence.trim().is_empty() {
            return Err(malformed("empty text"));
        }
        out.push(Example {
            text: sentence.trim().to_string(),
            label: label.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn text_dir_reads_matching_files_recursively_in_order() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b/book2.txt", "second");
        write(dir.path(), "a.txt", "first");
        write(dir.path(), "b/notes.md", "skipped by the glob");
        write(dir.path(), "c/empty.txt", "");
        let docs = text_dir(dir.path(), "**/*.txt").unwrap();
        let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, vec!["a.txt", "b/book2.txt"]);
        assert_eq!(docs[1].text, "second");
    }

    #[test]
    fn text_dir_errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.md", "x");
        let err = text_dir(dir.path(), "**/*.txt").unwrap_err().to_string();
        assert!(err.contains("no documents") && err.contains("**/*.txt"), "{err}");
        let err = text_dir(&dir.path().join("missing"), "*").unwrap_err().to_string();
        assert!(err.contains("missing") && err.contains("no such directory"), "{err}");
        std::fs::write(dir.path().join("bad.txt"), [0xff, 0xfe, 0x00]).unwrap();
        let err = text_dir(dir.path(), "*.txt").unwrap_err().to_string();
        assert!(err.contains("bad.txt") && err.contains("UTF-8"), "{err}");
        assert!(text_dir(dir.path(), "[")
            .unwrap_err()
            .to_string()
            .contains("invalid glob"));
    }

    #[test]
    fn length_filters_leave_out_short_and_long_documents_and_name_the_limits() {
        let docs: Vec<TextDocument> = [3, 10, 5, 20]
            .iter()
            .map(|&n| TextDocument {
                id: format!("d{n}"),
                text: "x".repeat(n),
            })
            .collect();
        let filter = LengthFilter {
            min_bytes: 5,
            max_bytes: Some(10),
        };
        let kept = filter.apply(docs.clone());
        let ids: Vec<&str> = kept.documents.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, vec!["d10", "d5"], "bounds are inclusive, order kept");
        assert_eq!((kept.too_short, kept.too_long), (1, 1));
        let all = LengthFilter::default().keep(docs.clone(), Path::new("c")).unwrap();
        assert_eq!(all, docs);
        let none = LengthFilter {
            min_bytes: 50,
            max_bytes: None,
        };
        let err = none.keep(docs, Path::new("corpus/dir")).unwrap_err().to_string();
        assert!(
            err.contains("corpus/dir") && err.contains("none of its 4 documents is at least 50 bytes"),
            "{err}"
        );
    }

    #[test]
    fn jsonl_reads_the_field_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let ok = write(
            dir.path(),
            "c.jsonl",
            "{\"text\": \"one\"}\n\n{\"text\": \"two\", \"id\": 3}\n",
        );
        let docs = jsonl(&ok, "text").unwrap();
        assert_eq!(
            docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
            vec!["one", "two"]
        );
        assert!(docs[1].id.ends_with("c.jsonl:3"));
        let bad = write(dir.path(), "d.jsonl", "{\"text\": \"one\"}\n{\"body\": \"x\"}\n");
        let err = jsonl(&bad, "text").unwrap_err().to_string();
        assert!(err.contains("d.jsonl:2") && err.contains("no `text` field"), "{err}");
        let bad = write(dir.path(), "e.jsonl", "{\"text\": 5}\nnot json\n");
        let err = jsonl(&bad, "text").unwrap_err().to_string();
        assert!(err.contains("e.jsonl:1") && err.contains("not a string"), "{err}");
        let err = jsonl(&dir.path().join("nope.jsonl"), "text").unwrap_err().to_string();
        assert!(err.contains("nope.jsonl"), "{err}");
    }

    #[test]
    fn sst2_sst5_and_tables_load_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        let sst2 = write(
            dir.path(),
            "dev.tsv",
            "sentence\tlabel\nit 's a charming , often affecting journey . \t1\nunflinchingly bleak\t0\n",
        );
        let ex = task_examples(&sst2, &TaskFormat::Sst2).unwrap();
        assert_eq!(
            ex[0],
            Example {
                text: "it 's a charming , often affecting journey .".into(),
                label: "1".into()
            }
        );
        assert_eq!(ex[1].label, "0");
        let sst5 = write(dir.path(), "stsa.fine.dev", "4 a masterpiece\n0 dreadful\n");
        let ex = task_examples(&sst5, &TaskFormat::Sst5).unwrap();
        assert_eq!(
            ex[1],
            Example {
                text: "dreadful".into(),
                label: "0".into()
            }
        );
        let mr = write(
            dir.path(),
            "mr.csv",
            "label,text\npositive,\"great, really\"\nnegative,bad\n",
        );
        let format = TaskFormat::Table {
            text_column: "text".into(),
            label_column: "label".into(),
            delimiter: Delimiter::Comma,
        };
        let ex = task_examples(&mr, &format).unwrap();
        assert_eq!(
            ex[0],
            Example {
                text: "great, really".into(),
                label: "positive".into()
            }
        );
    }

    #[test]
    fn task_file_errors_name_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let no_col = write(dir.path(), "t.tsv", "text\tclass\nx\t1\n");
        let err = task_examples(&no_col, &TaskFormat::Sst2).unwrap_err().to_string();
        assert!(
            err.contains("t.tsv:1") && err.contains("no `sentence` column") && err.contains("text, class"),
            "{err}"
        );
        let empty_label = write(dir.path(), "u.tsv", "sentence\tlabel\nfine\t1\nbroken\t\n");
        let err = task_examples(&empty_label, &TaskFormat::Sst2).unwrap_err().to_string();
        assert!(err.contains("u.tsv:3") && err.contains("`label`"), "{err}");
        let bad5 = write(dir.path(), "stsa.fine.test", "3 ok\n7 what\n");
        let err = task_examples(&bad5, &TaskFormat::Sst5).unwrap_err().to_string();
        assert!(err.contains("stsa.fine.test:2") && err.contains("0-4"), "{err}");
        let header_only = write(dir.path(), "h.tsv", "sentence\tlabel\n");
        let err = task_examples(&header_only, &TaskFormat::Sst2).unwrap_err().to_string();
        assert!(err.contains("h.tsv") && err.contains("no examples"), "{err}");
        let err = task_examples(&dir.path().join("gone.tsv"), &TaskFormat::Sst2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("gone.tsv"), "{err}");
    }
}
