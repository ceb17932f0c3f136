//! Dynamic int8 quantization of dense layers for CPU inference, in the manner of PyTorch's
//! `quantize_dynamic`: weights are quantized once, symmetric per output channel (scale = max|w| / 127);
//! activations are quantized on the fly, symmetric per row (per token), so that a row's result never
//! depends on the other rows of the batch — the server batches unrelated requests together. Products
//! accumulate exactly in i32 (|x·w| ≤ 127² · in_dim, far below i32::MAX for any BERT width).

use candle_core::{DType, Device, Tensor};
use candle_nn::Linear;
use rayon::prelude::*;

use crate::epilogue::Epilogue;
use crate::vnni::VnniWeights;
use crate::Result;

/// An int8 copy of a `Linear` (`y = x W^T + b`).
#[derive(Debug, Clone)]
pub struct QLinear {
    /// [out, in] row-major, each row scaled by `scale[o]`.
    weight: Vec<i8>,
    scale: Vec<f32>,
    bias: Vec<f32>,
    in_dim: usize,
    out_dim: usize,
    /// The same weights packed for the AVX-512 VNNI kernel, where the CPU has it (same exact sums).
    vnni: Option<VnniWeights>,
}

/// 127 / max|v| and max|v| / 127 for a row; `Err(scale)` for a row that is all zero (scale 0, every value
/// quantized to 0) or not finite (scale NaN).
fn row_scales(row: &[f32]) -> std::result::Result<(f32, f32), f32> {
    let max = max_abs(row);
    if max == 0.0 || !max.is_finite() {
        return Err(if max.is_finite() { 0.0 } else { f32::NAN });
    }
    Ok((127.0 / max, max / 127.0))
}

/// Symmetric int8 quantization of one row: returns the scale (0 for an all-zero row).
fn quantize_row(row: &[f32], out: &mut [i8]) -> f32 {
    match row_scales(row) {
        Ok((inv, scale)) => {
            crate::ops::simd_dispatch!(quantize_body(row, out, inv));
            scale
        }
        Err(scale) => {
            out.fill(0);
            scale
        }
    }
}

/// `round(x)` clamped to ±127 (0 for NaN). Written so that loops over it vectorise: Rust's saturating
/// float-to-integer casts do not (they went one element at a time, as slow as the product itself).
#[inline(always)]
fn quantize_one(x: f32) -> i32 {
    let y = x.round();
    let y = if y.is_nan() {
        0.0
    } else {
        y.clamp(-127.0, 127.0)
    };
    // SAFETY: y is finite and within ±127, so it fits an i32.
    unsafe { y.to_int_unchecked::<i32>() }
}

/// `round(v · inv)` clamped to ±127, for each element (a loop that vectorises: `round` becomes an
/// instruction sequence instead of a library call).
#[inline(always)]
fn quantize_body(row: &[f32], out: &mut [i8], inv: f32) {
    for (q, v) in out.iter_mut().zip(row) {
        *q = quantize_one(v * inv) as i8;
    }
}

/// `quantize_row` written as `q + 128` (the VNNI kernel's unsigned input), in one pass.
fn quantize_row_shifted(row: &[f32], out: &mut [u8]) -> f32 {
    match row_scales(row) {
        Ok((inv, scale)) => {
            crate::ops::simd_dispatch!(shifted_body(row, out, inv));
            scale
        }
        Err(scale) => {
            out.fill(128);
            scale
        }
    }
}

/// max |v| over a row, in 16 independent lanes so that it vectorises (the same value as a fold:
/// max is exact in any order).
fn max_abs(row: &[f32]) -> f32 {
    #[inline(always)]
    fn lanes(row: &[f32], out: &mut [f32; 16], _: ()) {
        let chunks = row.chunks_exact(16);
        let tail = chunks.remainder().iter().fold(0f32, |m, v| m.max(v.abs()));
        for c in chunks {
            for (l, &v) in out.iter_mut().zip(c) {
                *l = l.max(v.abs());
            }
        }
        out[0] = out[0].max(tail);
    }
    let mut out = [0f32; 16];
    crate::ops::simd_dispatch!(lanes(row, &mut out, ()));
    out.iter().fold(0f32, |m, &v| m.max(v))
}

#[inline(always)]
fn shifted_body(row: &[f32], out: &mut [u8], inv: f32) {
    for (q, v) in out.iter_mut().zip(row) {
        *q = (quantize_one(v * inv) + 128) as u8;
    }
}

