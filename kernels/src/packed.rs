//! f32 dense layers for CPU inference against a weight packed once, when the model is loaded for
//! inference: the general matrix-product crate re-packs the weight on every call, which at batch 1
//! (16–64 rows) costs more than the arithmetic. Here the weight sits in panels of `NR` output channels,
//! `k`-major, so the microkernel streams one panel straight from cache while it broadcasts input
//! elements; the bias starts the accumulators. The AVX-512 and AVX2 kernels are chosen at run time, and
//! a plain one covers other CPUs; `tests` check each against a plain matrix product.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use candle_nn::Linear;
use rayon::prelude::*;

use crate::epilogue::Epilogue;
use crate::{Result, NR};

/// Rows per parallel task: small enough that the task's rows stay in L2 while the panels stream past.
const MC: usize = 96;

/// Which microkernel this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
    Plain,
}

impl Isa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Plain
    }

    /// Rows the kernel computes at once (its accumulators fill the vector registers).
    fn rows(self) -> usize {
        match self {
            Isa::Avx512 => 6,
            Isa::Avx2 => 3,
            Isa::Plain => 4,
        }
    }
}

/// A packed copy of a `Linear` (`y = x W^T + b`) for CPU inference.
#[derive(Debug, Clone)]
pub struct PackedLinear {
    /// Panel `p` holds `W[p*NR + j, kk]` at `[p][kk][j]`; channels past `out_dim` are zero.
    panels: Vec<f32>,
    /// Padded with zeros to whole panels.
    bias: Vec<f32>,
    in_dim: usize,
    out_dim: usize,
    isa: Isa,
}

impl PackedLinear {
    pub fn from_linear(l: &Linear) -> Result<Self> {
        let w = l.weight().to_dtype(candle_core::DType::F32)?;
        let (out_dim, in_dim) = w.dims2()?;
        let w: Vec<f32> = w
            .to_device(&candle_core::Device::Cpu)?
            .flatten_all()?
            .to_vec1()?;
        let bias: Vec<f32> = match l.bias() {
            Some(b) => b
                .to_dtype(candle_core::DType::F32)?
                .to_device(&candle_core::Device::Cpu)?
                .to_vec1()?,
            None => vec![0.0; out_dim],
        };
        Ok(Self::from_parts(&w, &bias, in_dim, out_dim, Isa::detect()))
    }

    fn from_parts(w: &[f32], bias: &[f32], in_dim: usize, out_dim: usize, isa: Isa) -> Self {
        let n_panels = out_dim.div_ceil(NR);
        let mut panels = vec![0f32; n_panels * in_dim * NR];
        for (p, panel) in panels.chunks_mut(in_dim * NR).enumerate() {
            for j in 0..NR.min(out_dim - p * NR) {
                let row = &w[(p * NR + j) * in_dim..(p * NR + j + 1) * in_dim];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * NR + j] = v;
                }
            }
        }
        let mut b = vec![0f32; n_panels * NR];
        b[..out_dim].copy_from_slice(bias);
        Self {
            panels,
            bias: b,
            in_dim,
            out_dim,
            isa,
        }
    }

    /// `x` [..., in] f32 on the CPU → [..., out].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(self)
    }

    /// Rows of `in_dim` floats → rows of `out_dim` floats.
    fn forward_rows(&self, x: &[f32]) -> Vec<f32> {
        self.forward_slice(x, Epilogue::Bias)
    }

    /// Rows of `in_dim` floats → rows of `out_dim` floats, each tile finished by `epilogue`.
    pub fn forward_slice(&self, x: &[f32], epilogue: Epilogue) -> Vec<f32> {
        let (k, n) = (self.in_dim, self.out_dim);
        tiled(x.len() / k, n, NR, |row0, rows, p, out, stride| {
            let xs = &x[row0 * k..(row0 + rows) * k];
            let width = NR.min(n - p * NR);
            if stride == NR {
                self.tile(xs, p, out);
            } else {
                // The kernels write whole NR-wide rows: stage them when the result's rows are wider.
                let mut buf = vec![0f32; rows * NR];
                self.tile(xs, p, &mut buf);
                for r in 0..rows {
                    out[r * stride..r * stride + width]
                        .copy_from_slice(&buf[r * NR..r * NR + width]);
                }
            }
            for r in 0..rows {
                let row = &mut out[r * stride..r * stride + width];
                epilogue.apply(row0 + r, p * NR, n, row);
            }
        })
    }

    /// The rows of `xs` times panel `p` into `out` [rows, NR].
    fn tile(&self, xs: &[f32], p: usize, out: &mut [f32]) {
        let k = self.in_dim;
        let panel = &self.panels[p * k * NR..(p + 1) * k * NR];
        let bias = &self.bias[p * NR..(p + 1) * NR];
        let r = self.isa.rows();
        for (x, o) in xs.chunks(r * k).zip(out.chunks_mut(r * NR)) {
            let rows = x.len() / k;
            match self.isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => {
                    // SAFETY: `detect` saw AVX-512F; the slices hold `rows` rows of `k` and of `NR`.
                    unsafe { crate::x86::avx512::packed_block(x, rows, k, panel, bias, o) }
                }
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => {
                    // SAFETY: `detect` saw AVX2 and FMA; sizes as above.
                    unsafe { crate::x86::avx2::packed_block(x, rows, k, panel, bias, o) }
                }
                _ => block_plain(x, rows, k, panel, bias, o),
            }
        }
    }
}

