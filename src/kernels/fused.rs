//! Fused CPU kernels, each with its backward pass, for the parts of a LLaMA block between
//! its projections: splitting into heads with the rotary embedding, causal attention,
//! SwiGLU (alone and with a frozen down projection) and RMSNorm.
//!
//! candle-nn's fast versions of the element-wise ones have no backward pass (gradients
//! silently stop), and the differentiable compositions chain five to eight ops, each
//! allocating a tensor, each kept for the backward pass and each given a zero-filled
//! gradient buffer there. Here each is one pass forward and one or two backward, and keeps
//! only what its gradient needs. Every op is checked against the composition (values and
//! gradients) in the tests below. Other devices use the compositions.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail,
};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::Arc;

use super::fast_math as fm;
use super::gemm::{View, matmul_into, matmul_uninit, product, threads_per_product, written};

/// The contiguous f32 data of a CPU tensor argument.
fn data<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => bail!("{what}: non-contiguous input"),
    }
}

/// The three contiguous f32 arguments of a `CustomOp3`.
fn data3<'a>(
    (a, la): (&'a CpuStorage, &Layout),
    (b, lb): (&'a CpuStorage, &Layout),
    (c, lc): (&'a CpuStorage, &Layout),
    what: &str,
) -> Result<(&'a [f32], &'a [f32], &'a [f32])> {
    Ok((data(a, la, what)?, data(b, lb, what)?, data(c, lc, what)?))
}

fn fusable(ts: &[&Tensor]) -> bool {
    FUSED_ON.with(|on| on.get())
        && ts
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

thread_local! {
    static FUSED_ON: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `f` with the fused kernels turned off on this thread: every model then takes the
/// composed candle ops a GPU runs, so the tests check that path's values and gradients on a
/// machine without one. (Graphs are built and differentiated on the calling thread.)
pub fn without_fused_kernels<R>(f: impl FnOnce() -> R) -> R {
    let before = FUSED_ON.with(|on| on.replace(false));
    let out = f();
    FUSED_ON.with(|on| on.set(before));
    out
}

// ---------------------------------------------------------------------------------------
// Rotary embedding (the "rotate half" form LLaMA uses).

/// Rotation tables `[positions, head_dim]` (each half repeated), kept as plain vectors so
/// the kernel can read them.
#[derive(Debug, Clone)]
pub struct RopeTables {
    pub cos: Arc<Vec<f32>>,
    pub sin: Arc<Vec<f32>>,
    pub head_dim: usize,
}

/// A projection's output `[B, T, H·D]` as heads `[B, H, T, D]`, rotated at positions
/// `offset..` when `rope` is given (one pass), or back (`to_heads` false), rotating by −θ.
///
/// Composed, the same is a reshape, a transpose, a copy and a rotation: four graph nodes,
/// each with its own gradient buffer (candle's backward pass fills a zeroed buffer per
/// input of every node) and two of them kept activations.
struct Heads {
    heads: usize,
    rope: Option<(RopeTables, usize)>,
    to_heads: bool,
}

impl Heads {
    /// Rotates one row of `D` values at `position` (by −θ when going back) into `out`.
    fn rotate(&self, row: &[f32], position: usize, out: &mut [f32]) {
        let Some((tables, _)) = &self.rope else {
            out.copy_from_slice(row);
            return;
        };
        let d = row.len();
        let half = d / 2;
        let sign = if self.to_heads { 1.0 } else { -1.0 };
        let (cos, sin) = (&tables.cos[position * d..], &tables.sin[position * d..]);
        for i in 0..half {
            let (c, s) = (cos[i], sign * sin[i]);
            let (a, b) = (row[i], row[i + half]);
            out[i] = a * c - b * s;
            out[i + half] = b * c + a * s;
        }
    }
}

impl CustomOp1 for Heads {
    fn name(&self) -> &'static str {
        "fused-heads"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(s, l, "heads")?;
        let h = self.heads;
        let (t, d, out_shape) = if self.to_heads {
            let (b, t, width) = l.shape().dims3()?;
            if h == 0 || width % h != 0 {
                bail!("heads: {width} does not split into {h} heads");
            }
            (t, width / h, Shape::from((b, h, t, width / h)))
        } else {
            let (b, heads, t, d) = l.shape().dims4()?;
            if heads != h {
                bail!("heads: {heads} heads, expected {h}");
            }
            (t, d, Shape::from((b, t, h * d)))
        };
        let offset = self.rope.as_ref().map_or(0, |(_, o)| *o);
        if let Some((tables, _)) = &self.rope
            && ((offset + t) * d > tables.cos.len() || d % 2 != 0)
        {
            bail!("heads: {} positions exceed the rotary table", offset + t);
        }
        let mut out = vec![0f32; x.len()];
        // One batch entry per task; within it, position j of head i is row (j, i) of the
        // projection layout and row (i, j) of the heads layout.
        out.par_chunks_mut(t * h * d)
            .zip(x.par_chunks(t * h * d))
            .for_each(|(o, x)| {
                for i in 0..h {
                    for j in 0..t {
                        let (proj, head) = ((j * h + i) * d, (i * t + j) * d);
                        let (src, dst) = if self.to_heads {
                            (proj, head)
                        } else {
                            (head, proj)
                        };
                        self.rotate(&x[src..src + d], offset + j, &mut o[dst..dst + d]);
                    }
                }
            });
        Ok((CpuStorage::F32(out), out_shape))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let back = Heads {
            heads: self.heads,
            rope: self.rope.clone(),
            to_heads: !self.to_heads,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}

/// `x: [B, T, heads·D]` as `[B, heads, T, D]`, rotated at positions `offset..` when `rope`
/// is given. CPU f32 only: check [`available_for`] first.
pub fn to_heads(x: &Tensor, heads: usize, rope: Option<(&RopeTables, usize)>) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Heads {
        heads,
        rope: rope.map(|(t, o)| (t.clone(), o)),
        to_heads: true,
    })
}

// ---------------------------------------------------------------------------------------
// Causal grouped-query attention that keeps nothing but its inputs.

/// Row `row` of a causal score matrix (query `row mod t`, after `p` prefix keys) as
/// probabilities, in place: `softmax(scale · x)` over the keys it sees, 0 for the rest.
fn causal_softmax_row(x: &mut [f32], row: usize, t: usize, p: usize, scale: f32) {
    let (seen, hidden) = x.split_at_mut((p + row % t + 1).min(x.len()));
    fm::simd(
        #[inline(always)]
        || {
            let max = fm::max(seen);
            let inv = 1.0 / fm::exp_shifted_in_place(seen, max, scale);
            seen.iter_mut().for_each(|v| *v = fm::flush_tiny(*v * inv));
        },
    );
    hidden.fill(0.0);
}

/// `softmax(scale · q kᵀ + causal mask) v` for `q: [B, G·R, T, D]` (read as
/// `[B, G, R·T, D]`: the `R` query heads that share key/value head `g`, stacked along time)
/// and `k, v: [B, G, P + T, D]`, written as `[B, T, G·R·D]`, the layout the output
/// projection reads.
///
/// Composed from candle ops, attention keeps the scores, the probabilities and the output
/// before and after its transpose for the backward pass: at 128 tokens that is about as
/// much memory per layer as all the block's projections' outputs. This op keeps only
/// `q`, `k` and `v`; its backward pass recomputes the probabilities (one `q kᵀ` and a
/// softmax, a few percent of a step's work). Each (batch entry, key/value head) is one
/// task: its products run on one thread ([`super::gemm`]) with its probabilities in a
/// buffer of its own, small enough to stay in cache.
struct Attention {
    scale: f32,
    t: usize,
    p: usize,
}

/// The sizes of one attention call: `items` = B·G independent (batch entry, key/value
/// head) pairs, `rt` = R·T query rows each, `s` = P + T keys, head width `d`.
#[derive(Clone, Copy)]
struct AttentionDims {
    b: usize,
    g: usize,
    r: usize,
    rt: usize,
    s: usize,
    d: usize,
}

impl AttentionDims {
    fn items(&self) -> usize {
        self.b * self.g
    }
}

impl Attention {
    /// `q` is `[B, H, T, D]` (query head `g·R + r` at `[.., g·R + r, ..]`, the memory of
    /// `[B, G, R·T, D]`), `k`, `v` are `[B, G, P + T, D]`.
    fn dims(&self, q: &Shape, k: &Shape, v: &Shape) -> Result<AttentionDims> {
        let (b, h, tq, d) = q.dims4()?;
        let g = k.dims().get(1).copied().unwrap_or(0);
        let (t, s) = (self.t, self.p + self.t);
        let kv_shape = Shape::from((b, g, s, d));
        let rt = h.checked_div(g).unwrap_or(0) * tq;
        if t == 0 || tq != t || g == 0 || h % g != 0 || k != &kv_shape || v != &kv_shape {
            bail!(
                "attention: queries {:?}, keys {:?}, values {:?} for {t} positions after {}",
                q.dims(),
                k.dims(),
                v.dims(),
                self.p
            );
        }
        Ok(AttentionDims {
            b,
            g,
            r: rt / t,
            rt,
            s,
            d,
        })
    }

    /// One item's probabilities `[R·T, S]` from its queries `[R·T, D]` and keys `[S, D]`.
    fn probs(&self, dims: AttentionDims, q: &[f32], k: &[f32], threads: usize) -> Vec<f32> {
        let AttentionDims { rt, s, d, .. } = dims;
        let (q, k) = (View::rows(q, rt, d), View::rows(k, s, d));
        let mut probs = product(q, k.t(), threads);
        for (row, x) in probs.chunks_mut(s).enumerate() {
            causal_softmax_row(x, row, self.t, self.p, self.scale);
        }
        probs
    }

    /// Runs `f(item, threads)` for every item: in parallel, each on one thread, when
    /// there are enough of them; else one after another, each on the whole pool.
    fn for_each_item<T: Send>(items: Vec<T>, f: impl Fn(T, usize) + Sync) {
        let threads = threads_per_product(items.len());
        if threads == 1 {
            items.into_par_iter().for_each(|item| f(item, 1));
        } else {
            items.into_iter().for_each(|item| f(item, threads));
        }
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        lq: &Layout,
        ks: &CpuStorage,
        lk: &Layout,
        vs: &CpuStorage,
        lv: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = self.dims(lq.shape(), lk.shape(), lv.shape())?;
        let (q, k, v) = data3((qs, lq), (ks, lk), (vs, lv), "attention")?;
        let AttentionDims { b, g, r, rt, s, d } = dims;
        let t = self.t;
        // [B, G, R·T, D]: each item's output rows, in the order its probabilities give them.
        // SAFETY: the items' chunks tile the buffer and `matmul_uninit` writes each whole.
        #[allow(unsafe_code)]
        let heads = unsafe {
            written(dims.items() * rt * d, |heads| {
                let items: Vec<_> = heads.chunks_mut(rt * d).enumerate().collect();
                Self::for_each_item(items, |(i, out), threads| {
                    let kv = i * s * d..(i + 1) * s * d;
                    let qi = &q[i * rt * d..][..rt * d];
                    let probs = self.probs(dims, qi, &k[kv.clone()], threads);
                    let (probs, v) = (View::rows(&probs, rt, s), View::rows(&v[kv], s, d));
                    matmul_uninit(out, probs, v, threads);
                });
            })
        };
        // [B, G, R, T, D] → [B, T, G, R, D]: query head g·R + r of position j.
        let width = g * r * d;
        // SAFETY: each batch entry's chunk of `t · width` values is written whole: `j`
        // and `head` run over all `t` positions and `g · r` heads of `d` values.
        #[allow(unsafe_code)]
        let out = unsafe {
            written(heads.len(), |out| {
                out.par_chunks_mut(t * width)
                    .zip(heads.par_chunks(g * rt * d))
                    .for_each(|(o, h)| {
                        for head in 0..g * r {
                            for j in 0..t {
                                let src = (head * t + j) * d;
                                let dst = j * width + head * d;
                                o[dst..dst + d].write_copy_of_slice(&h[src..src + d]);
                            }
                        }
                    })
            })
        };
        Ok((CpuStorage::F32(out), Shape::from((b, t, width))))
    }

    /// Per item, with `P` its recomputed probabilities and `G` its output's gradient:
    /// dV = Pᵀ G, dP = G Vᵀ, dS = scale · P ⊙ (dP − rowsum(P ⊙ dP)), dQ = dS K, dK = dSᵀ Q.
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = self.dims(q.shape(), k.shape(), v.shape())?;
        let AttentionDims { b, g, r, rt, s, d } = dims;
        let t = self.t;
        let (q, k, v, grad) = (
            q.contiguous()?,
            k.contiguous()?,
            v.contiguous()?,
            grad.contiguous()?,
        );
        let (mut dq, mut dk, mut dv) = (
            Vec::with_capacity(dims.items() * rt * d),
            Vec::with_capacity(dims.items() * s * d),
            Vec::with_capacity(dims.items() * s * d),
        );
        slices(&[&q, &k, &v, &grad], |data| {
            let [q, k, v, grad] = [data[0], data[1], data[2], data[3]];
            let width = g * r * d;
            // Written whole by the GEMMs below (`matmul_uninit`), item by item.
            let items: Vec<_> = dq.spare_capacity_mut()[..dims.items() * rt * d]
                .chunks_mut(rt * d)
                .zip(
                    dk.spare_capacity_mut()[..dims.items() * s * d]
                        .chunks_mut(s * d)
                        .zip(dv.spare_capacity_mut()[..dims.items() * s * d].chunks_mut(s * d)),
                )
                .enumerate()
                .collect();
            Self::for_each_item(items, |(i, (dq, (dk, dv))), threads| {
                let (bi, gi) = (i / g, i % g);
                // This item's rows of the output gradient, in its row order.
                let mut go = Vec::with_capacity(rt * d);
                for row in 0..rt {
                    let (rep, j) = (row / t, row % t);
                    let src = (bi * t + j) * width + (gi * r + rep) * d;
                    go.extend_from_slice(&grad[src..src + d]);
                }
                let qi = &q[i * rt * d..][..rt * d];
                let (ki, vi) = (&k[i * s * d..][..s * d], &v[i * s * d..][..s * d]);
                let probs = self.probs(dims, qi, ki, threads);
                let go_v = View::rows(&go, rt, d);
                matmul_uninit(dv, View::rows(&probs, rt, s).t(), go_v, threads);
                let mut ds = product(go_v, View::rows(vi, s, d).t(), threads);
                fm::simd(
                    #[inline(always)]
                    || {
                        for (ds, p) in ds.chunks_mut(s).zip(probs.chunks(s)) {
                            let dot = fm::dot(p, ds);
                            for (ds, p) in ds.iter_mut().zip(p) {
                                *ds = fm::flush_tiny(self.scale * p * (*ds - dot));
                            }
                        }
                    },
                );
                let ds_v = View::rows(&ds, rt, s);
                matmul_uninit(dq, ds_v, View::rows(ki, s, d), threads);
                matmul_uninit(dk, ds_v.t(), View::rows(qi, rt, d), threads);
            });
            Ok(())
        })?;
        // SAFETY: the items' chunks tile the first `items · rt · d` (`items · s · d`) values
        // of each buffer's capacity, and every item wrote its three chunks whole.
        #[allow(unsafe_code)]
        unsafe {
            dq.set_len(dims.items() * rt * d);
            dk.set_len(dims.items() * s * d);
            dv.set_len(dims.items() * s * d);
        }
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), dev)?),
            Some(Tensor::from_vec(dk, (b, g, s, d), dev)?),
            Some(Tensor::from_vec(dv, (b, g, s, d), dev)?),
        ))
    }
}
/// Causal attention of `q: [B, G·R, T, D]` over `k, v: [B, G, P + T, D]` (`P` prefix keys
/// every query sees, then the `T` positions; query heads `g·R..(g + 1)·R` share key/value
/// head `g`), as `[B, T, G·R·D]`. CPU f32 only: check [`available_for`] first.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    t: usize,
    p: usize,
) -> Result<Tensor> {
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        Attention {
            scale: scale as f32,
            t,
            p,
        },
    )
}

