//! AVX2 kernels: the packed f32 product's microkernel for CPUs without AVX-512 (`packed_block`), and
//! exact int8 dot products (`dot4_i8`).

use std::arch::x86_64::*;

use crate::NR;

/// Up to 3 rows × 64 channels of `x · panel + bias`, each half of the panel in turn in 12 ymm
/// accumulators.
///
/// # Safety
/// The CPU must have AVX2 and FMA. `x` holds `rows` rows of `k`, `panel` `k · NR` weights, `bias`
/// `NR` values and `out` `rows` rows of `NR` (checked).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn packed_block(
    x: &[f32],
    rows: usize,
    k: usize,
    panel: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    for half in [0, 32] {
        // SAFETY: the caller's contract, which `packed_rows` checks against the slice lengths.
        unsafe {
            match rows {
                3 => packed_rows::<3>(x, k, panel, bias, out, half),
                2 => packed_rows::<2>(x, k, panel, bias, out, half),
                _ => packed_rows::<1>(x, k, panel, bias, out, half),
            }
        }
    }
}

/// # Safety
/// As `packed_block`, for exactly `R` rows and `half` 0 or 32.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn packed_rows<const R: usize>(
    x: &[f32],
    k: usize,
    panel: &[f32],
    bias: &[f32],
    out: &mut [f32],
    half: usize,
) {
    assert!(x.len() >= R * k && panel.len() >= k * NR && bias.len() >= NR && out.len() >= R * NR);
    assert!(half + 32 <= NR);
    let bias = &bias[half..];
    // SAFETY: every offset stays inside the slices, whose lengths the assertions checked: bias reads
    // half + 0..32, panel kk·NR + half + 0..32 for kk < k, x r·k + kk and out r·NR + half + 0..32 for
    // r < R.
    unsafe {
        let (xp, wp, op) = (
            x.as_ptr(),
            panel.as_ptr().add(half),
            out.as_mut_ptr().add(half),
        );
        let mut acc = [[_mm256_setzero_ps(); 4]; R];
        for a in acc.iter_mut() {
            for (j, v) in a.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(bias.as_ptr().add(8 * j));
            }
        }
        for kk in 0..k {
            let w = wp.add(kk * NR);
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = _mm256_set1_ps(*xp.add(r * k + kk));
                for (j, v) in a.iter_mut().enumerate() {
                    *v = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w.add(8 * j)), *v);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (j, v) in a.iter().enumerate() {
                _mm256_storeu_ps(op.add(r * NR + 8 * j), *v);
            }
        }
    }
}

/// Exact dot products of one i8 row with four others, 32 products per instruction with `vpmaddubsw`,
/// which multiplies unsigned by signed bytes: |x| times w carrying x's sign (`vpsignb`) is x·w. Values
/// lie in [-127, 127], so each pair sum is at most 2·127² = 32,258 and the instruction's i16
/// saturation never triggers: the result is exact. The tail past a multiple of 32 goes to `tail`.
///
/// # Safety
/// The CPU must have AVX2, and every row of `w` must have `x`'s length.
#[target_feature(enable = "avx2")]
pub unsafe fn dot4_i8(x: &[i8], w: [&[i8]; 4], tail: fn(&[i8], &[i8]) -> i32) -> [i32; 4] {
    let k = x.len();
    let body = k / 32 * 32;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut i = 0;
    while i < body {
        // SAFETY: i + 32 <= k and every row has length k (the caller's contract).
        let xv = unsafe { _mm256_loadu_si256(x.as_ptr().add(i) as *const __m256i) };
        let ax = _mm256_sign_epi8(xv, xv);
        for (a, r) in acc.iter_mut().zip(w.iter()) {
            // SAFETY: as above.
            let wv = unsafe { _mm256_loadu_si256(r.as_ptr().add(i) as *const __m256i) };
            let p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv, xv));
            *a = _mm256_add_epi32(*a, _mm256_madd_epi16(p, ones));
        }
        i += 32;
    }
    let mut out = [0i32; 4];
    for (o, (a, r)) in out.iter_mut().zip(acc.iter().zip(w.iter())) {
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` is 32 bytes, the size of the store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, *a) };
        *o = lanes.iter().sum::<i32>() + tail(&x[body..], &r[body..]);
    }
    out
}
