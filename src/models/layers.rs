//! Small layers shared by both block styles.

use tch::{nn, Tensor};

/// HF GPT-2's `Conv1D`: a dense layer stored as `weight: [in, out]`, `bias: [out]`, so HF
/// checkpoints load unchanged.
#[derive(Debug)]
pub struct Conv1D {
    /// `[in, out]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Tensor,
}

impl Conv1D {
    pub fn new(vs: nn::Path, d_in: i64, d_out: i64) -> Self {
        // GPT-2's initialisation: N(0, 0.02) weights, zero bias.
        let weight = vs.var("weight", &[d_in, d_out], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let bias = vs.var("bias", &[d_out], nn::Init::Const(0.0));
        Self { weight, bias }
    }

    /// `[.., in] -> [.., out]`, the bias added inside the matmul (`addmm`), not in a pass of
    /// its own over the output.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let size = xs.size();
        let (d_in, d_out) = (self.weight.size()[0], self.weight.size()[1]);
        let out = self.bias.addmm(&xs.reshape([-1, d_in]), &self.weight);
        let mut shape = size[..size.len() - 1].to_vec();
        shape.push(d_out);
        out.view(shape.as_slice())
    }
}

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
