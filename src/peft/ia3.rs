//! IA3 (Liu et al., 2022), as Hugging Face PEFT defines it: a learned vector per targeted
//! projection, initialised to ones. On attention projections (keys, values) it rescales the
//! output, `y = (x Wᵀ + b) ⊙ l`; on feed-forward ones (`down_proj`) it rescales the input,
//! i.e. the MLP's inner activations: `y = (x ⊙ l) Wᵀ + b`.

use anyhow::{Result, bail};
use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::export::save_safetensors;
use super::init;
use super::lora::{matches_target, require_attached};
use super::{ExportContext, Method};
use crate::files::save_json;
use crate::models::{Injector, LinearAdapter, ModelConfig, Projection};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ia3Config {
    /// Projections that get a vector.
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
    /// Of those, the ones whose input (not output) is rescaled.
    #[serde(default = "default_ff")]
    pub feedforward_modules: Vec<String>,
}

fn default_targets() -> Vec<String> {
    vec!["k_proj".into(), "v_proj".into(), "down_proj".into()]
}
fn default_ff() -> Vec<String> {
    vec!["down_proj".into()]
}

impl Default for Ia3Config {
    fn default() -> Self {
        Self {
            target_modules: default_targets(),
            feedforward_modules: default_ff(),
        }
    }
}

impl Ia3Config {
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        if self.target_modules.is_empty() {
            return Err((
                "target_modules".into(),
                "name at least one projection, e.g. [\"k_proj\", \"v_proj\", \"down_proj\"]".into(),
            ));
        }
        if let Some(f) = self
            .feedforward_modules
            .iter()
            .find(|f| !self.target_modules.contains(f))
        {
            return Err((
                "feedforward_modules".into(),
                format!("`{f}` is not one of target_modules"),
            ));
        }
        Ok(())
    }

    fn is_feedforward(&self, path: &str) -> bool {
        matches_target(path, &self.feedforward_modules)
    }

    /// One value per output of each targeted projection (per input for feed-forward ones).
    pub fn param_count(&self, model: &ModelConfig) -> usize {
        model
            .projections()
            .iter()
            .filter(|(p, ..)| matches_target(p, &self.target_modules))
            .map(|(p, i, o, _)| if self.is_feedforward(p) { *i } else { *o })
            .sum()
    }
}

#[derive(Debug)]
pub(crate) struct Ia3Vector {
    pub(crate) scale: Var,
    pub(crate) feedforward: bool,
}

impl LinearAdapter for Ia3Vector {
    fn forward(&self, x: &Tensor, base: &Projection, _train: bool) -> candle_core::Result<Tensor> {
        if self.feedforward {
            base.forward(&x.broadcast_mul(self.scale.as_tensor())?)
        } else if let Some(y) = output_scaled(x, base, self.scale.as_tensor())? {
            Ok(y)
        } else {
            base.forward(x)?.broadcast_mul(self.scale.as_tensor())
        }
    }

    /// Feed-forward: each input column of W scaled; otherwise each output row and the bias.
    fn merged(&self, base: &Projection) -> candle_core::Result<Option<Projection>> {
        let l = self.scale.as_tensor();
        Ok(Some(if self.feedforward {
            Projection {
                weight: base.weight_f32()?.broadcast_mul(&l.unsqueeze(0)?)?,
                bias: base.bias.clone(),
            }
        } else {
            Projection {
                weight: base.weight_f32()?.broadcast_mul(&l.unsqueeze(1)?)?,
                bias: base.bias.as_ref().map(|b| b * l).transpose()?,
            }
        }))
    }

    fn input_scale(&self) -> Option<&Tensor> {
        self.feedforward.then(|| self.scale.as_tensor())
    }
}

pub struct Ia3 {
    cfg: Ia3Config,
    device: Device,
    /// (module path, vector, feed-forward) in model order.
    vectors: Vec<(String, Var, bool)>,
}

impl Ia3 {
    pub fn new(cfg: Ia3Config, device: Device) -> Self {
        Self {
            cfg,
            device,
            vectors: Vec::new(),
        }
    }
}

impl Injector for Ia3 {
    fn linear_adapter(
        &mut self,
        path: &str,
        base: &Projection,
    ) -> Result<Option<Box<dyn LinearAdapter>>> {
        if !matches_target(path, &self.cfg.target_modules) {
            return Ok(None);
        }
        let feedforward = self.cfg.is_feedforward(path);
        let n = if feedforward {
            base.in_dim()
        } else {
            base.out_dim()
        };
        let scale = init::constant(&[n], 1.0, &self.device)?;
        self.vectors
            .push((path.to_string(), scale.clone(), feedforward));
        Ok(Some(Box::new(Ia3Vector { scale, feedforward })))
    }
}

impl Method for Ia3 {
    fn vars(&self) -> Vec<(String, Var)> {
        self.vectors
            .iter()
            .map(|(p, v, _)| (format!("base_model.model.{p}.ia3_l"), v.clone()))
            .collect()
    }

