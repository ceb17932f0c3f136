//! Building blocks with the behaviour training needs and candle 0.11's fused ops lack: a LayerNorm
//! whose training form has a backward pass, a softmax likewise, and dropout drawn from our own seeded
//! RNG (candle's CPU RNG cannot be seeded, and candle-transformers' bert.rs dropout is a no-op).

use std::sync::{Arc, Mutex};

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Init, Linear, VarBuilder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Result;
use kernels::bf16::Bf16Linear;
use kernels::dense::LinearOp;
use kernels::epilogue::Epilogue;
use kernels::packed::PackedLinear;
use kernels::quant::QLinear;

/// A dense layer `y = x W^T + b` with HF weight names `weight` [out, in] and `bias` [out].
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Dense> {
    let w = vb.get_with_hints((out_dim, in_dim), "weight", Init::Const(0.))?;
    let b = vb.get_with_hints(out_dim, "bias", Init::Const(0.))?;
    Ok(Dense {
        linear: Linear::new(w, Some(b)),
        fast: None,
    })
}

/// A dense layer: the f32 `Linear` that trains and exports, and, once `pack` or `quantize_int8` ran, an
/// inference-only copy used instead (all are snapshots: training must not follow them).
#[derive(Debug, Clone)]
pub struct Dense {
    pub linear: Linear,
    fast: Option<Fast>,
}

#[derive(Debug, Clone)]
enum Fast {
    Packed(Arc<PackedLinear>),
    Bf16(Arc<Bf16Linear>),
    Int8(Arc<QLinear>),
}

/// The inference copy `pack` makes of a dense layer on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// The f32 weight packed once for a kernel that beats the general product at every size measured
    /// (`kernels::packed`). Same numbers as unpacked, up to the order of the sums.
    F32,
    /// The weight rounded to bf16 for AVX-512 BF16's products (`kernels::bf16`), at every size: about
    /// twice the f32 throughput, within bf16's precision of it.
    Bf16,
}

impl Dense {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.linear.weight();
        if x.dtype() != w.dtype() {
            // Mixed precision: the product in the input's dtype, on a copy of the master weight
            // (the cast is differentiable, so the f32 weight gets an f32 gradient).
            let dt = x.dtype();
            let b = self.linear.bias().map(|b| b.to_dtype(dt)).transpose()?;
            return Ok(Linear::new(w.to_dtype(dt)?, b).forward(&x.contiguous()?)?);
        }
        match &self.fast {
            Some(Fast::Packed(p)) if x.device().is_cpu() && x.dtype() == DType::F32 => {
                Ok(p.forward(x)?)
            }
            Some(Fast::Bf16(b)) if x.device().is_cpu() && x.dtype() == DType::F32 => {
                Ok(b.forward(x)?)
            }
            Some(Fast::Int8(q)) => Ok(q.forward(x)?),
            _ => match self.linear.bias() {
                // On the CPU, one product over all tokens with its own backward (`linear_op`).
                Some(b) if x.device().is_cpu() && x.dtype() == DType::F32 => Ok(x
                    .contiguous()?
                    .apply_op3(self.linear.weight(), b, LinearOp)?),
                // candle's CUDA matmul takes only row-contiguous inputs (see `first_token`).
                _ => Ok(self.linear.forward(&x.contiguous()?)?),
            },
        }
    }

    /// Whether `pack` or `quantize_int8` gave the layer an inference copy.
    pub fn has_inference_copy(&self) -> bool {
        self.fast.is_some()
    }

    /// Switches CPU inference to the `how` copy, unless the layer has an inference copy already. bf16
    /// needs a CPU with AVX-512 BF16 (an error names it otherwise).
    pub fn pack(&mut self, how: Packing) -> Result<()> {
        if self.fast.is_some() || !self.linear.weight().device().is_cpu() {
            return Ok(());
        }
        self.fast = Some(match how {
            Packing::F32 => Fast::Packed(Arc::new(PackedLinear::from_linear(&self.linear)?)),
            Packing::Bf16 => Fast::Bf16(Arc::new(
                Bf16Linear::from_linear(&self.linear)?.ok_or_else(|| {
                    crate::Error::Msg(
                        "bf16 inference needs a CPU with AVX-512 BF16, which this one lacks: use fp32"
                            .into(),
                    )
                })?,
            )),
        });
        Ok(())
    }

    /// The inference copy's product over plain rows of the input width, each finished by `epilogue`;
    /// `None` where the layer has no f32-packed or int8 copy.
    pub(crate) fn forward_rows(&self, x: &[f32], epilogue: Epilogue) -> Option<Vec<f32>> {
        match &self.fast {
            Some(Fast::Packed(p)) => Some(p.forward_slice(x, epilogue)),
            Some(Fast::Int8(q)) => Some(q.forward_slice(x, epilogue)),
            _ => None,
        }
    }

    /// The layers stacked along their outputs as one (`[Σ out, in]`), with an inference copy of the
    /// first one's kind (f32-packed or int8), or `None` where it has neither. An int8 copy's
    /// per-channel scales are the parts' own, so each output is the same as from its own layer.
    pub(crate) fn stacked(parts: &[&Dense]) -> Result<Option<Dense>> {
        let kind = parts.first().and_then(|d| d.fast.as_ref());
        if !matches!(kind, Some(Fast::Packed(_) | Fast::Int8(_))) {
            return Ok(None);
        }
        let weights: Vec<&Tensor> = parts.iter().map(|d| d.linear.weight()).collect();
        let biases: Option<Vec<&Tensor>> = parts.iter().map(|d| d.linear.bias()).collect();
        let Some(biases) = biases else {
            return Ok(None);
        };
        let linear = Linear::new(Tensor::cat(&weights, 0)?, Some(Tensor::cat(&biases, 0)?));
        let mut dense = Dense { linear, fast: None };
        match kind {
            Some(Fast::Int8(_)) => {
                dense.quantize_int8()?;
            }
            _ => dense.pack(Packing::F32)?,
        }
        Ok(Some(dense))
    }

    /// Switches inference to int8; returns (f32 bytes, int8 bytes) of the layer.
    pub fn quantize_int8(&mut self) -> Result<(usize, usize)> {
        let q = QLinear::from_linear(&self.linear)?;
        let sizes = (q.f32_bytes(), q.bytes());
        self.fast = Some(Fast::Int8(Arc::new(q)));
        Ok(sizes)
    }
}

