//! faiss-cpu `IndexFlatIP` side by side: the bank's chunk keys and the queries are written
//! to a temporary folder, `baselines/faiss_flat.py` (embedded in the binary) searches them
//! with one index per head, as the paper's code does, and its ids are checked against ours.

use super::retrieval::Problem;
use super::Timing;
use anyhow::{bail, Context};
use std::path::Path;
use std::process::Command;
use tch::{Kind, Tensor};

const SCRIPT: &str = include_str!("../../baselines/faiss_flat.py");

/// What faiss measured on one shape, and how its ids compare with the bank's search.
pub struct FaissRun {
    pub timing: Timing,
    pub threads: usize,
    pub version: String,
    /// Query rows (query × head) whose ordered top-k ids equal ours.
    pub same_order: f64,
    /// Query rows whose top-k id sets equal ours.
    pub same_set: f64,
}

/// Why faiss did not run (Python or faiss missing); anything else is an error.
struct Skipped(String);

/// The comparison over a whole bench run: it stops trying once faiss proved missing, and
/// keeps the line BENCH.md says about it.
pub struct Faiss {
    python: String,
    available: bool,
    pub note: String,
}

impl Faiss {
    pub fn new(python: &str, enabled: bool) -> Self {
        Self {
            python: python.into(),
            available: enabled,
            note: "not run (--no-faiss)".into(),
        }
    }

    /// [`run`] on `problem`, or `None` where faiss is disabled or missing.
    pub fn run(&mut self, problem: &Problem, samples: usize) -> anyhow::Result<Option<FaissRun>> {
        if !self.available {
            return Ok(None);
        }
        match run(&self.python, problem, samples)? {
            Ok(found) => {
                self.note = format!("faiss-cpu {} ({} OpenMP threads)", found.version, found.threads);
                Ok(Some(found))
            }
            Err(Skipped(why)) => {
                tracing::warn!("faiss comparison skipped: {why}");
                self.note = format!("skipped: {why}");
                self.available = false;
                Ok(None)
            }
        }
    }
}

fn run(python: &str, problem: &Problem, samples: usize) -> anyhow::Result<Result<FaissRun, Skipped>> {
    let Problem { shape, bank, queries } = problem;
    let dir = tempfile::tempdir().context("creating a folder for the faiss comparison")?;
    let kc = shape.chunks_per_query();
    let chunk_keys = bank
        .state()
        .into_iter()
        .find(|(name, _)| name == "chunk_keys")
        .map(|(_, t)| t)
        .expect("the bank's state has chunk keys");
    write_f32(&dir.path().join("keys.f32"), &chunk_keys)?;
    write_f32(&dir.path().join("queries.f32"), queries)?;
    let meta = serde_json::json!({
        "heads": shape.heads, "slots": shape.chunks(), "queries": shape.queries,
        "dim": shape.dim, "k": kc, "warmup": 1, "samples": samples,
    });
    std::fs::write(dir.path().join("meta.json"), meta.to_string())?;
    let script = dir.path().join("faiss_flat.py");
    std::fs::write(&script, SCRIPT)?;
    let output = match Command::new(python).arg(&script).arg(dir.path()).output() {
        Ok(output) => output,
        Err(e) => return Ok(Err(Skipped(format!("`{python}` could not be started ({e})")))),
    };
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    match output.status.code() {
        Some(0) => {}
        Some(3) => return Ok(Err(Skipped(stderr))),
        _ => bail!("the faiss comparison failed ({}): {stderr}", output.status),
    }
    let timing: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("timing.json"))?)?;
    let seconds: Vec<f64> = serde_json::from_value(timing["seconds"].clone())?;
    let theirs = read_i64(&dir.path().join("ids.i64"))?;
    let (ours, _) = bank.search(queries, kc);
    let ours = Vec::<i64>::try_from(ours.flatten(0, -1).to_device(tch::Device::Cpu))?;
    anyhow::ensure!(
        ours.len() == theirs.len(),
        "faiss returned {} ids, expected {}",
        theirs.len(),
        ours.len()
    );
    let rows = ours.len() / kc as usize;
    let (mut same_order, mut same_set) = (0, 0);
    for (a, b) in ours.chunks(kc as usize).zip(theirs.chunks(kc as usize)) {
        same_order += usize::from(a == b);
        let (mut a, mut b) = (a.to_vec(), b.to_vec());
        a.sort_unstable();
        b.sort_unstable();
        same_set += usize::from(a == b);
    }
    Ok(Ok(FaissRun {
        timing: Timing::from_seconds(seconds),
        threads: timing["threads"].as_u64().unwrap_or(0) as usize,
        version: timing["faiss"].as_str().unwrap_or("?").to_string(),
        same_order: same_order as f64 / rows as f64,
        same_set: same_set as f64 / rows as f64,
    }))
}

fn write_f32(path: &Path, t: &Tensor) -> anyhow::Result<()> {
    let values = Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1).to_device(tch::Device::Cpu))?;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn read_i64(path: &Path) -> anyhow::Result<Vec<i64>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect())
}
