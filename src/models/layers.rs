//! Pieces the model families share: LayerNorm in its differentiable form, and keys and
//! values extended by a per-layer prefix.

use anyhow::Result;
use candle_core::Tensor;

use super::Injector;
use super::weights::Weights;

/// LayerNorm (gain and shift) over the last axis.
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// Reads `{module}.weight` and `{module}.bias`, both `[h]`.
    pub fn load(
        w: &mut Weights,
        module: &str,
        h: usize,
        eps: f64,
        inj: &dyn Injector,
    ) -> Result<Self> {
        Ok(Self {
            weight: w.get(&format!("{module}.weight"), &[h], inj)?,
            bias: w.get(&format!("{module}.bias"), &[h], inj)?,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // The slow form: candle's fused layer_norm has no backward pass.
        Ok(candle_nn::ops::layer_norm_slow(
            x,
            &self.weight,
            &self.bias,
            self.eps,
        )?)
    }
}

/// Keys and values `[B, heads, T, D]` with a layer's prefix `[B or 1, heads, P, D]` (from
/// a cache or a prefix method) placed before them, and the prefix length P.
pub fn with_prefix(
    k: Tensor,
    v: Tensor,
    prefix: Option<&(Tensor, Tensor)>,
) -> Result<(Tensor, Tensor, usize)> {
    let Some((pk, pv)) = prefix else {
        return Ok((k, v, 0));
    };
    let (b, heads, _, d) = k.dims4()?;
    let p = pk.dim(2)?;
    let shape = (b, heads, p, d);
    let (pk, pv) = (pk.broadcast_as(shape)?, pv.broadcast_as(shape)?);
    // candle concatenates along an inner axis through transposes; the matmuls after need
    // standard strides.
    Ok((
        Tensor::cat(&[&pk, &k], 2)?.contiguous()?,
        Tensor::cat(&[&pv, &v], 2)?.contiguous()?,
        p,
    ))
}

/// A config's width must split evenly into its heads: `("n_embd", 768)`, `("n_head", 12)`.
pub fn check_heads(width: (&str, usize), heads: (&str, usize)) -> Result<()> {
    if heads.1 == 0 || !width.1.is_multiple_of(heads.1) {
        anyhow::bail!(
            "{} {} is not a multiple of {} {}",
            width.0,
            width.1,
            heads.0,
            heads.1
        );
    }
    Ok(())
}

/// A config's GELU variant (`key = value`): true for the tanh approximation (`gelu_new`,
/// `gelu_pytorch_tanh`), false for the exact `gelu`.
pub fn gelu_is_tanh(key: &str, value: &str) -> Result<bool> {
    match value {
        "gelu" => Ok(false),
        "gelu_new" | "gelu_pytorch_tanh" => Ok(true),
        other => anyhow::bail!("unsupported {key} `{other}` (supported: gelu, gelu_new)"),
    }
}

/// The projection at module `path` (`{path}.weight` `[out, in]`, and `{path}.bias` when it
/// has one), handed to the method's injector for an adapter.
pub fn projection(
    w: &mut Weights,
    inj: &mut dyn Injector,
    path: &str,
    (in_dim, out_dim, bias): (usize, usize, bool),
) -> Result<super::Linear> {
    let weight = w.get_matrix(&format!("{path}.weight"), &[out_dim, in_dim], inj)?;
    let bias = if bias {
        Some(w.get(&format!("{path}.bias"), &[out_dim], inj)?)
    } else {
        None
    };
    let base = super::Projection { weight, bias };
    let adapter = inj.linear_adapter(path, &base)?;
    Ok(super::Linear::new(base, adapter))
}

/// Rows of an embedding table for `ids: [B, T]` → `[B, T, hidden]`, in f32 whatever the
/// table is stored in (the residual stream is f32 in every precision).
pub fn embed(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let hidden = table.dim(1)?;
    Ok(table
        .index_select(&ids.flatten_all()?, 0)?
        .reshape((b, t, hidden))?
        .to_dtype(candle_core::DType::F32)?)
}
