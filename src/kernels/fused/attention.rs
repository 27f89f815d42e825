//! Causal grouped-query attention that keeps nothing but its inputs.

use super::*;

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