impl CustomOp1 for PackedLinear {
    fn name(&self) -> &'static str {
        "packed-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = crate::ops::slice(s, l, self.name())?;
        let mut dims = l.dims().to_vec();
        if dims.last() != Some(&self.in_dim) {
            candle_core::bail!(
                "packed linear expects inputs of width {}, got shape {dims:?}",
                self.in_dim
            );
        }
        if let Some(d) = dims.last_mut() {
            *d = self.out_dim;
        }
        Ok((CpuStorage::F32(self.forward_rows(x)), Shape::from(dims)))
    }
}

/// An [m, n] row-major result computed in tiles of (up to `MC` rows) × (a panel of `nr` columns):
/// `tile(first row, rows, panel, out, stride)` runs for every tile in parallel and writes the tile's
/// columns (`nr`, fewer at the right edge) at the start of each of its `rows` rows of `out`, which are
/// `stride` apart; each task writes memory of its own. With enough row bands for every thread, a band's
/// tiles are written straight into its rows of the result. Otherwise (few rows: batch-1 inference)
/// the tiles are split across threads too, each into a buffer of its own, and copied into place after.
/// Tasks run chunk-major, so a thread keeps its rows in cache while the panels stream past.
pub(crate) fn tiled<T>(
    m: usize,
    n: usize,
    nr: usize,
    tile: impl Fn(usize, usize, usize, &mut [T], usize) + Sync,
) -> Vec<T>
where
    T: Copy + Default + Send + Sync,
{
    let n_panels = n.div_ceil(nr);
    let threads = rayon::current_num_threads();
    let mc = MC.min(m.max(1));
    let chunks = m.div_ceil(mc);
    if chunks >= 2 * threads {
        // As many bands as a multiple of the threads, each of whole row blocks (6, the kernels' rows):
        // 7 bands of 96 rows kept one of two threads idle an eighth of the time.
        let mc = m
            .div_ceil(chunks.next_multiple_of(threads))
            .next_multiple_of(6);
        let mut y = vec![T::default(); m * n];
        y.par_chunks_mut(mc * n).enumerate().for_each(|(c, band)| {
            let rows = band.len() / n;
            for p in 0..n_panels {
                tile(c * mc, rows, p, &mut band[p * nr..], n);
            }
        });
        return y;
    }
    let mut tiles = vec![T::default(); chunks * n_panels * mc * nr];
    tiles
        .par_chunks_mut(mc * nr)
        .enumerate()
        .for_each(|(t, out)| {
            let (c, p) = (t / n_panels, t % n_panels);
            let rows = mc.min(m - c * mc);
            tile(c * mc, rows, p, &mut out[..rows * nr], nr);
        });
    let mut y = vec![T::default(); m * n];
    y.par_chunks_mut(mc * n.max(1))
        .zip(tiles.par_chunks(n_panels * mc * nr))
        .for_each(|(out, chunk)| {
            let rows = out.len() / n.max(1);
            for (p, tile) in chunk.chunks(mc * nr).enumerate() {
                let w = nr.min(n - p * nr);
                for r in 0..rows {
                    out[r * n + p * nr..r * n + p * nr + w]
                        .copy_from_slice(&tile[r * nr..r * nr + w]);
                }
            }
        });
    y
}

