//! AVX-512F kernels: the packed f32 product's microkernel (`packed_block`) and the few-row product that
//! reads the weight in place (`dense_rows4`).

use std::arch::x86_64::*;

use crate::NR;

/// Up to 6 rows × 64 channels of `x · panel + bias` in 24 zmm accumulators.
///
/// # Safety
/// The CPU must have AVX-512F. `x` holds `rows` rows of `k`, `panel` `k · NR` weights, `bias` `NR`
/// values and `out` `rows` rows of `NR` (checked: a short slice panics instead of reading past it).
#[target_feature(enable = "avx512f")]
pub unsafe fn packed_block(
    x: &[f32],
    rows: usize,
    k: usize,
    panel: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    // SAFETY: the caller's contract, which `packed_rows` checks against the slice lengths.
    unsafe {
        match rows {
            6 => packed_rows::<6>(x, k, panel, bias, out),
            5 => packed_rows::<5>(x, k, panel, bias, out),
            4 => packed_rows::<4>(x, k, panel, bias, out),
            3 => packed_rows::<3>(x, k, panel, bias, out),
            2 => packed_rows::<2>(x, k, panel, bias, out),
            _ => packed_rows::<1>(x, k, panel, bias, out),
        }
    }
}

/// # Safety
/// As `packed_block`, for exactly `R` rows.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn packed_rows<const R: usize>(
    x: &[f32],
    k: usize,
    panel: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    assert!(x.len() >= R * k && panel.len() >= k * NR && bias.len() >= NR && out.len() >= R * NR);
    let (xp, wp, op, bp) = (x.as_ptr(), panel.as_ptr(), out.as_mut_ptr(), bias.as_ptr());
    // SAFETY: every offset stays inside the slices, whose lengths the assertion checked: bias reads
    // 0..64, panel kk·NR + 0..64 for kk < k, x r·k + kk for r < R, out r·NR + 0..64 for r < R.
    unsafe {
        let b = [0, 1, 2, 3].map(|j| _mm512_loadu_ps(bp.add(16 * j)));
        let mut acc = [b; R];
        for kk in 0..k {
            let w = [0, 1, 2, 3].map(|j| _mm512_loadu_ps(wp.add(kk * NR + 16 * j)));
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*xp.add(r * k + kk));
                for j in 0..4 {
                    a[j] = _mm512_fmadd_ps(xv, w[j], a[j]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (j, v) in a.iter().enumerate() {
                _mm512_storeu_ps(op.add(r * NR + 16 * j), *v);
            }
        }
    }
}

/// `out[r][j] = x[r] · w[j]` for the 4 weight rows of `w` and up to 4 rows of `x`, reading the weight
/// in place, in 16 accumulators reduced at the end (masked loads for the tail of `k`).
///
/// # Safety
/// The CPU must have AVX-512F. `rows <= 4`, `x` holds `rows` rows of `k`, `w` 4 rows of `k` (checked).
#[target_feature(enable = "avx512f")]
pub unsafe fn dense_rows4(x: &[f32], rows: usize, w: &[f32], k: usize, out: &mut [[f32; 4]]) {
    assert!(rows <= 4 && x.len() >= rows * k && w.len() >= 4 * k);
    let mut acc = [[_mm512_setzero_ps(); 4]; 4];
    let full = k / 16 * 16;
    let tail = (1u32 << (k - full)) as u16 - 1;
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    let mut kk = 0;
    while kk <= k {
        let mask = if kk < full { u16::MAX } else { tail };
        if mask == 0 {
            break;
        }
        // SAFETY: the mask covers only the lanes below k: full blocks while kk < full, then the
        // k - full tail; rows j < 4 of w and r < rows of x are inside the asserted lengths.
        let wv = [0, 1, 2, 3].map(|j| unsafe { _mm512_maskz_loadu_ps(mask, wp.add(j * k + kk)) });
        for (r, a) in acc.iter_mut().enumerate().take(rows) {
            // SAFETY: as above.
            let xv = unsafe { _mm512_maskz_loadu_ps(mask, xp.add(r * k + kk)) };
            for j in 0..4 {
                a[j] = _mm512_fmadd_ps(xv, wv[j], a[j]);
            }
        }
        kk += 16;
    }
    for (o, a) in out.iter_mut().zip(acc.iter()).take(rows) {
        for j in 0..4 {
            o[j] = _mm512_reduce_add_ps(a[j]);
        }
    }
}
