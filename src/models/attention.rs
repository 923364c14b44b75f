//! The attention core shared by every backbone family: multi-head causal self-attention
//! split into projection (the family's [`Projections`]), local attention (scaled dot
//! product with the causal mask and, where the family uses it, ALiBi) and output
//! projection, so that memory-augmented layers (LongMem's SideNet layer, MemTRM's backbone
//! layer) can replace the middle step.

use super::config::BackboneConfig;
use tch::{Kind, Tensor};

/// Per-head queries, keys and values of one layer, before any position term.
#[derive(Debug)]
pub struct Qkv {
    /// `[B, H, T, d]`
    pub q: Tensor,
    /// `[B, H, T, d]`
    pub k: Tensor,
    /// `[B, H, T, d]`
    pub v: Tensor,
}

impl Qkv {
    pub fn shallow_clone(&self) -> Self {
        Self {
            q: self.q.shallow_clone(),
            k: self.k.shallow_clone(),
            v: self.v.shallow_clone(),
        }
    }
}

/// A family's attention projections: from the block's normed input to queries, keys and
/// values, and from the merged heads back to the model width. Each family file implements
/// it (`Gpt2Projections`, `NewGptProjections`).
pub trait Projections: std::fmt::Debug + Send {
    /// `x: [B, T, D]` → `[q, k, v]`, each `[B, T, D]` (heads not yet split).
    fn qkv(&self, x: &Tensor) -> [Tensor; 3];
    /// Merged per-head context `[B, T, D]` → `[B, T, D]`.
    fn out(&self, merged: &Tensor) -> Tensor;
}

/// Causal self-attention of one block: a family's projections around the shared core
/// (heads, scaled dot product, causal mask and the optional ALiBi bias).
#[derive(Debug)]
pub struct Attention {
    proj: Box<dyn Projections>,
    n_head: i64,
    /// ALiBi slopes `[H]` for families that encode positions as an attention bias; `None`
    /// for learned positions (in the embedding).
    alibi_slopes: Option<Tensor>,
    dropout: f64,
}

impl Attention {
    /// `config`'s heads and dropout around `proj`; `alibi_slopes` (`[H]`, on the weights'
    /// device) when the family adds ALiBi to the causal mask.
    pub fn new(proj: Box<dyn Projections>, config: &BackboneConfig, alibi_slopes: Option<Tensor>) -> Self {
        Self {
            proj,
            n_head: config.n_head,
            alibi_slopes,
            dropout: config.dropout,
        }
    }

    pub fn n_head(&self) -> i64 {
        self.n_head
    }

    /// `x: [B, T, D]` (already layer-normed) → per-head q, k, v `[B, H, T, d]`.
    pub fn qkv(&self, x: &Tensor) -> Qkv {
        let (b, t, d) = x.size3().expect("attention input must be [B, T, D]");
        let h = self.n_head;
        let split = |y: Tensor| y.view([b, t, h, d / h]).transpose(1, 2);
        let [q, k, v] = self.proj.qkv(x);
        Qkv {
            q: split(q),
            k: split(k),
            v: split(v),
        }
    }

    /// Causal attention of each token over the tokens of its own segment, with this
    /// family's position scheme: `[B, H, T, d]` per-head context. Scores use 1/√d.
    pub fn local(&self, qkv: &Qkv, train: bool) -> Tensor {
        self.local_scaled(qkv, None, train)
    }

    /// [`Attention::local`] with an explicit score scale (`None`: 1/√d). Dropout applies to
    /// the attention probabilities in training.
    pub fn local_scaled(&self, qkv: &Qkv, scale: Option<f64>, train: bool) -> Tensor {
        let t = qkv.q.size()[2];
        let dropout = if train { self.dropout } else { 0.0 };
        let bias = self
            .alibi_slopes
            .as_ref()
            .map(|s| alibi_causal_bias(s, t).to_kind(qkv.q.kind()));
        let causal = bias.is_none();
        Tensor::scaled_dot_product_attention(&qkv.q, &qkv.k, &qkv.v, bias, dropout, causal, scale, false)
    }

    /// The additive score bias of local attention, `[1 or H, T, T]`: the causal mask
    /// (`-inf` above the diagonal) plus ALiBi where the family uses it.
    pub fn position_bias(&self, t: i64, device: tch::Device) -> Tensor {
        match &self.alibi_slopes {
            Some(slopes) => alibi_causal_bias(slopes, t),
            None => {
                let future = Tensor::ones([t, t], (Kind::Bool, device)).triu(1);
                Tensor::zeros([1, t, t], (Kind::Float, device)).masked_fill(&future.unsqueeze(0), f64::NEG_INFINITY)
            }
        }
    }

    /// Dropout probability on attention probabilities in training.
    pub fn dropout(&self) -> f64 {
        self.dropout
    }

    /// Per-head context `[B, H, T, d]` → `[B, T, D]` through the output projection.
    pub fn project_out(&self, ctx: &Tensor) -> Tensor {
        let (b, h, t, dh) = ctx.size4().expect("context must be [B, H, T, d]");
        let merged = ctx.transpose(1, 2).contiguous().view([b, t, h * dh]);
        self.proj.out(&merged)
    }
}

/// ALiBi slopes `2^(-8k/H)` for heads k = 1..H (Press et al. 2022, "Train Short, Test
/// Long"), `[H]` f32.
pub fn alibi_slopes(n_head: i64) -> Tensor {
    let slopes: Vec<f32> = (1..=n_head)
        .map(|k| 2f32.powf(-8.0 * k as f32 / n_head as f32))
        .collect();
    Tensor::from_slice(&slopes)
}

/// Additive attention bias `[H, T, T]`: `-slope_h · (i - j)` for keys j ≤ query i, `-inf`
/// for future keys.
pub fn alibi_causal_bias(slopes: &Tensor, t: i64) -> Tensor {
    let device = slopes.device();
    let pos = Tensor::arange(t, (Kind::Float, device));
    let distance = pos.unsqueeze(1) - pos.unsqueeze(0); // [T, T], i - j
    let bias = -slopes.view([-1, 1, 1]) * distance.unsqueeze(0);
    let future = Tensor::ones([t, t], (Kind::Bool, device)).triu(1);
    bias.masked_fill(&future, f64::NEG_INFINITY)
}
