//! Every fused op against the composition of candle ops it replaces: values and gradients.

use super::*;
use candle_core::{D, Device, Var};

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    crate::kernels::max_abs_diff(a, b).unwrap()
}

/// Values and the gradient of a weighted sum (weights make every output matter
/// differently) against the composition of candle ops.
fn check(
    x: &Var,
    fused: impl Fn(&Tensor) -> Result<Tensor>,
    slow: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<()> {
    check_all(&[x], fused(x.as_tensor())?, slow(x.as_tensor())?)
}

/// [`check`] for an op of several inputs: the two outputs, and the (non-zero) gradient
/// of each input.
fn check_all(xs: &[&Var], fused: Tensor, composed: Tensor) -> Result<()> {
    let d = max_diff(&fused, &composed);
    assert!(d < 1e-5, "values differ by {d}");
    let w = Tensor::randn(0f32, 1.0, fused.shape(), fused.device())?;
    let ga = (fused * &w)?.sum_all()?.backward()?;
    let gb = (composed * &w)?.sum_all()?.backward()?;
    for x in xs {
        let (a, b) = (
            ga.get(x.as_tensor()).unwrap(),
            gb.get(x.as_tensor()).unwrap(),
        );
        assert!(
            max_diff(a, b) < 1e-4,
            "gradients differ by {}",
            max_diff(a, b)
        );
        assert!(b.abs()?.max_all()?.to_scalar::<f32>()? > 1e-3);
    }
    Ok(())
}

#[test]
fn to_heads_matches_reshape_transpose_and_rope() -> Result<()> {
    let dev = Device::Cpu;
    let (b, t, h, d, positions, offset) = (2, 5, 3, 8, 20, 4);
    let mut cos = Vec::new();
    let mut sin = Vec::new();
    for p in 0..positions {
        for i in 0..d {
            let f = 1.0 / 10000f32.powf(2.0 * (i % (d / 2)) as f32 / d as f32);
            cos.push((p as f32 * f).cos());
            sin.push((p as f32 * f).sin());
        }
    }
    let cos_t = Tensor::from_vec(cos.clone(), (positions, d), &dev)?.narrow(0, offset, t)?;
    let sin_t = Tensor::from_vec(sin.clone(), (positions, d), &dev)?.narrow(0, offset, t)?;
    let tables = RopeTables {
        cos: Arc::new(cos),
        sin: Arc::new(sin),
        head_dim: d,
    };
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, t, h * d), &dev)?)?;
    let split = |x: &Tensor| x.reshape((b, t, h, d))?.transpose(1, 2)?.contiguous();
    check(&x, |x| to_heads(x, h, None), split)?;
    check(
        &x,
        |x| to_heads(x, h, Some((&tables, offset))),
        |x| {
            let x = split(x)?;
            let x1 = x.narrow(D::Minus1, 0, d / 2)?;
            let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            x.broadcast_mul(&cos_t)? + rotated.broadcast_mul(&sin_t)?
        },
    )
}

/// Grouped-query attention over a prefix: values and the gradients of `q`, `k` and `v`
/// against scores, mask, softmax and product composed from candle ops. Four (batch
/// entry, key/value head) pairs run one per thread, a single one on the whole pool.
#[test]
fn attention_matches_the_composed_form_and_its_gradients() -> Result<()> {
    for (b, g) in [(2, 2), (1, 1)] {
        attention_case(b, g)?;
    }
    Ok(())
}

