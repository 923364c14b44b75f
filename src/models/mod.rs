//! Models: the backbone, generic over its family (one file per family: [`gpt2`],
//! [`newgpt`], [`llama`], [`neox`]; Hugging Face directories through [`hf`]), and its
//! weights I/O; LongMem and the MemTRM-style coupled baseline built on
//! it, sharing the attention core and the joint attention. Plain baselines are the backbone
//! itself.
//!
//! Adding a backbone family: a file implementing [`family::Family`] (its config defaults,
//! projections, block layers, position handling, head and checkpoint names), its
//! [`BlockStyle`] variant, and its line in [`family_of`].

pub mod attention;
pub mod backbone;
pub mod block;
pub mod config;
pub mod family;
pub mod fused;
pub mod gpt2;
pub mod hf;
pub mod joint;
pub mod layers;
pub mod llama;
pub mod longmem;
pub mod memtrm;
pub mod neox;
pub mod newgpt;
pub mod weights;

pub use attention::{Attention, Qkv};
pub use backbone::{Backbone, BackboneOutput};
pub use block::{AttentionOutput, Block, LayerAttention};
pub use config::{default_memory_layer, BackboneConfig, BlockStyle, Gelu, RopeScaling, RotaryLayout};
pub use joint::{JointAttention, JointMode};
pub use longmem::{LongMem, LongMemOutput, SideNetConfig};
pub use memtrm::{MemTrm, MemTrmConfig, MemTrmOutput, TrainableBlocks};

/// The implementation of the backbone family `style`: the registry of families.
pub fn family_of(style: BlockStyle) -> &'static dyn family::Family {
    match style {
        BlockStyle::Gpt2 => &gpt2::Gpt2,
        BlockStyle::Newgpt => &newgpt::NewGpt,
        BlockStyle::Llama => &llama::Llama,
        BlockStyle::Neox => &neox::Neox,
    }
}
