//! Run specs (TOML). Two stages: [`RawSpec`] mirrors the file (unknown keys rejected,
//! defaults at the field), and [`Spec`] is the validated, fully resolved config with no
//! `Option` left. Each section resolves itself (its own file in config/); every error names
//! the file, the key, the value and what is allowed. A resolved spec is never changed
//! afterwards: evaluation-time variants are new specs ([`Spec::with_memory`]).

use super::backbone::RawBackbone;
use super::chapterbreak::{resolve_chapterbreak, ChapterBreakSpec};
use super::data::resolve_data;
use super::icl::{resolve_icl, IclSpec};
use super::resolver::{FileChecks, Resolver, SpecError};
use super::sections::{resolve_memory, RawMemTrm, RawSideNet};
use super::train::{RawTrain, TrainConfig};
use super::{DataSpec, RawDataSpec};
use crate::device::DeviceSpec;
use crate::fsutil::resolve_path;
use crate::memory::MemorySpec;
use crate::methods::{BuildError, FlopShape, Method, MethodModel, ModelSpec};
use crate::models::{BackboneConfig, MemTrmConfig, SideNetConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_device")]
    pub device: DeviceSpec,
    /// Where a single-run spec file's run writes (relative to the spec file's directory);
    /// experiments give each run its own directory instead.
    pub out_dir: Option<PathBuf>,
    pub method: Method,
    pub backbone: RawBackbone,
    #[serde(default)]
    pub memory: MemorySpec,
    #[serde(default)]
    pub sidenet: RawSideNet,
    #[serde(default)]
    pub memtrm: RawMemTrm,
    pub data: RawDataSpec,
    pub train: RawTrain,
    pub icl: Option<IclSpec>,
    pub chapterbreak: Option<ChapterBreakSpec>,
}

fn default_device() -> DeviceSpec {
    DeviceSpec::Cpu
}

/// A validated spec: what a run needs, nothing optional. Where the run writes is not part
/// of it (a single-run file names it, see [`SpecFile`]; an experiment derives it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub seed: u64,
    pub device: DeviceSpec,
    pub method: Method,
    pub backbone: BackboneConfig,
    pub backbone_weights: Option<PathBuf>,
    pub memory: MemorySpec,
    pub sidenet: SideNetConfig,
    /// Trained SideNet weights to evaluate (`sidenet.weights`): no training stage. Left
    /// out of the JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidenet_weights: Option<PathBuf>,
    pub memtrm: MemTrmConfig,
    pub data: DataSpec,
    pub batch_size: usize,
    pub segment_len: usize,
    pub train: TrainConfig,
    /// In-context learning evaluation (`longmem eval`); not part of what trains.
    #[serde(default)]
    pub icl: Option<IclSpec>,
    /// Suffix identification (ChapterBreak) evaluation; not part of what trains. Left out
    /// of the JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chapterbreak: Option<ChapterBreakSpec>,
}

/// A single-run spec file: the spec and the directory its run writes to.
#[derive(Debug, Clone)]
pub struct SpecFile {
    pub spec: Spec,
    pub out_dir: PathBuf,
}

impl std::ops::Deref for SpecFile {
    type Target = Spec;
    fn deref(&self) -> &Spec {
        &self.spec
    }
}

