//! Fused CPU kernels with their backward passes, for training: softmax over the last dimension, GELU,
//! LayerNorm, and dropout whose mask is a hash of (seed, element index) — recomputed in the backward
//! pass instead of stored. Each replaces a chain of allocating tensor ops (candle's composed softmax
//! and LayerNorm, a materialised random mask); `tests` check them against those plain forms.
//! Other devices keep the plain forms (see `nn.rs`).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The f32 elements a contiguous CPU tensor's layout covers (for custom ops).
pub fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{op}: expects a contiguous f32 tensor"),
    }
}

/// `slice`, mutable (for in-place ops).
pub fn slice_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
    op: &str,
) -> candle_core::Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("{op}: expects a contiguous f32 tensor"),
    }
}

fn last_dim(l: &Layout) -> usize {
    l.dims().last().copied().unwrap_or(1).max(1)
}

/// Runs `f(args)` from a function compiled for AVX-512 where the CPU has it, so that the loops of an
/// `#[inline(always)]` body vectorise 16 lanes wide; elsewhere as compiled.
macro_rules! simd_dispatch {
    ($body:ident($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            // `f` is the body's own fn item type, not a fn pointer: each body gets a `wide` of its
            // own that calls it directly, so that it inlines and compiles for AVX-512 (through a
            // pointer, a body could stay a call to its baseline-compiled form).
            #[target_feature(enable = "avx512f")]
            unsafe fn wide<F: Fn(A, B, C), A, B, C>(f: F, a: A, b: B, c: C) {
                f(a, b, c)
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the feature `wide` is compiled for.
                unsafe { wide($body, $($arg),*) }
            } else {
                $body($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body($($arg),*)
        }
    }};
}
pub(crate) use simd_dispatch;

/// Softmax over the last dimension.
pub struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let d = last_dim(l);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(y, x)| {
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = (x - max).exp();
                sum += *y;
            }
            let inv = 1.0 / sum;
            y.iter_mut().for_each(|y| *y *= inv);
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&dy.contiguous()?, &SoftmaxBwd)?))
    }
}