// ---------------------------------------------------------------------------------------
// SwiGLU: silu(gate) ⊙ up.

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
struct Swiglu {
    down: Option<Tensor>,
    scaled: bool,
}

impl Swiglu {
    /// `silu(gate) ⊙ up` element by element, times `scale[column]` when given.
    fn product(g: &[f32], u: &[f32], scale: Option<&[f32]>) -> Vec<f32> {
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
fn swiglu_grad(
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

/// A whole feed-forward block of frozen weights, `((silu(x W_gᵀ) ⊙ x W_uᵀ) ⊙ l) W_dᵀ` (`l`
/// only with `scaled`: IA3 on the down projection), as one op whose only activation input
/// is `x`.
///
/// As two projections and [`Swiglu`], the backward pass gives `gate` and `up` gradients of
/// their own: two graph edges on the block's widest tensors, each of which candle's
/// backward pass fills into a zeroed buffer and adds, then two more into `x`, added again.
/// Here the op keeps `gate` and `up` (as the SwiGLU op kept them) and their gradients never
/// leave it: `dx = d_gate W_g + d_up W_u`, summed by the GEMM.
struct FrozenMlp {
    gate: Tensor,
    up: Tensor,
    down: Tensor,
    scaled: bool,
    /// Whether a backward pass can follow (an input is part of a graph): only then are
    /// `gate` and `up` kept.
    keep: bool,
    /// `gate` and `up`, from the forward pass to the backward one, which takes them.
    kept: std::sync::Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

impl FrozenMlp {
    /// `(hidden, inner, out)`, checked across the three weights.
    fn sizes(&self) -> Result<(usize, usize, usize)> {
        let (inner, hidden) = self.gate.dims2()?;
        let (out, inner_d) = self.down.dims2()?;
        if self.up.dims() != [inner, hidden] || inner_d != inner {
            bail!(
                "frozen MLP: gate {:?}, up {:?}, down {:?}",
                self.gate.dims(),
                self.up.dims(),
                self.down.dims()
            );
        }
        Ok((hidden, inner, out))
    }
}

impl CustomOp2 for FrozenMlp {
    fn name(&self) -> &'static str {
        "fused-frozen-mlp"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        lx: &Layout,
        ls: &CpuStorage,
        ll: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (hidden, inner, out) = self.sizes()?;
        let x = data(xs, lx, "frozen MLP")?;
        let l = if self.scaled {
            Some(data(ls, ll, "frozen MLP scale")?)
        } else {
            None
        };
        if lx.dims().last() != Some(&hidden) || l.is_some_and(|l| l.len() != inner) {
            bail!(
                "frozen MLP: input {:?} (scale {:?}) for weights {hidden} → {inner} → {out}",
                lx.dims(),
                l.map(|l| l.len())
            );
        }
        let rows = x.len() / hidden.max(1);
        let threads = rayon::current_num_threads();
        let x = View::rows(x, rows, hidden);
        let (gate, up, y) = slices(&[&self.gate, &self.up, &self.down], |w| {
            let (wg, wu) = (
                View::rows(w[0], inner, hidden),
                View::rows(w[1], inner, hidden),
            );
            let (gate, up) = (product(x, wg.t(), threads), product(x, wu.t(), threads));
            let h = Swiglu::product(&gate, &up, l);
            let h = View::rows(&h, rows, inner);
            let y = product(h, View::rows(w[2], out, inner).t(), threads);
            Ok((gate, up, y))
        })?;
        if self.keep {
            *self.kept.lock().expect("not poisoned") = Some((gate, up));
        }
        Ok((CpuStorage::F32(y), super::with_last_dim(lx.shape(), out)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (hidden, inner, out) = self.sizes()?;
        let Some((gate, up)) = self.kept.lock().expect("not poisoned").take() else {
            bail!("frozen MLP: a second backward pass through one forward pass");
        };
        let rows = gate.len() / inner.max(1);
        let grad = grad.contiguous()?;
        let l = if self.scaled {
            Some(scale.flatten_all()?.to_vec1::<f32>()?)
        } else {
            None
        };
        let threads = rayon::current_num_threads();
        let (dx, d_l) = slices(&[&grad, &self.gate, &self.up, &self.down], |t| {
            let wd = View::rows(t[3], out, inner);
            let dh = product(View::rows(t[0], rows, out), wd, threads);
            let (d_gate, d_up, d_l) = swiglu_grad(&gate, &up, &dh, l.as_deref(), inner);
            drop((gate, up, dh));
            let (wg, wu) = (
                View::rows(t[1], inner, hidden),
                View::rows(t[2], inner, hidden),
            );
            let mut dx = product(View::rows(&d_gate, rows, inner), wg, threads);
            matmul_into(&mut dx, View::rows(&d_up, rows, inner), wu, true, threads);
            Ok((dx, d_l))
        })?;
        let dev = x.device();
        let d_scale = match d_l {
            Some(d_l) => Some(Tensor::from_vec(d_l, scale.shape(), dev)?),
            None => None,
        };
        Ok((Some(Tensor::from_vec(dx, x.shape(), dev)?), d_scale))
    }
}

/// `((silu(x W_gᵀ) ⊙ x W_uᵀ) ⊙ l) Wᵀ_d` (without `l` when `scale` is `None`) as one op when
/// the three weights (`[inner, hidden]`, `[inner, hidden]`, `[out, inner]`) are frozen f32,
/// `l` an f32 vector `[inner]` and all is on the CPU; `None` where it cannot run (the caller
/// composes the parts).
pub fn frozen_mlp(
    x: &Tensor,
    gate: &Tensor,
    up: &Tensor,
    down: &Tensor,
    scale: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    let weights = [gate, up, down];
    if !fusable(&[x, gate, up, down])
        || weights.iter().any(|w| w.track_op() || w.rank() != 2)
        || x.rank() < 2
        || x.dims().last() != Some(&gate.dim(1)?)
    {
        return Ok(None);
    }
    if let Some(l) = scale
        && (!fusable(&[l]) || l.dims() != [gate.dim(0)?])
    {
        return Ok(None);
    }
    let op = FrozenMlp {
        gate: gate.contiguous()?,
        up: up.contiguous()?,
        down: down.contiguous()?,
        scaled: scale.is_some(),
        keep: x.track_op() || scale.is_some_and(|l| l.track_op()),
        kept: std::sync::Mutex::new(None),
    };
    if op.sizes().is_err() {
        return Ok(None);
    }
    let scale = match scale {
        Some(l) => l.contiguous()?,
        None => Tensor::zeros(1, DType::F32, x.device())?,
    };
    Ok(Some(x.contiguous()?.apply_op2(&scale, op)?))
}

/// Frees the data of `x`, an activation of a training step whose consumers have all run,
/// when it is on the CPU and part of the graph; the tensor stays in the graph as a shape.
///
/// candle keeps every op's inputs alive until the backward pass ends, whether that op's
/// gradient reads them or not, so a projection's output (read by nothing but the heads
/// split, whose gradient is a permutation), the attention's output before a frozen output
/// projection, a residual branch before its add, are all held to the end: about a third
/// of a LLaMA step's activations. The caller promises that no later forward op reads `x`
/// and that no backward pass reads it — neither its consumers' (they only need their
/// weights, or nothing) nor that of the op that made it (matmuls, adds and products: none
/// reads its own output). `tests/methods.rs` checks every method's gradients against the
/// composed path, which releases nothing.
pub fn release_activation(x: &Tensor) -> Result<()> {
    if !fusable(&[x]) || !x.track_op() {
        return Ok(());
    }
    x.inplace_op1(&Release)
}

struct Release;

impl candle_core::InplaceOp1 for Release {
    fn name(&self) -> &'static str {
        "release-activation"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, _l: &Layout) -> Result<()> {
        *s = CpuStorage::F32(Vec::new());
        Ok(())
    }
}

/// Runs `f` on the storage of a CPU tensor an op holds besides its arguments (a frozen
/// weight), read in place.
pub fn with_cpu_storage<R>(
    t: &Tensor,
    f: impl FnOnce(&CpuStorage, &Layout) -> Result<R>,
) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => f(s, layout),
        _ => bail!("a fused CPU op was given a tensor that is not on the CPU"),
    }
}

/// Runs `f` on the f32 data of contiguous CPU tensors, in the order given.
pub fn slices<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let held: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let data = held
        .iter()
        .map(|(storage, layout)| match &**storage {
            candle_core::Storage::Cpu(s) => data(s, layout, "fused op"),
            _ => bail!("a fused CPU op was given a tensor that is not on the CPU"),
        })
        .collect::<Result<Vec<_>>>()?;
    f(&data)
}

// ---------------------------------------------------------------------------------------
// RMSNorm: x / √(mean(x²) + ε) ⊙ w over the last axis.

/// candle-nn's `rms_norm_slow` is seven ops, each keeping its output for the backward pass
/// (seven activation-sized tensors per norm, two norms per block); this keeps none but its
/// output and recomputes the row's scale when differentiated.
struct RmsNorm {
    eps: f32,
}

/// `1 / √(mean(x²) + ε)` of one row.
#[inline(always)]
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    1.0 / (fm::dot(x, x) / x.len() as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        lx: &Layout,
        ws: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (data(xs, lx, "rms norm")?, data(ws, lw, "rms norm")?);
        let d = w.len();
        if lx.dims().last() != Some(&d) {
            bail!("rms norm: rows of {:?}, weight of {d}", lx.dims());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .with_min_len(16)
            .for_each(|(o, x)| {
                fm::simd(
                    #[inline(always)]
                    || {
                        let r = inv_rms(x, self.eps);
                        for (o, (x, w)) in o.iter_mut().zip(x.iter().zip(w)) {
                            *o = x * r * w;
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(out), lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let want_w = w.track_op();
        let out = x.apply_op3_no_bwd(
            w,
            &grad,
            &RmsNormGrad {
                eps: self.eps,
                want_w,
            },
        )?;
        let rows = x.elem_count() / w.elem_count();
        let d_x = out.narrow(0, 0, rows)?.reshape(x.shape())?;
        let d_w = if want_w { Some(out.get(rows)?) } else { None };
        Ok((Some(d_x), d_w))
    }
}

/// `[rows (+ 1), d]`: d/dx = r ⊙ (g⊙w − n · mean(g⊙w⊙n)) per row with n = x·r, and, when the
/// weight is trained, one more row d/dw = Σ_rows g ⊙ n.
struct RmsNormGrad {
    eps: f32,
    want_w: bool,
}

impl CustomOp3 for RmsNormGrad {
    fn name(&self) -> &'static str {
        "fused-rms-norm-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        lx: &Layout,
        ws: &CpuStorage,
        lw: &Layout,
        gs: &CpuStorage,
        lg: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, g) = data3((xs, lx), (ws, lw), (gs, lg), "rms norm grad")?;
        let d = w.len();
        let rows = x.len() / d;
        if g.len() != x.len() {
            bail!("rms norm grad: {} values, {} gradients", x.len(), g.len());
        }
        let mut out = vec![0f32; (rows + self.want_w as usize) * d];
        let (d_x, d_w) = out.split_at_mut(rows * d);
        // Blocks of rows, each with its own partial d/dw, summed after.
        const BLOCK: usize = 32;
        let partial_w: Vec<Vec<f32>> = d_x
            .par_chunks_mut(BLOCK * d)
            .zip(x.par_chunks(BLOCK * d).zip(g.par_chunks(BLOCK * d)))
            .map(|(dx, (x, g))| {
                let mut pw = if self.want_w {
                    vec![0f32; d]
                } else {
                    Vec::new()
                };
                let mut gw = vec![0f32; d];
                let rows = dx.chunks_mut(d).zip(x.chunks(d).zip(g.chunks(d)));
                fm::simd(
                    #[inline(always)]
                    || {
                        for (dx, (x, g)) in rows {
                            let r = inv_rms(x, self.eps);
                            for (gw, (g, w)) in gw.iter_mut().zip(g.iter().zip(w)) {
                                *gw = g * w;
                            }
                            // mean(g⊙w⊙n) = r · (g⊙w)·x / d
                            let c = r * fm::dot(&gw, x) / d as f32;
                            for (dx, (gw, x)) in dx.iter_mut().zip(gw.iter().zip(x)) {
                                *dx = r * (gw - x * r * c);
                            }
                            if self.want_w {
                                for (pw, (g, x)) in pw.iter_mut().zip(g.iter().zip(x)) {
                                    *pw += g * x * r;
                                }
                            }
                        }
                    },
                );
                pw
            })
            .collect();
        if self.want_w {
            for p in &partial_w {
                for (a, b) in d_w.iter_mut().zip(p) {
                    *a += b;
                }
            }
        }
        Ok((
            CpuStorage::F32(out),
            Shape::from((rows + self.want_w as usize, d)),
        ))
    }
}

/// RMSNorm over the last axis of `x` with weight `w` (`[d]`); candle-nn's differentiable
/// composition where the fused kernel cannot run.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    if !fusable(&[x, w]) || w.rank() != 1 || x.dims().last() != Some(&w.elem_count()) {
        return candle_nn::ops::rms_norm_slow(x, w, eps);
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps })
}

/// Whether the fused kernels can run on `x`'s device and dtype.
pub fn available_for(x: &Tensor) -> bool {
    fusable(&[x])
}

#[cfg(test)]
mod tests {
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
        let fused = frozen_mlp(x.as_tensor(), &wg, &wu, &wd, Some(l.as_tensor()))?
            .expect("runs on the CPU");
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
}
