//! Loss terms, one function each, every one checking shapes and returning a scalar tensor.
//! Logit-level terms here (`kd` is Hinton et al. (2015): T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged
//! over the batch); token-level terms (hidden states, attention) in `token`, MiniLMv2's self-attention
//! relations in `relations`.

mod relations;
mod token;
mod words;

pub use relations::minilm_relations;
pub use token::{attention_mse, hidden_cosine, hidden_mse};
pub use words::{pool_attention, pool_words, word_pools, WordPools};

use candle_core::{Tensor, D};
use candle_nn::ops::log_softmax;

pub(crate) use train::loss::same_shape;
pub use train::loss::{ce, mse, mse_labelled, IGNORE_CLASS};

use crate::{Error, Result};

/// Soft-target distillation: `T^2 * mean_b sum_c p_t (log p_t - log p_s)` with `p = softmax(x / T)`.
/// The T² factor keeps gradient magnitudes comparable across temperatures.
pub fn kd(student: &Tensor, teacher: &Tensor, temperature: f64) -> Result<Tensor> {
    same_shape("kd", student, teacher)?;
    let (b, _) = student.dims2()?;
    let log_ps = log_softmax(&(student / temperature)?, D::Minus1)?;
    let log_pt = log_softmax(&(teacher / temperature)?, D::Minus1)?;
    let kl = (log_pt.exp()? * (log_pt - log_ps)?)?.sum_all()?;
    Ok((kl * (temperature * temperature / b as f64))?)
}

/// `kd` with one temperature per example (`temperatures` [b], from a dynamic temperature schedule):
/// `mean_b T_b^2 KL(softmax(t_b / T_b) || softmax(s_b / T_b))`.
pub fn kd_per_example(student: &Tensor, teacher: &Tensor, temperatures: &Tensor) -> Result<Tensor> {
    same_shape("kd", student, teacher)?;
    let (b, _) = student.dims2()?;
    if temperatures.dims() != [b] {
        return Err(Error::Msg(format!(
            "kd: {b} logits rows but temperatures shape {:?}",
            temperatures.dims()
        )));
    }
    let t = temperatures.unsqueeze(1)?; // [b, 1]
    let log_ps = log_softmax(&student.broadcast_div(&t)?, D::Minus1)?;
    let log_pt = log_softmax(&teacher.broadcast_div(&t)?, D::Minus1)?;
    let kl = (log_pt.exp()? * (log_pt - log_ps)?)?.sum(1)?; // [b]
    Ok((kl * temperatures.sqr()?)?.mean_all()?)
}

/// Logit matching (Ba & Caruana 2014): the mean squared difference of student and teacher logits [b, c].
pub fn logits_mse(student: &Tensor, teacher: &Tensor) -> Result<Tensor> {
    same_shape("logits_mse", student, teacher)?;
    Ok((student - teacher)?.sqr()?.mean_all()?)
}

/// The padding mask [b, s] of a token-level term, checked against the states' leading dimensions.
pub(crate) fn check_mask(name: &str, mask: &Tensor, b: usize, s: usize) -> Result<()> {
    if mask.dims() != [b, s] {
        return Err(Error::Msg(format!(
            "{name}: mask shape {:?} but the states are [{b}, {s}, ..]",
            mask.dims()
        )));
    }
    Ok(())
}

