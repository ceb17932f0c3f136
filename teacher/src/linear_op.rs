//! The dense layer `y = x Wᵀ + b` as one CPU op with its own backward pass, for training. candle's
//! `Linear` broadcasts the weight over the batch, so its backward pass runs one small product per
//! sequence and materialises a [batch, out, in] weight gradient before summing it. Here every product
//! is one matrix product over all tokens, in the layout its result is wanted in:
//! dx = dy W, dW = dyᵀ x (already [out, in]), db = the column sums of dy. `tests` check the output and
//! the three gradients against candle's `Linear`.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::slice;

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
        let (n, k) = w.dims2()?;
        let dy = dy.contiguous()?.reshape(((), n))?;
        let x2 = x.reshape(((), k))?;
        let dx = dy.matmul(w)?.reshape(x.shape())?;
        let dw = dy.t()?.matmul(&x2)?;
        let db = dy.apply_op1_no_bwd(&ColumnSums)?;
        Ok((Some(dx), Some(dw), Some(db)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module, Var};
    use candle_nn::Linear;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::testutil::max_abs_diff(a, b).unwrap()
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
}
