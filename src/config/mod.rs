//! Run specs: the TOML a user writes, checked and resolved into the [`Spec`] every run
//! executes. One file per section; [`spec`] ties them together, [`builder`] makes specs in
//! code, [`sources`] turns the `[data]` section into document sources.

mod backbone;
mod builder;
mod chapterbreak;
mod data;
mod icl;
mod resolver;
mod sections;
mod slurm;
pub mod sources;
mod spec;
mod train;

pub use backbone::RawBackbone;
pub use builder::SpecBuilder;
pub use chapterbreak::{ChapterBreakSpec, BUILTIN_EXAMPLES};
pub use data::{CorpusOptions, DataSpec, RawDataSpec};
pub use icl::{IclProtocol, IclSpec};
pub use resolver::{FileChecks, Resolver, SpecError};
pub use sections::{RawMemTrm, RawSideNet};
pub use slurm::SlurmSettings;
pub use sources::{held_out, source, train_stream, AnySource, Split};
pub use spec::{RawSpec, Spec, SpecFile};
pub use train::{AdamWConfig, Precision, RawTrain, TrainConfig};