    fn check_attached(&self, module_names: &[String]) -> Result<()> {
        require_attached(self.vectors.len(), &self.cfg.target_modules, module_names)?;
        if !self.vectors.iter().any(|(_, _, ff)| *ff) && !self.cfg.feedforward_modules.is_empty() {
            bail!(
                "no module matches feedforward_modules {:?}",
                self.cfg.feedforward_modules
            );
        }
        Ok(())
    }

    /// PEFT's IA3 folder: `ia3_l` is `[out, 1]` on attention projections and `[1, in]` on
    /// feed-forward ones.
    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .vectors
            .iter()
            .map(|(p, v, ff)| {
                let t = v.as_tensor();
                let t = if *ff {
                    t.unsqueeze(0)?
                } else {
                    t.unsqueeze(1)?
                };
                Ok((format!("base_model.model.{p}.ia3_l"), t))
            })
            .collect::<Result<_>>()?;
        save_safetensors(&dir.join("adapter_model.safetensors"), &tensors)?;
        let mut targets = self.cfg.target_modules.clone();
        targets.sort();
        let mut ff = self.cfg.feedforward_modules.clone();
        ff.sort();
        save_json(
            &dir.join("adapter_config.json"),
            &serde_json::json!({
                "auto_mapping": null,
                "base_model_name_or_path": ctx.base_model,
                "fan_in_fan_out": false,
                "feedforward_modules": ff,
                "inference_mode": true,
                "init_ia3_weights": true,
                "modules_to_save": null,
                "peft_type": "IA3",
                "revision": null,
                "target_modules": targets,
                "task_type": "CAUSAL_LM",
            }),
        )
    }
}

/// `(x Wᵀ + b) ⊙ l` for a frozen f32 projection on the CPU, as one op (`kernels::scaled_linear`);
/// `None` where it cannot run (the caller composes it).
fn output_scaled(x: &Tensor, base: &Projection, l: &Tensor) -> candle_core::Result<Option<Tensor>> {
    use crate::kernels::fused::available_for;
    let frozen = |t: &Tensor| available_for(t) && !t.track_op();
    if !(available_for(x)
        && available_for(l)
        && frozen(&base.weight)
        && base.bias.as_ref().is_none_or(frozen)
        && x.rank() >= 2
        && l.dims() == [base.out_dim()])
    {
        return Ok(None);
    }
    let y = crate::kernels::scaled_linear::scaled_linear(x, &base.weight, base.bias.as_ref(), l)?;
    Ok(Some(y))
}

/// Reads PEFT's `IA3` adapter (its scaling vectors) from its tensors (`bag`) and
/// `adapter_config.json` (`cfg`) into `out`.
pub(super) fn import_peft(
    cfg: &serde_json::Value,
    bag: &mut super::import::TensorBag,
    _model: &crate::models::ModelConfig,
    out: &mut super::import::ImportedAdapter,
) -> anyhow::Result<()> {
    use super::import::{names, var};
    let ff = names(&cfg["feedforward_modules"]);
    for path in bag.paths_with(".ia3_l") {
        let l = bag.take(&format!("base_model.model.{path}.ia3_l"))?;
        out.linear.insert(
            path.clone(),
            Box::new(Ia3Vector {
                scale: var(&l.flatten_all()?)?,
                feedforward: matches_target(&path, &ff),
            }),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::D;

    /// The fused attention-projection IA3 gives the composition's values and the gradients
    /// of the input and the scale, with a bias; an input outside the graph gets none.
    #[test]
    fn output_scaled_matches_the_projection_then_the_scale() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let base = Projection {
            weight: Tensor::randn(0f32, 0.5, (5, 6), &dev)?,
            bias: Some(Tensor::randn(0f32, 0.5, 5, &dev)?),
        };
        let l = Var::from_tensor(&Tensor::randn(1f32, 0.3, 5, &dev)?)?;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 7, 6), &dev)?)?;
        let weights = Tensor::randn(0f32, 1.0, (2, 7, 5), &dev)?;
        let fused = output_scaled(x.as_tensor(), &base, l.as_tensor())?.expect("runs on the CPU");
        let composed = base.forward(x.as_tensor())?.broadcast_mul(l.as_tensor())?;
        assert!(crate::models::max_abs_diff(&fused, &composed)? < 1e-5);
        let ga = (fused * &weights)?.sum_all()?.backward()?;
        let gb = (composed * &weights)?.sum_all()?.backward()?;
        for t in [x.as_tensor(), l.as_tensor()] {
            let (a, b) = (ga.get(t).expect("a gradient"), gb.get(t).unwrap());
            assert!(crate::models::max_abs_diff(a, b)? < 1e-4);
            assert!(
                b.abs()?
                    .max_keepdim(D::Minus1)?
                    .max_all()?
                    .to_scalar::<f32>()?
                    > 1e-3
            );
        }
        let frozen_x = x.as_tensor().detach();
        let g = output_scaled(&frozen_x, &base, l.as_tensor())?
            .expect("runs")
            .sum_all()?
            .backward()?;
        assert!(g.get(l.as_tensor()).is_some() && g.get(&frozen_x).is_none());
        Ok(())
    }
}
