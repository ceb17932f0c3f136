//! Scaled dot-product attention in one CPU pass, for inference on few tokens (batch-1 latency).
//! The composed form splits q, k and v into heads (three transposed copies), runs two batched matrix
//! products whose per-head matrices are too small for the general product to pay off, and scales, masks
//! and normalises in three more ops. Here one task per query row reads its head's slice of q, k and v
//! in place from the [batch, seq, hidden] projections and writes its row of the context. The test
//! checks it against the composed form.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use rayon::prelude::*;

use crate::kernels::slice;

/// Attention over q, k, v [batch, seq, hidden] → context [batch, seq, hidden].
pub struct FusedAttention {
    pub heads: usize,
    /// Additive mask [batch, seq]: 0 for tokens, a large negative number for padding.
    pub mask: Vec<f32>,
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused-attention"
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
        let (q, k, v) = (
            slice(s1, l1, name)?,
            slice(s2, l2, name)?,
            slice(s3, l3, name)?,
        );
        let (b, s, h) = l1.shape().dims3()?;
        if l2.dims() != l1.dims() || l3.dims() != l1.dims() || self.mask.len() != b * s {
            candle_core::bail!("{name}: q, k, v and the mask disagree in shape");
        }
        if self.heads == 0 || h % self.heads != 0 {
            candle_core::bail!("{name}: {h} is not divisible into {} heads", self.heads);
        }
        let hd = h / self.heads;
        let mut out = vec![0f32; q.len()];
        out.par_chunks_mut(h).enumerate().for_each(|(row, o)| {
            let bi = row / s;
            let base = bi * s * h;
            let keys = &k[base..base + s * h];
            let values = &v[base..base + s * h];
            let mask = &self.mask[bi * s..(bi + 1) * s];
            query_row(&q[row * h..(row + 1) * h], keys, values, mask, hd, o);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// One query row, every head: the AVX2 build of `query_row_body` where the CPU has it.
fn query_row(q: &[f32], k: &[f32], v: &[f32], mask: &[f32], hd: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { query_row_avx2(q, k, v, mask, hd, out) };
        }
    }
    query_row_body(q, k, v, mask, hd, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn query_row_avx2(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    hd: usize,
    out: &mut [f32],
) {
    query_row_body(q, k, v, mask, hd, out)
}

/// Softmax(q·kᵀ/√d + mask)·v for each head of one query row; `k` and `v` are the sequence's
/// [seq, hidden] rows.
#[inline(always)]
fn query_row_body(q: &[f32], k: &[f32], v: &[f32], mask: &[f32], hd: usize, out: &mut [f32]) {
    let h = q.len();
    let scale = 1.0 / (hd as f32).sqrt();
    let mut p = vec![0f32; mask.len()];
    for head in 0..h / hd {
        let cols = head * hd..(head + 1) * hd;
        let qh = &q[cols.clone()];
        let mut max = f32::NEG_INFINITY;
        for (j, pj) in p.iter_mut().enumerate() {
            *pj = dot(qh, &k[j * h + cols.start..j * h + cols.end]) * scale + mask[j];
            max = max.max(*pj);
        }
        let mut sum = 0f32;
        for pj in p.iter_mut() {
            *pj = (*pj - max).exp();
            sum += *pj;
        }
        let inv = 1.0 / sum;
        let o = &mut out[cols.clone()];
        o.fill(0.0);
        for (j, &pj) in p.iter().enumerate() {
            let w = pj * inv;
            for (o, &x) in o.iter_mut().zip(&v[j * h + cols.start..j * h + cols.end]) {
                *o += w * x;
            }
        }
    }
}

/// A dot product in eight independent lanes, so that it vectorises (sequential float sums do not).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Against the composed form (the encoder's training path): random q, k, v, 3 heads of 12 (not a
    /// multiple of 8, for the dot product's tail), a padded second sequence.
    #[test]
    fn fused_attention_matches_the_composed_form() {
        let dev = Device::Cpu;
        let (b, s, nh, hd) = (2usize, 5usize, 3usize, 12usize);
        let h = nh * hd;
        let q = Tensor::randn(0f32, 1.0, (b, s, h), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, s, h), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (b, s, h), &dev).unwrap();
        let mut mask = vec![0f32; b * s];
        mask[b * s - 2..].fill(f32::MIN);
        let heads = |t: &Tensor| {
            t.reshape((b, s, nh, hd))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let bias = Tensor::from_vec(mask.clone(), (b, 1, 1, s), &dev).unwrap();
        let scores = (heads(&q).matmul(&heads(&k).t().unwrap()).unwrap()
            * (1.0 / (hd as f64).sqrt()))
        .unwrap()
        .broadcast_add(&bias)
        .unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        let want = probs
            .matmul(&heads(&v))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((b, s, h))
            .unwrap();
        let got = q
            .apply_op3_no_bwd(&k, &v, &FusedAttention { heads: nh, mask })
            .unwrap();
        let err: f32 = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(err < 1e-5, "max error {err}");
        let bad = FusedAttention {
            heads: 5,
            mask: vec![0.0; b * s],
        };
        assert!(q.apply_op3_no_bwd(&k, &v, &bad).is_err());
    }
}
