//! AVX-512 VNNI kernel: exact int8 products with `vpdpbusd` (64 byte products a register), over the
//! panels `vnni` packs: 64 output channels whose bytes come in groups of four consecutive inputs.

use std::arch::x86_64::*;

use crate::NR;

/// Up to 6 rows × 64 channels of i32 sums of shifted activations (u8) times weights (i8), less
/// `shift` per channel (what the activations' +128 added).
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512 VNNI. `x` holds `rows` rows of `k4` bytes (`k4` a multiple
/// of 4), `panel` `k4 · NR` bytes, `shift` `NR` values and `out` `rows` rows of `NR` (checked).
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn block(
    x: &[u8],
    rows: usize,
    k4: usize,
    panel: &[i8],
    shift: &[i32],
    out: &mut [i32],
) {
    // SAFETY: the caller's contract, which `block_rows` checks against the slice lengths.
    unsafe {
        match rows {
            6 => block_rows::<6>(x, k4, panel, shift, out),
            5 => block_rows::<5>(x, k4, panel, shift, out),
            4 => block_rows::<4>(x, k4, panel, shift, out),
            3 => block_rows::<3>(x, k4, panel, shift, out),
            2 => block_rows::<2>(x, k4, panel, shift, out),
            _ => block_rows::<1>(x, k4, panel, shift, out),
        }
    }
}

/// # Safety
/// As `block`, for exactly `R` rows.
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
unsafe fn block_rows<const R: usize>(
    x: &[u8],
    k4: usize,
    panel: &[i8],
    shift: &[i32],
    out: &mut [i32],
) {
    assert!(
        x.len() >= R * k4 && panel.len() >= k4 * NR && shift.len() >= NR && out.len() >= R * NR
    );
    let (xp, wp, op, sp) = (x.as_ptr(), panel.as_ptr(), out.as_mut_ptr(), shift.as_ptr());
    // SAFETY: every offset stays inside the slices, whose lengths the assertion checked: the panel
    // reads g·4·NR + 0..256 bytes for g < k4 / 4, x four bytes at r·k4 + 4g for r < R, shift 0..64,
    // out r·NR + 0..64 for r < R.
    unsafe {
        let mut acc = [[_mm512_setzero_si512(); 4]; R];
        for g in 0..k4 / 4 {
            let w =
                [0, 1, 2, 3].map(|j| _mm512_loadu_si512(wp.add(g * 4 * NR + 64 * j) as *const _));
            for (r, a) in acc.iter_mut().enumerate() {
                let four = std::ptr::read_unaligned(xp.add(r * k4 + 4 * g) as *const i32);
                let xv = _mm512_set1_epi32(four);
                for j in 0..4 {
                    a[j] = _mm512_dpbusd_epi32(a[j], xv, w[j]);
                }
            }
        }
        let shift = [0, 1, 2, 3].map(|j| _mm512_loadu_si512(sp.add(16 * j) as *const _));
        for (r, a) in acc.iter().enumerate() {
            for (j, v) in a.iter().enumerate() {
                let v = _mm512_sub_epi32(*v, shift[j]);
                _mm512_storeu_si512(op.add(r * NR + 16 * j) as *mut _, v);
            }
        }
    }
}