/// dx = y * (dy - sum(dy * y)) row by row.
struct SoftmaxBwd;

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "fused-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (y, dy) = (slice(s1, l1, self.name())?, slice(s2, l2, self.name())?);
        let d = last_dim(l1);
        let mut dx = vec![0f32; y.len()];
        dx.par_chunks_mut(d)
            .zip(y.par_chunks(d).zip(dy.par_chunks(d)))
            .for_each(|(dx, (y, dy))| {
                let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
                for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
                    *dx = y * (dy - dot);
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// LayerNorm over the last dimension: (x - mean) / sqrt(var + eps) * w + b.
pub struct LayerNormOp {
    pub eps: f32,
}

/// Mean and 1/std of a row; the sums run in 16 lanes (they vectorise, and the order is fixed, so
/// results stay the same run to run).
#[inline(always)]
fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = lane_sum(x, |v| v) / n;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Σ a·b in 16 independent lanes (so that it vectorises), then the lanes and the tail in order.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((l, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *l += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Σ f(x) accumulated in 16 independent lanes, then the lanes and the tail in order.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f(v);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[inline(always)]
fn layer_norm_rows(x: &[f32], y: &mut [f32], (w, b, eps): (&[f32], &[f32], f32)) {
    for (y, x) in y.chunks_mut(w.len()).zip(x.chunks(w.len())) {
        let (mean, rstd) = row_stats(x, eps);
        for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
            *y = (x - mean) * rstd * w + b;
        }
    }
}

/// LayerNorm of the rows of `x` (each `w.len()` wide), in parallel over blocks of rows.
pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    let rows = (4096 / w.len().max(1)).max(1) * w.len().max(1);
    y.par_chunks_mut(rows)
        .zip(x.par_chunks(rows))
        .for_each(|(y, x)| simd_dispatch!(layer_norm_rows(x, y, (w, b, eps))));
    y
}

/// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w, row by row.
#[inline(always)]
fn layer_norm_bwd_rows(x: &[f32], dx: &mut [f32], (dy, w, eps): (&[f32], &[f32], f32)) {
    let d = w.len();
    for ((dx, x), dy) in dx.chunks_mut(d).zip(x.chunks(d)).zip(dy.chunks(d)) {
        let (mean, rstd) = row_stats(x, eps);
        let (mut mg, mut mgx) = ([0f32; 16], [0f32; 16]);
        for (i, ((&x, &dy), &w)) in x.iter().zip(dy).zip(w).enumerate() {
            let g = dy * w;
            mg[i % 16] += g;
            mgx[i % 16] += g * (x - mean) * rstd;
        }
        let n = d as f32;
        let (mg, mgx) = (mg.iter().sum::<f32>() / n, mgx.iter().sum::<f32>() / n);
        for (((dx, &x), &dy), &w) in dx.iter_mut().zip(x).zip(dy).zip(w) {
            let xhat = (x - mean) * rstd;
            *dx = rstd * (dy * w - mg - xhat * mgx);
        }
    }
}

impl LayerNormOp {
    /// The gradients (dx, dw, db) from the input `x`, the weight `w` and the output's gradient `dy`.
    pub fn backward(&self, x: &Tensor, w: &Tensor, dy: &Tensor) -> crate::Result<crate::Grads> {
        let d = w.elem_count();
        let rows = x.elem_count() / d;
        // One pass computes dx for every row and the column sums for dw and db: [rows + 2, d].
        let packed = x.apply_op3_no_bwd(w, &dy.contiguous()?, &LayerNormBwd { eps: self.eps })?;
        let dx = packed.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dw = packed.narrow(0, rows, 1)?.reshape(w.shape())?;
        let db = packed.narrow(0, rows + 1, 1)?.reshape(w.shape())?;
        Ok((dx, dw, db))
    }
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
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
        let x = slice(s1, l1, self.name())?;
        let (w, b) = (slice(s2, l2, self.name())?, slice(s3, l3, self.name())?);
        let d = last_dim(l1);
        if w.len() != d || b.len() != d {
            candle_core::bail!(
                "fused-layer-norm: weight/bias of {} for rows of {d}",
                w.len()
            );
        }
        Ok((
            CpuStorage::F32(layer_norm(x, w, b, self.eps)),
            l1.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.backward(x, w, dy)
            .map(|(dx, dw, db)| (Some(dx), Some(dw), Some(db)))
    }
}

struct LayerNormBwd {
    eps: f32,
}

impl CustomOp3 for LayerNormBwd {
    fn name(&self) -> &'static str {
        "fused-layer-norm-bwd"
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
        let x = slice(s1, l1, self.name())?;
        let w = slice(s2, l2, self.name())?;
        let dy = slice(s3, l3, self.name())?;
        let d = w.len();
        let rows = x.len() / d;
        let mut out = vec![0f32; (rows + 2) * d];
        let (dx, sums) = out.split_at_mut(rows * d);
        let block = (4096 / d).max(1) * d;
        dx.par_chunks_mut(block)
            .zip(x.par_chunks(block).zip(dy.par_chunks(block)))
            .for_each(|(dx, (x, dy))| {
                simd_dispatch!(layer_norm_bwd_rows(x, dx, (dy, w, self.eps)))
            });
        // dw = sum_rows dy * xhat, db = sum_rows dy. Partial sums over fixed blocks of rows, added in
        // block order: the result does not depend on how threads split the work (runs stay bit-exact).
        const BLOCK: usize = 64;
        let partials: Vec<(Vec<f32>, Vec<f32>)> = x
            .par_chunks(d * BLOCK)
            .zip(dy.par_chunks(d * BLOCK))
            .map(|(xb, dyb)| {
                let (mut dw, mut db) = (vec![0f32; d], vec![0f32; d]);
                for (x, dy) in xb.chunks(d).zip(dyb.chunks(d)) {
                    let (mean, rstd) = row_stats(x, self.eps);
                    for i in 0..d {
                        dw[i] += dy[i] * (x[i] - mean) * rstd;
                        db[i] += dy[i];
                    }
                }
                (dw, db)
            })
            .collect();
        let (mut dw, mut db) = (vec![0f32; d], vec![0f32; d]);
        for (pw, pb) in &partials {
            dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
            db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
        }
        sums[..d].copy_from_slice(&dw);
        sums[d..].copy_from_slice(&db);
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, d))))
    }
}

/// Inverted dropout with a counter-based mask: element i is kept when hash(seed, i) >= p·2³², and
/// scaled by 1/(1-p). The op is linear, so its backward is the same op on the gradient.
#[derive(Clone, Copy)]
pub struct Dropout {
    pub seed: u64,
    pub p: f32,
}

/// SplitMix64 finaliser: a fast, well-mixed hash of (seed, index).
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Dropout {
    /// Whether element `i` is kept.
    pub fn keep(&self, i: usize) -> bool {
        let threshold = (self.p as f64 * 4_294_967_296.0) as u64;
        (mix(self.seed, i as u64) >> 32) >= threshold
    }
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "hashed-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let scale = 1.0 / (1.0 - self.p);
        const CHUNK: usize = 4096;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(c, (y, x))| {
                for (k, (y, &x)) in y.iter_mut().zip(x).enumerate() {
                    *y = if self.keep(c * CHUNK + k) {
                        x * scale
                    } else {
                        0.0
                    };
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(dy.contiguous()?.apply_op1(*self)?))
    }
}