fn attention_case(b: usize, g: usize) -> Result<()> {
    let dev = Device::Cpu;
    let (r, t, p, d) = (3, 4, 3, 8);
    let var = |shape: (usize, usize, usize, usize)| -> Result<Var> {
        Var::from_tensor(&Tensor::randn(0f32, 1.5, shape, &dev)?)
    };
    let (q, k, v) = (
        var((b, g * r, t, d))?,
        var((b, g, p + t, d))?,
        var((b, g, p + t, d))?,
    );
    let mask: Vec<f32> = (0..r * t)
        .flat_map(|row| {
            (0..p + t).map(move |j| {
                if j <= p + row % t {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    let mask = Tensor::from_vec(mask, (r * t, p + t), &dev)?;
    let scale = 0.35;
    let fused = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), scale, t, p)?;
    let q_stacked = q.as_tensor().reshape((b, g, r * t, d))?;
    let scores = (q_stacked.matmul(&k.as_tensor().t()?)? * scale)?;
    let probs = candle_nn::ops::softmax(&scores.broadcast_add(&mask)?, D::Minus1)?;
    let composed = probs
        .matmul(v.as_tensor())?
        .reshape((b, g * r, t, d))?
        .transpose(1, 2)?
        .reshape((b, t, g * r * d))?;
    check_all(&[&q, &k, &v], fused, composed)
}

/// SwiGLU then a frozen projection, fused: values and both gradients as composed.
#[test]
fn swiglu_down_matches_silu_times_up_then_the_projection() -> Result<()> {
    let dev = Device::Cpu;
    let g = Var::from_tensor(&Tensor::randn(0f32, 2.0, (2, 3, 7), &dev)?)?;
    let u = Var::from_tensor(&Tensor::randn(0f32, 2.0, (2, 3, 7), &dev)?)?;
    let w = Tensor::randn(0f32, 1.0, (5, 7), &dev)?;
    let fused = swiglu_down(g.as_tensor(), u.as_tensor(), &w, None)?.expect("runs on the CPU");
    let h = (g.as_tensor().silu()? * u.as_tensor())?;
    let composed = h.broadcast_matmul(&w.t()?)?;
    check_all(&[&g, &u], fused, composed)?;
    // A trained weight needs its own gradient: not this op.
    let trained = Var::from_tensor(&w)?;
    assert!(swiglu_down(g.as_tensor(), u.as_tensor(), trained.as_tensor(), None)?.is_none());
    Ok(())
}

/// With IA3's trained input scale between SwiGLU and the projection: values and the
/// gradients of gate, up and the scale as composed. 200 rows: several blocks of the
/// backward kernel, each adding its share of the scale's gradient.
#[test]
fn scaled_swiglu_down_matches_the_composition_and_the_scale_gradient() -> Result<()> {
    let dev = Device::Cpu;
    // Values of order one: the check's tolerance is absolute.
    let g = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 50, 7), &dev)?)?;
    let u = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 50, 7), &dev)?)?;
    let l = Var::from_tensor(&Tensor::randn(1f32, 0.3, 7, &dev)?)?;
    let w = Tensor::randn(0f32, 0.5, (5, 7), &dev)?;
    let fused = swiglu_down(g.as_tensor(), u.as_tensor(), &w, Some(l.as_tensor()))?
        .expect("runs on the CPU");
    let h = (g.as_tensor().silu()? * u.as_tensor())?.broadcast_mul(l.as_tensor())?;
    let composed = h.broadcast_matmul(&w.t()?)?;
    check_all(&[&g, &u, &l], fused, composed)?;
    // A scale of the wrong length is left to the composition.
    let short = Tensor::ones(6, DType::F32, &dev)?;
    assert!(swiglu_down(g.as_tensor(), u.as_tensor(), &w, Some(&short))?.is_none());
    Ok(())
}

/// The frozen feed-forward block in one op: values and the gradients of the input and
/// of IA3's scale as composed from the projections and SwiGLU, with and without the
/// scale; a trained weight is left to the composition.
#[test]
fn frozen_mlp_matches_the_projections_and_swiglu() -> Result<()> {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 40, 6), &dev)?)?;
    let wg = Tensor::randn(0f32, 0.5, (9, 6), &dev)?;
    let wu = Tensor::randn(0f32, 0.5, (9, 6), &dev)?;
    let wd = Tensor::randn(0f32, 0.5, (5, 9), &dev)?;
    let l = Var::from_tensor(&Tensor::randn(1f32, 0.3, 9, &dev)?)?;
    let composed = |x: &Tensor, l: Option<&Tensor>| -> Result<Tensor> {
        let gate = x.broadcast_matmul(&wg.t()?)?;
        let up = x.broadcast_matmul(&wu.t()?)?;
        let h = (gate.silu()? * up)?;
        let h = match l {
            Some(l) => h.broadcast_mul(l)?,
            None => h,
        };
        h.broadcast_matmul(&wd.t()?)
    };
    let fused = frozen_mlp(x.as_tensor(), &wg, &wu, &wd, None)?.expect("runs on the CPU");
    check_all(&[&x], fused, composed(x.as_tensor(), None)?)?;
    let fused =
        frozen_mlp(x.as_tensor(), &wg, &wu, &wd, Some(l.as_tensor()))?.expect("runs on the CPU");
    check_all(
        &[&x, &l],
        fused,
        composed(x.as_tensor(), Some(l.as_tensor()))?,
    )?;
    let trained = Var::from_tensor(&wu)?;
    assert!(frozen_mlp(x.as_tensor(), &wg, trained.as_tensor(), &wd, None)?.is_none());
    Ok(())
}

#[test]
fn swiglu_matches_silu_times_up_and_both_gradients() -> Result<()> {
    let dev = Device::Cpu;
    let g = Var::from_tensor(&Tensor::randn(0f32, 2.0, (3, 7), &dev)?)?;
    let u = Tensor::randn(0f32, 1.0, (3, 7), &dev)?;
    check(&g, |g| swiglu(g, &u), |g| g.silu()? * &u)?;
    let u = Var::from_tensor(&u)?;
    let gt = g.as_tensor().clone();
    check(&u, |u| swiglu(&gt, u), |u| gt.silu()? * u)
}

#[test]
fn rms_norm_matches_the_slow_form_and_both_gradients() -> Result<()> {
    let dev = Device::Cpu;
    // 70 rows: more than one block of the backward kernel, and a ragged last block.
    let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (2, 35, 24), &dev)?)?;
    let w = Tensor::randn(1f32, 0.3, 24, &dev)?;
    check(
        &x,
        |x| rms_norm(x, &w, 1e-5),
        |x| candle_nn::ops::rms_norm_slow(x, &w, 1e-5),
    )?;
    // A trained weight (LayerNorm tuning, full fine-tuning) gets its gradient too.
    let w = Var::from_tensor(&w)?;
    let xt = x.as_tensor().clone();
    check(
        &w,
        |w| rms_norm(&xt, w, 1e-5),
        |w| candle_nn::ops::rms_norm_slow(&xt, w, 1e-5),
    )?;
    Ok(())
}
