//! Loss terms, one function each, every one checking shapes and returning a scalar tensor.
//! `kd` is Hinton et al. (2015): T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch.

use candle_core::{Tensor, D};
use candle_nn::ops::log_softmax;

use crate::{Error, Result};

fn same_shape(name: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dims() != b.dims() {
        return Err(Error::Msg(format!(
            "{name}: student shape {:?} differs from target shape {:?}",
            a.dims(),
            b.dims()
        )));
    }
    Ok(())
}

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

/// Cross-entropy of logits [b, c] against class ids [b] (u32).
pub fn ce(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (b, _) = logits.dims2()?;
    if labels.dims() != [b] {
        return Err(Error::Msg(format!(
            "ce: {b} logits rows but labels shape {:?}",
            labels.dims()
        )));
    }
    Ok(candle_nn::loss::cross_entropy(logits, labels)?)
}

/// Mean squared error (regression task loss, and logit matching for regression teachers).
pub fn mse(student: &Tensor, target: &Tensor) -> Result<Tensor> {
    same_shape("mse", student, target)?;
    Ok((student - target)?.sqr()?.mean_all()?)
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
    fn shape_mismatch_is_an_error() {
        let a = t(&[1.0, 2.0], (1, 2));
        let b = t(&[1.0, 2.0, 3.0], (1, 3));
        assert!(kd(&a, &b, 1.0).is_err());
        assert!(mse(&a, &b).is_err());
    }
}
