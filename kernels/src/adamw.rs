//! AdamW's passes over a parameter's buffers on the CPU, each one fused pass in parallel chunks instead
//! of a dozen allocating tensor ops: the two moment updates, the decoupled-decay update, and the sum of
//! squares of the gradient norm (partial sums added in chunk order, so every run gives the same norm).
//! The optimizer that drives them is `train::optim`.

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout};
use rayon::prelude::*;

use crate::ops::{slice, slice_mut};

/// In place: `m = beta * m + (1 - beta) * (scale * g)` (or of `(scale * g)^2` for the second moment).
pub struct Moment {
    pub beta: f64,
    pub scale: f64,
    pub square: bool,
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "adamw-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let g = slice(s2, l2, self.name())?;
        let m = slice_mut(s1, l1, self.name())?;
        if m.len() != g.len() {
            candle_core::bail!(
                "adamw-moment: {} moments for {} gradients",
                m.len(),
                g.len()
            );
        }
        let (b, c, sc) = (
            self.beta as f32,
            (1.0 - self.beta) as f32,
            self.scale as f32,
        );
        let square = self.square;
        m.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(m, g)| {
                if square {
                    m.iter_mut()
                        .zip(g)
                        .for_each(|(m, &g)| *m = b * *m + c * (g * sc) * (g * sc));
                } else {
                    m.iter_mut()
                        .zip(g)
                        .for_each(|(m, &g)| *m = b * *m + c * g * sc);
                }
            });
        Ok(())
    }
}

/// Elements per parallel task of the optimizer's passes.
pub const CHUNK: usize = 1 << 14;

/// The sum of squares of an f32 tensor, accumulated in f64, as a scalar f64 tensor.
pub struct SumSquares;

impl candle_core::CustomOp1 for SumSquares {
    fn name(&self) -> &'static str {
        "sum-squares"
    }

    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        l: &Layout,
    ) -> candle_core::Result<(CpuStorage, candle_core::Shape)> {
        let x = slice(s, l, self.name())?;
        // Partial sums in chunk order, added in that order: the same result on every run.
        let partial: Vec<f64> = x
            .par_chunks(CHUNK)
            .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
            .collect();
        let sum: f64 = partial.iter().sum();
        Ok((CpuStorage::F64(vec![sum]), candle_core::Shape::from(())))
    }
}

/// In place: `p = p (1 - lr wd) - lr (m / bc1) / (sqrt(v / bc2) + eps)`.
pub struct Update {
    pub lr: f64,
    pub wd: f64,
    pub bc1: f64,
    pub bc2: f64,
    pub eps: f64,
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        let (m, v) = (slice(s2, l2, self.name())?, slice(s3, l3, self.name())?);
        let p = slice_mut(s1, l1, self.name())?;
        if m.len() != p.len() || v.len() != p.len() {
            candle_core::bail!(
                "adamw-update: {} and {} moments for {} parameters",
                m.len(),
                v.len(),
                p.len()
            );
        }
        let decay = (1.0 - self.lr * self.wd) as f32;
        let (lr, eps) = (self.lr as f32, self.eps as f32);
        let (ibc1, ibc2) = ((1.0 / self.bc1) as f32, (1.0 / self.bc2) as f32);
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|(p, (m, v))| {
                for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
                    *p = *p * decay - lr * (m * ibc1) / ((v * ibc2).sqrt() + eps);
                }
            });
        Ok(())
    }
}