impl Spec {
    /// The part of the spec that decides the method's model.
    pub fn model(&self) -> ModelSpec<'_> {
        ModelSpec {
            backbone: &self.backbone,
            backbone_weights: self.backbone_weights.as_deref(),
            memory: &self.memory,
            sidenet: &self.sidenet,
            memtrm: &self.memtrm,
            batch_size: self.batch_size,
        }
    }

    /// The method's model for this spec on `device`, every RNG seeded from the spec's seed
    /// first, so the same spec always starts from the same weights; with `backbone.weights`
    /// and `sidenet.weights` loaded where given.
    pub fn build_model(&self, device: tch::Device) -> Result<Box<dyn MethodModel>, BuildError> {
        crate::seed::seed_everything(self.seed);
        let model = self.method.build(&self.model(), device)?;
        if let Some(path) = &self.sidenet_weights {
            crate::models::weights::load_safetensors(model.trained_vs(), path, &self.backbone).map_err(|source| {
                BuildError::SideNetWeights {
                    path: path.clone(),
                    source: Box::new(source),
                }
            })?;
        }
        Ok(model)
    }

    /// Whether the run has a training stage: its method trains, and no trained weights are
    /// given for what it would train (`sidenet.weights`).
    pub fn trains(&self) -> bool {
        trains(self.method, self.sidenet_weights.as_deref())
    }

    /// The shape whose useful forward FLOPs per position this run's model costs at local
    /// window `window`.
    pub fn flop_shape(&self, window: usize) -> FlopShape<'_> {
        self.method.flop_shape(&self.model(), window)
    }

    /// A local window for the long-window plain reference (T + M "when it fits"): at least
    /// the trained segment and within a gpt2 backbone's position table; ALiBi (`newgpt`)
    /// runs at any length. The error reads after the window's name.
    pub fn check_window(&self, window: usize) -> Result<usize, String> {
        if window < self.segment_len {
            return Err(format!(
                "{window} is shorter than the spec's segment_len = {}",
                self.segment_len
            ));
        }
        if let Some(max) = self.backbone.max_segment_len().filter(|&max| window as i64 > max) {
            return Err(format!(
                "{window} does not fit this gpt2 backbone (n_positions = {max}); the long-window reference \
                 needs a larger position table or a newgpt (ALiBi) backbone"
            ));
        }
        Ok(window)
    }

    /// The same spec with memory size, chunk and top-K replaced where given (evaluation-time
    /// settings: the trained weights do not depend on them). Errors name the setting.
    pub fn with_memory(&self, size: Option<i64>, chunk: Option<i64>, k: Option<i64>) -> Result<Spec, String> {
        let mut spec = self.clone();
        let m = &mut spec.memory;
        (m.size, m.chunk, m.k) = (size.unwrap_or(m.size), chunk.unwrap_or(m.chunk), k.unwrap_or(m.k));
        if m.chunk <= 0 {
            return Err(format!("chunk {} is invalid: a positive number of tokens", m.chunk));
        }
        for (name, value) in [("memory size", m.size), ("top-K", m.k)] {
            if value <= 0 || value % m.chunk != 0 {
                return Err(format!(
                    "{name} {value} is invalid: a positive multiple of the chunk size {}",
                    m.chunk
                ));
            }
        }
        Ok(spec)
    }

    /// The same spec with its generator's `[data]` settings changed by `changes` (e.g.
    /// `doc_tokens`, `needle_rate`): held-out documents other than those trained on, such as
    /// longer ones. Only the built-in recall, needle and variables generators and the text task
    /// a corpus inserts (`data.insert`: its keys) take changes; errors name the key.
    pub fn with_data_changes(&self, changes: &toml::Table) -> Result<Spec, String> {
        fn changed<T: Serialize + serde::de::DeserializeOwned>(config: &T, changes: &toml::Table) -> Result<T, String> {
            let mut table = toml::Table::try_from(config).map_err(|e| e.to_string())?;
            table.extend(changes.iter().map(|(k, v)| (k.clone(), v.clone())));
            table.try_into().map_err(|e: toml::de::Error| e.message().to_string())
        }
        let mut spec = self.clone();
        if changes.is_empty() {
            return Ok(spec);
        }
        match &mut spec.data {
            DataSpec::Recall(r) => {
                *r = changed(r, changes)?;
                r.validate().map_err(|e| e.to_string())?;
            }
            DataSpec::Needle(n) => {
                *n = changed(n, changes)?;
                n.validate().map_err(|e| e.to_string())?;
            }
            DataSpec::Variables(v) => {
                *v = changed(v, changes)?;
                v.validate().map_err(|e| e.to_string())?;
            }
            data => match data.corpus_mut().and_then(|c| c.insert.as_mut()) {
                Some(insert) => {
                    *insert = changed(insert, changes)?;
                    insert.validate().map_err(|e| e.to_string())?;
                }
                None => {
                    return Err(
                        "only the recall, needle and variables generators and a corpus's inserted text task \
                     (data.insert) take held-out data changes; a corpus's held-out documents are its own"
                            .into(),
                    )
                }
            },
        }
        // The model reads token ids: held-out documents must number their tokens as trained.
        let (trained, held_out) = (self.data.vocab_size(), spec.data.vocab_size());
        if held_out != trained {
            return Err(format!(
                "these changes give a vocabulary of {held_out} tokens, not the {trained} the model was trained \
                 on; change only lengths and rates (doc_tokens, *_rate), or train with the larger symbol space"
            ));
        }
        Ok(spec)
    }

    /// Whether two specs train the same run: everything but the evaluation settings agrees.
    pub fn same_training(&self, other: &Spec) -> bool {
        let strip = |s: &Spec| Spec {
            icl: None,
            chapterbreak: None,
            ..s.clone()
        };
        strip(self) == strip(other)
    }

    /// Reads, parses and validates a single-run spec file (one that names its `out_dir`).
    pub fn load(path: &Path) -> Result<SpecFile, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates single-run spec text; `path` names it in errors and anchors
    /// relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<SpecFile, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| SpecError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        let r = Resolver::new(path, FileChecks::All);
        let Some(out_dir) = &raw.out_dir else {
            return Err(r.invalid("out_dir", &"(missing)", "the directory this run writes to"));
        };
        let out_dir = resolve_path(r.base(), out_dir);
        Ok(SpecFile {
            spec: raw.resolve(&r)?,
            out_dir,
        })
    }

    /// Resolves a spec given as a TOML table (an experiment's sweep point, without
    /// `out_dir`); `path` names the experiment file in errors and anchors relative paths.
    /// Files are checked as `check` says: the backbone weights may be an upstream run's
    /// output that does not exist yet, and planning may look at a spec whose data lives on
    /// another machine.
    pub fn from_table(table: toml::Table, path: &Path, check: FileChecks) -> Result<Self, SpecError> {
        let raw: RawSpec = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| SpecError::Parse {
                path: path.into(),
                message: e.to_string(),
            })?;
        raw.resolve(&Resolver::new(path, check))
    }
}

