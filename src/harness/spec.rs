//! Training specs (TOML). Two stages: [`RawSpec`] mirrors the file (unknown keys rejected,
//! defaults at the field), and [`Spec`] is the validated, fully resolved config with no
//! `Option` left. Every error names the file, the key, the value and what is allowed.

use crate::device::DeviceSpec;
use crate::eval::cost::FlopShape;
use crate::eval::icl::IclSpec;
use crate::fsutil::resolve_path;
use crate::memory::{BankSharing, Eviction};
use crate::models::config::default_memory_layer;
use crate::models::{BackboneConfig, BlockStyle, Gelu, JointMode, MemTrmConfig, SideNetConfig, TrainableBlocks};
use crate::train::{AdamWConfig, Method, Precision, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::data_spec::{resolve_data, RawDataSpec};
pub use super::data_spec::{CorpusOptions, DataSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_device")]
    pub device: DeviceSpec,
    /// Where the run writes (relative paths are relative to the spec file's directory).
    pub out_dir: PathBuf,
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
}

fn default_device() -> DeviceSpec {
    DeviceSpec::Cpu
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackbone {
    pub style: BlockStyle,
    pub n_layer: i64,
    pub n_head: i64,
    pub n_embd: i64,
    /// Default: the data's vocabulary.
    pub vocab_size: Option<i64>,
    /// Default: the segment length.
    pub n_positions: Option<i64>,
    pub n_inner: Option<i64>,
    pub layer_norm_eps: Option<f64>,
    pub gelu: Option<Gelu>,
    pub dropout: Option<f64>,
    /// Default: `3L/4 − 1`.
    pub memory_layer: Option<i64>,
    /// Pretrained weights (safetensors); required by every method but `pretrain`.
    pub weights: Option<PathBuf>,
}

/// Memory settings. The file's form has defaults for every field, so one type serves both
/// stages; resolution only replaces `chunk` for MemTRM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySpec {
    /// Memory size M in tokens.
    pub size: i64,
    /// Chunk size c. In the file: LongMem's (MemTRM takes `memtrm.chunk`); in a resolved
    /// spec: the chunk size the bank uses.
    pub chunk: i64,
    /// Retrieved tokens per query, K.
    pub k: i64,
    pub sharing: BankSharing,
    pub eviction: Eviction,
    pub dtype: StorageDtype,
    pub reset_at_document: bool,
}

impl Default for MemorySpec {
    fn default() -> Self {
        Self {
            size: 1024,
            chunk: 4,
            k: 16,
            sharing: BankSharing::PerStream,
            eviction: Eviction::Fifo,
            dtype: StorageDtype::F32,
            reset_at_document: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDtype {
    F32,
    F16,
    Bf16,
}

impl StorageDtype {
    pub fn kind(self) -> tch::Kind {
        match self {
            StorageDtype::F32 => tch::Kind::Float,
            StorageDtype::F16 => tch::Kind::Half,
            StorageDtype::Bf16 => tch::Kind::BFloat16,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSideNet {
    /// S; default L/2.
    pub layers: Option<i64>,
    /// Default: the layer initialised from the backbone's memory layer (or the nearest).
    pub memory_layer: Option<i64>,
    pub gelu: Gelu,
    pub layer_norm_eps: f64,
    pub dropout: f64,
    pub joint: JointMode,
}

impl Default for RawSideNet {
    fn default() -> Self {
        Self {
            layers: None,
            memory_layer: None,
            gelu: Gelu::Erf,
            layer_norm_eps: 1e-5,
            dropout: 0.1,
            joint: JointMode::Gated,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMemTrm {
    pub trainable: TrainableBlocks,
    pub qk_norm: bool,
    pub joint: JointMode,
    /// Chunk size of MemTRM's bank; 1 = token-level retrieval as the original.
    pub chunk: i64,
}

impl Default for RawMemTrm {
    fn default() -> Self {
        Self {
            trainable: TrainableBlocks::Odd,
            qk_norm: false,
            joint: JointMode::Gated,
            chunk: 1,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrain {
    pub steps: u64,
    pub batch_size: usize,
    pub segment_len: usize,
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    #[serde(default)]
    pub warmup: u64,
    #[serde(default = "defaults::weight_decay")]
    pub weight_decay: f64,
    #[serde(default = "defaults::betas")]
    pub betas: [f64; 2],
    #[serde(default = "defaults::eps")]
    pub eps: f64,
    #[serde(default = "defaults::grad_clip")]
    pub grad_clip: Option<f64>,
    #[serde(default = "defaults::log_every")]
    pub log_every: u64,
    #[serde(default)]
    pub checkpoint_every: u64,
    /// "f32", or "f16": autocast with loss scaling, CUDA only.
    #[serde(default = "defaults::precision")]
    pub precision: Precision,
    /// Steps between memory-staleness measurements (0: none; memory methods only).
    #[serde(default)]
    pub staleness_every: u64,
    /// Recent segments whose written keys each measurement re-derives.
    #[serde(default = "defaults::staleness_window")]
    pub staleness_window: usize,
}

mod defaults {
    pub fn lr() -> f64 {
        2e-4
    }
    pub fn weight_decay() -> f64 {
        0.01
    }
    pub fn betas() -> [f64; 2] {
        [0.9, 0.98]
    }
    pub fn eps() -> f64 {
        1e-6
    }
    pub fn grad_clip() -> Option<f64> {
        Some(1.0)
    }
    pub fn staleness_window() -> usize {
        8
    }
    pub fn log_every() -> u64 {
        10
    }
    pub fn precision() -> super::Precision {
        super::Precision::F32
    }
}

/// A validated spec: what a run needs, nothing optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub seed: u64,
    pub device: DeviceSpec,
    pub out_dir: PathBuf,
    pub method: Method,
    pub backbone: BackboneConfig,
    pub backbone_weights: Option<PathBuf>,
    pub memory: MemorySpec,
    pub sidenet: SideNetConfig,
    pub memtrm: MemTrmConfig,
    pub data: DataSpec,
    pub batch_size: usize,
    pub segment_len: usize,
    pub train: TrainConfig,
    /// In-context learning evaluation (`longmem eval`); not part of what trains.
    #[serde(default)]
    pub icl: Option<IclSpec>,
}

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

impl Spec {
    /// The shape whose useful forward FLOPs per position this run's model costs at local
    /// window `window`.
    pub fn flop_shape(&self, window: usize) -> FlopShape<'_> {
        let memory = matches!(self.method, Method::Longmem | Method::Memtrm)
            .then(|| (self.memory.size / self.memory.chunk, self.memory.k));
        FlopShape {
            backbone: &self.backbone,
            window: window as i64,
            sidenet_layers: if self.method == Method::Longmem {
                self.sidenet.layers
            } else {
                0
            },
            backbone_head: self.method != Method::Longmem,
            memory,
        }
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
        spec.sidenet.k_tokens = m.k;
        spec.memtrm.k_tokens = m.k;
        Ok(spec)
    }

    /// Whether two specs train the same run: everything but the evaluation settings agrees.
    pub fn same_training(&self, other: &Spec) -> bool {
        let strip = |s: &Spec| Spec { icl: None, ..s.clone() };
        strip(self) == strip(other)
    }

    /// Reads, parses and validates a spec file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates spec text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| SpecError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        resolve(raw, path, FileChecks::All)
    }

    /// Resolves a spec given as a TOML table (an experiment's sweep point); `path` names the
    /// experiment file in errors and anchors relative paths. Files are checked as `check`
    /// says: the backbone weights may be an upstream run's output that does not exist yet,
    /// and planning may look at a spec whose data lives on another machine.
    pub fn from_table(table: toml::Table, path: &Path, check: FileChecks) -> Result<Self, SpecError> {
        let raw: RawSpec = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| SpecError::Parse {
                path: path.into(),
                message: e.to_string(),
            })?;
        resolve(raw, path, check)
    }
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

fn resolve(raw: RawSpec, path: &Path, check: FileChecks) -> Result<Spec, SpecError> {
    let weights_exist = check == FileChecks::All;
    let check_paths = check != FileChecks::None;
    let invalid = |key: &str, value: &dyn std::fmt::Display, allowed: &str| SpecError::Invalid {
        path: path.into(),
        key: key.into(),
        value: value.to_string(),
        allowed: allowed.into(),
    };
    // Absolute and normalised, so a run's resolved paths do not depend on the working directory.
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let base_buf = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
    let base = base_buf.as_path();
    let data = resolve_data(raw.data, base, check_paths, &invalid)?;
    let t = &raw.train;
    if t.steps == 0 {
        return Err(invalid("train.steps", &t.steps, "at least 1"));
    }
    if t.batch_size == 0 {
        return Err(invalid("train.batch_size", &t.batch_size, "at least 1"));
    }
    if t.segment_len < 2 {
        return Err(invalid("train.segment_len", &t.segment_len, "at least 2 tokens"));
    }
    if !(t.lr > 0.0 && t.lr.is_finite()) {
        return Err(invalid("train.lr", &t.lr, "a positive number"));
    }
    if t.precision == Precision::F16 && raw.device == DeviceSpec::Cpu {
        return Err(invalid(
            "train.precision",
            &"f16",
            "f32 on device = \"cpu\" (f16 autocast is CUDA-only)",
        ));
    }
    if t.staleness_every > 0 && !matches!(raw.method, Method::Longmem | Method::Memtrm) {
        return Err(invalid(
            "train.staleness_every",
            &t.staleness_every,
            &format!(
                "0 for method {}: staleness is measured on a memory (longmem, memtrm)",
                raw.method
            ),
        ));
    }
    if t.warmup >= t.steps {
        return Err(invalid(
            "train.warmup",
            &t.warmup,
            &format!("fewer than train.steps = {}", t.steps),
        ));
    }

    let b = &raw.backbone;
    let mut backbone = match b.style {
        BlockStyle::Gpt2 => BackboneConfig::gpt2,
        BlockStyle::Newgpt => BackboneConfig::newgpt,
    }(
        b.vocab_size.unwrap_or(data.vocab_size()),
        b.n_layer,
        b.n_head,
        b.n_embd,
        b.n_positions.unwrap_or(t.segment_len as i64),
    );
    backbone.n_inner = b.n_inner.unwrap_or(4 * b.n_embd);
    backbone.layer_norm_eps = b.layer_norm_eps.unwrap_or(backbone.layer_norm_eps);
    backbone.gelu = b.gelu.unwrap_or(backbone.gelu);
    backbone.dropout = b.dropout.unwrap_or(backbone.dropout);
    backbone.memory_layer = b.memory_layer.unwrap_or(default_memory_layer(b.n_layer));
    backbone.validate().map_err(|e| match e {
        crate::models::config::ConfigError::Invalid { key, value, allowed } => {
            invalid(&format!("backbone.{key}"), &value, &allowed)
        }
        other => invalid("backbone", &"", &other.to_string()),
    })?;
    if backbone.vocab_size < data.vocab_size() {
        return Err(invalid(
            "backbone.vocab_size",
            &backbone.vocab_size,
            &format!("at least the data's vocabulary, {}", data.vocab_size()),
        ));
    }
    if backbone.style == BlockStyle::Gpt2 && t.segment_len as i64 > backbone.n_positions {
        return Err(invalid(
            "train.segment_len",
            &t.segment_len,
            &format!(
                "at most backbone.n_positions = {} (the gpt2 position table)",
                backbone.n_positions
            ),
        ));
    }
    let backbone_weights = b.weights.as_ref().map(|w| resolve_path(base, w));
    match (&backbone_weights, raw.method) {
        (None, Method::Longmem | Method::Memtrm | Method::Plain) => {
            return Err(invalid(
                "backbone.weights",
                &"(missing)",
                &format!(
                    "method {} starts from a trained backbone: set it to a pretrain run's backbone.safetensors",
                    raw.method
                ),
            ))
        }
        (Some(w), _) if weights_exist && !w.is_file() => {
            return Err(invalid(
                "backbone.weights",
                &w.display(),
                "an existing safetensors file",
            ));
        }
        _ => {}
    }

    let m = &raw.memory;
    let memory_chunk = if raw.method == Method::Memtrm {
        raw.memtrm.chunk
    } else {
        m.chunk
    };
    let chunk_key = if raw.method == Method::Memtrm {
        "memtrm.chunk"
    } else {
        "memory.chunk"
    };
    if memory_chunk <= 0 {
        return Err(invalid(chunk_key, &memory_chunk, "a positive number of tokens"));
    }
    if m.size <= 0 || m.size % memory_chunk != 0 {
        return Err(invalid(
            "memory.size",
            &m.size,
            &format!("a positive multiple of {chunk_key} = {memory_chunk}"),
        ));
    }
    if m.k <= 0 || m.k % memory_chunk != 0 {
        return Err(invalid(
            "memory.k",
            &m.k,
            &format!("a positive multiple of {chunk_key} = {memory_chunk}"),
        ));
    }
    let memory = MemorySpec {
        chunk: memory_chunk,
        ..m.clone()
    };

    let s = &raw.sidenet;
    let layers = s.layers.unwrap_or(backbone.n_layer / 2).max(1);
    if backbone.n_layer % layers != 0 {
        return Err(invalid(
            "sidenet.layers",
            &layers,
            &format!("a divisor of backbone.n_layer = {}", backbone.n_layer),
        ));
    }
    let mut sidenet =
        SideNetConfig::paper(backbone.n_layer, layers, backbone.memory_layer, m.k).expect("depth checked above");
    if let Some(ml) = s.memory_layer {
        if !(0..layers).contains(&ml) {
            return Err(invalid(
                "sidenet.memory_layer",
                &ml,
                &format!("a SideNet layer in 0..{layers}"),
            ));
        }
        sidenet.memory_layer = ml;
    }
    sidenet.gelu = s.gelu;
    sidenet.layer_norm_eps = s.layer_norm_eps;
    sidenet.dropout = s.dropout;
    sidenet.joint = s.joint;

    if let TrainableBlocks::List(blocks) = &raw.memtrm.trainable {
        if let Some(bad) = blocks.iter().find(|&&i| !(0..backbone.n_layer).contains(&i)) {
            return Err(invalid(
                "memtrm.trainable",
                bad,
                &format!("block indices in 0..{}", backbone.n_layer),
            ));
        }
    }
    let memtrm = MemTrmConfig {
        trainable: raw.memtrm.trainable,
        qk_norm: raw.memtrm.qk_norm,
        joint: raw.memtrm.joint,
        k_tokens: m.k,
    };
    let train = TrainConfig {
        steps: t.steps,
        lr: t.lr,
        warmup: t.warmup,
        adamw: AdamWConfig {
            beta1: t.betas[0],
            beta2: t.betas[1],
            eps: t.eps,
            weight_decay: t.weight_decay,
        },
        grad_clip: t.grad_clip,
        log_every: t.log_every,
        checkpoint_every: t.checkpoint_every,
        seed: raw.seed,
        precision: t.precision,
        staleness_every: t.staleness_every,
        staleness_window: t.staleness_window,
    };
    let icl = raw
        .icl
        .map(|icl| resolve_icl(icl, &data, base, check_paths, &invalid))
        .transpose()?;
    Ok(Spec {
        seed: raw.seed,
        device: raw.device,
        out_dir: resolve_path(base, &raw.out_dir),
        method: raw.method,
        backbone,
        backbone_weights,
        memory,
        sidenet,
        memtrm,
        data,
        batch_size: t.batch_size,
        segment_len: t.segment_len,
        train,
        icl,
    })
}

/// Validates the `[icl]` section and makes its paths absolute.
fn resolve_icl(
    mut icl: IclSpec,
    data: &DataSpec,
    base: &Path,
    check_paths: bool,
    invalid: &dyn Fn(&str, &dyn std::fmt::Display, &str) -> SpecError,
) -> Result<IclSpec, SpecError> {
    const TASKS: [&str; 6] = ["builtin", "sst2", "mr", "subj", "sst5", "mpqa"];
    if !TASKS.contains(&icl.task.as_str()) {
        return Err(invalid(
            "icl.task",
            &icl.task,
            "one of builtin, sst2, mr, subj, sst5, mpqa",
        ));
    }
    if data.tokenizer().is_none() {
        return Err(invalid(
            "icl",
            &"(present)",
            "absent for data.kind = \"recall\", which is token ids without text; ICL needs a text model",
        ));
    }
    if icl.task == "builtin" {
        if !matches!(data, DataSpec::Demos(_)) {
            return Err(invalid(
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
                return Err(invalid(
                    key,
                    &"(missing)",
                    &format!("a file of task {}'s examples", icl.task),
                ));
            };
            *p = resolve_path(base, p);
            if check_paths && !p.is_file() {
                return Err(invalid(key, &p.display(), "an existing file"));
            }
        }
    }
    if icl.seeds == 0 {
        return Err(invalid("icl.seeds", &0, "at least 1"));
    }
    if icl.local_shots.is_empty() {
        return Err(invalid(
            "icl.local_shots",
            &"[]",
            "at least one number of demonstrations",
        ));
    }
    if icl.memory_shots.is_empty() {
        return Err(invalid(
            "icl.memory_shots",
            &"[]",
            "at least one number (0 = empty memory)",
        ));
    }
    if icl.test_examples == Some(0) {
        return Err(invalid("icl.test_examples", &0, "at least 1"));
    }
    Ok(icl)
}
