//! Models: the backbone (DESIGN.md §2.1) in both block styles and its weights I/O,
//! LongMem (§2.2) and the MemTRM-style coupled baseline (§2.3). Plain baselines are the
//! backbone itself.

pub mod attention;
pub mod backbone;
pub mod block;
pub mod config;
pub mod joint;
pub mod layers;
pub mod longmem;
pub mod memtrm;
pub mod weights;

pub use attention::{Attention, Qkv};
pub use backbone::{Backbone, BackboneOutput};
pub use block::{AttentionOutput, Block, LayerAttention};
pub use config::{BackboneConfig, BlockStyle, Gelu};
pub use joint::{JointAttention, JointMode};
pub use longmem::{LongMem, LongMemOutput, SideNetConfig};
pub use memtrm::{MemTrm, MemTrmConfig, MemTrmOutput, TrainableBlocks};
