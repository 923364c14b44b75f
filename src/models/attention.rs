//! The attention core shared by every backbone family: multi-head causal self-attention
//! split into projection (the family's [`Projections`]), local attention (scaled dot
//! product with the causal mask and the family's position scheme: none, ALiBi or rotary)
//! and output projection, so that memory-augmented layers (LongMem's SideNet layer,
//! MemTRM's backbone layer) can replace the middle step.
//!
//! Queries, keys and values leave [`Attention::qkv`] before any position term: the rotary
//! families rotate them only inside local attention ([`Attention::local_inputs`]), so the
//! memory bank caches position-free keys and memory is read with position-free queries,
//! as the paper's memory branch (which carries no position signal) needs. Under
//! grouped-query attention keys and values have fewer heads than queries.

use super::config::{BackboneConfig, RopeScaling, RotaryLayout};
use tch::{Kind, Tensor};

/// Per-head queries, keys and values of one layer, before any position term.
#[derive(Debug)]
pub struct Qkv {
    /// `[B, H, T, d]`
    pub q: Tensor,
    /// `[B, Hkv, T, d]` (Hkv = H but under grouped-query attention)
    pub k: Tensor,
    /// `[B, Hkv, T, d]`
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
/// it (`Gpt2Projections`, `NeoxProjections`) or uses [`SplitProjections`].
pub trait Projections: std::fmt::Debug + Send {
    /// `x: [B, T, D]` → `[q, k, v]`: `[B, T, H·d]`, `[B, T, Hkv·d]`, `[B, T, Hkv·d]` (heads
    /// not yet split).
    fn qkv(&self, x: &Tensor) -> [Tensor; 3];
    /// Merged per-head context `[B, T, H·d]` → `[B, T, D]`.
    fn out(&self, merged: &Tensor) -> Tensor;
}

/// How a family's attention sees positions.
#[derive(Debug)]
pub enum Positions {
    /// None in attention: learned positions enter in the embedding (`gpt2`).
    Embedding,
    /// ALiBi slopes `[H]` added to the scores (`newgpt`).
    Alibi(Tensor),
    /// Rotary embeddings of queries and keys (`llama`, `neox`).
    Rotary(Rotary),
}

/// Causal self-attention of one block: a family's projections around the shared core
/// (heads, scaled dot product, causal mask and the family's [`Positions`]).
#[derive(Debug)]
pub struct Attention {
    proj: Box<dyn Projections>,
    n_head: i64,
    n_kv_head: i64,
    head_dim: i64,
    positions: Positions,
    dropout: f64,
}

impl Attention {
    /// `config`'s heads, head width and dropout around `proj`, with the family's
    /// `positions` (tensors on the weights' device).
    pub fn new(proj: Box<dyn Projections>, config: &BackboneConfig, positions: Positions) -> Self {
        Self {
            proj,
            n_head: config.n_head,
            n_kv_head: config.n_kv_head(),
            head_dim: config.head_dim(),
            positions,
            dropout: config.dropout,
        }
    }

    pub fn n_head(&self) -> i64 {
        self.n_head
    }

    /// `x: [B, T, D]` (already normed) → per-head q `[B, H, T, d]`, k and v
    /// `[B, Hkv, T, d]`, without position terms.
    pub fn qkv(&self, x: &Tensor) -> Qkv {
        let (b, t, _) = x.size3().expect("attention input must be [B, T, D]");
        let split = |y: Tensor, heads: i64| y.view([b, t, heads, self.head_dim]).transpose(1, 2);
        let [q, k, v] = self.proj.qkv(x);
        Qkv {
            q: split(q, self.n_head),
            k: split(k, self.n_kv_head),
            v: split(v, self.n_kv_head),
        }
    }

