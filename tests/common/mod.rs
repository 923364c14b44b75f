//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

pub fn read_tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// Largest absolute difference between two same-shaped tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a - b).abs().max().double_value(&[])
}

pub fn assert_close(actual: &Tensor, expected: &Tensor, tol: f64, what: &str) {
    let diff = max_abs_diff(actual, expected);
    assert!(diff <= tol, "{what}: max |Δ| = {diff:e} > {tol:e}");
}

/// libtorch's RNG is global to the process and tests run on parallel threads: hold this
/// from seeding until the seeded tensors exist, so no other test draws in between.
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `[rows, cols]` int64 ids in `0..vocab`, from a local RNG (not libtorch's global one).
pub fn random_ids(seed: u64, rows: i64, cols: i64, vocab: i64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let ids: Vec<i64> = (0..rows * cols).map(|_| rng.random_range(0..vocab)).collect();
    Tensor::from_slice(&ids).view([rows, cols])
}

/// Runs `longmem train spec` and asserts that it fails with every one of `messages` on
/// stderr.
pub fn assert_train_fails(spec: &Path, messages: &[&str]) {
    let out = assert_cmd::Command::cargo_bin("longmem")
        .unwrap()
        .arg("train")
        .arg(spec)
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    for message in messages {
        assert!(stderr.contains(message), "expected {message:?} in: {stderr}");
    }
}
