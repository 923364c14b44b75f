//! The backbone language model, generic over its family ([`super::family_of`]): token
//! embedding plus the family's position handling, L blocks, final LayerNorm and the
//! family's LM head. Besides logits it returns every block's input hidden state and the
//! memory layer's per-head keys/values, so LongMem and MemTRM build on it without changing
//! it.

use super::attention::Qkv;
use super::block::{Block, LayerAttention};
use super::config::BackboneConfig;
use super::family::OuterLayers;
use super::layers::{embedding, Norm};
use tch::{nn, nn::Module, Tensor};

/// Everything one forward pass yields.
#[derive(Debug)]
pub struct BackboneOutput {
    /// `[B, T, V]`
    pub logits: Tensor,
    /// L + 1 tensors `[B, T, D]`: `hidden[i]` is block i's input (`hidden[0]` the embedding
    /// output), `hidden[L]` the output after the final LayerNorm.
    pub hidden: Vec<Tensor>,
    /// The memory layer's per-head q/k/v of `LN(hidden[m])`, each `[B, H, T, d]`: what the
    /// cache memory bank stores (keys and values, before any position term).
    pub memory_qkv: Qkv,
    /// `[B, H, T, K/c]`: the memory chunks the hook read at the memory layer, when a hook
    /// read memory.
    pub retrieved_chunks: Option<Tensor>,
}

/// The blocks' part of a forward pass: everything but the logits.
struct Stack {
    hidden: Vec<Tensor>,
    memory_qkv: Qkv,
    retrieved_chunks: Option<Tensor>,
}

/// A decoder-only transformer of any family.
#[derive(Debug)]
pub struct Backbone {
    pub config: BackboneConfig,
    wte: nn::Embedding,
    /// The family's position embedding (if any) and LM head.
    outer: Box<dyn OuterLayers>,
    blocks: Vec<Block>,
    ln_f: Norm,
}

impl Backbone {
    /// Builds the weights under `vs` with the family's names (`gpt2`: HF's `wte`, `wpe`,
    /// `h.{i}`, `ln_f`; `newgpt`, `llama`, `neox`: `wte`, `lm_head`, `h.{i}`, `ln_f`, the
    /// blocks' inner names being HF's).
    /// `config` must have passed [`BackboneConfig::validate`].
    pub fn new(vs: &nn::Path, config: &BackboneConfig) -> Self {
        let family = super::family_of(config.style);
        let d = config.n_embd;
        let wte = embedding(vs / "wte", config.vocab_size, d);
        let outer = family.outer_layers(vs, config);
        let h = vs / "h";
        let blocks = (0..config.n_layer).map(|i| family.block(&h / i, config)).collect();
        let ln_f = family.final_norm(vs / "ln_f", d, config.layer_norm_eps);
        Self {
            config: config.clone(),
            wte,
            outer,
            blocks,
            ln_f,
        }
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// `tokens: [B, T]` int64 → `hidden[0]`, `[B, T, D]`.
    pub fn embed(&self, tokens: &Tensor, train: bool) -> Tensor {
        let (_b, _t) = tokens.size2().expect("tokens must be [B, T]");
        let x = self.outer.add_positions(self.wte.forward(tokens), tokens);
        x.dropout(self.config.dropout, train)
    }

    /// The final LayerNorm, `[.., D]` → `[.., D]`.
    pub fn final_norm(&self, x: &Tensor) -> Tensor {
        self.ln_f.forward(x)
    }

    /// The LM head on already-normed states, `[.., D]` → `[.., V]`.
    pub fn head(&self, x: &Tensor) -> Tensor {
        self.outer.head(x, &self.wte)
    }

    /// Plain forward pass.
    pub fn forward(&self, tokens: &Tensor, train: bool) -> BackboneOutput {
        self.forward_with(tokens, train, None)
    }

    /// Forward pass in which `hook`, when given, computes the memory layer's attention.
    pub fn forward_with(&self, tokens: &Tensor, train: bool, hook: Option<&dyn LayerAttention>) -> BackboneOutput {
        let stack = self.stack(tokens, train, hook);
        let logits = self.head(&stack.hidden[stack.hidden.len() - 1]);
        BackboneOutput {
            logits,
            hidden: stack.hidden,
            memory_qkv: stack.memory_qkv,
            retrieved_chunks: stack.retrieved_chunks,
        }
    }

    /// The forward pass without the LM head: `H[0..L]` (the last after the final LN) and the
    /// memory layer's q/k/v. LongMem needs no backbone logits. What a `hook` retrieved is
    /// not returned: [`Backbone::forward_with`] returns it.
    pub fn hidden_states(&self, tokens: &Tensor, train: bool, hook: Option<&dyn LayerAttention>) -> (Vec<Tensor>, Qkv) {
        let stack = self.stack(tokens, train, hook);
        (stack.hidden, stack.memory_qkv)
    }

    fn stack(&self, tokens: &Tensor, train: bool, hook: Option<&dyn LayerAttention>) -> Stack {
        let memory_layer = self.config.memory_layer as usize;
        let mut hidden = Vec::with_capacity(self.blocks.len() + 1);
        let mut x = self.embed(tokens, train);
        let mut memory = None;
        for (i, block) in self.blocks.iter().enumerate() {
            let layer_hook = if i == memory_layer { hook } else { None };
            let out = block.forward(&x, train, layer_hook);
            hidden.push(x);
            if i == memory_layer {
                memory = Some((out.qkv, out.retrieved_chunks));
            }
            x = out.hidden;
        }
        hidden.push(self.final_norm(&x));
        let (memory_qkv, retrieved_chunks) = memory.expect("memory_layer is validated to be a block index");
        Stack {
            hidden,
            memory_qkv,
            retrieved_chunks,
        }
    }
}
