//! bf16 dense layers for CPU inference: the teacher's target pass with `teacher.precision: bf16`. The
//! weight is rounded to bf16 once and packed into panels of 64 output channels whose values come in
//! pairs of consecutive inputs, the layout AVX-512 BF16's `vdpbf16ps` consumes (32 products a
//! register, twice the f32 kernel's); each call rounds the activations to bf16 (to nearest even) and
//! sums the products in f32, as PyTorch's bf16 autocast does on the same instructions. Only CPUs with
//! AVX-512 BF16 have it (`available`): elsewhere bf16 would be slower than f32, not faster.

use candle_core::{DType, Device, Tensor};
use candle_nn::Linear;
use rayon::prelude::*;

use crate::packed::tiled;
use crate::{Result, NR};

/// Rows the kernel computes at once (6 × 4 = 24 accumulators).
const ROWS: usize = 6;

/// `x` rounded to bf16, to nearest even (NaN stays NaN).
pub fn to_bf16(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7fc0;
    }
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 a bf16 value stands for (exact).
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Whether this CPU has the instructions (AVX-512F and AVX-512 BF16).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A bf16 copy of a `Linear` (`y = x W^T + b`, the bias kept in f32).
#[derive(Debug, Clone)]
pub struct Bf16Linear {
    /// Panel `p`, input pair `g` (inputs 2g, 2g+1), register `j`, lane `l`, value `t` holds
    /// `bf16(w[p*64 + 16j + l, 2g + t])`; zero past the weight's edges.
    panels: Vec<u16>,
    bias: Vec<f32>,
    /// Inputs rounded up to whole pairs: the row stride of the kernel's input.
    k2: usize,
    in_dim: usize,
    out_dim: usize,
}

impl Bf16Linear {
    /// The layer's bf16 copy; `None` where the CPU lacks AVX-512 BF16.
    pub fn from_linear(l: &Linear) -> Result<Option<Self>> {
        if !available() {
            return Ok(None);
        }
        let w = l.weight().to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let (out_dim, in_dim) = w.dims2()?;
        let w: Vec<f32> = w.flatten_all()?.to_vec1()?;
        let bias = match l.bias() {
            Some(b) => b.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec1()?,
            None => vec![0.0; out_dim],
        };
        let k2 = in_dim.div_ceil(2) * 2;
        let n_panels = out_dim.div_ceil(NR);
        let mut panels = vec![0u16; n_panels * k2 * NR];
        for o in 0..out_dim {
            let (p, c) = (o / NR, o % NR);
            let (j, l) = (c / 16, c % 16);
            for (k, &v) in w[o * in_dim..(o + 1) * in_dim].iter().enumerate() {
                let (g, t) = (k / 2, k % 2);
                panels[p * k2 * NR + g * 2 * NR + j * 32 + l * 2 + t] = to_bf16(v);
            }
        }
        Ok(Some(Self {
            panels,
            bias,
            k2,
            in_dim,
            out_dim,
        }))
    }

    /// `x` [..., in] f32 on the CPU → [..., out] f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.dims().last() != Some(&self.in_dim) || x.dtype() != DType::F32 || !x.device().is_cpu()
        {
            return Err(crate::Error::Msg(format!(
                "bf16 linear expects f32 CPU inputs of width {}, got {:?} {:?}",
                self.in_dim,
                x.dtype(),
                x.dims()
            )));
        }
        // Reads the input's storage in place (`cpu_fwd`) instead of copying it out.
        x.contiguous()?.apply_op1_no_bwd(self)
    }

    /// Rows of `in_dim` floats → rows of `out_dim` floats.
    fn forward_rows(&self, xs: &[f32]) -> Vec<f32> {
        let (k, k2, n) = (self.in_dim, self.k2, self.out_dim);
        let m = xs.len() / k.max(1);
        // Rounded straight into the kernel's padded rows (padding 0 meets zero weights).
        let mut xb = vec![0u16; m * k2];
        xb.par_chunks_mut(k2)
            .zip(xs.par_chunks(k.max(1)))
            .for_each(|(dst, src)| {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `from_linear` built this layer only after `available()` saw the instructions.
                let done = unsafe { crate::x86::avx512bf16::round_row(src, &mut dst[..k]) };
                #[cfg(not(target_arch = "x86_64"))]
                let done = 0;
                for (d, &x) in dst[done..k].iter_mut().zip(&src[done..]) {
                    *d = to_bf16(x);
                }
            });
        tiled(m, n, NR, |row0, rows, p, out, stride| {
            let panel = &self.panels[p * k2 * NR..(p + 1) * k2 * NR];
            let width = NR.min(n - p * NR);
            let bias = &self.bias[p * NR..p * NR + width];
            let xr = &xb[row0 * k2..(row0 + rows) * k2];
            let mut acc = [0f32; ROWS * NR];
            for (b, x) in xr.chunks(ROWS * k2).enumerate() {
                let block_rows = x.len() / k2;
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above; x holds whole rows of k2 values, acc ROWS rows of NR, the panel
                // k2 · NR values.
                unsafe {
                    crate::x86::avx512bf16::block(x, block_rows, k2, panel, &mut acc)
                };
                for r in 0..block_rows {
                    let at = (b * ROWS + r) * stride;
                    for ((y, &s), &c) in out[at..at + width]
                        .iter_mut()
                        .zip(&acc[r * NR..r * NR + width])
                        .zip(bias)
                    {
                        *y = s + c;
                    }
                }
            }
        })
    }
}

impl candle_core::CustomOp1 for Bf16Linear {
    fn name(&self) -> &'static str {
        "bf16-linear"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let x = crate::ops::slice(s, l, self.name())?;
        let mut dims = l.dims().to_vec();
        if let Some(d) = dims.last_mut() {
            *d = self.out_dim;
        }
        Ok((
            candle_core::CpuStorage::F32(self.forward_rows(x)),
            candle_core::Shape::from(dims),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 lies halfway between 1 and the next bf16: to the even one, 1.
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
    }

    /// Against f64 sums of the same bf16-rounded values, on shapes with partial pairs, panels and row
    /// blocks; and the products' distance from f32, as the teacher's bf16 mode states it.
    #[test]
    fn products_match_the_rounded_values() {
        if !available() {
            eprintln!("no AVX-512 BF16 on this CPU: nothing to check");
            return;
        }
        let mut rng = StdRng::seed_from_u64(5);
        for &(m, k, n) in &[(1, 5, 3), (7, 33, 70), (16, 64, 64), (100, 129, 130)] {
            let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-2.0..2.0)).collect();
            let dev = Device::Cpu;
            let lin = Linear::new(
                Tensor::from_vec(w.clone(), (n, k), &dev).unwrap(),
                Some(Tensor::from_vec(b.clone(), n, &dev).unwrap()),
            );
            let l = Bf16Linear::from_linear(&lin).unwrap().unwrap();
            let got: Vec<f32> = l
                .forward(&Tensor::from_vec(x.clone(), (m, k), &dev).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let r = |v: f32| from_bf16(to_bf16(v)) as f64;
            for i in 0..m {
                for o in 0..n {
                    let want: f64 = (0..k)
                        .map(|t| r(x[i * k + t]) * r(w[o * k + t]))
                        .sum::<f64>()
                        + b[o] as f64;
                    let g = got[i * n + o] as f64;
                    assert!(
                        (g - want).abs() < 1e-4,
                        "m{m} k{k} n{n} ({i}, {o}): {g} vs {want}"
                    );
                }
            }
        }
    }
}
