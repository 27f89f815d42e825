//! AdamW with decoupled weight decay (Loshchilov & Hutter), the same update as candle-nn's
//! `AdamW`. It is the project's own because a checkpoint must save and restore the two
//! moment estimates and the step count, which candle-nn keeps private.

use anyhow::{Context, Result, bail};
use candle_core::{DType, Tensor, Var, backprop::GradStore};
use std::collections::HashMap;

use crate::config::OptimizerConfig;
use crate::kernels::adamw::{UpdateConsts, composed_update, fused_update};

/// One trained tensor and its moment estimates.
struct Slot {
    name: String,
    var: Var,
    /// The f32 value a bf16/f16 `var` is rounded from: updates far smaller than the
    /// weight's last bit (a learning rate of 1e-5 on a weight of 1 is below bf16's 2^-8)
    /// accumulate here instead of rounding away. `None` for an f32 var.
    master: Option<Tensor>,
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
                let master = match var.dtype() {
                    DType::F32 => None,
                    _ => Some(var.as_tensor().to_dtype(DType::F32)?),
                };
                let zeros = var.as_tensor().zeros_like()?.to_dtype(DType::F32)?;
                Ok(Slot {
                    name: name.clone(),
                    var: var.clone(),
                    master,
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
    /// Variables without a gradient this step are left alone, moments included. The update
    /// is computed in f32 for every variable; a bf16/f16 one is updated through its master.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let t = self.t as i32;
        let scale_m = 1.0 / (1.0 - self.beta1.powi(t));
        let scale_v = 1.0 / (1.0 - self.beta2.powi(t));
        let decay = 1.0 - self.lr * self.weight_decay;
        let consts = UpdateConsts {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            lr: self.lr,
            scale_m,
            scale_v,
            decay,
        };
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            let g = g.to_dtype(DType::F32)?;
            let theta = s.master.as_ref().unwrap_or(s.var.as_tensor());
            let (next, m, v) = match fused_update(theta, &g, &s.m, &s.v, &consts)? {
                Some(updated) => updated,
                None => composed_update(theta, &g, &s.m, &s.v, &consts)?,
            };
            (s.m, s.v) = (m, v);
            match &mut s.master {
                Some(master) => {
                    s.var.set(&next.to_dtype(s.var.dtype())?)?;
                    *master = next;
                }
                None => s.var.set(&next)?,
            }
        }
        Ok(())
    }

    /// The moments as named tensors (`adam_m/<name>`, `adam_v/<name>`), and the f32 masters
    /// of bf16/f16 variables (`master/<name>`), for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|s| {
                [
                    Some((format!("adam_m/{}", s.name), s.m.clone())),
                    Some((format!("adam_v/{}", s.name), s.v.clone())),
                    s.master
                        .as_ref()
                        .map(|t| (format!("master/{}", s.name), t.clone())),
                ]
            })
            .flatten()
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
            // A checkpoint of a run in another precision has no master (or one this run
            // does not need): the variable's own value stands in.
            if let Some(master) = &mut s.master {
                *master = match tensors.get(&format!("master/{}", s.name)) {
                    Some(t) if t.dims() == master.dims() => t.to_device(master.device())?,
                    _ => s.var.as_tensor().to_dtype(DType::F32)?,
                };
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

    /// A bf16 variable follows the f32 path exactly through its master, although each
    /// update (1e-4) is far below bf16's spacing near 1 (2^-8): without the master every
    /// step would round back to 1. The bf16 value is the master rounded, and a checkpoint
    /// carries the master.
    #[test]
    fn bf16_variables_are_updated_through_an_f32_master() -> Result<()> {
        let dev = Device::Cpu;
        let o = OptimizerConfig {
            lr: 1e-4,
            ..OptimizerConfig::default()
        };
        // Gradients exactly representable in bf16, so both runs see the same numbers.
        let c = Tensor::new(&[0.5f32, 1.0, -2.0, 4.0], &dev)?;
        let wide = Var::new(&[1f32; 4], &dev)?;
        let narrow = Var::from_tensor(&wide.as_tensor().to_dtype(DType::BF16)?)?;
        let mut opt_wide = AdamW::new(&[("w".into(), wide.clone())], &o)?;
        let mut opt_narrow = AdamW::new(&[("w".into(), narrow.clone())], &o)?;
        for _ in 0..40 {
            let l = (wide.as_tensor() * &c)?.sum_all()?;
            opt_wide.step(&l.backward()?)?;
            let l = (narrow.as_tensor().to_dtype(DType::F32)? * &c)?.sum_all()?;
            let grads = l.backward()?;
            assert_eq!(grads.get(narrow.as_tensor()).unwrap().dtype(), DType::BF16);
            opt_narrow.step(&grads)?;
        }
        let state: HashMap<String, Tensor> = opt_narrow.state().into_iter().collect();
        let master = state["master/w"].to_vec1::<f32>()?;
        assert_eq!(master, wide.as_tensor().to_vec1::<f32>()?);
        assert!(master.iter().all(|&m| (m - 1.0).abs() > 3e-3), "{master:?}");
        assert_eq!(narrow.dtype(), DType::BF16);
        assert_eq!(
            narrow.as_tensor().to_dtype(DType::F32)?.to_vec1::<f32>()?,
            state["master/w"]
                .to_dtype(DType::BF16)?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?
        );
        // An f32 variable has no master.
        assert!(
            !opt_wide
                .state()
                .iter()
                .any(|(n, _)| n.starts_with("master/"))
        );
        Ok(())
    }
}
