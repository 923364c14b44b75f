//! A real long-document code corpus present on every machine that built this project:
//! the sources of the crates pinned in `Cargo.lock`, as Cargo unpacked them
//! under `$CARGO_HOME/registry/src/`. Pinned versions mean the same bytes everywhere.
//!
//! Selection rule: the registry packages of `Cargo.lock`, in its order (sorted by name);
//! for each, every `.rs` file under the crate's `src/`, in path order, concatenated into one
//! document, each file preceded by a `// <crate>-<version>/<path>` line. Crates with less
//! than `min_bytes` of source are left out (the corpus is about long documents), so are
//! crates over `max_bytes` when a cap is set (to bound evaluation time), and so are crates
//! Cargo never unpacked on this platform (e.g. Windows-only dependencies); their numbers are
//! reported.

use super::loaders::{DataError, Length, LengthFilter, TextDocument};
use std::path::{Path, PathBuf};

/// The corpus and what the selection rule left out.
#[derive(Debug)]
pub struct CargoCorpus {
    pub documents: Vec<TextDocument>,
    /// Registry packages with no unpacked sources here.
    pub not_unpacked: usize,
    /// Packages under `min_bytes`.
    pub too_short: usize,
    /// Packages over `max_bytes`.
    pub too_long: usize,
}

/// `$CARGO_HOME`, else `~/.cargo`.
pub fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"))
}

/// Reads the corpus for `lock` from `cargo_home`'s registry, keeping the crates whose
/// source (the `.rs` files, without the path lines) is within `lengths`.
pub fn cargo_sources(lock: &Path, cargo_home: &Path, lengths: LengthFilter) -> Result<CargoCorpus, DataError> {
    let (packages, pinned) = registry_packages(lock)?;
    let registry_src = cargo_home.join("registry/src");
    let indexes = index_dirs(&registry_src);
    let (mut documents, mut not_unpacked, mut too_short, mut too_long) = (Vec::new(), 0, 0, 0);
    for dir_name in &packages {
        let Some(crate_dir) = indexes
            .iter()
            .map(|i| i.join(dir_name))
            .find(|d| d.join("src").is_dir())
        else {
            not_unpacked += 1;
            continue;
        };
        let (text, source_bytes) = crate_document(dir_name, &crate_dir);
        match lengths.judge(source_bytes) {
            Length::TooShort => too_short += 1,
            Length::TooLong => too_long += 1,
            Length::Within => documents.push(TextDocument {
                id: dir_name.clone(),
                text,
            }),
        }
    }
    if documents.is_empty() {
        return Err(DataError::Malformed {
            path: registry_src,
            line: 0,
            problem: format!(
                "none of the {} registry crates pinned in {} is unpacked here within the size limits; \
                 build the project once (`cargo fetch` or `just build`) so Cargo unpacks them, or set CARGO_HOME",
                pinned,
                lock.display()
            ),
        });
    }
    Ok(CargoCorpus {
        documents,
        not_unpacked,
        too_short,
        too_long,
    })
}

/// The `<name>-<version>` of every registry package pinned in `lock`, in its order (the
/// project itself, path and git dependencies are left out), and how many packages it pins.
fn registry_packages(lock: &Path) -> Result<(Vec<String>, usize), DataError> {
    let text = std::fs::read_to_string(lock).map_err(|source| DataError::Io {
        path: lock.to_path_buf(),
        source,
    })?;
    let parsed: toml::Table = text.parse().map_err(|e: toml::de::Error| DataError::Malformed {
        path: lock.to_path_buf(),
        line: 0,
        problem: format!("not a Cargo.lock: {e}"),
    })?;
    let packages = parsed
        .get("package")
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    let registry = packages
        .iter()
        .filter_map(|package| {
            let field = |key: &str| package.get(key).and_then(|v| v.as_str()).unwrap_or_default();
            field("source")
                .starts_with("registry+")
                .then(|| format!("{}-{}", field("name"), field("version")))
        })
        .collect();
    Ok((registry, packages.len()))
}