/// GELU with the exact (erf) form, in one pass forward and one backward; candle's backward for it is a
/// chain of about a dozen elementwise ops over the FFN activations, the largest tensors of a block.
/// erf is Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), whose exp(-x²/2) is also the
/// Gaussian density the gradient needs.
pub struct Gelu;

/// eˣ without a library call, so that loops over it vectorise: 2ⁿ·p(r) with n = round(x·log₂e),
/// r = x − n·ln 2 (in two parts, Cody–Waite) and p the degree-6 Taylor polynomial (relative error
/// below 2e-7 on |r| ≤ ln 2 / 2); 0 below −87, where the result would be subnormal, and e⁸⁸ above 88.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let xc = x.clamp(-87.0, 88.0);
    let n = (xc * std::f32::consts::LOG2_E).round_ties_even();
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n is within [-126, 127] here, or NaN for a NaN input (whose result is NaN through p anyway).
    // Rust's saturating float-to-int cast would not vectorise; this one does.
    let n = if n.is_nan() { 0.0 } else { n };
    // SAFETY: n is finite and within i32.
    let scale = f32::from_bits(((unsafe { n.to_int_unchecked::<i32>() } + 127) << 23) as u32);
    if x < -87.0 {
        0.0
    } else {
        p * scale
    }
}

#[inline(always)]
fn gelu_fwd_body(x: &[f32], y: &mut [f32], _: ()) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x * normal_cdf_pdf(x).0;
    }
}

#[inline(always)]
fn gelu_in_place_body(x: &mut [f32], _: (), _: ()) {
    for x in x.iter_mut() {
        *x *= normal_cdf_pdf(*x).0;
    }
}

/// GELU (erf) of each element, in place: the same values as the op's forward.
pub fn gelu_in_place(x: &mut [f32]) {
    simd_dispatch!(gelu_in_place_body(x, (), ()));
}

#[inline(always)]
fn gelu_bwd_body(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
        let (cdf, pdf) = normal_cdf_pdf(x);
        *dx = dy * (cdf + x * pdf);
    }
}

/// (Φ(x), φ(x)): the standard normal CDF and density.
#[inline(always)]
fn normal_cdf_pdf(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let e = exp(-0.5 * x * x);
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erf = 1.0 - poly * e; // erf(|x|/√2)
    let cdf = 0.5 * (1.0 + erf.copysign(x));
    (cdf, e * 0.398_942_3) // 1/√(2π)
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(4096)
            .zip(x.par_chunks(4096))
            .for_each(|(y, x)| simd_dispatch!(gelu_fwd_body(x, y, ())));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.backward(x, dy)?))
    }
}

impl Gelu {
    /// The input's gradient from the input `x` and the output's gradient `dy`.
    pub fn backward(&self, x: &Tensor, dy: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op2_no_bwd(&dy.contiguous()?, &GeluBwd)
    }
}

/// dx = dy · (Φ(x) + x φ(x)).
struct GeluBwd;

