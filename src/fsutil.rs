//! Atomic file writes: a temporary file in the same directory, then a rename, so a crash
//! never leaves a half-written result.

use std::io::Write;
use std::path::{Path, PathBuf};

/// `dir/.name.tmp-<pid>` beside `path`, so the final rename stays on one filesystem.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically (and durably: the data is synced before the rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Pretty JSON, atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, format!("{text}\n").as_bytes())
}

/// `base.join(path)` with `.` and `..` resolved lexically (the target need not exist yet).
pub fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in base.join(path).components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_lexically() {
        let base = Path::new("/work/repo/experiments/tiny");
        assert_eq!(
            resolve_path(base, Path::new("../../runs/tiny/x")),
            PathBuf::from("/work/repo/runs/tiny/x")
        );
        assert_eq!(
            resolve_path(base, Path::new("./a/./b")),
            PathBuf::from("/work/repo/experiments/tiny/a/b")
        );
        assert_eq!(resolve_path(base, Path::new("/abs/p")), PathBuf::from("/abs/p"));
    }
}
