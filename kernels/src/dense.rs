//! The dense layer `y = x Wᵀ + b` as one CPU op with its own backward pass, for training. candle's
//! `Linear` broadcasts the weight over the batch, so its backward pass runs one small product per
//! sequence and materialises a [batch, out, in] weight gradient before summing it. Here every product
//! is one matrix product over all tokens, in the layout its result is wanted in:
//! dx = dy W, dW = dyᵀ x (already [out, in]), db = the column sums of dy. `tests` check the output and
//! the three gradients against candle's `Linear`. Up to `SMALL_ROWS` rows the forward reads the
//! weight in place (`small_rows`) instead: the general product's AVX-512 path packs the whole weight
//! first, which at batch 1 costs more than the arithmetic (models loaded for inference pack it once
//! instead, see `packed`).

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::ops::slice;

/// Up to this many rows (tokens in a call) reading the weight in place beats the general product.
pub const SMALL_ROWS: usize = 64;

/// `x` [..., in], `w` [out, in], `b` [out] → [..., out].
pub struct LinearOp;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "dense"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, w, b) = (
            slice(s1, l1, name)?,
            slice(s2, l2, name)?,
            slice(s3, l3, name)?,
        );
        let (n, k) = l2.shape().dims2()?;
        let mut dims = l1.dims().to_vec();
        if dims.last() != Some(&k) || b.len() != n {
            candle_core::bail!(
                "{name}: input {dims:?}, weight [{n}, {k}] and bias [{}] disagree",
                b.len()
            );
        }
        let m = x.len() / k.max(1);
        if m <= SMALL_ROWS {
            if let Some(y) = small_rows(x, w, b, k) {
                if let Some(d) = dims.last_mut() {
                    *d = n;
                }
                return Ok((CpuStorage::F32(y), Shape::from(dims)));
            }
        }
        // The bias rows start the output (written in parallel); the product is added onto them.
        let mut y = vec![0f32; m * n];
        y.par_chunks_mut(n.max(1))
            .for_each(|row| row.copy_from_slice(b));
        if m > 0 && n > 0 && k > 0 {
            // SAFETY: y is [m, n] row-major, x [m, k] row-major, w [n, k] row-major read as Wᵀ
            // [k, n] (column stride k, row stride 1); all three slices have exactly these sizes.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    y.as_mut_ptr(),
                    1,
                    n as isize,
                    true,
                    x.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr(),
                    k as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(rayon::current_num_threads()),
                )
            };
        }
        if let Some(d) = dims.last_mut() {
            *d = n;
        }
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.backward(x, w, dy)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

impl LinearOp {
    /// The gradients (dx, dW, db) from the input `x`, the weight `w` [out, in] and the output's
    /// gradient `dy`.
    pub fn backward(&self, x: &Tensor, w: &Tensor, dy: &Tensor) -> crate::Result<crate::Grads> {
        let (n, k) = w.dims2()?;
        let dy = dy.contiguous()?.reshape(((), n))?;
        let x2 = x.reshape(((), k))?;
        let dx = dy.matmul(w)?.reshape(x.shape())?;
        let dw = dy.t()?.matmul(&x2)?;
        let db = dy.apply_op1_no_bwd(&ColumnSums)?;
        Ok((dx, dw, db))
    }
}

/// Column sums of a [rows, cols] matrix: the bias gradient. candle's `sum(0)` reduces along the strided
/// dimension one column at a time; here each task adds whole rows into a partial sum.
struct ColumnSums;

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "column-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let (_, n) = l.shape().dims2()?;
        // Partial sums over fixed blocks of rows, added in block order: the same result on every
        // run and thread count.
        const ROWS: usize = 256;
        let partial: Vec<Vec<f32>> = x
            .par_chunks(ROWS * n.max(1))
            .map(|chunk| {
                let mut acc = vec![0f32; n];
                for row in chunk.chunks_exact(n.max(1)) {
                    acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
                }
                acc
            })
            .collect();
        let mut sums = vec![0f32; n];
        for p in &partial {
            sums.iter_mut().zip(p).for_each(|(a, &b)| *a += b);
        }
        Ok((CpuStorage::F32(sums), Shape::from(n)))
    }
}

