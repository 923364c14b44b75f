//! The `[icl]` section: memory-augmented in-context learning (the LongMem paper, §4.3), which
//! `longmem eval` runs on the trained model (eval/icl.rs).

use super::resolver::{Resolver, SpecError};
use super::DataSpec;
use crate::fsutil::resolve_path;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `[icl]` section of a spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IclSpec {
    /// `builtin` (the built-in task of a `demos` corpus, in its vocabulary) or one of the
    /// paper's tasks read from files: `sst2`, `mr`, `subj`, `sst5`, `mpqa`.
    #[serde(default = "icl_defaults::task")]
    pub task: String,
    /// Demonstrations are sampled from this file (file tasks only).
    pub train_file: Option<PathBuf>,
    /// Test queries come from this file (file tasks only).
    pub test_file: Option<PathBuf>,
    /// Columns of the CSV/TSV files of mr, subj and mpqa (tab-separated when the file ends in
    /// `.tsv`).
    #[serde(default = "icl_defaults::text_column")]
    pub text_column: String,
    #[serde(default = "icl_defaults::label_column")]
    pub label_column: String,
    /// Demonstrations in the prompt (paper: 4 and 20).
    #[serde(default = "icl_defaults::local_shots")]
    pub local_shots: Vec<usize>,
    /// Demonstrations written to memory first (paper: 2000); 0 = memory left empty.
    #[serde(default = "icl_defaults::memory_shots")]
    pub memory_shots: Vec<usize>,
    /// Seeds, each with its own demonstrations (and, built in, its own task) (paper: 6).
    #[serde(default = "icl_defaults::seeds")]
    pub seeds: u64,
    /// Test queries per seed: built in, this many fresh ones (default 200); from a file, the
    /// first this many (default: all).
    pub test_examples: Option<usize>,
    /// The memory size (tokens) a memory model writes the demonstrations to (default: its
    /// trained `memory.size`): the paper's 2,000 demonstrations need more than a small
    /// model's trained memory holds. Left out of the JSON (and so of run ids) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_size: Option<i64>,
    /// How demonstrations are drawn, encoded and written to memory. Left out of the JSON
    /// (and so of run ids) at the default.
    #[serde(default, skip_serializing_if = "IclProtocol::is_harness")]
    pub protocol: IclProtocol,
}

/// The ICL evaluation's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IclProtocol {
    /// This harness's: per seed one shuffle gives the prompt's demonstrations and, after
    /// them, memory's (disjoint); the texts are concatenated; memory is written window by
    /// window, the last partial window too.
    #[default]
    Harness,
    /// The authors' `eval_scripts/eval_longmem_icl.py` (eval/icl/released.rs): seeds 1 to
    /// `seeds`; prompt and memory demonstrations drawn independently (they may overlap);
    /// every demonstration a line of its own, `<s> … </s>`; memory written in slices of the
    /// window with the trailing partial slice dropped; the prompt's last `</s>` removed;
    /// mr, mpqa and subj files read as `<label>,<text>` lines without a header.
    Released,
}

impl IclProtocol {
    fn is_harness(&self) -> bool {
        *self == IclProtocol::Harness
    }
}

mod icl_defaults {
    pub fn task() -> String {
        "builtin".into()
    }
    pub fn text_column() -> String {
        "text".into()
    }
    pub fn label_column() -> String {
        "label".into()
    }
    pub fn local_shots() -> Vec<usize> {
        vec![4, 20]
    }
    pub fn memory_shots() -> Vec<usize> {
        vec![2000]
    }
    pub fn seeds() -> u64 {
        6
    }
}

/// Validates the `[icl]` section and makes its paths absolute.
pub(super) fn resolve_icl(mut icl: IclSpec, data: &DataSpec, r: &Resolver) -> Result<IclSpec, SpecError> {
    const TASKS: [&str; 6] = ["builtin", "sst2", "mr", "subj", "sst5", "mpqa"];
    if !TASKS.contains(&icl.task.as_str()) {
        return Err(r.invalid("icl.task", &icl.task, "one of builtin, sst2, mr, subj, sst5, mpqa"));
    }
    if data.tokenizer_kind().is_none() && !matches!(data, DataSpec::Demos(_)) {
        return Err(r.invalid(
            "icl",
            &"(present)",
            "absent for data.kind = \"recall\", which is token ids without text; ICL needs a text model",
        ));
    }
    if icl.task == "builtin" {
        if !matches!(data, DataSpec::Demos(_)) {
            return Err(r.invalid(
                "icl.task",
                &"builtin",
                "a file task (sst2, mr, subj, sst5, mpqa) unless data.kind = \"demos\", whose vocabulary the built-in task uses",
            ));
        }
    } else {
        for (key, path) in [
            ("icl.train_file", &mut icl.train_file),
            ("icl.test_file", &mut icl.test_file),
        ] {
            let Some(p) = path.as_mut() else {
                return Err(r.invalid(key, &"(missing)", &format!("a file of task {}'s examples", icl.task)));
            };
            *p = resolve_path(r.base(), p);
            if r.check_paths() && !p.is_file() {
                return Err(r.invalid(key, &p.display(), "an existing file"));
            }
        }
    }
    if icl.seeds == 0 {
        return Err(r.invalid("icl.seeds", &0, "at least 1"));
    }
    if icl.local_shots.is_empty() {
        return Err(r.invalid("icl.local_shots", &"[]", "at least one number of demonstrations"));
    }
    if icl.memory_shots.is_empty() {
        return Err(r.invalid("icl.memory_shots", &"[]", "at least one number (0 = empty memory)"));
    }
    if let Some(m) = icl.memory_size.filter(|&m| m <= 0) {
        return Err(r.invalid("icl.memory_size", &m, "a positive number of tokens"));
    }
    if icl.test_examples == Some(0) {
        return Err(r.invalid("icl.test_examples", &0, "at least 1"));
    }
    if icl.protocol == IclProtocol::Released && icl.task == "builtin" {
        return Err(r.invalid(
            "icl.protocol",
            &"released",
            "\"harness\" for the built-in task: the released protocol evaluates the paper's file tasks",
        ));
    }
    Ok(icl)
}