impl QLinear {
    pub fn from_linear(l: &Linear) -> Result<Self> {
        let w = l.weight().to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let (out_dim, in_dim) = w.dims2()?;
        let w: Vec<f32> = w.flatten_all()?.to_vec1()?;
        let bias = match l.bias() {
            Some(b) => b.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec1()?,
            None => vec![0.0; out_dim],
        };
        let mut weight = vec![0i8; out_dim * in_dim];
        let scale = w
            .chunks(in_dim)
            .zip(weight.chunks_mut(in_dim))
            .map(|(row, q)| quantize_row(row, q))
            .collect();
        Ok(Self {
            vnni: VnniWeights::new(&weight, in_dim, out_dim),
            weight,
            scale,
            bias,
            in_dim,
            out_dim,
        })
    }

    /// Bytes of the quantized parameters (int8 weights, f32 scales and bias).
    pub fn bytes(&self) -> usize {
        self.weight.len() + 4 * (self.scale.len() + self.bias.len())
    }

    /// Bytes the same layer takes in f32.
    pub fn f32_bytes(&self) -> usize {
        4 * (self.weight.len() + self.bias.len())
    }

    /// `x` [..., in] f32 → [..., out] on `x`'s device (computed on the CPU).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        if dims.last() != Some(&self.in_dim) {
            return Err(crate::Error::Msg(format!(
                "int8 linear expects inputs of width {}, got shape {:?}",
                self.in_dim, dims
            )));
        }
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            // Reads the input's storage in place (`cpu_fwd`) instead of copying it out.
            return x.contiguous()?.apply_op1_no_bwd(self);
        }
        let xs: Vec<f32> = x
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1()?;
        let y = self.forward_rows(&xs);
        if let Some(d) = dims.last_mut() {
            *d = self.out_dim;
        }
        Tensor::from_vec(y, dims, x.device())?.to_dtype(x.dtype())
    }

    /// Rows of `in_dim` floats → rows of `out_dim` floats.
    fn forward_rows(&self, xs: &[f32]) -> Vec<f32> {
        self.forward_slice(xs, Epilogue::Bias)
    }

    /// Rows of `in_dim` floats → rows of `out_dim` floats, each row's outputs finished by `epilogue`
    /// while in cache.
    pub fn forward_slice(&self, xs: &[f32], epilogue: Epilogue) -> Vec<f32> {
        let (k, n) = (self.in_dim, self.out_dim);
        let m = xs.len() / k;
        if let Some(v) = &self.vnni {
            // Quantized straight into the kernel's shifted, padded rows (padding 128 = zero).
            let mut xu = vec![128u8; m * v.k4()];
            let xscale: Vec<f32> = xs
                .par_chunks(k)
                .zip(xu.par_chunks_mut(v.k4()))
                .map(|(row, q)| quantize_row_shifted(row, &mut q[..k]))
                .collect();
            return v.run(&xu, |r, o0, sums, out| {
                let w = out.len();
                let channels = (&self.scale[o0..o0 + w], &self.bias[o0..o0 + w]);
                crate::ops::simd_dispatch!(dequantize(out, sums, (xscale[r], channels)));
                epilogue.apply(r, o0, n, out);
            });
        }
        let mut xq = vec![0i8; m * k];
        let xscale: Vec<f32> = xs
            .par_chunks(k)
            .zip(xq.par_chunks_mut(k))
            .map(|(row, q)| quantize_row(row, q))
            .collect();
        let mut y = self.portable(&xq, &xscale);
        for (r, row) in y.chunks_mut(n.max(1)).enumerate() {
            epilogue.apply(r, 0, n, row);
        }
        y
    }

    /// The product of quantized rows without VNNI (the four-channel `dot4` kernel).
    fn portable(&self, xq: &[i8], xscale: &[f32]) -> Vec<f32> {
        let (k, n) = (self.in_dim, self.out_dim);
        let m = xq.len() / k.max(1);
        let mut y = vec![0f32; m * n];
        // Few rows (batch-1 latency): split the output channels across threads; many rows: split rows.
        if m >= 2 * rayon::current_num_threads() {
            y.par_chunks_mut(n)
                .enumerate()
                .for_each(|(r, out)| self.row_block(&xq[r * k..(r + 1) * k], xscale[r], 0, out));
        } else {
            const BLOCK: usize = 64;
            let mut tmp = vec![0f32; n * m];
            tmp.par_chunks_mut(BLOCK * m)
                .enumerate()
                .for_each(|(blk, chunk)| {
                    let o0 = blk * BLOCK;
                    let width = chunk.len() / m;
                    for r in 0..m {
                        self.row_block(
                            &xq[r * k..(r + 1) * k],
                            xscale[r],
                            o0,
                            &mut chunk[r * width..(r + 1) * width],
                        );
                    }
                });
            // tmp holds, per block of output channels, m rows of that block's width.
            let mut o0 = 0;
            for chunk in tmp.chunks(BLOCK * m) {
                let width = chunk.len() / m;
                for r in 0..m {
                    y[r * n + o0..r * n + o0 + width]
                        .copy_from_slice(&chunk[r * width..(r + 1) * width]);
                }
                o0 += width;
            }
        }
        y
    }

    /// Output channels `o0 .. o0 + out.len()` of one quantized input row, four channels at a time.
    fn row_block(&self, xq: &[i8], xscale: f32, o0: usize, out: &mut [f32]) {
        let k = self.in_dim;
        let w = |o: usize| &self.weight[o * k..(o + 1) * k];
        for (c, ys) in out.chunks_mut(4).enumerate() {
            let o = o0 + 4 * c;
            // A short last chunk repeats its last channel; the extra sums are dropped.
            let last = o + ys.len() - 1;
            let acc = dot4(
                xq,
                [w(o), w((o + 1).min(last)), w((o + 2).min(last)), w(last)],
            );
            let channels = (&self.scale[o..o + ys.len()], &self.bias[o..o + ys.len()]);
            dequantize(ys, &acc, (xscale, channels));
        }
    }
}

