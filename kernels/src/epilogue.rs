//! What an inference product does to its outputs while a tile of them is still in cache, after the
//! bias: nothing more, the FFN's GELU, or a block's residual sum. Fusing these saves a pass over the
//! activations (and a buffer) per layer; the values are those of the separate ops, which compute the
//! same expressions on the same inputs.

/// The step after a dense layer's bias, on each tile of its output.
#[derive(Debug, Clone, Copy)]
pub enum Epilogue<'a> {
    /// The biased product alone.
    Bias,
    /// GELU (erf) of the biased product, as `ops::Gelu` computes it.
    Gelu,
    /// The biased product plus the same element of `residual`, which has the output's shape.
    Residual(&'a [f32]),
}

impl Epilogue<'_> {
    /// Applies the step to `out`: row `row`'s outputs `o0 .. o0 + out.len()` of a product `n` wide.
    #[inline]
    pub(crate) fn apply(&self, row: usize, o0: usize, n: usize, out: &mut [f32]) {
        match self {
            Epilogue::Bias => {}
            Epilogue::Gelu => crate::ops::gelu_in_place(out),
            Epilogue::Residual(r) => {
                let (at, w) = (row * n + o0, out.len());
                crate::ops::simd_dispatch!(add_into(out, &r[at..at + w], ()));
            }
        }
    }
}

#[inline(always)]
fn add_into(out: &mut [f32], r: &[f32], _: ()) {
    for (y, &v) in out.iter_mut().zip(r) {
        *y += v;
    }
}
