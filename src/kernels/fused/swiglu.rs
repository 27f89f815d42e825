//! SwiGLU, `silu(gate) ⊙ up`, alone and with a frozen down projection.

use super::*;

/// `silu(gate) ⊙ up`, or with `down`, `(silu(gate) ⊙ up) Wᵀ`: SwiGLU and the frozen down
/// projection after it as one op. With `scaled`, the third input is a (trained) vector `l`
/// scaling the product's columns before the projection, `((silu(gate) ⊙ up) ⊙ l) Wᵀ`: IA3
/// on a feed-forward projection; without, the third input is not read.
///
/// Apart, the product `silu(gate) ⊙ up` (the MLP's widest tensor) is kept for the backward
/// pass only because the projection's op holds its input (and IA3's scaling keeps a second
/// copy, scaled); a frozen projection's gradient needs the weight, not the input. With
/// `down`, this op keeps `gate` and `up` (and `l`), which SwiGLU's own gradient needs
/// anyway, and no product.
pub(super) struct Swiglu {
    down: Option<Tensor>,
    scaled: bool,
}

impl Swiglu {
    /// `silu(gate) ⊙ up` element by element, times `scale[column]` when given.
    pub(super) fn product(g: &[f32], u: &[f32], scale: Option<&[f32]>) -> Vec<f32> {
        assert_eq!(g.len(), u.len(), "swiglu: as many gates as ups");
        // With a scale, row by row, so each value's column is its place in the row: an
        // integer division per value (`i % width`) cost more than the rest of the
        // arithmetic.
        let chunk = scale.map_or(4096, |l| l.len().max(1));
        let pieces = g.par_chunks(chunk).zip(u.par_chunks(chunk));
        // SAFETY: the output's chunks pair with the equal chunks of `g` and `u` (all as
        // long), and each is written whole (`l`, when given, is as long as a chunk).
        #[allow(unsafe_code)]
        unsafe {
            written(g.len(), |out| {
                out.par_chunks_mut(chunk)
                    .zip(pieces)
                    .for_each(|(o, (g, u))| {
                        let values = o.iter_mut().zip(g.iter().zip(u));
                        fm::simd(
                            #[inline(always)]
                            || match scale {
                                None => values.for_each(|(o, (g, u))| {
                                    o.write(g * fm::sigmoid(*g) * u);
                                }),
                                Some(l) => values.zip(l).for_each(|((o, (g, u)), l)| {
                                    o.write(g * fm::sigmoid(*g) * u * l);
                                }),
                            },
                        )
                    })
            })
        }
    }

    fn forward(
        &self,
        g: &[f32],
        u: &[f32],
        l: Option<&[f32]>,
        shape: &Shape,
    ) -> Result<(CpuStorage, Shape)> {
        let h = CpuStorage::F32(Self::product(g, u, l));
        let Some(down) = &self.down else {
            return Ok((h, shape.clone()));
        };
        let inner = *shape.dims().last().unwrap_or(&0);
        let rows = shape.elem_count() / inner.max(1);
        with_cpu_storage(down, |w, lw| {
            let (out, w_inner) = lw.shape().dims2()?;
            if w_inner != inner {
                bail!("swiglu-down: {inner} wide into a weight of {:?}", lw.dims());
            }
            let hl = Layout::contiguous((rows, inner));
            let y = h.matmul(w, (1, rows, out, inner), &hl, &lw.transpose(0, 1)?)?;
            let mut dims = shape.dims().to_vec();
            *dims.last_mut().expect("non-empty") = out;
            Ok((y, Shape::from(dims)))
        })
    }

