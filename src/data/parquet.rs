//! Parquet shards with a text column, the Hugging Face datasets layout (PG-19 as
//! distributed), read through polars: one document per row. Errors name the shard.

use super::loaders::{matching_files, DataError, TextDocument};
use std::path::{Path, PathBuf};

/// The Parquet shards `path` names: the file itself, every `*.parquet` file below a
/// directory, or the files matching a glob (`data/pg19/train-*.parquet`), in sorted order.
pub fn parquet_shards(path: &Path) -> Result<Vec<PathBuf>, DataError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let text = path.to_string_lossy();
    let (root, glob) = if path.is_dir() {
        (path.to_path_buf(), "**/*.parquet".to_string())
    } else {
        // The glob starts at the first component with a glob character.
        let components: Vec<_> = path.components().collect();
        let first = components
            .iter()
            .position(|c| c.as_os_str().to_string_lossy().contains(['*', '?', '[', '{']));
        let Some(first) = first else {
            return Err(DataError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file, directory or glob"),
            });
        };
        let root: PathBuf = components[..first].iter().collect();
        let rest: PathBuf = components[first..].iter().collect();
        (root, rest.to_string_lossy().into_owned())
    };
    let shards: Vec<PathBuf> = matching_files(&root, &glob)?.into_iter().map(|(p, _)| p).collect();
    if shards.is_empty() {
        return Err(DataError::EmptyCorpus {
            path: root,
            glob: if path.is_dir() { glob } else { text.into_owned() },
        });
    }
    Ok(shards)
}

/// One document per row of the Parquet shards at `path` (see [`parquet_shards`]): the
/// string in `text_column`, its id from `id_column` (any type, as text) or else
/// `<shard>:<row>`. Null and empty texts are skipped; so is a shard with no rows.
pub fn parquet(path: &Path, text_column: &str, id_column: Option<&str>) -> Result<Vec<TextDocument>, DataError> {
    let mut docs = Vec::new();
    for shard in parquet_shards(path)? {
        docs.extend(parquet_shard(&shard, text_column, id_column)?);
    }
    if docs.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: "non-empty text rows",
        });
    }
    Ok(docs)
}

