//! AdamW with decoupled weight decay (Loshchilov & Hutter), the same update as candle-nn's
//! `AdamW`. It is the project's own because a checkpoint must save and restore the two
//! moment estimates and the step count, which candle-nn keeps private.

use anyhow::{Context, Result, bail};
use candle_core::{Tensor, Var, backprop::GradStore};
use std::collections::HashMap;

use crate::config::OptimizerConfig;

/// One trained tensor and its moment estimates.
struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

pub struct AdamW {
    slots: Vec<Slot>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    lr: f64,
    /// Optimizer steps taken (the bias corrections depend on it).
    t: usize,
}

impl AdamW {
    /// Zero moments for each named variable.
    pub fn new(vars: &[(String, Var)], o: &OptimizerConfig) -> Result<Self> {
        let slots = vars
            .iter()
            .map(|(name, var)| {
                let zeros = var.as_tensor().zeros_like()?;
                Ok(Slot {
                    name: name.clone(),
                    var: var.clone(),
                    m: zeros.clone(),
                    v: zeros,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            slots,
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
            weight_decay: o.weight_decay,
            lr: o.lr,
            t: 0,
        })
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    pub fn steps_taken(&self) -> usize {
        self.t
    }

    /// `m ← β1 m + (1-β1) g`, `v ← β2 v + (1-β2) g²`,
    /// `θ ← θ (1 - lr·λ) - lr · m̂ / (√v̂ + ε)` with bias-corrected `m̂`, `v̂`.
    /// Variables without a gradient this step are left alone, moments included.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let t = self.t as i32;
        let scale_m = 1.0 / (1.0 - self.beta1.powi(t));
        let scale_v = 1.0 / (1.0 - self.beta2.powi(t));
        let decay = 1.0 - self.lr * self.weight_decay;
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            s.m = ((&s.m * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            s.v = ((&s.v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let update = ((&s.m * scale_m)? / ((&s.v * scale_v)?.sqrt()? + self.eps)?)?;
            let next = ((s.var.as_tensor() * decay)? - (update * self.lr)?)?;
            s.var.set(&next)?;
        }
        Ok(())
    }

    /// The moments as named tensors (`adam_m/<name>`, `adam_v/<name>`), for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|s| {
                [
                    (format!("adam_m/{}", s.name), s.m.clone()),
                    (format!("adam_v/{}", s.name), s.v.clone()),
                ]
            })
            .collect()
    }

    /// Restores the moments saved by `state` and the step count.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        steps_taken: usize,
    ) -> Result<()> {
        for s in &mut self.slots {
            for (key, slot) in [("adam_m", &mut s.m), ("adam_v", &mut s.v)] {
                let name = format!("{key}/{}", s.name);
                let t = tensors
                    .get(&name)
                    .with_context(|| format!("the checkpoint lacks `{name}`"))?;
                if t.dims() != slot.dims() {
                    bail!(
                        "the checkpoint's `{name}` has shape {:?}, the run's {:?}",
                        t.dims(),
                        slot.dims()
                    );
                }
                *slot = t.to_device(slot.device())?;
            }
        }
        self.t = steps_taken;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::Optimizer;

    /// Same numbers as candle-nn's AdamW, step after step, weight decay included.
    #[test]
    fn matches_candle_nn_adamw() -> Result<()> {
        let dev = Device::Cpu;
        let init = Tensor::new(&[[0.5f32, -1.0, 2.0], [0.1, 0.0, -0.3]], &dev)?;
        let ours_var = Var::from_tensor(&init)?;
        let theirs_var = Var::from_tensor(&init)?;
        let o = OptimizerConfig {
            lr: 0.05,
            weight_decay: 0.1,
            ..OptimizerConfig::default()
        };
        let mut ours = AdamW::new(&[("w".into(), ours_var.clone())], &o)?;
        let mut theirs = candle_nn::AdamW::new(
            vec![theirs_var.clone()],
            candle_nn::ParamsAdamW {
                lr: o.lr,
                beta1: o.beta1,
                beta2: o.beta2,
                eps: o.eps,
                weight_decay: o.weight_decay,
            },
        )?;
        let target = Tensor::new(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &dev)?;
        for _ in 0..5 {
            let l1 = (ours_var.as_tensor() - &target)?.sqr()?.sum_all()?;
            ours.step(&l1.backward()?)?;
            let l2 = (theirs_var.as_tensor() - &target)?.sqr()?.sum_all()?;
            theirs.step(&l2.backward()?)?;
        }
        let diff = (ours_var.as_tensor() - theirs_var.as_tensor())?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-6, "{diff}");
        assert_eq!(ours.steps_taken(), 5);
        Ok(())
    }

    /// Saving the state and loading it into a fresh optimizer continues the same path.
    #[test]
    fn state_round_trip_continues_identically() -> Result<()> {
        let dev = Device::Cpu;
        let o = OptimizerConfig {
            lr: 0.1,
            ..OptimizerConfig::default()
        };
        let target = Tensor::new(&[3f32, -2.0], &dev)?;
        let step = |opt: &mut AdamW, v: &Var| -> Result<()> {
            let l = (v.as_tensor() - &target)?.sqr()?.sum_all()?;
            opt.step(&l.backward()?)
        };
        let a = Var::new(&[0f32, 0.0], &dev)?;
        let mut opt_a = AdamW::new(&[("p".into(), a.clone())], &o)?;
        for _ in 0..3 {
            step(&mut opt_a, &a)?;
        }
        let saved: HashMap<String, Tensor> = opt_a.state().into_iter().collect();
        let b = Var::from_tensor(a.as_tensor())?;
        let mut opt_b = AdamW::new(&[("p".into(), b.clone())], &o)?;
        opt_b.load_state(&saved, opt_a.steps_taken())?;
        for _ in 0..3 {
            step(&mut opt_a, &a)?;
            step(&mut opt_b, &b)?;
        }
        assert_eq!(
            a.as_tensor().to_vec1::<f32>()?,
            b.as_tensor().to_vec1::<f32>()?
        );
        // A state for another shape is refused with the tensor named.
        let c = Var::new(&[0f32, 0.0, 0.0], &dev)?;
        let mut opt_c = AdamW::new(&[("p".into(), c)], &o)?;
        let e = opt_c.load_state(&saved, 3).unwrap_err().to_string();
        assert!(e.contains("adam_m/p"), "{e}");
        Ok(())
    }
}
