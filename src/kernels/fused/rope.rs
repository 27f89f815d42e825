//! Splitting into heads with the rotary embedding (the "rotate half" form LLaMA uses), and back.

use super::*;

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