fn parquet_shard(shard: &Path, text_column: &str, id_column: Option<&str>) -> Result<Vec<TextDocument>, DataError> {
    use polars::prelude::*;
    let bad = |e: PolarsError| DataError::Parquet {
        path: shard.to_path_buf(),
        problem: e.to_string(),
    };
    let file = std::fs::File::open(shard).map_err(|source| DataError::Io {
        path: shard.to_path_buf(),
        source,
    })?;
    let mut reader = ParquetReader::new(file);
    let schema = reader.schema().map_err(bad)?;
    let mut columns = vec![text_column.to_string()];
    for (key, column) in [("text_column", Some(text_column)), ("id_column", id_column)] {
        let Some(column) = column else { continue };
        if schema.get(column).is_none() {
            let have: Vec<String> = schema.iter_names().map(|n| format!("`{n}`")).collect();
            return Err(DataError::NoColumn {
                path: shard.to_path_buf(),
                column: column.to_string(),
                key,
                have: have.join(", "),
            });
        }
        if key == "id_column" {
            columns.push(column.to_string());
        }
    }
    let df = reader.with_columns(Some(columns)).finish().map_err(bad)?;
    let texts = df.column(text_column).map_err(bad)?;
    let texts = texts.str().map_err(|_| DataError::NotText {
        path: shard.to_path_buf(),
        column: text_column.to_string(),
        dtype: texts.dtype().to_string(),
    })?;
    let ids = match id_column {
        Some(c) => Some(df.column(c).and_then(|c| c.cast(&DataType::String)).map_err(bad)?),
        None => None,
    };
    let ids = ids.as_ref().map(|c| c.str().map_err(bad)).transpose()?;
    let name = shard
        .file_name()
        .map_or_else(|| shard.display().to_string(), |n| n.to_string_lossy().into_owned());
    let mut docs = Vec::new();
    for (row, text) in texts.iter().enumerate() {
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            continue;
        };
        let id = match ids.and_then(|ids| ids.get(row)) {
            Some(id) => id.to_string(),
            None => format!("{name}:{row:09}"),
        };
        docs.push(TextDocument {
            id,
            text: text.to_string(),
        });
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    /// A shard with `texts` in column `text` and ids in `book_id` (integers).
    fn shard(path: &Path, texts: &[Option<&str>], first_id: i64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let ids: Vec<i64> = (first_id..first_id + texts.len() as i64).collect();
        let mut frame = df!("book_id" => ids, "text" => texts.to_vec(), "year" => vec![1900i32; texts.len()]).unwrap();
        ParquetWriter::new(std::fs::File::create(path).unwrap())
            .finish(&mut frame)
            .unwrap();
    }

    fn corpus(dir: &Path) {
        shard(
            &dir.join("train-00000.parquet"),
            &[Some("first book"), None, Some("second book")],
            0,
        );
        shard(&dir.join("train-00001.parquet"), &[], 10);
        shard(&dir.join("zz/train-00002.parquet"), &[Some(""), Some("third book")], 20);
        std::fs::write(dir.join("README.md"), "not a shard").unwrap();
    }

    #[test]
    fn shards_read_as_a_file_a_directory_or_a_glob() {
        let dir = tempfile::tempdir().unwrap();
        corpus(dir.path());
        let texts = |docs: Vec<TextDocument>| docs.into_iter().map(|d| d.text).collect::<Vec<_>>();
        // A directory: every shard below it in path order; null and empty texts and the
        // empty shard are skipped.
        let all = parquet(dir.path(), "text", None).unwrap();
        assert_eq!(texts(all.clone()), ["first book", "second book", "third book"]);
        assert_eq!(all[1].id, "train-00000.parquet:000000002");
        // Ids from a column, whatever its type.
        let with_ids = parquet(dir.path(), "text", Some("book_id")).unwrap();
        let ids: Vec<&str> = with_ids.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["0", "2", "21"]);
        // A glob and a single file.
        let glob = dir.path().join("train-*.parquet");
        assert_eq!(
            texts(parquet(&glob, "text", None).unwrap()),
            ["first book", "second book"]
        );
        let one = dir.path().join("zz/train-00002.parquet");
        assert_eq!(texts(parquet(&one, "text", None).unwrap()), ["third book"]);
    }

    #[test]
    fn bad_columns_and_empty_corpora_are_named() {
        let dir = tempfile::tempdir().unwrap();
        corpus(dir.path());
        let message = parquet(dir.path(), "content", None).unwrap_err().to_string();
        assert!(
            message.contains("train-00000.parquet")
                && message.contains("no column `content`")
                && message.contains("`text`")
                && message.contains("data.text_column"),
            "{message}"
        );
        let message = parquet(dir.path(), "text", Some("isbn")).unwrap_err().to_string();
        assert!(message.contains("data.id_column"), "{message}");
        let message = parquet(dir.path(), "year", None).unwrap_err().to_string();
        assert!(message.contains("holds i32, not text"), "{message}");
        // Only empty shards: no documents, said so.
        let empty = tempfile::tempdir().unwrap();
        shard(&empty.path().join("a.parquet"), &[], 0);
        let message = parquet(empty.path(), "text", None).unwrap_err().to_string();
        assert!(message.contains("no non-empty text rows"), "{message}");
        // A glob that matches nothing, and a file that is not Parquet.
        let message = parquet(&dir.path().join("test-*.parquet"), "text", None)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("no documents") && message.contains("test-*.parquet"),
            "{message}"
        );
        let message = parquet(&dir.path().join("README.md"), "text", None)
            .unwrap_err()
            .to_string();
        assert!(message.contains("not a Parquet file"), "{message}");
    }
}