    /// What local attention attends with: rotary families' queries and keys rotated by
    /// their positions 0..T in the segment, and keys and values repeated to H heads under
    /// grouped-query attention (each key/value head serving H/Hkv consecutive query heads).
    pub fn local_inputs(&self, qkv: &Qkv) -> Qkv {
        let (q, k) = match &self.positions {
            Positions::Rotary(rotary) => rotary.apply_pair(&qkv.q, &qkv.k),
            _ => (qkv.q.shallow_clone(), qkv.k.shallow_clone()),
        };
        let group = self.n_head / self.n_kv_head;
        let repeat = |x: Tensor| {
            if group == 1 {
                x
            } else {
                x.repeat_interleave_self_int(group, 1, None)
            }
        };
        Qkv {
            q,
            k: repeat(k),
            v: repeat(qkv.v.shallow_clone()),
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
        let bias = match &self.positions {
            Positions::Alibi(slopes) => Some(alibi_causal_bias(slopes, t).to_kind(qkv.q.kind())),
            _ => None,
        };
        let causal = bias.is_none();
        let local = self.local_inputs(qkv);
        Tensor::scaled_dot_product_attention(&local.q, &local.k, &local.v, bias, dropout, causal, scale, false)
    }

    /// The additive score bias of local attention over [`Attention::local_inputs`],
    /// `[1 or H, T, T]`: the causal mask (`-inf` above the diagonal) plus ALiBi where the
    /// family uses it.
    pub fn position_bias(&self, t: i64, device: tch::Device) -> Tensor {
        match &self.positions {
            Positions::Alibi(slopes) => alibi_causal_bias(slopes, t),
            _ => {
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

/// Rotary position embeddings (Su et al. 2021, "RoFormer") as HF's Llama and GPT-NeoX
/// apply them: the first `rotary_dim` dimensions of each head rotate in pairs
/// `(i, i + rotary_dim/2)` (`rotate_half`) by angle `position · inv_freq[i]`; the rest pass
/// through (NeoX's partial rotary).
#[derive(Debug)]
pub struct Rotary {
    /// `[rotary_dim / 2]` f32.
    inv_freq: Tensor,
    rotary_dim: i64,
}

impl Rotary {
    /// The frequencies of `layout` (θ, rotary dimensions, `rope_scaling`) on `device`.
    pub fn new(layout: &RotaryLayout, device: tch::Device) -> Self {
        let dim = layout.rotary_dim;
        // HF: 1 / θ^(arange(0, dim, 2) / dim), in f32.
        let exponents = Tensor::arange_start_step(0, dim, 2, (Kind::Float, tch::Device::Cpu)) / dim as f64;
        let inv_freq = Tensor::from(layout.theta as f32).pow(&exponents).reciprocal();
        let inv_freq = match layout.scaling {
            None => inv_freq,
            Some(RopeScaling::Linear { factor }) => inv_freq / factor,
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: context,
            }) => {
                // HF `_compute_llama3_parameters`: long wavelengths scaled by 1/factor, short
                // ones kept, the band between interpolated.
                let wavelen = inv_freq.reciprocal() * (2.0 * std::f64::consts::PI);
                let (low_wavelen, high_wavelen) = (context / low_freq_factor, context / high_freq_factor);
                let scaled = inv_freq.where_self(&wavelen.le(low_wavelen), &(&inv_freq / factor));
                let smooth =
                    ((wavelen.reciprocal() * context) - low_freq_factor) / (high_freq_factor - low_freq_factor);
                let smoothed: Tensor = (-&smooth + 1.0) * (&scaled / factor) + &smooth * &scaled;
                let medium = wavelen.ge(high_wavelen).logical_and(&wavelen.le(low_wavelen));
                smoothed.where_self(&medium, &scaled)
            }
        };
        Self {
            inv_freq: inv_freq.to_device(device),
            rotary_dim: dim,
        }
    }

    /// `x: [B, heads, T, d]` rotated by positions 0..T.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let (cos, sin) = self.cos_sin(x);
        self.rotate(x, &cos, &sin)
    }

    /// Queries and keys of one segment rotated by positions 0..T, the angles computed once.
    pub fn apply_pair(&self, q: &Tensor, k: &Tensor) -> (Tensor, Tensor) {
        let (cos, sin) = self.cos_sin(q);
        (self.rotate(q, &cos, &sin), self.rotate(k, &cos, &sin))
    }

    /// `cos` and `sin` `[T, rotary_dim]` of positions 0..T of `x: [B, heads, T, d]`, in
    /// its dtype.
    fn cos_sin(&self, x: &Tensor) -> (Tensor, Tensor) {
        let t = x.size()[2];
        let positions = Tensor::arange(t, (Kind::Float, x.device()));
        let freqs = positions.outer(&self.inv_freq); // [T, r/2]
        let angles = Tensor::cat(&[&freqs, &freqs], -1); // [T, r]
        (angles.cos().to_kind(x.kind()), angles.sin().to_kind(x.kind()))
    }

    fn rotate(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let d = x.size()[3];
        let r = self.rotary_dim;
        let rot = x.narrow(-1, 0, r);
        let (first, second) = (rot.narrow(-1, 0, r / 2), rot.narrow(-1, r / 2, r / 2));
        let rotated = &rot * cos + Tensor::cat(&[-second, first], -1) * sin;
        if r == d {
            rotated
        } else {
            Tensor::cat(&[rotated, x.narrow(-1, r, d - r)], -1)
        }
    }
}

/// Separate query, key, value and output projections (`newgpt`, `llama`), under the
/// checkpoint names the family gives them.
#[derive(Debug)]
pub struct SplitProjections {
    pub q: tch::nn::Linear,
    pub k: tch::nn::Linear,
    pub v: tch::nn::Linear,
    pub out: tch::nn::Linear,
}

impl Projections for SplitProjections {
    fn qkv(&self, x: &Tensor) -> [Tensor; 3] {
        use tch::nn::Module;
        [self.q.forward(x), self.k.forward(x), self.v.forward(x)]
    }

    fn out(&self, merged: &Tensor) -> Tensor {
        use tch::nn::Module;
        self.out.forward(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::RotaryLayout;

    /// Rotary scores depend on positions only through their difference: a query and a key
    /// placed s positions later score the same; the pass-through dimensions never rotate.
    #[test]
    fn rotary_scores_are_relative_and_partial_rotary_passes_the_rest_through() {
        let layout = RotaryLayout {
            rotary_dim: 4,
            ..RotaryLayout::llama(1, 8)
        };
        let rotary = Rotary::new(&layout, tch::Device::Cpu);
        let (q, k) = (
            Tensor::randn([1, 1, 1, 8], (Kind::Float, tch::Device::Cpu)),
            Tensor::randn([1, 1, 1, 8], (Kind::Float, tch::Device::Cpu)),
        );
        // q and k repeated at every position 0..12; rotated, then scored.
        let (rq, rk) = (
            rotary.apply(&q.repeat([1, 1, 12, 1])),
            rotary.apply(&k.repeat([1, 1, 12, 1])),
        );
        let score = |i: i64, j: i64| rq.get(0).get(0).get(i).dot(&rk.get(0).get(0).get(j)).double_value(&[]);
        for (i, j) in [(3, 1), (7, 2), (11, 0)] {
            assert!((score(i, j) - score(i - j, 0)).abs() < 1e-4, "({i}, {j})");
        }
        assert!(
            (score(5, 1) - score(1, 5)).abs() > 1e-4,
            "the sign of the offset matters"
        );
        let rest = rq.narrow(-1, 4, 4);
        assert!(rest.equal(&q.narrow(-1, 4, 4).repeat([1, 1, 12, 1])));
        assert!(rq.get(0).get(0).get(0).equal(&q.view([8])), "position 0 is not rotated");
    }
}