    /// The gradients of `gate`, `up` and (when given) the scale.
    fn backward(
        &self,
        gate: &Tensor,
        up: &Tensor,
        scale: Option<&Tensor>,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let grad = match &self.down {
            Some(w) => {
                let rows = grad.elem_count() / w.dim(0)?.max(1);
                grad.reshape((rows, w.dim(0)?))?
                    .matmul(w)?
                    .reshape(gate.shape())?
            }
            None => grad.contiguous()?,
        };
        let (gate, up) = (gate.contiguous()?, up.contiguous()?);
        let inner = gate.dims().last().copied().unwrap_or(1).max(1);
        let l = scale
            .map(|l| l.flatten_all()?.to_vec1::<f32>())
            .transpose()?;
        if l.as_ref().is_some_and(|l| l.len() != inner) {
            bail!(
                "scaled swiglu: {} scales for rows of {:?}",
                l.map_or(0, |l| l.len()),
                gate.dims()
            );
        }
        // All gradients from one pass over the values (one sigmoid each), straight into
        // their own buffers: no op, no views into a shared one.
        let (d_gate, d_up, d_l) = slices(&[&gate, &up, &grad], |data| {
            let [g, u, d] = [data[0], data[1], data[2]];
            if u.len() != g.len() || d.len() != g.len() {
                bail!(
                    "swiglu grad: {} gates, {} ups, {} gradients",
                    g.len(),
                    u.len(),
                    d.len()
                );
            }
            Ok(swiglu_grad(g, u, d, l.as_deref(), inner))
        })?;
        let dev = gate.device();
        let d_gate = Tensor::from_vec(d_gate, gate.shape(), dev)?;
        let d_up = Tensor::from_vec(d_up, gate.shape(), dev)?;
        let d_scale = match (scale, d_l) {
            (Some(l), Some(d_l)) => Some(Tensor::from_vec(d_l, l.shape(), dev)?),
            _ => None,
        };
        Ok((d_gate, d_up, d_scale))
    }
}

impl CustomOp3 for Swiglu {
    fn name(&self) -> &'static str {
        "fused-swiglu"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        lg: &Layout,
        us: &CpuStorage,
        lu: &Layout,
        ls: &CpuStorage,
        ll: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, u, l) = data3((gs, lg), (us, lu), (ls, ll), "swiglu")?;
        if !self.scaled {
            return self.forward(g, u, None, lg.shape());
        }
        if l.len() != *lg.dims().last().unwrap_or(&0) {
            bail!(
                "scaled swiglu: {} scales for rows of {:?}",
                l.len(),
                lg.dims()
            );
        }
        self.forward(g, u, Some(l), lg.shape())
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        scale: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let scale = self.scaled.then_some(scale);
        let (d_gate, d_up, d_scale) = self.backward(gate, up, scale, grad)?;
        Ok((Some(d_gate), Some(d_up), d_scale))
    }
}

/// The gradients `(d/dgate, d/dup, d/dl)` of the (unscaled, or with `l` scaled) product
/// for `grad` its gradient, rows of `inner` values: with `d = grad ⊙ l` (or `grad`),
/// d/dgate = d ⊙ up ⊙ σ(g)(1 + g(1 − σ(g))), d/dup = d ⊙ g σ(g), and
/// d/dl = Σ over rows of grad ⊙ g σ(g) ⊙ up (`None` without `l`).
pub(super) fn swiglu_grad(
    g: &[f32],
    u: &[f32],
    d: &[f32],
    l: Option<&[f32]>,
    inner: usize,
) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let n = g.len();
    // The lengths every element's write below relies on.
    assert!(u.len() == n && d.len() == n && l.is_none_or(|l| l.len() == inner));
    let rows = n / inner;
    let (mut d_gate, mut d_up) = (Vec::with_capacity(n), Vec::with_capacity(n));
    // Blocks of whole rows (so a block knows each value's column), at most 64 of them:
    // the scale's partial sums are added in block order, the same every run.
    let block = inner * rows.div_ceil(64).max(4096usize.div_ceil(inner));
    let partials: Vec<Vec<f32>> = d_gate.spare_capacity_mut()[..n]
        .par_chunks_mut(block)
        .zip(d_up.spare_capacity_mut()[..n].par_chunks_mut(block))
        .zip(
            g.par_chunks(block)
                .zip(u.par_chunks(block).zip(d.par_chunks(block))),
        )
        .map(|((dg, du), (g, (u, d)))| {
            fm::simd(
                #[inline(always)]
                || swiglu_grad_block(dg, du, g, u, d, l, inner),
            )
        })
        .collect();
    // SAFETY: the blocks tile the first `n` values of both buffers, and each block wrote
    // every value of its rows (`g`, `u`, `d` are as long as the buffers, `l` as a row).
    #[allow(unsafe_code)]
    unsafe {
        d_gate.set_len(n);
        d_up.set_len(n);
    }
    let d_l = l.map(|_| {
        let mut d_l = vec![0f32; inner];
        for p in &partials {
            d_l.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        d_l
    });
    (d_gate, d_up, d_l)
}

