//! CPU compute that candle lacks or does slowly: ops with their own backward pass for training
//! (`dense`, `attention`, and softmax, LayerNorm, GELU and hashed dropout in `ops`), f32 products
//! against a weight packed once (`packed`), dynamic int8 products (`quant`, on the VNNI layout of
//! `vnni`), and the AdamW update passes (`adamw`). Each fast form is tested against the plain candle
//! form it replaces; other devices keep candle's own ops. Built with CUDA, `cuda` sets up a device.
//!
//! The only crate with `unsafe`: the instruction-set kernels (`x86`, one file per instruction set),
//! the attention op's writes into disjoint columns of a shared output, and the CUDA device's set-up.
//! Every `unsafe` block says why it is sound, and every `unsafe fn` what its caller must guarantee.
#![allow(unsafe_code)]

pub mod adamw;
pub mod attention;
pub mod bf16;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod dense;
pub mod epilogue;
pub mod ops;
pub mod packed;
pub mod quant;
pub mod vnni;
#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use candle_core::{Error, Result};

/// The gradients of an op's input, weight and bias, in that order.
pub type Grads = (
    candle_core::Tensor,
    candle_core::Tensor,
    candle_core::Tensor,
);

/// Output channels per panel of the packed weight layouts (`packed`, `vnni`) and of their kernels: one
/// panel is four 16-lane AVX-512 registers wide.
pub(crate) const NR: usize = 64;

use candle_core::Tensor;

/// The largest absolute difference of two tensors of one shape (the kernels' tests compare with it).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.dims() != b.dims() {
        return Err(Error::Msg(format!(
            "shapes differ: {:?} vs {:?}",
            a.dims(),
            b.dims()
        )));
    }
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar()
}
