//! MiniLMv2's multi-head self-attention relation distillation (Wang et al. 2021, "MiniLMv2", eq. 1-4):
//! the queries (or keys, or values) of one layer, split into `r` relation heads, give relations
//! `R = softmax(X X^T / sqrt(d_r))` over key positions; the loss is `KL(R_teacher || R_student)`. Each
//! model splits its own width, so student and teacher may differ in width and in attention heads.

use candle_core::{Tensor, D};
use candle_nn::ops::log_softmax;

use super::check_mask;
use crate::{Error, Result};

/// Added to the scores of padded keys: large enough that `exp` gives exactly 0, finite so that
/// `log R_t - log R_s` stays finite (it is multiplied by `R_t = 0` there).
const MASKED: f64 = -1e9;

/// `mean over relations of [sum_{b, heads, real q} KL(R_t[q] || R_s[q]) / (heads * n_real)]`.
/// `student[i]`, `teacher[i]` are the i-th chosen relation's inputs ([b, s, w_s] and [b, s, w_t]: the
/// Q, K or V projection outputs of the chosen layers); `mask` [b, s]; `relation_heads` divides both
/// widths.
pub fn minilm_relations(
    student: &[&Tensor],
    teacher: &[&Tensor],
    mask: &Tensor,
    relation_heads: usize,
) -> Result<Tensor> {
    if student.is_empty() || student.len() != teacher.len() {
        return Err(Error::Msg(format!(
            "minilm_relations: {} student and {} teacher relation inputs",
            student.len(),
            teacher.len()
        )));
    }
    let (b, s, _) = student[0].dims3()?;
    check_mask("minilm_relations", mask, b, s)?;
    let bias = ((1.0 - mask)? * MASKED)?.reshape((b, 1, 1, s))?;
    let keys = mask.reshape((b, 1, 1, s))?;
    let queries = mask.reshape((b, 1, s))?;
    let rows = (mask.sum_all()?.to_scalar::<f32>()? as f64).max(1.0) * relation_heads as f64;
    let mut total: Option<Tensor> = None;
    for (xs, xt) in student.iter().zip(teacher) {
        let (bs, ss, _) = xs.dims3()?;
        let (bt, st, _) = xt.dims3()?;
        if (bs, ss) != (b, s) || (bt, st) != (b, s) {
            return Err(Error::Msg(format!(
                "minilm_relations: inputs {:?} (student) and {:?} (teacher) for a [{b}, {s}] batch",
                xs.dims(),
                xt.dims()
            )));
        }
        let ls = log_relation(xs, relation_heads, &bias)?; // [b, r, s, s]
        let lt = log_relation(xt, relation_heads, &bias)?;
        let kl = (lt.exp()? * (lt - ls)?)?
            .broadcast_mul(&keys)?
            .sum(D::Minus1)?; // [b, r, s]
        let term = (kl.broadcast_mul(&queries)?.sum_all()? / rows)?;
        total = Some(match total {
            Some(t) => (t + term)?,
            None => term,
        });
    }
    let total = total.ok_or_else(|| Error::Msg("minilm_relations: no relations".into()))?;
    Ok((total / student.len() as f64)?)
}