/// `y = sum · x scale · channel scale + bias` for one row's outputs: the dequantization every path
/// shares (the same operations in the same order, so the paths agree bit for bit).
#[inline(always)]
fn dequantize(out: &mut [f32], sums: &[i32], (xs, (scale, bias)): (f32, (&[f32], &[f32]))) {
    for (((y, &acc), &s), &b) in out.iter_mut().zip(sums).zip(scale).zip(bias) {
        *y = acc as f32 * xs * s + b;
    }
}

impl candle_core::CustomOp1 for QLinear {
    fn name(&self) -> &'static str {
        "int8-linear"
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

/// An int8 copy of an embedding table, one scale per row (per token): a lookup dequantizes only the
/// rows it reads. The word embeddings are half of a RoBERTa-tiny checkpoint, so this is most of the
/// size an int8 export saves.
#[derive(Debug, Clone)]
pub struct QEmbedding {
    /// [rows, dim] row-major.
    table: Vec<i8>,
    scale: Vec<f32>,
    dim: usize,
}

impl QEmbedding {
    pub fn from_table(t: &Tensor) -> Result<Self> {
        let t = t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let (rows, dim) = t.dims2()?;
        let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
        let mut table = vec![0i8; rows * dim];
        let scale = v
            .chunks(dim.max(1))
            .zip(table.chunks_mut(dim.max(1)))
            .map(|(row, q)| quantize_row(row, q))
            .collect();
        Ok(Self { table, scale, dim })
    }

    pub fn bytes(&self) -> usize {
        self.table.len() + 4 * self.scale.len()
    }

    pub fn f32_bytes(&self) -> usize {
        4 * self.table.len()
    }

    /// `ids` [...] u32 → [..., dim] f32 on `ids`' device.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let idx: Vec<u32> = ids.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?;
        let rows = self.scale.len();
        let mut out = Vec::with_capacity(idx.len() * self.dim);
        for &i in &idx {
            let i = i as usize;
            if i >= rows {
                return Err(crate::Error::Msg(format!(
                    "token id {i} is outside the embedding table ({rows} rows)"
                )));
            }
            let s = self.scale[i];
            out.extend(
                self.table[i * self.dim..(i + 1) * self.dim]
                    .iter()
                    .map(|&q| q as f32 * s),
            );
        }
        let mut dims = ids.dims().to_vec();
        dims.push(self.dim);
        Tensor::from_vec(out, dims, ids.device())
    }
}

/// Exact dot products of one i8 row with four others (all of one length). With AVX2 at run time this
/// is the `maddubs` kernel below; otherwise a loop LLVM vectorises with `pmaddwd`.
fn dot4(x: &[i8], w: [&[i8]; 4]) -> [i32; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && w.iter().all(|r| r.len() == x.len()) {
            // SAFETY: AVX2 is present (checked above) and every row has x's length, which is all
            // `dot4_i8` needs for its loads to stay in bounds.
            return unsafe { crate::x86::avx2::dot4_i8(x, w, dot_plain) };
        }
    }
    w.map(|r| dot_plain(x, r))
}