/// The portable kernel: `out[r] = bias + x[r] · panel`.
fn block_plain(x: &[f32], rows: usize, k: usize, panel: &[f32], bias: &[f32], out: &mut [f32]) {
    for r in 0..rows {
        let acc = &mut out[r * NR..(r + 1) * NR];
        acc.copy_from_slice(bias);
        for (kk, &xv) in x[r * k..(r + 1) * k].iter().enumerate() {
            for (a, &w) in acc.iter_mut().zip(&panel[kk * NR..(kk + 1) * NR]) {
                *a += xv * w;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, rng: &mut StdRng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn plain(x: &[f32], w: &[f32], b: &[f32], k: usize, n: usize) -> Vec<f32> {
        let m = x.len() / k;
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for o in 0..n {
                let dot: f64 = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[o * k + i] as f64)
                    .sum();
                y[r * n + o] = dot as f32 + b[o];
            }
        }
        y
    }

    /// Every kernel this CPU has, on shapes with partial panels, partial row blocks and several
    /// row chunks, against an f64-accumulated product.
    #[test]
    fn every_kernel_matches_the_plain_product() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut isas = vec![Isa::Plain];
        let best = Isa::detect();
        if best == Isa::Avx512 {
            isas.push(Isa::Avx2);
        }
        if best != Isa::Plain {
            isas.push(best);
        }
        for &(m, k, n) in &[
            (1, 8, 3),
            (7, 33, 70),
            (16, 64, 32),
            (200, 48, 100),
            (97, 5, 33),
            // Enough row bands for the band-parallel path, whose rows are wider than a panel.
            (500, 20, 130),
        ] {
            let (x, w, b) = (
                random(m * k, &mut rng),
                random(n * k, &mut rng),
                random(n, &mut rng),
            );
            let want = plain(&x, &w, &b, k, n);
            for &isa in &isas {
                let got = PackedLinear::from_parts(&w, &b, k, n, isa).forward_rows(&x);
                assert_eq!(got.len(), want.len());
                let err = got
                    .iter()
                    .zip(&want)
                    .fold(0f32, |e, (g, w)| e.max((g - w).abs()));
                assert!(err < 1e-4, "{isa:?} m{m} k{k} n{n}: max error {err}");
            }
        }
    }

    /// Through the tensor op, against candle's Linear on a [b, s, in] input.
    #[test]
    fn forward_matches_candle_linear() {
        let mut rng = StdRng::seed_from_u64(8);
        let dev = candle_core::Device::Cpu;
        let (k, n) = (40, 72);
        let w = Tensor::from_vec(random(n * k, &mut rng), (n, k), &dev).unwrap();
        let b = Tensor::from_vec(random(n, &mut rng), n, &dev).unwrap();
        let l = Linear::new(w, Some(b));
        let x = Tensor::from_vec(random(3 * 5 * k, &mut rng), (3, 5, k), &dev).unwrap();
        let want = candle_core::Module::forward(&l, &x).unwrap();
        let got = PackedLinear::from_linear(&l).unwrap().forward(&x).unwrap();
        assert_eq!(got.dims(), &[3, 5, n]);
        let err = crate::max_abs_diff(&got, &want).unwrap();
        assert!(err < 1e-4, "max error {err}");
        let bad = Tensor::zeros((2, k + 1), candle_core::DType::F32, &dev).unwrap();
        assert!(PackedLinear::from_linear(&l)
            .unwrap()
            .forward(&bad)
            .is_err());
    }
}
