//! AdamW with decoupled weight decay (the paper's recipe: betas 0.9/0.98, eps 1e-6,
//! wd 0.01), over an explicit list of parameters, with a state that checkpoints save and
//! restore exactly (libtorch's own optimisers expose no state to tch).

use crate::config::AdamWConfig;
use tch::{Kind, Tensor};

pub struct AdamW {
    config: AdamWConfig,
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: i64,
}

impl AdamW {
    pub fn new(params: Vec<(String, Tensor)>, config: AdamWConfig) -> Self {
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Self {
            config,
            params,
            m,
            v,
            step: 0,
        }
    }

    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm`; returns the norm
    /// before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let squares: Vec<Tensor> = grads
            .iter()
            .map(|g| g.to_kind(Kind::Float).pow_tensor_scalar(2).sum(Kind::Float))
            .collect();
        let norm = Tensor::stack(&squares, 0).sum(Kind::Float).sqrt().double_value(&[]);
        if norm > max_norm {
            let scale = max_norm / (norm + 1e-6);
            for mut g in grads {
                let _ = g.g_mul_scalar_(scale);
            }
        }
        norm
    }

    /// One update at learning rate `lr`. Parameters without a gradient are left alone.
    pub fn step(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let c = self.config;
        let bias1 = 1.0 - c.beta1.powi(self.step as i32);
        let bias2 = 1.0 - c.beta2.powi(self.step as i32);
        for ((_, p), (m, v)) in self.params.iter_mut().zip(self.m.iter_mut().zip(self.v.iter_mut())) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let _ = m.g_mul_scalar_(c.beta1).g_add_(&(&g * (1.0 - c.beta1)));
            let _ = v.g_mul_scalar_(c.beta2).g_add_(&(g.square() * (1.0 - c.beta2)));
            if c.weight_decay > 0.0 {
                let _ = p.g_mul_scalar_(1.0 - lr * c.weight_decay);
            }
            let update = (&*m / bias1) / ((&*v / bias2).sqrt() + c.eps);
            let _ = p.g_sub_(&(update * lr));
        }
    }

    /// Moments and step count as named tensors.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_string(), Tensor::from_slice(&[self.step]))];
        for ((name, _), (m, v)) in self.params.iter().zip(self.m.iter().zip(&self.v)) {
            out.push((format!("m.{name}"), m.shallow_clone()));
            out.push((format!("v.{name}"), v.shallow_clone()));
        }
        out
    }

    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), String> {
        let find = |key: &str| state.iter().find(|(n, _)| n == key).map(|(_, t)| t);
        let step = find("step").ok_or("optimizer state lacks `step`")?;
        let _guard = tch::no_grad_guard();
        for ((name, _), (m, v)) in self.params.iter().zip(self.m.iter_mut().zip(self.v.iter_mut())) {
            let (sm, sv) = (find(&format!("m.{name}")), find(&format!("v.{name}")));
            let (Some(sm), Some(sv)) = (sm, sv) else {
                return Err(format!("optimizer state lacks the moments of `{name}`"));
            };
            m.copy_(sm);
            v.copy_(sv);
        }
        self.step = step.int64_value(&[0]);
        Ok(())
    }
}

/// Linear warm-up from 0 over `warmup` steps, then linear decay to 0 at `total` (the
/// paper's "lr 2e-4 linear decay"). `step` counts from 0.
pub fn learning_rate(peak: f64, step: u64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let remaining = total.saturating_sub(step) as f64 / (total - warmup).max(1) as f64;
    peak * remaining.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(learning_rate(1.0, 0, 4, 12), 0.25);
        assert_eq!(learning_rate(1.0, 3, 4, 12), 1.0);
        assert_eq!(learning_rate(1.0, 4, 4, 12), 1.0);
        assert_eq!(learning_rate(1.0, 8, 4, 12), 0.5);
        assert_eq!(learning_rate(1.0, 12, 4, 12), 0.0);
        assert_eq!(learning_rate(2.0, 0, 0, 10), 2.0);
    }

    #[test]
    fn adamw_matches_the_closed_form_first_step() {
        // First step: m̂ = g, v̂ = g², update = g/(|g|+eps) ≈ sign(g); decay shrinks p first.
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("p".into(), p.shallow_clone())], AdamWConfig::default());
        (&p * Tensor::from_slice(&[3.0f32, -0.5])).sum(Kind::Float).backward();
        opt.step(0.1);
        let got = Vec::<f64>::try_from(&p).unwrap();
        let expect = [1.0 * (1.0 - 0.001) - 0.1, -2.0 * (1.0 - 0.001) + 0.1];
        for (g, e) in got.iter().zip(expect) {
            assert!((g - e).abs() < 1e-5, "{got:?} vs {expect:?}");
        }
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let p = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("p".into(), p.shallow_clone())], AdamWConfig::default());
        (&p * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float).backward();
        assert!((opt.clip_grad_norm(1.0) - 5.0).abs() < 1e-6);
        let norm = p.grad().norm().double_value(&[]);
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
}