/// Test inputs shared by the loss tests: `sin(i a + b)` for i in 0..n, computed in f64 as the PyTorch
/// snippets do (`torch.sin(torch.arange(n) * a + b)` in float64), and a gradient summary.
#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{Device, Tensor, Var};

    pub fn seq(shape: &[usize], a: f64, b: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| (i as f64 * a + b).sin() as f32).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    pub fn var(shape: &[usize], a: f64, b: f64) -> Var {
        Var::from_tensor(&seq(shape, a, b)).unwrap()
    }

    /// `mask = [[1, 1, 1, 1], [1, 1, 0, 0]]`: the second example has two real tokens.
    pub fn mask() -> Tensor {
        Tensor::new(&[[1f32, 1., 1., 1.], [1., 1., 0., 0.]], &Device::Cpu).unwrap()
    }

    /// (‖g‖, g · sin(1.3 i + 0.5)) of the gradient of `loss` with respect to `x`.
    pub fn grad_summary(loss: &Tensor, x: &Var) -> (f32, f32) {
        let grads = loss.backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap();
        let v: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "non-finite gradient");
        let w = seq(g.dims(), 1.3, 0.5);
        let dot = (g * w).unwrap().sum_all().unwrap().to_scalar().unwrap();
        let norm = g.sqr().unwrap().sum_all().unwrap().sqrt().unwrap();
        (norm.to_scalar().unwrap(), dot)
    }

    pub fn close(got: f32, want: f64, what: &str) {
        assert!(
            (got as f64 - want).abs() < 2e-5 + 1e-4 * want.abs(),
            "{what}: got {got}, PyTorch {want}"
        );
    }

    pub fn scalar(t: &Tensor) -> f32 {
        t.to_scalar::<f32>().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32], shape: (usize, usize)) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn kd_is_zero_for_identical_logits() {
        let x = t(&[1.0, -2.0, 0.5, 3.0, 0.0, -1.0], (2, 3));
        let v = kd(&x, &x, 2.0).unwrap().to_scalar::<f32>().unwrap();
        assert!(v.abs() < 1e-6, "{v}");
    }

    #[test]
    fn kd_matches_pytorch() {
        // import torch, torch.nn.functional as F
        // s = torch.tensor([[1., -2., .5], [3., 0., -1.]]); t = torch.tensor([[.2, .1, -.3], [1., 2., 0.]])
        // T = 2.; print(F.kl_div(F.log_softmax(s/T, -1), F.log_softmax(t/T, -1), log_target=True,
        //                        reduction='batchmean') * T * T)   # 1.2271 (torch 2.15)
        let s = t(&[1.0, -2.0, 0.5, 3.0, 0.0, -1.0], (2, 3));
        let te = t(&[0.2, 0.1, -0.3, 1.0, 2.0, 0.0], (2, 3));
        let v = kd(&s, &te, 2.0).unwrap().to_scalar::<f32>().unwrap();
        assert!((v - 1.22712).abs() < 1e-4, "{v}");
    }

    #[test]
    fn ce_and_mse_match_pytorch() {
        // F.cross_entropy(torch.tensor([[1., -2., .5], [3., 0., -1.]]), torch.tensor([2, 0]))  # 0.5352 (torch 2.15)
        let s = t(&[1.0, -2.0, 0.5, 3.0, 0.0, -1.0], (2, 3));
        let y = Tensor::new(&[2u32, 0], &Device::Cpu).unwrap();
        let v = ce(&s, &y).unwrap().to_scalar::<f32>().unwrap();
        assert!((v - 0.53524).abs() < 1e-4, "{v}");
        let a = t(&[1.0, 2.0], (2, 1));
        let b = t(&[0.0, 4.0], (2, 1));
        assert_eq!(mse(&a, &b).unwrap().to_scalar::<f32>().unwrap(), 2.5);
    }

    #[test]
    fn kd_per_example_matches_pytorch() {
        // The flsw temperatures of `temperature::tests` (base 2, beta 1, gamma 2) for these logits:
        // import torch, math, torch.nn.functional as F; torch.set_default_dtype(torch.float64)
        // seq = lambda shape, a, b: torch.sin(torch.arange(math.prod(shape)) * a + b).reshape(shape)
        // ls = seq((2, 3), .8, 0.) * 2; lt = seq((2, 3), .5, 1.) * 2; T = torch.tensor([[1.988797290390353],
        // [2.011202709609647]]); x = ls.clone().requires_grad_()
        // l = (T.squeeze(-1)**2 * F.kl_div(F.log_softmax(x/T, -1), F.log_softmax(lt/T, -1), log_target=True,
        //      reduction='none').sum(-1)).mean()       # 0.1680455
        // g, = torch.autograd.grad(l, x); g.norm(), (g * seq((2, 3), 1.3, .5)).sum()  # 0.2226837, -0.1630630
        use testing::*;
        let x = candle_core::Var::from_tensor(&(seq(&[2, 3], 0.8, 0.0) * 2.0).unwrap()).unwrap();
        let s = x.as_tensor().clone();
        let te = (seq(&[2, 3], 0.5, 1.0) * 2.0).unwrap();
        let temps = Tensor::new(&[1.988_797_3_f32, 2.011_202_8], &Device::Cpu).unwrap();
        let l = kd_per_example(&s, &te, &temps).unwrap();
        close(scalar(&l), 0.1680455, "value");
        let (norm, dot) = grad_summary(&l, &x);
        close(norm, 0.2226837, "grad norm");
        close(dot, -0.1630630, "grad dot");
        // One temperature for all rows is `kd`.
        let same = Tensor::new(&[2f32, 2.], &Device::Cpu).unwrap();
        let a = scalar(&kd_per_example(&s, &te, &same).unwrap());
        close(a, scalar(&kd(&s, &te, 2.0).unwrap()) as f64, "constant T");
        assert!(scalar(&kd_per_example(&s, &s, &temps).unwrap()).abs() < 1e-6);
    }

    #[test]
    fn logits_mse_is_zero_on_equal_logits_and_matches_mse() {
        let a = t(&[1.0, 2.0, -1.0, 0.5], (2, 2));
        let b = t(&[0.0, 4.0, 1.0, 0.5], (2, 2));
        assert_eq!(logits_mse(&a, &a).unwrap().to_scalar::<f32>().unwrap(), 0.0);
        // ((1)^2 + (2)^2 + (2)^2 + 0) / 4
        assert_eq!(
            logits_mse(&a, &b).unwrap().to_scalar::<f32>().unwrap(),
            2.25
        );
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let a = t(&[1.0, 2.0], (1, 2));
        let b = t(&[1.0, 2.0, 3.0], (1, 3));
        assert!(kd(&a, &b, 1.0).is_err());
        assert!(mse(&a, &b).is_err());
        assert!(logits_mse(&a, &b).is_err());
    }
}
