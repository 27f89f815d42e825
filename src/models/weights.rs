//! Base weights read from safetensors. They are plain tensors, frozen by construction;
//! the few a method trains (full fine-tuning, Freeze) are turned into `Var`s here.

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

use super::Injector;

pub struct Weights {
    tensors: HashMap<String, Tensor>,
    /// Base tensors that the method trains, in load order, by their checkpoint name.
    trained: Vec<(String, Var)>,
    /// The dtype `get_matrix` hands out: f32, or bf16/f16 in a mixed-precision run.
    matrix_dtype: DType,
}

impl Weights {
    pub fn from_tensors(tensors: HashMap<String, Tensor>) -> Self {
        Self {
            tensors,
            trained: Vec::new(),
            matrix_dtype: DType::F32,
        }
    }

    /// Projection and embedding matrices are handed out in `dtype` from now on (vectors —
    /// norm gains, biases — stay f32).
    pub fn set_matrix_dtype(&mut self, dtype: DType) {
        self.matrix_dtype = dtype;
    }

    /// Reads every `*.safetensors` file of a folder (sharded checkpoints included) as f32.
    pub fn load_dir(dir: &Path, device: &Device) -> Result<Self> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read model folder {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("no .safetensors file in {}", dir.display());
        }
        let mut tensors = HashMap::new();
        for f in &files {
            let part = candle_core::safetensors::load(f, device)
                .with_context(|| format!("cannot read weights {}", f.display()))?;
            for (name, t) in part {
                tensors.insert(name, t.to_dtype(DType::F32)?);
            }
        }
        Ok(Self::from_tensors(tensors))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The tensor `name`, checked against the shape the config implies. If the method trains
    /// it, it becomes a `Var` (and is remembered for the optimizer and the export).
    pub fn get(&mut self, name: &str, shape: &[usize], inj: &dyn Injector) -> Result<Tensor> {
        self.get_as(name, shape, inj, DType::F32)
    }

    /// A matrix that only enters matrix products and embedding lookups (a projection's
    /// weight, an embedding table), in the matrix dtype. A frozen one is converted where it
    /// is stored, so a bf16 run holds one copy, not two; a trained one becomes a Var in that
    /// dtype, whose f32 master copy the optimizer keeps.
    pub fn get_matrix(
        &mut self,
        name: &str,
        shape: &[usize],
        inj: &dyn Injector,
    ) -> Result<Tensor> {
        let dtype = self.matrix_dtype;
        if dtype != DType::F32
            && let Some(t) = self.tensors.get_mut(name)
            && t.dtype() != dtype
            && !inj.trains_base(name)
        {
            *t = t.to_dtype(dtype)?;
        }
        self.get_as(name, shape, inj, dtype)
    }

    fn get_as(
        &mut self,
        name: &str,
        shape: &[usize],
        inj: &dyn Injector,
        dtype: DType,
    ) -> Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .with_context(|| format!("weight `{name}` is missing from the checkpoint"))?;
        if t.dims() != shape {
            bail!(
                "weight `{name}` has shape {:?} but the config implies {:?}",
                t.dims(),
                shape
            );
        }
        if let Some(r) = inj.replace_base(name) {
            if r.dims() != shape {
                bail!(
                    "the adapter's `{name}` has shape {:?} but this model's is {:?}: it was made for another model",
                    r.dims(),
                    shape
                );
            }
            return Ok(r.to_dtype(dtype)?.to_device(t.device())?);
        }
        if inj.trains_base(name) {
            if let Some((_, v)) = self.trained.iter().find(|(n, _)| n == name) {
                return Ok(v.as_tensor().clone());
            }
            // A copy: the optimizer updates the Var in place and must never touch the
            // tensor the checkpoint was read into.
            let var = Var::from_tensor(&t.to_dtype(dtype)?.copy()?)?;
            let out = var.as_tensor().clone();
            self.trained.push((name.to_string(), var));
            return Ok(out);
        }
        Ok(t.to_dtype(dtype)?)
    }

    /// A tensor that trains whatever the method (a task head, as PEFT's `modules_to_save`),
    /// unless the injector replaces it (an imported adapter that carries its head).
    pub fn get_trained(
        &mut self,
        name: &str,
        shape: &[usize],
        inj: &dyn Injector,
    ) -> Result<Tensor> {
        struct Head<'a>(&'a dyn Injector);
        impl Injector for Head<'_> {
            fn trains_base(&self, _name: &str) -> bool {
                true
            }
            fn replace_base(&self, name: &str) -> Option<Tensor> {
                self.0.replace_base(name)
            }
        }
        self.get(name, shape, &Head(inj))
    }

    /// Adds (or replaces) a tensor, e.g. a newly initialised head.
    pub fn insert(&mut self, name: &str, t: Tensor) {
        self.tensors.insert(name.to_string(), t);
    }

    /// Drops the tensors `keep` refuses (buffers a checkpoint stores that are not weights).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.tensors.retain(|n, _| keep(n));
    }

    /// Renames every tensor (a bare encoder's names under its task model's prefix).
    pub fn rename(&mut self, f: impl Fn(&str) -> String) {
        self.tensors = std::mem::take(&mut self.tensors)
            .into_iter()
            .map(|(n, t)| (f(&n), t))
            .collect();
    }

    pub fn trained(&self) -> &[(String, Var)] {
        &self.trained
    }

    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }
}