/// The registry's index directories (one per registry Cargo used), sorted; none if absent.
fn index_dirs(registry_src: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(registry_src) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// One crate's document: every `.rs` file under its `src/`, in path order, each preceded by
/// its path line; with the number of source bytes (without the path lines).
fn crate_document(dir_name: &str, crate_dir: &Path) -> (String, usize) {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(crate_dir.join("src"))
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "rs"))
        .map(|e| e.into_path())
        .collect();
    files.sort();
    let (mut text, mut source_bytes) = (String::new(), 0);
    for file in files {
        let Ok(source) = std::fs::read_to_string(&file) else {
            continue; // non-UTF-8 test data
        };
        let relative = file.strip_prefix(crate_dir).unwrap_or(&file);
        text.push_str(&format!("// {dir_name}/{}\n", relative.display()));
        text.push_str(&source);
        source_bytes += source.len();
        if !source.ends_with('\n') {
            text.push('\n');
        }
    }
    (text, source_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
version = 4

[[package]]
name = "alpha"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "beta"
version = "0.2.1"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "gamma"
version = "3.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "myself"
version = "0.1.0"
"#;

    fn at_least(min_bytes: usize) -> LengthFilter {
        LengthFilter {
            min_bytes,
            max_bytes: None,
        }
    }

    fn write(path: PathBuf, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn crates_become_documents_by_the_selection_rule() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("Cargo.lock");
        std::fs::write(&lock, LOCK).unwrap();
        let home = dir.path().join("cargo");
        let index = home.join("registry/src/index.crates.io-0123");
        write(index.join("alpha-1.0.0/src/lib.rs"), "pub mod b;\nfn a() {}");
        write(index.join("alpha-1.0.0/src/b/mod.rs"), "fn b() {}\n");
        write(index.join("alpha-1.0.0/README.md"), "not code");
        write(index.join("beta-0.2.1/src/lib.rs"), "x");
        // gamma is pinned but not unpacked; myself is not from the registry.
        let corpus = cargo_sources(&lock, &home, at_least(10)).unwrap();
        assert_eq!(corpus.documents.len(), 1);
        assert_eq!((corpus.not_unpacked, corpus.too_short, corpus.too_long), (1, 1, 0));
        let capped = cargo_sources(
            &lock,
            &home,
            LengthFilter {
                min_bytes: 0,
                max_bytes: Some(10),
            },
        )
        .unwrap();
        assert_eq!(
            capped.documents.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["beta-0.2.1"]
        );
        assert_eq!(capped.too_long, 1);
        let doc = &corpus.documents[0];
        assert_eq!(doc.id, "alpha-1.0.0");
        assert_eq!(
            doc.text,
            "// alpha-1.0.0/src/b/mod.rs\nfn b() {}\n// alpha-1.0.0/src/lib.rs\npub mod b;\nfn a() {}\n"
        );
    }

    #[test]
    fn an_absent_registry_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("Cargo.lock");
        std::fs::write(&lock, LOCK).unwrap();
        let err = cargo_sources(&lock, &dir.path().join("nowhere"), at_least(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("none of the 4") && err.contains("cargo fetch"), "{err}");
    }

    #[test]
    fn this_projects_own_dependencies_form_a_long_document_corpus() {
        // Every machine that built this test has unpacked them.
        let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock");
        let corpus = cargo_sources(&lock, &cargo_home(), at_least(20_000)).unwrap();
        assert!(corpus.documents.len() >= 20, "{} documents", corpus.documents.len());
        let tch = corpus
            .documents
            .iter()
            .find(|d| d.id.starts_with("tch-0.26"))
            .expect("tch is pinned");
        assert!(tch.text.len() > 500_000, "tch's sources are long: {}", tch.text.len());
    }
}
