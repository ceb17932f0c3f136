//! Token-level terms between student and teacher states of one mapped layer pair, padding masked:
//! `hidden_mse` (TinyBERT, Jiao et al. 2020, eq. 7-8; TextBrewer's `hid_mse_loss`), `hidden_cosine`
//! (DistilBERT's cosine embedding loss, Sanh et al. 2019) and `attention_mse` (TinyBERT eq. 4;
//! TextBrewer's `att_mse_loss` with a mask). Student states arrive already projected to the teacher's
//! width when the widths differ (see `objective`).
//!
//! `attention_mse` compares attention probabilities, not TinyBERT's pre-softmax scores: softmax ignores a
//! per-row constant, so an MSE on scores penalises differences that change nothing the model computes;
//! score magnitudes scale with the head dimension (student and teacher differ) and padded keys carry the
//! mask's huge negatives (TinyBERT's code zeroes entries below -100 to cope); and probabilities are what
//! the encoder returns, as transformers' `output_attentions` does. The cost: near-uniform attention gives
//! small values and gradients (TinyBERT reports faster convergence on scores); `distill.balance`
//! compensates for the scale.

use candle_core::{Tensor, D};

use super::{check_mask, same_shape};
use crate::{Error, Result};

/// `sum_{real tokens} ||s - t||^2 / (n_real * h)`: the mean squared error over real tokens' features.
/// `student`, `teacher` [b, s, h]; `mask` [b, s] (1 real, 0 padding).
pub fn hidden_mse(student: &Tensor, teacher: &Tensor, mask: &Tensor) -> Result<Tensor> {
    same_shape("hidden_mse", student, teacher)?;
    let (b, s, h) = student.dims3()?;
    check_mask("hidden_mse", mask, b, s)?;
    let sq = (student - teacher)?.sqr()?.sum(D::Minus1)?; // [b, s]
    let total = (sq * mask)?.sum_all()?;
    Ok((total / (real_tokens(mask)? * h as f64))?)
}

/// `mean_{real tokens} (1 - cos(s, t))`, with PyTorch's `cosine_embedding_loss` epsilon:
/// `cos = s.t / sqrt((|s|^2 + 1e-12)(|t|^2 + 1e-12))`. `student`, `teacher` [b, s, h]; `mask` [b, s].
pub fn hidden_cosine(student: &Tensor, teacher: &Tensor, mask: &Tensor) -> Result<Tensor> {
    same_shape("hidden_cosine", student, teacher)?;
    let (b, s, _) = student.dims3()?;
    check_mask("hidden_cosine", mask, b, s)?;
    const EPS: f64 = 1e-12;
    let dot = (student * teacher)?.sum(D::Minus1)?; // [b, s]
    let ns = (student.sqr()?.sum(D::Minus1)? + EPS)?;
    let nt = (teacher.sqr()?.sum(D::Minus1)? + EPS)?;
    let cos = (dot / (ns * nt)?.sqrt()?)?;
    let total = ((1.0 - cos)? * mask)?.sum_all()?;
    Ok((total / real_tokens(mask)?)?)
}

/// Mean squared difference of attention matrices over real (query, key) pairs:
/// `sum_{b, heads, q, k real} (a_s - a_t)^2 / (heads * sum_b n_b^2)`. `student`, `teacher`
/// [b, heads, s, s]; `mask` [b, s]. Head counts must match (checked at plan time, and here).
pub fn attention_mse(student: &Tensor, teacher: &Tensor, mask: &Tensor) -> Result<Tensor> {
    same_shape("attention_mse", student, teacher)?;
    let (b, heads, s, s2) = student.dims4()?;
    if s != s2 {
        return Err(Error::Msg(format!(
            "attention_mse: attention is [{b}, {heads}, {s}, {s2}], not square"
        )));
    }
    check_mask("attention_mse", mask, b, s)?;
    // [b, 1, s, s]: 1 where both the query and the key are real tokens.
    let pairs = mask
        .unsqueeze(2)?
        .broadcast_mul(&mask.unsqueeze(1)?)?
        .unsqueeze(1)?;
    let sq = (student - teacher)?
        .sqr()?
        .broadcast_mul(&pairs)?
        .sum_all()?;
    let count = (pairs.sum_all()?.to_scalar::<f32>()? as f64).max(1.0) * heads as f64;
    Ok((sq / count)?)
}