impl RawSpec {
    /// Resolves every section, in the order their errors are reported.
    pub(super) fn resolve(self, r: &Resolver) -> Result<Spec, SpecError> {
        let backbone_weights = self.backbone.weights.as_ref().map(|w| resolve_path(r.base(), w));
        // A model directory, or what names one on another machine (no such path here, no
        // file extension): text then defaults to its tokenizer.
        let model_dir = backbone_weights
            .as_deref()
            .filter(|w| w.is_dir() || (!w.exists() && w.extension().is_none()));
        check_weights(backbone_weights.as_deref(), self.method, r)?;
        let data = resolve_data(self.data, model_dir, r)?;
        let sidenet_weights = self.sidenet.resolve_weights(self.method, r)?;
        let trains = trains(self.method, sidenet_weights.as_deref());
        let train = self.train.resolve(self.seed, (self.method, trains), self.device, r)?;
        let segment_len = self.train.segment_len;

        let backbone = self
            .backbone
            .resolve(data.vocab_size(), segment_len, backbone_weights.as_deref(), r)?;
        let memory = resolve_memory(&self.memory, &self.memtrm, self.method, r)?;
        let sidenet = self.sidenet.resolve(&backbone, r)?;
        let memtrm = self.memtrm.resolve(&backbone, r)?;
        let icl = self.icl.map(|icl| resolve_icl(icl, &data, r)).transpose()?;
        let chapterbreak = self
            .chapterbreak
            .map(|cb| resolve_chapterbreak(cb, &data, segment_len, r))
            .transpose()?;
        Ok(Spec {
            seed: self.seed,
            device: self.device,
            method: self.method,
            backbone,
            backbone_weights,
            memory,
            sidenet,
            sidenet_weights,
            memtrm,
            data,
            batch_size: self.train.batch_size,
            segment_len,
            train,
            icl,
            chapterbreak,
        })
    }
}

/// [`Spec::trains`], for the resolver, which needs it before the spec exists.
fn trains(method: Method, sidenet_weights: Option<&Path>) -> bool {
    method.trains() && sidenet_weights.is_none()
}

/// Methods that start from a trained backbone name its weights, which must exist when the
/// resolver checks them.
fn check_weights(weights: Option<&Path>, method: Method, r: &Resolver) -> Result<(), SpecError> {
    match weights {
        None if method.needs_backbone_weights() && r.requires_weights() => Err(r.invalid(
            "backbone.weights",
            &"(missing)",
            &format!("method {method} starts from a trained backbone: set it to a pretrain run's backbone.safetensors"),
        )),
        Some(w) if r.checks_weights() && !w.is_file() && !w.is_dir() => Err(r.invalid(
            "backbone.weights",
            &w.display(),
            "an existing .safetensors file or Hugging Face model directory",
        )),
        _ => Ok(()),
    }
}
