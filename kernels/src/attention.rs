//! Scaled dot-product attention as one CPU op with its own backward pass. The composed form splits q, k
//! and v into heads (three transposed copies), then scales, masks, normalises, drops out, multiplies and
//! transposes back: about fifteen graph nodes a layer, each a full pass over its tensor forward and
//! backward (candle's backward also zero-fills and adds a gradient buffer per node). Here one task per
//! (sequence, head) reads its head's columns of the [batch, seq, hidden] projections in place through
//! the matrix product's strides and writes its columns of the context. The backward pass recomputes the
//! probabilities (and the hashed dropout mask) instead of storing them. The probabilities are not
//! returned: callers that need them (attention distillation) take the composed form. `tests` check the
//! output and the gradients against the composed form, with padding and dropout.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::ops::{exp, simd_dispatch, slice, Dropout};

/// Attention over q, k, v [batch, seq, hidden] → context [batch, seq, hidden].
pub struct FusedAttention {
    pub heads: usize,
    /// Additive mask [batch, seq]: 0 for tokens, a large negative number for padding.
    pub mask: Vec<f32>,
    /// A constant bias [heads, seq, seq] added to the scaled scores before the mask (MPNet's
    /// relative-position bias). No gradient flows to it: a model that trains it takes the composed
    /// form.
    pub position_bias: Option<Vec<f32>>,
    /// Dropout on the probabilities [batch, heads, seq, seq] (indexed as that contiguous tensor, as
    /// the composed form's dropout is, so both draw the same mask).
    pub dropout: Option<Dropout>,
}

/// The shapes of one call.
#[derive(Clone, Copy)]
struct Dims {
    s: usize,
    h: usize,
    hd: usize,
    heads: usize,
    /// The row stride of q and k (h, or 3h when they are column blocks of one [b, s, 3h] product).
    rs: usize,
}

/// A pointer the tasks share; each writes only its own (sequence, head) columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint elements (see `Out`), and the buffer outlives the parallel loop.
unsafe impl Send for Out {}
// SAFETY: as for `Send`: no two tasks touch one element, so sharing the pointer is sound.
unsafe impl Sync for Out {}

impl Out {
    /// The element `i` places on (a method, so that closures capture the whole `Send` wrapper).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

impl FusedAttention {
    fn dims(&self, l1: &Layout, l2: &Layout, l3: &Layout) -> candle_core::Result<(usize, Dims)> {
        let (b, s, h) = l1.shape().dims3()?;
        if l2.dims() != l1.dims() || l3.dims() != l1.dims() || self.mask.len() != b * s {
            candle_core::bail!("fused-attention: q, k, v and the mask disagree in shape");
        }
        Ok((b, self.checked(s, h, h)?))
    }

    /// The shapes of a call over sequences of `s` tokens, `h` wide, in rows `rs` apart, once the heads
    /// divide `h` and the position bias (if any) is [heads, s, s].
    fn checked(&self, s: usize, h: usize, rs: usize) -> candle_core::Result<Dims> {
        if self.heads == 0 || !h.is_multiple_of(self.heads) {
            candle_core::bail!(
                "fused-attention: {h} is not divisible into {} heads",
                self.heads
            );
        }
        if self
            .position_bias
            .as_ref()
            .is_some_and(|pb| pb.len() != self.heads * s * s)
        {
            candle_core::bail!(
                "fused-attention: the position bias is not [{}, {s}, {s}]",
                self.heads
            );
        }
        Ok(Dims {
            s,
            h,
            hd: h / self.heads,
            heads: self.heads,
            rs,
        })
    }

