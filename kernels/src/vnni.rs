//! Exact int8 matrix products with AVX-512 VNNI (`vpdpbusd`: 64 byte products a register), for the
//! int8 dense layers of `quant`. The weight is packed once into panels of 64 output channels whose
//! bytes come in groups of four consecutive inputs, the layout the instruction consumes. The
//! instruction multiplies unsigned by signed bytes, so the activations are shifted to `x + 128`
//! and `128 · Σ w` is subtracted per channel afterwards: the i32 sums equal Σ x·w exactly
//! (|sum| ≤ 255 · 127 · in_dim, far inside i32 for any BERT width), so results are bit-identical to the
//! AVX2 path. `tests` check that against plain sums.

use rayon::prelude::*;

use crate::packed::tiled;
use crate::NR;

/// Rows the kernel computes at once (6 × 4 = 24 accumulators).
const ROWS: usize = 6;

/// An int8 weight [out, in] packed for the VNNI kernel.
#[derive(Debug, Clone)]
pub struct VnniWeights {
    /// Panel `p`, input group `g` (inputs 4g..4g+4), register `j`, lane `l`, byte `t` holds
    /// `w[p*64 + 16j + l, 4g + t]`; zero past the weight's edges.
    panels: Vec<i8>,
    /// 128 · Σ_k w[o, k] per output channel (zero past the edge, to whole panels): what the +128
    /// shift adds to each sum, which the kernel takes off again.
    shift: Vec<i32>,
    /// Inputs rounded up to whole groups of four.
    k4: usize,
    out_dim: usize,
}

impl VnniWeights {
    /// Packs `w` [out, in] row-major; `None` where the CPU lacks AVX-512 VNNI.
    pub fn new(w: &[i8], in_dim: usize, out_dim: usize) -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512vnni") {
                return Some(Self::pack(w, in_dim, out_dim));
            }
        }
        let _ = (w, in_dim, out_dim);
        None
    }

    fn pack(w: &[i8], in_dim: usize, out_dim: usize) -> Self {
        let k4 = in_dim.div_ceil(4) * 4;
        let n_panels = out_dim.div_ceil(NR);
        let mut panels = vec![0i8; n_panels * k4 * NR];
        for o in 0..out_dim {
            let (p, c) = (o / NR, o % NR);
            let (j, l) = (c / 16, c % 16);
            for (k, &v) in w[o * in_dim..(o + 1) * in_dim].iter().enumerate() {
                let (g, t) = (k / 4, k % 4);
                panels[p * k4 * NR + g * 4 * NR + j * 64 + l * 4 + t] = v;
            }
        }
        let mut shift = vec![0i32; n_panels * NR];
        for (s, r) in shift.iter_mut().zip(w.chunks(in_dim.max(1))) {
            *s = 128 * r.iter().map(|&v| v as i32).sum::<i32>();
        }
        Self {
            panels,
            shift,
            k4,
            out_dim,
        }
    }

    /// Inputs rounded up to whole groups of four: the row stride of `run`'s input.
    pub fn k4(&self) -> usize {
        self.k4
    }

    /// Σ_k x[r, k] · w[o, k] for rows of `x` [m, in] (int8, row-major): [m, out] row-major.
    pub fn products(&self, x: &[i8], in_dim: usize) -> Vec<i32> {
        let xu = self.shifted(x, in_dim);
        self.run(&xu, |_, _, sums, out| out.copy_from_slice(sums))
    }

    /// The rows of `x` [m, in] shifted to unsigned (`x + 128`), each padded to whole groups of four
    /// (the padding meets zero weights): the kernel's input.
    pub fn shifted(&self, x: &[i8], in_dim: usize) -> Vec<u8> {
        let m = x.len() / in_dim.max(1);
        let mut xu = vec![128u8; m * self.k4];
        xu.par_chunks_mut(self.k4)
            .zip(x.par_chunks(in_dim.max(1)))
            .for_each(|(dst, src)| {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = (s as i16 + 128) as u8;
                }
            });
        xu
    }

    /// Runs the kernel over the shifted rows `xu` (from `shifted`) and hands each row's exact sums
    /// to `epilogue(row, first channel, sums, out)`, which writes that row's outputs for those
    /// channels (a panel's worth, fewer at the right edge): [m, out] row-major. The sums are turned
    /// into outputs while they are in cache, so no [m, out] i32 buffer is made.
    pub fn run<T>(
        &self,
        xu: &[u8],
        epilogue: impl Fn(usize, usize, &[i32], &mut [T]) + Sync,
    ) -> Vec<T>
    where
        T: Copy + Default + Send + Sync,
    {
        let (k4, n) = (self.k4, self.out_dim);
        let m = xu.len() / k4.max(1);
        tiled(m, n, NR, |row0, rows, p, out, stride| {
            let panel = &self.panels[p * k4 * NR..(p + 1) * k4 * NR];
            let width = NR.min(n - p * NR);
            let shift = &self.shift[p * NR..(p + 1) * NR];
            let xs = &xu[row0 * k4..(row0 + rows) * k4];
            let mut acc = [0i32; ROWS * NR];
            for (b, x) in xs.chunks(ROWS * k4).enumerate() {
                let block_rows = x.len() / k4;
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `new` packed these weights only after seeing AVX-512 VNNI; x holds whole
                // rows of k4 bytes, acc ROWS rows of NR, the panel k4 · NR bytes, shift NR values.
                unsafe {
                    crate::x86::avx512vnni::block(x, block_rows, k4, panel, shift, &mut acc)
                };
                for r in 0..block_rows {
                    let sums = &acc[r * NR..r * NR + width];
                    let at = (b * ROWS + r) * stride;
                    epilogue(row0 + b * ROWS + r, p * NR, sums, &mut out[at..at + width]);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Exact against plain sums, on shapes with partial groups, panels and row blocks, including the
    /// extreme values -127 and 127.
    #[test]
    fn products_are_exact() {
        let mut rng = StdRng::seed_from_u64(3);
        for &(m, k, n) in &[
            (1, 5, 3),
            (7, 33, 70),
            (16, 64, 64),
            (100, 130, 129),
            (500, 36, 70),
        ] {
            let w: Vec<i8> = (0..n * k).map(|_| rng.random_range(-127..=127)).collect();
            let mut x: Vec<i8> = (0..m * k).map(|_| rng.random_range(-127..=127)).collect();
            x[0] = -127;
            let Some(v) = VnniWeights::new(&w, k, n) else {
                eprintln!("no AVX-512 VNNI on this CPU: nothing to check");
                return;
            };
            let got = v.products(&x, k);
            for r in 0..m {
                for o in 0..n {
                    let want: i32 = (0..k)
                        .map(|i| x[r * k + i] as i32 * w[o * k + i] as i32)
                        .sum();
                    assert_eq!(got[r * n + o], want, "m{m} k{k} n{n} at ({r}, {o})");
                }
            }
        }
    }
}