/// One block of whole rows of [`swiglu_grad`]: writes `dg` and `du`, and returns the
/// block's partial d/dl (empty without `l`).
#[inline(always)]
fn swiglu_grad_block(
    dg: &mut [MaybeUninit<f32>],
    du: &mut [MaybeUninit<f32>],
    g: &[f32],
    u: &[f32],
    d: &[f32],
    l: Option<&[f32]>,
    inner: usize,
) -> Vec<f32> {
    let outs = dg.iter_mut().zip(du.iter_mut());
    let ins = g.iter().zip(u.iter().zip(d));
    let Some(l) = l else {
        // The common case in a loop of its own, which the compiler vectorises.
        for ((dg, du), (g, (u, d))) in outs.zip(ins) {
            let s = fm::sigmoid(*g);
            dg.write(d * u * s * (1.0 + g * (1.0 - s)));
            du.write(d * g * s);
        }
        return Vec::new();
    };
    let mut d_l = vec![0f32; inner];
    let rows_out = dg.chunks_mut(inner).zip(du.chunks_mut(inner));
    let rows_in = g.chunks(inner).zip(u.chunks(inner).zip(d.chunks(inner)));
    for ((dg, du), (g, (u, d))) in rows_out.zip(rows_in) {
        let cols = dg.iter_mut().zip(du.iter_mut()).zip(d_l.iter_mut().zip(l));
        for (((dg, du), (d_l, l)), (g, (u, d))) in cols.zip(g.iter().zip(u.iter().zip(d))) {
            let s = fm::sigmoid(*g);
            *d_l += d * g * s * u;
            let d = d * l;
            dg.write(d * u * s * (1.0 + g * (1.0 - s)));
            du.write(d * g * s);
        }
    }
    d_l
}

/// `silu(gate) ⊙ up`.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if !fusable(&[gate, up]) || gate.dims() != up.dims() {
        return gate.silu()? * up;
    }
    let op = Swiglu {
        down: None,
        scaled: false,
    };
    apply_swiglu(gate, up, None, op)
}

/// The op on contiguous `gate` and `up`; an unread stand-in for the scale when it has none.
fn apply_swiglu(gate: &Tensor, up: &Tensor, scale: Option<&Tensor>, op: Swiglu) -> Result<Tensor> {
    let scale = match scale {
        Some(l) => l.contiguous()?,
        None => Tensor::zeros(1, DType::F32, gate.device())?,
    };
    gate.contiguous()?.apply_op3(&up.contiguous()?, &scale, op)
}

/// `((silu(gate) ⊙ up) ⊙ l) Wᵀ` (without `l` when `scale` is `None`) as one op when `W`
/// (`[out, inner]`) is a frozen f32 weight, `l` an f32 vector `[inner]` and all is on the
/// CPU; `None` where it cannot run (the caller composes the parts).
pub fn swiglu_down(
    gate: &Tensor,
    up: &Tensor,
    weight: &Tensor,
    scale: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    if !fusable(&[gate, up, weight])
        || weight.track_op()
        || gate.dims() != up.dims()
        || weight.rank() != 2
        || gate.dims().last() != Some(&weight.dim(1)?)
    {
        return Ok(None);
    }
    if let Some(l) = scale
        && (!fusable(&[l]) || l.dims() != [weight.dim(1)?])
    {
        return Ok(None);
    }
    let op = Swiglu {
        down: Some(weight.clone()),
        scaled: scale.is_some(),
    };
    Ok(Some(apply_swiglu(gate, up, scale, op)?))
}
