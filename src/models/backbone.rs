//! The backbone language model (DESIGN.md §2.1): token (and, for `gpt2`, learned position)
//! embeddings, L blocks, final LayerNorm, LM head (tied to `wte` for `gpt2`, untied with bias
//! for `newgpt`). Besides logits it returns every block's input hidden state and the memory
//! layer's per-head keys/values, so LongMem and MemTRM build on it without changing it.

use super::attention::Qkv;
use super::block::{Block, LayerAttention};
use super::config::{BackboneConfig, BlockStyle};
use super::layers::{embedding, layer_norm, linear};
use tch::{nn, nn::Module, Kind, Tensor};

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

#[derive(Debug)]
pub struct Backbone {
    pub config: BackboneConfig,
    wte: nn::Embedding,
    wpe: Option<nn::Embedding>,
    blocks: Vec<Block>,
    ln_f: nn::LayerNorm,
    /// Untied head `[V, D]` + bias for `newgpt`; `None` means tied to `wte`.
    lm_head: Option<nn::Linear>,
}

impl Backbone {
    /// Builds the weights under `vs` with HF GPT-2 names for `gpt2` (`wte`, `wpe`, `h.{i}`,
    /// `ln_f`) and LongMem-style names for `newgpt` (`wte`, `h.{i}`, `ln_f`, `lm_head`).
    /// `config` must have passed [`BackboneConfig::validate`].
    pub fn new(vs: &nn::Path, config: &BackboneConfig) -> Self {
        let d = config.n_embd;
        let wte = embedding(vs / "wte", config.vocab_size, d);
        let (wpe, lm_head) = match config.style {
            BlockStyle::Gpt2 => (Some(embedding(vs / "wpe", config.n_positions, d)), None),
            BlockStyle::Newgpt => (None, Some(linear(vs / "lm_head", d, config.vocab_size, true))),
        };
        let h = vs / "h";
        let blocks = (0..config.n_layer).map(|i| Block::new(&h / i, config)).collect();
        let ln_f = layer_norm(vs / "ln_f", d, config.layer_norm_eps);
        Self {
            config: config.clone(),
            wte,
            wpe,
            blocks,
            ln_f,
            lm_head,
        }
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// `tokens: [B, T]` int64 → `hidden[0]`, `[B, T, D]`.
    pub fn embed(&self, tokens: &Tensor, train: bool) -> Tensor {
        let (_b, t) = tokens.size2().expect("tokens must be [B, T]");
        let x = self.wte.forward(tokens);
        let x = match &self.wpe {
            Some(wpe) => {
                assert!(
                    t <= self.config.n_positions,
                    "segment of {t} tokens exceeds the gpt2 backbone's n_positions = {}",
                    self.config.n_positions
                );
                x + wpe.forward(&Tensor::arange(t, (Kind::Int64, tokens.device())))
            }
            None => x,
        };
        x.dropout(self.config.dropout, train)
    }

    /// The final LayerNorm, `[.., D]` → `[.., D]`.
    pub fn final_norm(&self, x: &Tensor) -> Tensor {
        self.ln_f.forward(x)
    }

    /// The LM head on already-normed states, `[.., D]` → `[.., V]`.
    pub fn head(&self, x: &Tensor) -> Tensor {
        match &self.lm_head {
            Some(head) => head.forward(x),
            None => x.matmul(&self.wte.ws.tr()),
        }
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
