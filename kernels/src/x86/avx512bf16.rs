//! AVX-512 BF16 kernels: bf16 products summed in f32 with `vdpbf16ps` (32 products a register), over
//! the panels `bf16` packs: 64 output channels whose weights come in pairs of consecutive inputs; and
//! the f32 → bf16 rounding (to nearest even) of the activations.

use std::arch::x86_64::*;

use crate::NR;

/// Up to 6 rows × 64 channels of f32 sums of bf16 activations times bf16 weights.
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512 BF16. `x` holds `rows` rows of `k2` values (`k2` even),
/// `panel` `k2 · NR` values and `out` `rows` rows of `NR` (checked).
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn block(x: &[u16], rows: usize, k2: usize, panel: &[u16], out: &mut [f32]) {
    // SAFETY: the caller's contract, which `block_rows` checks against the slice lengths.
    unsafe {
        match rows {
            6 => block_rows::<6>(x, k2, panel, out),
            5 => block_rows::<5>(x, k2, panel, out),
            4 => block_rows::<4>(x, k2, panel, out),
            3 => block_rows::<3>(x, k2, panel, out),
            2 => block_rows::<2>(x, k2, panel, out),
            _ => block_rows::<1>(x, k2, panel, out),
        }
    }
}

/// # Safety
/// As `block`, for exactly `R` rows.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn block_rows<const R: usize>(x: &[u16], k2: usize, panel: &[u16], out: &mut [f32]) {
    assert!(x.len() >= R * k2 && panel.len() >= k2 * NR && out.len() >= R * NR);
    let (xp, wp, op) = (x.as_ptr(), panel.as_ptr(), out.as_mut_ptr());
    // SAFETY: every offset stays inside the slices, whose lengths the assertion checked: the panel
    // reads g·2·NR + 0..128 values for g < k2 / 2, x two values at r·k2 + 2g for r < R, out r·NR +
    // 0..64 for r < R. `__m512bh` is 32 bf16 in a 512-bit register, as `__m512i` is 512 bits.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for g in 0..k2 / 2 {
            let w = [0, 1, 2, 3].map(|j| {
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                    wp.add(g * 2 * NR + 32 * j) as *const _,
                ))
            });
            for (r, a) in acc.iter_mut().enumerate() {
                let pair = std::ptr::read_unaligned(xp.add(r * k2 + 2 * g) as *const i32);
                let xv = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair));
                for j in 0..4 {
                    a[j] = _mm512_dpbf16_ps(a[j], xv, w[j]);
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

/// `dst[i] = bf16(src[i])`, rounded to nearest even, 32 at a time; returns how many it wrote (a multiple of
/// 32), leaving the tail to the caller's scalar rounding.
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512 BF16.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn round_row(src: &[f32], dst: &mut [u16]) -> usize {
    let n = src.len().min(dst.len());
    let body = n / 32 * 32;
    // SAFETY: reads src[i..i + 32] and writes dst[i..i + 32] for i + 32 ≤ body ≤ both lengths.
    unsafe {
        for i in (0..body).step_by(32) {
            let lo = _mm512_loadu_ps(src.as_ptr().add(i));
            let hi = _mm512_loadu_ps(src.as_ptr().add(i + 16));
            // The first argument fills the upper half of the result.
            let v = _mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(
                dst.as_mut_ptr().add(i) as *mut _,
                std::mem::transmute::<__m512bh, __m512i>(v),
            );
        }
    }
    body
}
