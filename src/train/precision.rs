//! Mixed precision on CUDA: f16 autocast for the forward pass, with dynamic loss scaling so
//! small f16 gradients do not underflow (the usual GradScaler: scale the loss, unscale the
//! gradients, skip the step and halve the scale when any gradient overflowed, double it
//! after a run of good steps). tch's autocast is CUDA-only, so f16 on a CPU device is an
//! error, never a silent f32 run.

use crate::config::Precision;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Dynamic loss scale; its state is saved in checkpoints so resume stays exact.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    /// Consecutive steps without overflow.
    pub good_steps: u64,
}

/// Steps without overflow before the scale doubles.
const GROWTH_INTERVAL: u64 = 2000;

impl Default for LossScaler {
    fn default() -> Self {
        Self {
            scale: 65536.0,
            good_steps: 0,
        }
    }
}

impl LossScaler {
    /// Divides the gradients of `params` by the scale. Returns false (and backs off) when
    /// any gradient is inf or NaN: the caller must then skip the optimizer step.
    pub fn unscale(&mut self, params: &[(String, Tensor)]) -> bool {
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = params.iter().map(|(_, p)| p.grad()).filter(|g| g.defined()).collect();
        let finite = grads
            .iter()
            .all(|g| bool::try_from(g.isfinite().all()).unwrap_or(false));
        if !finite {
            self.scale = (self.scale / 2.0).max(1.0);
            self.good_steps = 0;
            return false;
        }
        for mut g in grads {
            let _ = g.g_mul_scalar_(1.0 / self.scale);
        }
        self.good_steps += 1;
        if self.good_steps >= GROWTH_INTERVAL {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
        true
    }
}

/// The loss to differentiate: scaled under f16, as is under f32.
pub fn scaled(loss: &Tensor, precision: Precision, scaler: &LossScaler) -> Tensor {
    match precision {
        Precision::F32 => loss.shallow_clone(),
        Precision::F16 => loss.to_kind(Kind::Float) * scaler.scale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_with_grad(grad: &[f32]) -> Vec<(String, Tensor)> {
        let p = Tensor::zeros([grad.len() as i64], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        (&p * Tensor::from_slice(grad)).sum(Kind::Float).backward();
        vec![("p".into(), p)]
    }

    #[test]
    fn finite_gradients_are_unscaled() {
        let mut s = LossScaler {
            scale: 4.0,
            good_steps: 0,
        };
        let params = param_with_grad(&[8.0, -4.0]);
        assert!(s.unscale(&params));
        assert_eq!(Vec::<f64>::try_from(params[0].1.grad()).unwrap(), vec![2.0, -1.0]);
        assert_eq!((s.scale, s.good_steps), (4.0, 1));
    }

    #[test]
    fn an_overflow_skips_the_step_and_halves_the_scale() {
        let mut s = LossScaler {
            scale: 1024.0,
            good_steps: 7,
        };
        assert!(!s.unscale(&param_with_grad(&[1.0, f32::INFINITY])));
        assert_eq!((s.scale, s.good_steps), (512.0, 0));
        assert!(!s.unscale(&param_with_grad(&[f32::NAN])));
        assert_eq!(s.scale, 256.0);
    }

    #[test]
    fn the_scale_grows_after_a_run_of_good_steps() {
        let mut s = LossScaler {
            scale: 2.0,
            good_steps: GROWTH_INTERVAL - 1,
        };
        assert!(s.unscale(&param_with_grad(&[1.0])));
        assert_eq!((s.scale, s.good_steps), (4.0, 0));
    }
}
