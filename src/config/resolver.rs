//! What every section's resolution shares: the error type, which files to check, and the
//! context errors and relative paths come from.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read spec {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: `{key}` = {value} is invalid: {allowed}")]
    Invalid {
        path: PathBuf,
        key: String,
        value: String,
        allowed: String,
    },
}

/// Which input files resolving a spec checks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChecks {
    /// Every file the spec names.
    All,
    /// All but the backbone weights (an upstream run makes them).
    NotWeights,
    /// None (planning only).
    None,
}

/// What resolving a spec needs besides the raw form: the file (for errors), the directory
/// relative paths start from, and which files to check.
pub struct Resolver {
    path: PathBuf,
    base: PathBuf,
    checks: FileChecks,
    /// Whether methods but `pretrain` must name backbone weights (specs built in code may
    /// start from random weights).
    require_weights: bool,
}

impl Resolver {
    pub(super) fn new(path: &Path, checks: FileChecks) -> Self {
        // Absolute and normalised, so a run's resolved paths do not depend on the working directory.
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let base = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
        Self {
            path: path.into(),
            base,
            checks,
            require_weights: true,
        }
    }

    /// A resolver for specs built in code: no files checked, random backbone weights allowed.
    pub(super) fn in_code(name: &str) -> Self {
        Self {
            require_weights: false,
            ..Self::new(Path::new(name), FileChecks::None)
        }
    }

    /// The error for `key` = `value`, with what is allowed.
    pub fn invalid(&self, key: &str, value: &dyn std::fmt::Display, allowed: &str) -> SpecError {
        SpecError::Invalid {
            path: self.path.clone(),
            key: key.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }

    /// The directory relative paths in the file start from.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Whether methods but `pretrain` must name backbone weights.
    pub fn requires_weights(&self) -> bool {
        self.require_weights
    }

    /// Whether backbone weights named must exist.
    pub fn checks_weights(&self) -> bool {
        self.checks == FileChecks::All
    }

    /// Whether input files (data, ICL files) must exist.
    pub fn check_paths(&self) -> bool {
        self.checks != FileChecks::None
    }
}
