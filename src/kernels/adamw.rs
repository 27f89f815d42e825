//! AdamW's update of one variable: composed from candle ops (any device), and the same
//! numbers in one pass over the values on the CPU.

use candle_core::{DType, Result, Tensor};

/// The step's constants: the hyperparameters, the bias corrections `1/(1 − βᵗ)` and the
/// weight decay factor `1 − lr·λ`.
pub struct UpdateConsts {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub lr: f64,
    pub scale_m: f64,
    pub scale_v: f64,
    pub decay: f64,
}

/// `(θ', m', v')`: `m' = β1 m + (1-β1) g`, `v' = β2 v + (1-β2) g²`,
/// `θ' = θ (1 - lr·λ) - lr · m̂ / (√v̂ + ε)`, composed from candle ops (any device).
pub fn composed_update(
    theta: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: &UpdateConsts,
) -> Result<(Tensor, Tensor, Tensor)> {
    let m = ((m * k.beta1)? + (g * (1.0 - k.beta1))?)?;
    let v = ((v * k.beta2)? + (g.sqr()? * (1.0 - k.beta2))?)?;
    let update = ((&m * k.scale_m)? / ((&v * k.scale_v)?.sqrt()? + k.eps)?)?;
    Ok((((theta * k.decay)? - (update * k.lr)?)?, m, v))
}

/// The same update as [`composed_update`], operation for operation in
/// f32 (so the same numbers), in one pass over the values on the CPU: the composed
/// form makes fifteen tensors the size of the variable, each its own pass (for full
/// fine-tuning of SmolLM2, 135 M values each). Returns `(θ', m', v')`, or `None` where
/// it does not apply (another device; the caller composes).
pub fn fused_update(
    theta: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: &UpdateConsts,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    use rayon::prelude::*;
    let ts = [theta, g, m, v];
    if !ts
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous())
    {
        return Ok(None);
    }
    let n = theta.elem_count();
    // Written whole below, so not zero-filled first (for full fine-tuning of SmolLM2 that
    // fill alone was three passes over 540 MB).
    let (mut next, mut m2, mut v2) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let f = |x: f64| x as f32;
    let (b1, b1c, b2, b2c) = (f(k.beta1), f(1.0 - k.beta1), f(k.beta2), f(1.0 - k.beta2));
    let (sm, sv, eps, decay, lr) = (f(k.scale_m), f(k.scale_v), f(k.eps), f(k.decay), f(k.lr));
    crate::kernels::fused::slices(&ts, |data| {
        let [theta, g, m, v] = [data[0], data[1], data[2], data[3]];
        const CHUNK: usize = 1 << 14;
        if [theta.len(), g.len(), m.len(), v.len()] != [n; 4] {
            candle_core::bail!("adamw: a gradient or moment unlike its variable's {n} values");
        }
        let outs = (next.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
            .zip(m2.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
            .zip(v2.spare_capacity_mut()[..n].par_chunks_mut(CHUNK));
        let ins = (theta.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)));
        outs.zip(ins)
            .for_each(|(((next, m2), v2), ((theta, g), (m, v)))| {
                let outs = next.iter_mut().zip(m2.iter_mut().zip(v2.iter_mut()));
                let ins = theta.iter().zip(g).zip(m.iter().zip(v));
                crate::kernels::fast_math::simd(
                    #[inline(always)]
                    || {
                        for ((next, (m2, v2)), ((theta, g), (m, v))) in outs.zip(ins) {
                            let m2 = m2.write(m * b1 + g * b1c);
                            let v2 = v2.write(v * b2 + (g * g) * b2c);
                            let update = (*m2 * sm) / ((*v2 * sv).sqrt() + eps);
                            next.write(theta * decay - update * lr);
                        }
                    },
                )
            });
        Ok(())
    })?;
    // SAFETY: the chunks tile the first `n` values of each buffer (every input is `n`
    // long, checked above), and each chunk's loop wrote all of its values.
    #[allow(unsafe_code)]
    unsafe {
        next.set_len(n);
        m2.set_len(n);
        v2.set_len(n);
    }
    let (shape, dev) = (theta.shape(), theta.device());
    Ok(Some((
        Tensor::from_vec(next, shape, dev)?,
        Tensor::from_vec(m2, shape, dev)?,
        Tensor::from_vec(v2, shape, dev)?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The one-pass update gives the composed ops' numbers exactly, on values spanning
    /// several of its parallel chunks.
    #[test]
    fn fused_update_matches_the_composed_ops() -> Result<()> {
        let dev = Device::Cpu;
        let n = 40_000;
        let randn = |s: f32| Tensor::randn(0f32, s, n, &dev);
        let (theta, g, m) = (randn(1.0)?, randn(0.1)?, randn(0.01)?);
        let v = randn(0.01)?.sqr()?;
        let k = UpdateConsts {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            lr: 3e-4,
            scale_m: 1.0 / (1.0 - 0.9f64.powi(3)),
            scale_v: 1.0 / (1.0 - 0.999f64.powi(3)),
            decay: 1.0 - 3e-4 * 0.01,
        };
        let (next, m2, v2) = fused_update(&theta, &g, &m, &v, &k)?.expect("CPU f32");
        let (want, want_m, want_v) = composed_update(&theta, &g, &m, &v, &k)?;
        for (got, want) in [(next, want), (m2, want_m), (v2, want_v)] {
            let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(diff, 0.0);
        }
        Ok(())
    }
}