fn dot_plain(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as i16 * y as i16) as i32)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, rng: &mut StdRng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    #[test]
    fn dot_is_exact() {
        let mut rng = StdRng::seed_from_u64(1);
        for len in [0, 1, 31, 32, 33, 1000] {
            let a: Vec<i8> = (0..len).map(|_| rng.random_range(-127..=127)).collect();
            let b: Vec<i8> = (0..len).map(|_| rng.random_range(-127..=127)).collect();
            let want: i64 = a.iter().zip(&b).map(|(&x, &y)| x as i64 * y as i64).sum();
            let c: Vec<i8> = b.iter().map(|v| v.wrapping_neg()).collect();
            let got = dot4(&a, [&b, &c, &a, &b]);
            let self_dot: i64 = a.iter().map(|&x| x as i64 * x as i64).sum();
            assert_eq!(
                got.map(|v| v as i64),
                [want, -want, self_dot, want],
                "len {len}"
            );
        }
        let (x, y) = ([127i8; 4096], [-127i8; 4096]);
        assert_eq!(
            dot4(&x, [&y, &x, &y, &x]),
            [
                -127 * 127 * 4096,
                127 * 127 * 4096,
                -127 * 127 * 4096,
                127 * 127 * 4096
            ]
        );
    }

    #[test]
    fn quantized_linear_is_close_to_f32_and_batch_invariant() {
        let mut rng = StdRng::seed_from_u64(2);
        let (k, n) = (96, 70);
        let w = Tensor::from_vec(random(n * k, &mut rng), (n, k), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(random(n, &mut rng), n, &Device::Cpu).unwrap();
        let lin = Linear::new(w, Some(b));
        let q = QLinear::from_linear(&lin).unwrap();
        for rows in [1, 3, 40] {
            let x =
                Tensor::from_vec(random(rows * k, &mut rng), (1, rows, k), &Device::Cpu).unwrap();
            let want = candle_core::Module::forward(&lin, &x).unwrap();
            let got = q.forward(&x).unwrap();
            assert_eq!(got.dims(), &[1, rows, n]);
            let err = crate::max_abs_diff(&want, &got).unwrap();
            let scale: f32 = want
                .abs()
                .unwrap()
                .max_keepdim(2)
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            // Two roundings of at most half a step each, over k products: a few percent of the output range.
            assert!(
                err < 0.05 * scale,
                "rows {rows}: max error {err} vs output scale {scale}"
            );
            // Row 0 alone gives the same numbers as row 0 inside the batch.
            let first = q.forward(&x.narrow(1, 0, 1).unwrap()).unwrap();
            assert_eq!(
                first.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                got.narrow(1, 0, 1)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            );
        }
    }

    #[test]
    fn the_vnni_path_equals_the_portable_one_bit_for_bit() {
        let mut rng = StdRng::seed_from_u64(4);
        let (k, n) = (70, 130);
        let w = Tensor::from_vec(random(n * k, &mut rng), (n, k), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(random(n, &mut rng), n, &Device::Cpu).unwrap();
        let q = QLinear::from_linear(&Linear::new(w, Some(b))).unwrap();
        if q.vnni.is_none() {
            eprintln!("no AVX-512 VNNI on this CPU: nothing to compare");
            return;
        }
        let portable = QLinear {
            vnni: None,
            ..q.clone()
        };
        // 400 rows: enough row bands for the band-parallel path of `tiled`.
        let mut x = random(400 * k, &mut rng);
        x[k..2 * k].iter_mut().for_each(|v| *v = 0.0); // an all-zero row
        assert_eq!(q.forward_rows(&x), portable.forward_rows(&x));
    }

    #[test]
    fn quantized_embedding_rows_are_close_and_bounds_checked() {
        let mut rng = StdRng::seed_from_u64(3);
        let t = Tensor::from_vec(random(10 * 6, &mut rng), (10, 6), &Device::Cpu).unwrap();
        let q = QEmbedding::from_table(&t).unwrap();
        let ids = Tensor::new(&[[3u32, 9], [0, 3]], &Device::Cpu).unwrap();
        let got = q.forward(&ids).unwrap();
        assert_eq!(got.dims(), &[2, 2, 6]);
        let want = t
            .index_select(&ids.flatten_all().unwrap(), 0)
            .unwrap()
            .reshape((2, 2, 6))
            .unwrap();
        // Half a quantization step of the largest row, at most 1/254 of |values| ≤ 1.
        assert!(crate::max_abs_diff(&want, &got).unwrap() <= 1.0 / 254.0 + 1e-6);
        assert!(q
            .forward(&Tensor::new(&[10u32], &Device::Cpu).unwrap())
            .is_err());
        assert_eq!(q.bytes(), 60 + 40);
    }

    #[test]
    fn zero_rows_quantize_to_the_bias() {
        let w = Tensor::ones((4, 8), DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::new(&[1f32, 2., 3., 4.], &Device::Cpu).unwrap();
        let q = QLinear::from_linear(&Linear::new(w, Some(b))).unwrap();
        let y = q
            .forward(&Tensor::zeros((2, 8), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), vec![vec![1., 2., 3., 4.]; 2]);
        assert_eq!(q.bytes(), 32 + 4 * 8);
    }
}