/// `y = x Wᵀ + b` for few rows (x [m, k], w [n, k]), reading the weight in place: at batch 1 the general
/// product's packing of the whole weight costs more than the arithmetic. `None` without AVX-512.
pub fn small_rows(x: &[f32], w: &[f32], b: &[f32], k: usize) -> Option<Vec<f32>> {
    #[cfg(target_arch = "x86_64")]
    {
        if !std::arch::is_x86_feature_detected!("avx512f") || k == 0 {
            return None;
        }
        let (m, n) = (x.len() / k, b.len());
        Some(crate::packed::tiled(
            m,
            n,
            64,
            |row0, rows, p, out, stride| {
                let o0 = p * 64;
                let width = 64.min(n - o0);
                for g in (0..width).step_by(4) {
                    let ch = 4.min(width - g);
                    for r0 in (0..rows).step_by(4) {
                        let rr = 4.min(rows - r0);
                        let xs = &x[(row0 + r0) * k..(row0 + r0 + rr) * k];
                        let mut sums = [[0f32; 4]; 4];
                        if ch == 4 {
                            // SAFETY: AVX-512F is present; xs holds rr rows of k, w 4 rows of k from o0 + g.
                            unsafe {
                                crate::x86::avx512::dense_rows4(
                                    xs,
                                    rr,
                                    &w[(o0 + g) * k..(o0 + g + 4) * k],
                                    k,
                                    &mut sums,
                                )
                            };
                        } else {
                            for (r, s) in sums.iter_mut().enumerate().take(rr) {
                                for (c, v) in s.iter_mut().enumerate().take(ch) {
                                    let wr = &w[(o0 + g + c) * k..(o0 + g + c + 1) * k];
                                    *v = xs[r * k..(r + 1) * k]
                                        .iter()
                                        .zip(wr)
                                        .map(|(a, b)| a * b)
                                        .sum();
                                }
                            }
                        }
                        for (r, s) in sums.iter().enumerate().take(rr) {
                            for c in 0..ch {
                                out[(r0 + r) * stride + g + c] = s[c] + b[o0 + g + c];
                            }
                        }
                    }
                }
            },
        ))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, w, b, k);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module, Var};
    use candle_nn::Linear;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::max_abs_diff(a, b).unwrap()
    }

    /// Output and gradients of x, W and b against candle's `Linear`, through a loss that weights
    /// every output differently.
    #[test]
    fn dense_op_matches_candle_linear_and_its_gradients() {
        let dev = Device::Cpu;
        let (k, n) = (24, 40);
        let x = Var::randn(0f32, 1.0, (3, 7, k), &dev).unwrap();
        let w = Var::randn(0f32, 1.0, (n, k), &dev).unwrap();
        let b = Var::randn(0f32, 1.0, n, &dev).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (3, 7, n), &dev).unwrap();
        let run = |fused: bool| {
            let y = if fused {
                x.as_tensor()
                    .apply_op3(w.as_tensor(), b.as_tensor(), LinearOp)
                    .unwrap()
            } else {
                Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()))
                    .forward(x.as_tensor())
                    .unwrap()
            };
            let grads = (&y * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g = |v: &Var| grads.get(v.as_tensor()).unwrap().clone();
            (y, g(&x), g(&w), g(&b))
        };
        let (want, got) = (run(false), run(true));
        assert!(max_diff(&want.0, &got.0) < 1e-4);
        assert!(max_diff(&want.1, &got.1) < 1e-4);
        assert!(max_diff(&want.2, &got.2) < 1e-4);
        assert!(max_diff(&want.3, &got.3) < 1e-4);
        let bad = Tensor::zeros((2, k + 1), candle_core::DType::F32, &dev).unwrap();
        assert!(bad
            .apply_op3(w.as_tensor(), b.as_tensor(), LinearOp)
            .is_err());
    }

    /// The few-row kernel on shapes with a partial last group of channels and a k tail, against
    /// f64-accumulated sums.
    #[test]
    fn small_rows_match_plain_sums() {
        // The second shape has enough rows for `tiled`'s band-parallel path.
        for (m, k, n) in [(9, 21, 37), (500, 21, 70)] {
            small_rows_case(m, k, n);
        }
    }

    fn small_rows_case(m: usize, k: usize, n: usize) {
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
        let Some(got) = small_rows(&x, &w, &b, k) else {
            eprintln!("no AVX-512 on this CPU: the general product serves instead");
            return;
        };
        for r in 0..m {
            for o in 0..n {
                let want: f64 = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[o * k + i] as f64)
                    .sum::<f64>()
                    + b[o] as f64;
                assert!((got[r * n + o] as f64 - want).abs() < 1e-4, "({r}, {o})");
            }
        }
    }
}