impl CustomOp2 for GeluBwd {
    fn name(&self) -> &'static str {
        "fused-gelu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, dy) = (slice(s1, l1, self.name())?, slice(s2, l2, self.name())?);
        if x.len() != dy.len() {
            candle_core::bail!(
                "{}: {} inputs, {} gradients",
                self.name(),
                x.len(),
                dy.len()
            );
        }
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(4096)
            .zip(x.par_chunks(4096).zip(dy.par_chunks(4096)))
            .for_each(|(dx, (x, dy))| simd_dispatch!(gelu_bwd_body(x, dy, dx)));
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};
    use rand::{Rng, SeedableRng};

    fn randn(shape: &[usize], seed: u64) -> Var {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect();
        Var::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::max_abs_diff(a, b).unwrap()
    }

    #[test]
    fn softmax_and_its_gradient_match_the_composed_form() {
        let x = randn(&[3, 4, 7, 33], 1);
        let w = randn(&[3, 4, 7, 33], 2);
        let fused = x.as_tensor().apply_op1(Softmax).unwrap();
        let plain = candle_nn::ops::softmax(x.as_tensor(), D::Minus1).unwrap();
        assert!(max_diff(&fused, &plain) < 1e-6);
        let gf = (fused * w.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gp = (plain * w.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let d = max_diff(
            gf.get(x.as_tensor()).unwrap(),
            gp.get(x.as_tensor()).unwrap(),
        );
        assert!(d < 1e-5, "{d}");
    }

    #[test]
    fn layer_norm_and_its_gradients_match_the_composed_form() {
        let x = randn(&[5, 6, 48], 3);
        let (w, b) = (randn(&[48], 4), randn(&[48], 5));
        let up = randn(&[5, 6, 48], 6);
        let eps = 1e-5;
        let fused = x
            .as_tensor()
            .apply_op3(w.as_tensor(), b.as_tensor(), LayerNormOp { eps })
            .unwrap();
        let plain = {
            let xt = x.as_tensor();
            let mean = xt.mean_keepdim(D::Minus1).unwrap();
            let xc = xt.broadcast_sub(&mean).unwrap();
            let var = xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
            let xn = xc
                .broadcast_div(&(var + eps as f64).unwrap().sqrt().unwrap())
                .unwrap();
            xn.broadcast_mul(w.as_tensor())
                .unwrap()
                .broadcast_add(b.as_tensor())
                .unwrap()
        };
        assert!(max_diff(&fused, &plain) < 1e-5);
        let gf = (fused * up.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gp = (plain * up.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&x, &w, &b] {
            let (a, c) = (
                gf.get(v.as_tensor()).unwrap(),
                gp.get(v.as_tensor()).unwrap(),
            );
            let scale: f32 = c
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(
                max_diff(a, c) < 1e-4 * scale.max(1.0),
                "{} vs scale {scale}",
                max_diff(a, c)
            );
        }
    }

    #[test]
    fn layer_norm_gradients_are_bit_identical_run_to_run() {
        let x = randn(&[64, 40, 96], 9);
        let (w, b) = (randn(&[96], 10), randn(&[96], 11));
        let up = randn(&[64, 40, 96], 12);
        let grad = || {
            let y = x
                .as_tensor()
                .apply_op3(w.as_tensor(), b.as_tensor(), LayerNormOp { eps: 1e-12 })
                .unwrap();
            let g = (y * up.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            g.get(w.as_tensor()).unwrap().to_vec1::<f32>().unwrap()
        };
        let first = grad();
        for _ in 0..5 {
            assert!(
                grad() == first,
                "weight gradient changed between identical runs"
            );
        }
    }

    #[test]
    fn dropout_mask_is_shared_by_forward_and_backward_and_has_rate_p() {
        let x = randn(&[64, 100], 7);
        let op = Dropout { seed: 42, p: 0.25 };
        let y = x.as_tensor().apply_op1(op).unwrap();
        let yv: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let xv: Vec<f32> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let dropped = yv.iter().filter(|&&v| v == 0.0).count() as f64 / yv.len() as f64;
        assert!((dropped - 0.25).abs() < 0.03, "{dropped}");
        for (i, (&a, &b)) in yv.iter().zip(&xv).enumerate() {
            let want = if op.keep(i) { b / 0.75 } else { 0.0 };
            assert!((a - want).abs() < 1e-6);
        }
        // d(sum(y * u))/dx = mask * u / (1 - p)
        let u = randn(&[64, 100], 8);
        let g = (y * u.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gx: Vec<f32> = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let uv: Vec<f32> = u.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        for (i, (&a, &b)) in gx.iter().zip(&uv).enumerate() {
            let want = if op.keep(i) { b / 0.75 } else { 0.0 };
            assert!((a - want).abs() < 1e-6);
        }
        // Another seed, another mask.
        let z = x
            .as_tensor()
            .apply_op1(Dropout { seed: 43, p: 0.25 })
            .unwrap();
        assert!(max_diff(&z, &x.as_tensor().apply_op1(op).unwrap()) > 0.0);
    }

    #[test]
    fn gelu_and_its_gradient_match_candle_gelu_erf() {
        let x = randn(&[4, 9, 37], 11);
        let w = randn(&[4, 9, 37], 12);
        let fused = x.as_tensor().apply_op1(Gelu).unwrap();
        let plain = x.as_tensor().gelu_erf().unwrap();
        assert!(max_diff(&fused, &plain) < 1e-6);
        let grad = |y: Tensor| {
            let g = (y * w.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            g.get(x.as_tensor()).unwrap().clone()
        };
        let d = max_diff(&grad(fused), &grad(plain));
        assert!(d < 1e-5, "{d}");
    }

    #[test]
    fn exp_is_close_to_the_library_exp() {
        for i in -2000..=1760 {
            let x = i as f32 * 0.05;
            let (got, want) = (exp(x), x.exp());
            assert!(
                (got - want).abs() <= 3e-7 * want + 1e-37, // flushed to 0 below -87
                "exp({x}) = {got}, library {want}"
            );
        }
        assert_eq!(exp(f32::MIN), 0.0);
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(f32::INFINITY) > 1e38);
        // The vectorised form over a slice gives the same values as one call at a time.
        let xs: Vec<f32> = (-100..100).map(|i| i as f32 * 0.9).collect();
        let mut ys = vec![0f32; xs.len()];
        simd_dispatch!(exp_all(&xs, &mut ys, ()));
        for (x, y) in xs.iter().zip(&ys) {
            assert_eq!(exp(*x).to_bits(), y.to_bits(), "{x}");
        }
    }

    #[inline(always)]
    fn exp_all(xs: &[f32], ys: &mut [f32], _: ()) {
        for (x, y) in xs.iter().zip(ys.iter_mut()) {
            *y = exp(*x);
        }
    }
}