/// LayerNorm with HF names `weight`/`bias`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.))?,
            eps,
        })
    }

    /// The weight, the bias and epsilon.
    pub(crate) fn parts(&self) -> (Tensor, Tensor, f32) {
        (self.weight.clone(), self.bias.clone(), self.eps as f32)
    }

    /// Normalises over the last dimension. In training a form with a backward pass is needed: candle's
    /// fused `ops::layer_norm` has none and would silently stop every gradient here. On the CPU our
    /// fused kernel serves both; elsewhere candle's fused op for inference, the composed ops for training.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            let op = kernels::ops::LayerNormOp {
                eps: self.eps as f32,
            };
            let x = x.contiguous()?;
            return Ok(if train {
                x.apply_op3(&self.weight, &self.bias, op)?
            } else {
                x.apply_op3_no_bwd(&self.weight, &self.bias, &op)?
            });
        }
        if !train {
            let x = x.contiguous()?;
            return Ok(candle_nn::ops::layer_norm(
                &x,
                &self.weight,
                &self.bias,
                self.eps as f32,
            )?);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        Ok(xn.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?)
    }
}

/// Softmax over the last dimension; the fused kernel for inference, the differentiable one for training.
pub fn softmax_t(x: &Tensor, train: bool) -> Result<Tensor> {
    if train && x.device().is_cpu() {
        Ok(x.contiguous()?.apply_op1(kernels::ops::Softmax)?)
    } else if train {
        Ok(candle_nn::ops::softmax(x, D::Minus1)?)
    } else {
        Ok(candle_nn::ops::softmax_last_dim(x)?)
    }
}

/// Dropout masks from a shared seeded RNG. The trainer reseeds it at every step from (seed, step), so a
/// run is reproducible and a resumed run draws the same masks as an uninterrupted one.
#[derive(Debug, Clone)]
pub struct DropoutRng(Arc<Mutex<Draws>>);

#[derive(Debug)]
struct Draws {
    rng: StdRng,
    /// Whether a GPU's own generator was seeded from `rng` since the last reseed.
    device_seeded: bool,
}

impl Default for DropoutRng {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Draws {
            rng: StdRng::seed_from_u64(0),
            device_seeded: false,
        })))
    }
}

impl DropoutRng {
    pub fn reseed(&self, seed: u64) {
        if let Ok(mut d) = self.0.lock() {
            *d = Draws {
                rng: StdRng::seed_from_u64(seed),
                device_seeded: false,
            };
        }
    }

    fn draws(&self) -> Result<std::sync::MutexGuard<'_, Draws>> {
        self.0
            .lock()
            .map_err(|_| crate::Error::Msg("dropout RNG poisoned".into()))
    }

    /// The hashed dropout of the next `apply` on the CPU, for a fused kernel that applies it itself
    /// (draws its seed as `apply` would, so the RNG sequence is the same either way).
    pub fn op(&self, p: f64, train: bool) -> Result<Option<kernels::ops::Dropout>> {
        if !train || p <= 0.0 {
            return Ok(None);
        }
        Ok(Some(kernels::ops::Dropout {
            seed: self.draws()?.rng.random::<u64>(),
            p: p as f32,
        }))
    }

    /// Inverted dropout: zeroes each element with probability `p` and scales the rest by 1/(1-p).
    pub fn apply(&self, x: &Tensor, p: f64, train: bool) -> Result<Tensor> {
        if !train || p <= 0.0 {
            return Ok(x.clone());
        }
        let mut d = self.draws()?;
        if x.device().is_cpu() {
            // A fresh seed per call; the mask itself is a hash of (seed, index), never stored.
            let op = kernels::ops::Dropout {
                seed: d.rng.random::<u64>(),
                p: p as f32,
            };
            // The kernel is f32: half-precision activations go through it (the same mask either way).
            let dt = x.dtype();
            return Ok(x
                .to_dtype(DType::F32)?
                .contiguous()?
                .apply_op1(op)?
                .to_dtype(dt)?);
        }
        // Elsewhere the device draws the mask itself: drawn on the host, it would be one RNG draw per
        // element and an upload (about 143 MB a RoBERTa-tiny step at b32 s128). Its generator is
        // seeded from ours once per reseed, so a step's masks still follow from (seed, step).
        if !d.device_seeded {
            x.device().set_seed(d.rng.random::<u64>())?;
            d.device_seeded = true;
        }
        let keep = Tensor::rand(0f32, 1f32, x.shape(), x.device())?.ge(p)?;
        let mask = (keep.to_dtype(x.dtype())? * (1.0 / (1.0 - p)))?;
        Ok((x * mask)?)
    }
}

/// Applies a dense layer to a [b, s, in] tensor.
pub fn apply(l: &Dense, x: &Tensor) -> Result<Tensor> {
    l.forward(x)
}
