//! The justfile passes recipe arguments through intact: `just run tokenize "hello world"`
//! gives `longmem` one argument `hello world`, not two. The real justfile runs with `cargo`
//! and `python3` replaced by scripts that print their arguments, so nothing is built,
//! installed or benchmarked. Skipped, with a `SKIPPED:` line, where `just` is not installed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `just` on the PATH or where `cargo install` puts it.
fn find_just() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    std::env::split_paths(&path)
        .chain(cargo_home.map(|c| c.join("bin")))
        .map(|dir| dir.join("just"))
        .find(|p| p.is_file())
}

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The `cargo` invocations `just ARGS` makes, each as its list of arguments.
fn cargo_calls(just: &Path, args: &[&str]) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // One line per call, each argument in brackets: `[run][--quiet][--][tokenize][hello world]`.
    executable(&bin.join("cargo"), "#!/bin/sh\nprintf '[%s]' \"$@\"\necho\n");
    executable(&bin.join("python3"), "#!/bin/sh\nexit 0\n");
    // An installed libtorch as scripts/setup-libtorch.sh sees it, so it installs nothing.
    let cache = dir.path().join("cache");
    let libtorch = cache.join("libtorch-2.13.0-cpu");
    std::fs::create_dir_all(&libtorch).unwrap();
    std::fs::write(libtorch.join(".complete"), "").unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let out = std::process::Command::new(just)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", path)
        .env("LONGMEM_CACHE", &cache)
        .env("LONGMEM_LIBTORCH", "cpu")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "just {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let inner = line.strip_prefix('[').and_then(|l| l.strip_suffix(']'));
            inner.map_or(vec![], |l| l.split("][").map(String::from).collect())
        })
        .collect()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[test]
fn just_run_and_bench_pass_quoted_arguments_through_intact() {
    let Some(just) = find_just() else {
        common::skip("just", "`just` is not installed (cargo install just --locked)");
        return;
    };
    assert_eq!(
        cargo_calls(&just, &["run", "tokenize", "hello world"]),
        [strings(&["run", "--quiet", "--", "tokenize", "hello world"])]
    );
    assert_eq!(
        cargo_calls(&just, &["run", "lm", "--weights", "model.safetensors", "some text"]),
        [strings(&[
            "run",
            "--quiet",
            "--",
            "lm",
            "--weights",
            "model.safetensors",
            "some text"
        ])]
    );
    // Shell characters stay literal; no arguments pass none.
    assert_eq!(
        cargo_calls(&just, &["run", "tokenize", "it's $HOME; *"]),
        [strings(&["run", "--quiet", "--", "tokenize", "it's $HOME; *"])]
    );
    assert_eq!(cargo_calls(&just, &["run"]), [strings(&["run", "--quiet", "--"])]);
    // `bench` builds first (its `build-dev` dependency), then passes its arguments on.
    assert_eq!(
        cargo_calls(&just, &["bench", "--device", "cuda", "--out", "a dir"]),
        [
            strings(&["build"]),
            strings(&["run", "--quiet", "--", "bench", "--device", "cuda", "--out", "a dir"])
        ]
    );
}