    /// The probabilities of sequence `bi`, head `hh` into `p` [s, s] (before dropout).
    fn probs(&self, q: &[f32], k: &[f32], d: Dims, bi: usize, hh: usize, p: &mut [f32]) {
        let Dims { s, hd, rs, .. } = d;
        let off = bi * s * rs + hh * hd;
        let scale = 1.0 / (hd as f32).sqrt();
        // SAFETY: q and k hold [b, s, ·] rows `rs` apart; the head's block starts at `off` with row
        // stride rs; p is [s, s] row-major.
        unsafe {
            gemm::gemm(
                s,
                s,
                hd,
                p.as_mut_ptr(),
                1,
                s as isize,
                false,
                q.as_ptr().add(off),
                1,
                rs as isize,
                k.as_ptr().add(off),
                rs as isize,
                1,
                0.0,
                scale,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        };
        if let Some(pb) = &self.position_bias {
            let head = &pb[hh * s * s..(hh + 1) * s * s];
            p.iter_mut().zip(head).for_each(|(x, b)| *x += b);
        }
        let mask = &self.mask[bi * s..(bi + 1) * s];
        simd_dispatch!(softmax_rows(p, mask, ()));
    }

    /// The context [b, s, h] of q, k and v, whose rows are `d.rs` apart.
    fn context(&self, q: &[f32], k: &[f32], v: &[f32], b: usize, d: Dims) -> Vec<f32> {
        let Dims {
            s,
            h,
            hd,
            heads,
            rs,
        } = d;
        let mut out = vec![0f32; b * s * h];
        let dst = Out(out.as_mut_ptr());
        (0..b * heads).into_par_iter().for_each(|t| {
            let (bi, hh) = (t / heads, t % heads);
            let mut p = vec![0f32; s * s];
            self.probs(q, k, d, bi, hh, &mut p);
            if let Some(drop) = &self.dropout {
                let mut f = vec![0f32; s * s];
                simd_dispatch!(dropout_factors(&mut f, drop, Self::index(d, bi, hh)));
                p.iter_mut().zip(&f).for_each(|(x, f)| *x *= f);
            }
            let head = hh * hd;
            // SAFETY: this task's context block [s, hd] at its offset (row stride h) is written by
            // no other task; p is [s, s], v holds [b, s, ·] rows rs apart.
            unsafe {
                product(
                    (s, hd, s),
                    dst.at(bi * s * h + head),
                    h,
                    (p.as_ptr(), 1, s),
                    (v.as_ptr().add(bi * s * rs + head), 1, rs),
                )
            };
        });
        out
    }

    /// Attention for inference over one [b, s, 3h] product whose rows hold q, k and v side by side
    /// (the fused query/key/value layer): context [b, s, h], without copying the three apart.
    pub fn forward_fused_qkv(&self, qkv: &[f32], b: usize, h: usize) -> crate::Result<Vec<f32>> {
        let s = self.mask.len() / b.max(1);
        if qkv.len() != b * s * 3 * h || self.mask.len() != b * s {
            candle_core::bail!(
                "fused-attention: {} values and a mask of {} are not [{b}, {s}, 3 x {h}]",
                qkv.len(),
                self.mask.len()
            );
        }
        let d = self.checked(s, h, 3 * h)?;
        Ok(self.context(qkv, &qkv[h..], &qkv[2 * h..], b, d))
    }

    /// Index of element (i, j) of sequence `bi`, head `hh` in the [b, heads, s, s] probabilities.
    fn index(d: Dims, bi: usize, hh: usize) -> usize {
        (bi * d.heads + hh) * d.s * d.s
    }
}

/// Each element's dropout factor: 1 / (1 − p) where element `base + i` of the [b, heads, s, s]
/// probabilities is kept, 0 where it is dropped (a loop the vector unit runs).
#[inline(always)]
fn dropout_factors(out: &mut [f32], drop: &Dropout, base: usize) {
    let scale = 1.0 / (1.0 - drop.p);
    for (i, f) in out.iter_mut().enumerate() {
        *f = if drop.keep(base + i) { scale } else { 0.0 };
    }
}

/// Adds the mask to each row of `p` and normalises it (softmax). The maximum and the sum run in 16
/// independent lanes so that they vectorise, and the exponentials are summed as they are written.
#[inline(always)]
fn softmax_rows(p: &mut [f32], mask: &[f32], _: ()) {
    for row in p.chunks_mut(mask.len().max(1)) {
        let mut top = [f32::NEG_INFINITY; 16];
        let mut chunks = row.chunks_exact_mut(16);
        let mut masks = mask.chunks_exact(16);
        for (c, m) in (&mut chunks).zip(&mut masks) {
            for ((x, &m), t) in c.iter_mut().zip(m).zip(top.iter_mut()) {
                *x += m;
                *t = t.max(*x);
            }
        }
        for (x, &m) in chunks.into_remainder().iter_mut().zip(masks.remainder()) {
            *x += m;
            top[0] = top[0].max(*x);
        }
        let max = top.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut lanes = [0f32; 16];
        let mut chunks = row.chunks_exact_mut(16);
        for c in &mut chunks {
            for (x, l) in c.iter_mut().zip(lanes.iter_mut()) {
                *x = exp(*x - max);
                *l += *x;
            }
        }
        let mut tail = 0f32;
        for x in chunks.into_remainder() {
            *x = exp(*x - max);
            tail += *x;
        }
        let inv = 1.0 / (lanes.iter().sum::<f32>() + tail);
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

/// `dst` [m, n] (row stride `dst_rs`) = `lhs` [m, k] · `rhs` [k, n], each given as (pointer, column
/// stride, row stride), single-threaded (the caller runs tasks in parallel).
///
/// # Safety
/// Every pointer must address its matrix with the given strides.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
) {
    // SAFETY: the caller's contract: each pointer addresses its matrix with the given strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            lhs.0,
            lhs.1 as isize,
            lhs.2 as isize,
            rhs.0,
            rhs.1 as isize,
            rhs.2 as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
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
        let (b, d) = self.dims(l1, l2, l3)?;
        Ok((
            CpuStorage::F32(self.context(q, k, v, b, d)),
            l1.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _ctx: &Tensor,
        dctx: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (grads, _) = self.backward(q, k, v, dctx, false)?;
        Ok((
            Some(grads.get(0)?),
            Some(grads.get(1)?),
            Some(grads.get(2)?),
        ))
    }
}

impl FusedAttention {
    /// dq, dk and dv stacked as [3, batch, seq, hidden], from q, k, v and the context's gradient; with
    /// `bias_grad`, also the position bias's gradient [1, heads, seq, seq] (the scores' gradient summed
    /// over the batch, in batch order).
    pub fn backward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        dctx: &Tensor,
        bias_grad: bool,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let bias_grad = bias_grad && self.position_bias.is_some();
        let op = AttentionBwd {
            fwd: self,
            dctx: dctx.contiguous()?,
            bias_grad,
        };
        let flat = q.apply_op3_no_bwd(k, v, &op)?;
        let (b, s, h) = q.dims3()?;
        let n = b * s * h;
        let dqkv = flat.narrow(0, 0, 3 * n)?.reshape((3, b, s, h))?;
        let dbias = match bias_grad {
            true => Some(
                flat.narrow(0, 3 * n, self.heads * s * s)?
                    .reshape((1, self.heads, s, s))?,
            ),
            false => None,
        };
        Ok((dqkv, dbias))
    }
}

/// dq, dk, dv ([3, batch, seq, hidden]) and, with `bias_grad`, the position bias's gradient ([heads,
/// seq, seq]) in one flat buffer, from q, k, v and the context's gradient.
struct AttentionBwd<'a> {
    fwd: &'a FusedAttention,
    dctx: Tensor,
    bias_grad: bool,
}

impl CustomOp3 for AttentionBwd<'_> {
    fn name(&self) -> &'static str {
        "fused-attention-bwd"
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
        let (b, d) = self.fwd.dims(l1, l2, l3)?;
        let Dims {
            s, h, hd, heads, ..
        } = d;
        let n = q.len();
        let (dctx_storage, dctx_layout) = self.dctx.storage_and_layout();
        let dctx = match &*dctx_storage {
            candle_core::Storage::Cpu(c) => slice(c, dctx_layout, name)?,
            _ => candle_core::bail!("{name}: the context gradient is not on the CPU"),
        };
        if dctx.len() != n {
            candle_core::bail!(
                "{name}: the context gradient has {} elements, not {n}",
                dctx.len()
            );
        }
        let bias_len = if self.bias_grad { heads * s * s } else { 0 };
        let mut out = vec![0f32; 3 * n + bias_len];
        let dst = Out(out.as_mut_ptr());
        // Each (sequence, head)'s score gradient, summed over the batch below in a fixed order.
        let mut scores = vec![0f32; if self.bias_grad { b * heads * s * s } else { 0 }];
        let ds_all = Out(scores.as_mut_ptr());
        let scale = 1.0 / (hd as f32).sqrt();
        (0..b * heads).into_par_iter().for_each(|t| {
            let (bi, hh) = (t / heads, t % heads);
            let off = bi * s * h + hh * hd;
            let mut p = vec![0f32; s * s];
            self.fwd.probs(q, k, d, bi, hh, &mut p);
            // The dropped-out probabilities, for dv.
            let mut pd = p.clone();
            // The dropout factors, drawn once for both uses.
            let factors = self.fwd.dropout.as_ref().map(|drop| {
                let mut f = vec![0f32; s * s];
                let base = FusedAttention::index(d, bi, hh);
                simd_dispatch!(dropout_factors(&mut f, drop, base));
                f
            });
            if let Some(f) = &factors {
                pd.iter_mut().zip(f).for_each(|(x, f)| *x *= f);
            }
            let mut dp = vec![0f32; s * s];
            // SAFETY: (all products) the head blocks at `off` have row stride h inside [b, s, h]
            // buffers; this task alone writes its blocks of dq, dk, dv; p, pd, dp are [s, s].
            unsafe {
                // dv = pdᵀ · dctx
                product(
                    (s, hd, s),
                    dst.at(2 * n + off),
                    h,
                    (pd.as_ptr(), s, 1),
                    (dctx.as_ptr().add(off), 1, h),
                );
                // dpd = dctx · vᵀ
                product(
                    (s, s, hd),
                    dp.as_mut_ptr(),
                    s,
                    (dctx.as_ptr().add(off), 1, h),
                    (v.as_ptr().add(off), h, 1),
                );
            }
            // Through dropout, then softmax: ds = p ∘ (dp − Σ dp ∘ p), times the score scale.
            if let Some(f) = &factors {
                dp.iter_mut().zip(f).for_each(|(x, f)| *x *= f);
            }
            for (dp, p) in dp.chunks_mut(s).zip(p.chunks(s)) {
                let dot = crate::ops::dot(dp, p);
                for (x, &p) in dp.iter_mut().zip(p) {
                    *x = p * (*x - dot);
                }
            }
            if self.bias_grad {
                let at = ds_all.at(FusedAttention::index(d, bi, hh));
                // SAFETY: this task alone writes its [s, s] block of the [b, heads, s, s] buffer.
                unsafe { std::ptr::copy_nonoverlapping(dp.as_ptr(), at, s * s) };
            }
            dp.iter_mut().for_each(|x| *x *= scale);
            // SAFETY: as above: this task alone writes its blocks of dq and dk; ds is [s, s].
            unsafe {
                // dq = ds · k
                product(
                    (s, hd, s),
                    dst.at(off),
                    h,
                    (dp.as_ptr(), 1, s),
                    (k.as_ptr().add(off), 1, h),
                );
                // dk = dsᵀ · q
                product(
                    (s, hd, s),
                    dst.at(n + off),
                    h,
                    (dp.as_ptr(), s, 1),
                    (q.as_ptr().add(off), 1, h),
                );
            }
        });
        if self.bias_grad {
            let per_head = s * s;
            out[3 * n..]
                .par_chunks_mut(per_head)
                .enumerate()
                .for_each(|(hh, dst)| {
                    for bi in 0..b {
                        let at = (bi * heads + hh) * per_head;
                        let src = &scores[at..at + per_head];
                        dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                    }
                });
        }
        Ok((CpuStorage::F32(out), Shape::from(3 * n + bias_len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::max_abs_diff(a, b).unwrap()
    }

    /// Output and the three gradients against the composed form (the encoder's other path): 3 heads
    /// of 12, a padded second sequence, with and without dropout (same hashed mask in both forms).
    #[test]
    fn fused_attention_matches_the_composed_form() {
        // Sequences shorter and longer than the 16 lanes of the softmax and dot loops.
        for (b, s, nh, hd) in [(2usize, 7usize, 3usize, 12usize), (2, 37, 2, 8)] {
            check_against_composed(b, s, nh, hd);
        }
    }

    /// MPNet trains its relative-position bias: the backward pass's bias gradient (and q, k, v's,
    /// with the bias in the scores) against the composed form's, with padding and dropout.
    #[test]
    fn position_bias_gradient_matches_the_composed_form() {
        let (b, s, nh, hd) = (3usize, 7usize, 2usize, 4usize);
        let dev = Device::Cpu;
        let h = nh * hd;
        let var = |shape: &[usize]| Var::randn(0f32, 1.0, shape, &dev).unwrap();
        let (q, k, v) = (var(&[b, s, h]), var(&[b, s, h]), var(&[b, s, h]));
        let pb = var(&[1, nh, s, s]);
        let dctx = Tensor::randn(0f32, 1.0, (b, s, h), &dev).unwrap();
        let mut mask = vec![0f32; b * s];
        mask[s - 3..s].fill(f32::MIN);
        let dropout = Dropout { seed: 4, p: 0.2 };
        let heads = |t: &Tensor| {
            let t = t.reshape((b, s, nh, hd)).unwrap();
            t.transpose(1, 2).unwrap().contiguous().unwrap()
        };
        let bias = Tensor::from_vec(mask.clone(), (b, 1, 1, s), &dev).unwrap();
        let scores = (heads(&q).matmul(&heads(&k).t().unwrap()).unwrap()
            * (1.0 / (hd as f64).sqrt()))
        .unwrap();
        let scores = scores.broadcast_add(pb.as_tensor()).unwrap();
        let probs = scores
            .broadcast_add(&bias)
            .unwrap()
            .apply_op1(crate::ops::Softmax)
            .unwrap()
            .apply_op1(dropout)
            .unwrap();
        let ctx = probs.matmul(&heads(&v)).unwrap().transpose(1, 2).unwrap();
        let ctx = ctx.contiguous().unwrap().reshape((b, s, h)).unwrap();
        let g = (ctx * &dctx)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let op = FusedAttention {
            heads: nh,
            mask,
            position_bias: Some(pb.flatten_all().unwrap().to_vec1().unwrap()),
            dropout: Some(dropout),
        };
        let (dqkv, dpb) = op.backward(&q, &k, &v, &dctx, true).unwrap();
        let dpb = dpb.unwrap();
        assert_eq!(dpb.dims(), &[1, nh, s, s]);
        assert!(max_diff(&dpb, g.get(pb.as_tensor()).unwrap()) < 1e-5);
        for (i, t) in [&q, &k, &v].into_iter().enumerate() {
            let d = max_diff(&dqkv.get(i).unwrap(), g.get(t.as_tensor()).unwrap());
            assert!(d < 1e-4, "{i}: {d}");
        }
        // Without the flag, no bias gradient (and the same q, k, v gradients).
        let (again, none) = op.backward(&q, &k, &v, &dctx, false).unwrap();
        assert!(none.is_none());
        assert_eq!(max_diff(&again, &dqkv), 0.0);
    }

    fn check_against_composed(b: usize, s: usize, nh: usize, hd: usize) {
        let dev = Device::Cpu;
        let h = nh * hd;
        let var = |_: u8| Var::randn(0f32, 1.0, (b, s, h), &dev).unwrap();
        let (q, k, v) = (var(0), var(1), var(2));
        let weights = Tensor::randn(0f32, 1.0, (b, s, h), &dev).unwrap();
        let mut mask = vec![0f32; b * s];
        mask[b * s - 2..].fill(f32::MIN);
        for dropout in [None, Some(Dropout { seed: 9, p: 0.3 })] {
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
            let mut probs = scores.apply_op1(crate::ops::Softmax).unwrap();
            if let Some(drop) = dropout {
                probs = probs.apply_op1(drop).unwrap();
            }
            let want = probs
                .matmul(&heads(&v))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
                .reshape((b, s, h))
                .unwrap();
            let op = FusedAttention {
                heads: nh,
                mask: mask.clone(),
                position_bias: None,
                dropout,
            };
            let got = q.apply_op3(&k, &v, op).unwrap();
            assert!(
                max_diff(&got, &want) < 1e-5,
                "dropout {}",
                dropout.is_some()
            );
            let grads = |y: &Tensor| {
                let g = (y * &weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                [&q, &k, &v].map(|t| g.get(t.as_tensor()).unwrap().clone())
            };
            for (g, w) in grads(&got).iter().zip(grads(&want).iter()) {
                assert!(
                    max_diff(g, w) < 1e-4,
                    "dropout {}: {}",
                    dropout.is_some(),
                    max_diff(g, w)
                );
            }
        }
        let bad = FusedAttention {
            heads: 5,
            mask: vec![0.0; b * s],
            position_bias: None,
            dropout: None,
        };
        assert!(q.apply_op3_no_bwd(&k, &v, &bad).is_err());
    }
}
