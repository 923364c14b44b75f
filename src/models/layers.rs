//! Small layers shared by every family, with GPT-2's initialisation (N(0, 0.02) weights).

use tch::nn;

/// A dense layer in PyTorch's `nn.Linear` layout (`weight: [out, in]`), N(0, 0.02) init.
pub fn linear(vs: nn::Path, d_in: i64, d_out: i64, bias: bool) -> nn::Linear {
    let config = nn::LinearConfig {
        ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 },
        bs_init: Some(nn::Init::Const(0.0)),
        bias,
    };
    nn::linear(vs, d_in, d_out, config)
}

/// LayerNorm over the last dimension with weight 1 and bias 0 at init.
pub fn layer_norm(vs: nn::Path, d: i64, eps: f64) -> nn::LayerNorm {
    let config = nn::LayerNormConfig {
        eps,
        ..Default::default()
    };
    nn::layer_norm(vs, vec![d], config)
}

/// Embedding table with N(0, 0.02) init.
pub fn embedding(vs: nn::Path, n: i64, d: i64) -> nn::Embedding {
    let config = nn::EmbeddingConfig {
        ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 },
        ..Default::default()
    };
    nn::embedding(vs, n, d, config)
}

/// A family's normalisation layer: LayerNorm (`gpt2`, `newgpt`, `neox`) or RMSNorm
/// (`llama`).
#[derive(Debug)]
pub enum Norm {
    Layer(nn::LayerNorm),
    Rms(RmsNorm),
}

impl nn::Module for Norm {
    fn forward(&self, xs: &tch::Tensor) -> tch::Tensor {
        match self {
            Norm::Layer(ln) => ln.forward(xs),
            Norm::Rms(rms) => rms.forward(xs),
        }
    }
}

/// RMSNorm as HF's `LlamaRMSNorm`: `weight · x / √(mean(x²) + eps)`, the statistics in
/// f32; weight 1 at init.
#[derive(Debug)]
pub struct RmsNorm {
    pub weight: tch::Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(vs: nn::Path, d: i64, eps: f64) -> Self {
        Self {
            weight: vs.var("weight", &[d], nn::Init::Const(1.0)),
            eps,
        }
    }
}

impl nn::Module for RmsNorm {
    fn forward(&self, xs: &tch::Tensor) -> tch::Tensor {
        let x = xs.to_kind(tch::Kind::Float);
        let variance = x.square().mean_dim(-1, true, tch::Kind::Float);
        let normed = (x * (variance + self.eps).rsqrt()).to_kind(xs.kind());
        &self.weight * normed
    }
}