/// `log softmax(X_h X_h^T / sqrt(d_r) + bias)` per relation head: [b, s, w] -> [b, r, s, s].
fn log_relation(x: &Tensor, heads: usize, bias: &Tensor) -> Result<Tensor> {
    let (b, s, w) = x.dims3()?;
    if heads == 0 || w % heads != 0 {
        return Err(Error::Msg(format!(
            "minilm_relations: {heads} relation heads do not divide width {w}"
        )));
    }
    let d = w / heads;
    let xh = x.reshape((b, s, heads, d))?.transpose(1, 2)?.contiguous()?; // [b, r, s, d]
    let scores = (xh.matmul(&xh.t()?)? / (d as f64).sqrt())?; // [b, r, s, s]
    Ok(log_softmax(&scores.broadcast_add(bias)?, D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::*;

    // Reference (torch 2.15, float64); lens = [4, 2] real tokens, and the reference only sees those:
    // import torch, math; torch.set_default_dtype(torch.float64)
    // seq = lambda shape, a, b: torch.sin(torch.arange(math.prod(shape)) * a + b).reshape(shape)
    // lens = [4, 2]
    // def rel(x, r):   # x [n, w] -> log relations [r, n, n]
    //     n, w = x.shape; d = w // r; xh = x.reshape(n, r, d).transpose(0, 1)
    //     return torch.log_softmax(xh @ xh.transpose(1, 2) / math.sqrt(d), -1)
    // def minilm(S, T, r):
    //     total = 0
    //     for xs, xt in zip(S, T):
    //         num = sum((rel(xt[i, :n], r).exp() * (rel(xt[i, :n], r) - rel(xs[i, :n], r))).sum()
    //                   for i, n in enumerate(lens))
    //         total = total + num / (r * sum(lens))
    //     return total / len(S)
    // sq = [seq((2, 4, 8), .5 + .1 * j, .3 * j).requires_grad_() for j in range(3)]    # student width 8
    // tq = [seq((2, 4, 12), .45 + .2 * j, 1. + .3 * j) for j in range(3)]             # teacher width 12
    // l = minilm(sq, tq, 2); gs = torch.autograd.grad(l, sq)                # 0.2196953
    // [(g.norm().item(), (g * seq(g.shape, 1.3, .5)).sum().item()) for g in gs]
    //     # q: 0.0652834 -0.0007423   k: 0.0137917 0.0043093   v: 0.0268443 0.0029145
    // minilm(sq[:1], tq[:1], 2)                                              # qq only: 0.3195699

    fn inputs() -> (Vec<candle_core::Var>, Vec<Tensor>) {
        let s = (0..3)
            .map(|j| var(&[2, 4, 8], 0.5 + 0.1 * j as f64, 0.3 * j as f64))
            .collect();
        let t = (0..3)
            .map(|j| seq(&[2, 4, 12], 0.45 + 0.2 * j as f64, 1.0 + 0.3 * j as f64))
            .collect();
        (s, t)
    }

    #[test]
    fn matches_pytorch_across_widths() {
        let (s, t) = inputs();
        let sr: Vec<&Tensor> = s.iter().map(|v| v.as_tensor()).collect();
        let tr: Vec<&Tensor> = t.iter().collect();
        let l = minilm_relations(&sr, &tr, &mask(), 2).unwrap();
        close(scalar(&l), 0.2196953, "value");
        let want = [
            (0.0652834, -0.0007423),
            (0.0137917, 0.0043093),
            (0.0268443, 0.0029145),
        ];
        let grads = l.backward().unwrap();
        for (v, (n, d)) in s.iter().zip(want) {
            let g = grads.get(v.as_tensor()).unwrap();
            let norm = g.sqr().unwrap().sum_all().unwrap().sqrt().unwrap();
            close(scalar(&norm), n, "grad norm");
            let w = seq(g.dims(), 1.3, 0.5);
            close(scalar(&(g * w).unwrap().sum_all().unwrap()), d, "grad dot");
        }
        let qq = minilm_relations(&sr[..1], &tr[..1], &mask(), 2).unwrap();
        close(scalar(&qq), 0.3195699, "qq only");
    }

    #[test]
    fn zero_on_equal_inputs_and_padding_ignored() {
        let (s, t) = inputs();
        let tr: Vec<&Tensor> = t.iter().collect();
        let l = minilm_relations(&tr, &tr, &mask(), 3).unwrap();
        assert!(scalar(&l).abs() < 1e-6);

        let sr: Vec<&Tensor> = s.iter().map(|v| v.as_tensor()).collect();
        let base = scalar(&minilm_relations(&sr, &tr, &mask(), 2).unwrap());
        let keep = mask().unsqueeze(2).unwrap(); // [b, s, 1]
        let junk: Vec<Tensor> = sr
            .iter()
            .map(|x| {
                let noise = (seq(x.dims(), 2.1, 0.3) * 50.0).unwrap();
                (x.broadcast_mul(&keep).unwrap()
                    + noise.broadcast_mul(&(1.0 - &keep).unwrap()).unwrap())
                .unwrap()
            })
            .collect();
        let jr: Vec<&Tensor> = junk.iter().collect();
        let other = scalar(&minilm_relations(&jr, &tr, &mask(), 2).unwrap());
        assert_eq!(base, other, "padding changed the loss");
    }

    #[test]
    fn heads_must_divide_both_widths() {
        let (s, t) = inputs();
        let sr: Vec<&Tensor> = s.iter().map(|v| v.as_tensor()).collect();
        let tr: Vec<&Tensor> = t.iter().collect();
        let e = minilm_relations(&sr, &tr, &mask(), 3).unwrap_err();
        assert!(e.to_string().contains("do not divide width 8"), "{e}");
        assert!(minilm_relations(&sr[..2], &tr, &mask(), 2).is_err());
    }
}
