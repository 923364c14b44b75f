//! Models. The backbone (DESIGN.md §2.1) in both block styles, and its weights I/O.

pub mod attention;
pub mod backbone;
pub mod block;
pub mod config;
pub mod layers;
pub mod weights;

pub use attention::{Attention, Qkv};
pub use backbone::{Backbone, BackboneOutput};
pub use block::{Block, LayerAttention};
pub use config::{BackboneConfig, BlockStyle, Gelu};
