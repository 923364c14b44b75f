//! Multi-head causal self-attention for both block styles (DESIGN.md §2.1), split into
//! projection, local attention and output projection so that memory-augmented layers
//! (LongMem's SideNet layer, MemTRM's backbone layer) can replace the middle step.

use super::config::{BackboneConfig, BlockStyle};
use super::layers::{linear, Conv1D};
use tch::{nn, nn::Module, Kind, Tensor};

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

#[derive(Debug)]
enum Projections {
    /// HF GPT-2: fused `c_attn` [D, 3D] and `c_proj` [D, D], with biases.
    Gpt2 { c_attn: Conv1D, c_proj: Conv1D },
    /// newgpt: separate q/k/v/out projections without bias.
    Newgpt {
        q_proj: nn::Linear,
        k_proj: nn::Linear,
        v_proj: nn::Linear,
        out_proj: nn::Linear,
    },
}

/// Causal self-attention of one block.
#[derive(Debug)]
pub struct Attention {
    proj: Projections,
    n_head: i64,
    /// ALiBi slopes `[H]` for `newgpt`; `None` for learned positions.
    alibi_slopes: Option<Tensor>,
    dropout: f64,
}

impl Attention {
    pub fn new(vs: nn::Path, config: &BackboneConfig) -> Self {
        let d = config.n_embd;
        let (proj, alibi_slopes) = match config.style {
            BlockStyle::Gpt2 => (
                Projections::Gpt2 {
                    c_attn: Conv1D::new(&vs / "c_attn", d, 3 * d),
                    c_proj: Conv1D::new(&vs / "c_proj", d, d),
                },
                None,
            ),
            BlockStyle::Newgpt => (
                Projections::Newgpt {
                    q_proj: linear(&vs / "q_proj", d, d, false),
                    k_proj: linear(&vs / "k_proj", d, d, false),
                    v_proj: linear(&vs / "v_proj", d, d, false),
                    out_proj: linear(&vs / "out_proj", d, d, false),
                },
                Some(alibi_slopes(config.n_head).to_device(vs.device())),
            ),
        };
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
        match &self.proj {
            Projections::Gpt2 { c_attn, .. } => {
                let fused = c_attn.forward(x);
                let parts = fused.split(d, -1);
                let mut parts = parts.into_iter().map(split);
                Qkv {
                    q: parts.next().unwrap(),
                    k: parts.next().unwrap(),
                    v: parts.next().unwrap(),
                }
            }
            Projections::Newgpt {
                q_proj, k_proj, v_proj, ..
            } => Qkv {
                q: split(q_proj.forward(x)),
                k: split(k_proj.forward(x)),
                v: split(v_proj.forward(x)),
            },
        }
    }

    /// Causal attention of each token over the tokens of its own segment, with this block
    /// style's position scheme: `[B, H, T, d]` per-head context. Scores use 1/√d.
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
    /// (`-inf` above the diagonal) plus ALiBi for `newgpt`.
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
        match &self.proj {
            Projections::Gpt2 { c_proj, .. } => c_proj.forward(&merged),
            Projections::Newgpt { out_proj, .. } => out_proj.forward(&merged),
        }
    }
}

/// ALiBi slopes `2^(-8k/H)` for heads k = 1..H (DESIGN.md §2.1), `[H]` f32.
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