/// Number of real tokens in a [b, s] mask (at least 1, so an all-padding batch gives 0, not NaN).
fn real_tokens(mask: &Tensor) -> Result<f64> {
    Ok((mask.sum_all()?.to_scalar::<f32>()? as f64).max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::*;

    // Reference (torch 2.15, float64), inputs shared by the three tests below:
    // import torch, math, torch.nn.functional as F; torch.set_default_dtype(torch.float64)
    // seq = lambda shape, a, b: torch.sin(torch.arange(math.prod(shape)) * a + b).reshape(shape)
    // lens = [4, 2]   # real tokens per example; the references only ever see the real ones
    // def report(loss, x):
    //     g, = torch.autograd.grad(loss, x); print(loss.item(), g.norm().item(), (g * seq(x.shape, 1.3, .5)).sum().item())
    // s = seq((2, 4, 6), .7, .1).requires_grad_(); t = seq((2, 4, 6), .3, 1.)
    // report(sum(((s[i, :n] - t[i, :n])**2).sum() for i, n in enumerate(lens)) / (sum(lens) * 6), s)
    //     # hidden_mse: 0.8934079 0.3150675 -0.0131036
    // xs = torch.cat([s[i, :n] for i, n in enumerate(lens)]); xt = torch.cat([t[i, :n] for i, n in enumerate(lens)])
    // report(F.cosine_embedding_loss(xs, xt, torch.ones(len(xs))), s)
    //     # hidden_cosine: 0.9066361 0.1901436 0.0501715
    // a = seq((2, 2, 4, 4), .9, .2).requires_grad_(); at = seq((2, 2, 4, 4), .4, .7)
    // report(sum(((a[i, :, :n, :n] - at[i, :, :n, :n])**2).sum() for i, n in enumerate(lens))
    //        / (2 * sum(n * n for n in lens)), a)
    //     # attention_mse: 0.9557689 0.3091551 0.0084753

    type Loss = fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>;

    fn check(f: Loss, shape: &[usize], student: (f64, f64), teacher: (f64, f64), want: [f64; 3]) {
        let x = var(shape, student.0, student.1);
        let t = seq(shape, teacher.0, teacher.1);
        let l = f(x.as_tensor(), &t, &mask()).unwrap();
        close(scalar(&l), want[0], "value");
        let (norm, dot) = grad_summary(&l, &x);
        close(norm, want[1], "grad norm");
        close(dot, want[2], "grad dot");

        // Zero when the student equals the teacher.
        assert!(scalar(&f(&t, &t, &mask()).unwrap()).abs() < 1e-6);
        // Padding is ignored: rewriting the student's padded positions changes nothing.
        let keep = if shape.len() == 4 {
            // [b, 1, s, s] real pairs
            mask()
                .unsqueeze(2)
                .unwrap()
                .broadcast_mul(&mask().unsqueeze(1).unwrap())
                .unwrap()
                .unsqueeze(1)
                .unwrap()
        } else {
            mask().unsqueeze(2).unwrap()
        };
        let noise = (seq(shape, 2.1, 0.3) * 100.0).unwrap();
        let junk = (x.as_tensor().broadcast_mul(&keep).unwrap()
            + noise.broadcast_mul(&(1.0 - &keep).unwrap()).unwrap())
        .unwrap();
        let l2 = f(&junk, &t, &mask()).unwrap();
        assert_eq!(scalar(&l), scalar(&l2), "padding changed the loss");
    }

    #[test]
    fn hidden_mse_matches_pytorch() {
        check(
            hidden_mse,
            &[2, 4, 6],
            (0.7, 0.1),
            (0.3, 1.0),
            [0.8934079, 0.3150675, -0.0131036],
        );
    }

    #[test]
    fn hidden_cosine_matches_pytorch() {
        check(
            hidden_cosine,
            &[2, 4, 6],
            (0.7, 0.1),
            (0.3, 1.0),
            [0.9066361, 0.1901436, 0.0501715],
        );
    }

    #[test]
    fn attention_mse_matches_pytorch() {
        check(
            attention_mse,
            &[2, 2, 4, 4],
            (0.9, 0.2),
            (0.4, 0.7),
            [0.9557689, 0.3091551, 0.0084753],
        );
    }

    #[test]
    fn shapes_are_checked() {
        let a = seq(&[2, 4, 6], 0.1, 0.0);
        let b = seq(&[2, 4, 5], 0.1, 0.0);
        assert!(hidden_mse(&a, &b, &mask()).is_err());
        assert!(hidden_cosine(&a, &a, &seq(&[2, 3], 0.1, 0.0)).is_err());
        let att = seq(&[2, 2, 4, 4], 0.1, 0.0);
        let heads = seq(&[2, 3, 4, 4], 0.1, 0.0);
        assert!(attention_mse(&att, &heads, &mask()).is_err());
    }
}
