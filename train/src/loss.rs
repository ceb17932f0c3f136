//! The task losses, which every classifier's training uses (the teacher's fine-tuning alone, the
//! student's distillation among its other terms): cross-entropy for classes, mean squared error for
//! scores. Rows with no gold label (augmented examples) are skipped, as PyTorch's `ignore_index` does.

use candle_core::Tensor;

use crate::{Error, Result};

/// Fails unless the two tensors have one shape, naming the term.
pub fn same_shape(name: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dims() != b.dims() {
        return Err(Error::Msg(format!(
            "{name}: student shape {:?} differs from target shape {:?}",
            a.dims(),
            b.dims()
        )));
    }
    Ok(())
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
    match labelled_rows(labels, |v: u32| v != IGNORE_CLASS)? {
        None => Ok(candle_nn::loss::cross_entropy(logits, labels)?),
        Some(rows) if rows.dims() == [0] => zero_like(logits),
        Some(rows) => Ok(candle_nn::loss::cross_entropy(
            &logits.index_select(&rows, 0)?,
            &labels.index_select(&rows, 0)?,
        )?),
    }
}

/// The class id of an example with no gold label (`data::tasks::NO_CLASS` in a u32 tensor): `ce`
/// skips it, as PyTorch's `ignore_index`, so soft-only (augmented) examples add nothing to it.
pub const IGNORE_CLASS: u32 = u32::MAX;

/// The regression task loss: `mse` over the rows whose gold score [b, 1] is not NaN (augmented
/// examples have none).
pub fn mse_labelled(student: &Tensor, target: &Tensor) -> Result<Tensor> {
    same_shape("mse", student, target)?;
    match labelled_rows(&target.flatten_all()?, |v: f32| !v.is_nan())? {
        None => mse(student, target),
        Some(rows) if rows.dims() == [0] => zero_like(student),
        Some(rows) => mse(
            &student.index_select(&rows, 0)?,
            &target.index_select(&rows, 0)?,
        ),
    }
}

/// Indices [n] u32 of the rows whose label passes `keep`; None when every row does (the common case,
/// which then costs nothing more than before).
fn labelled_rows<T: candle_core::WithDType>(
    labels: &Tensor,
    keep: impl Fn(T) -> bool,
) -> Result<Option<Tensor>> {
    let v: Vec<T> = labels.to_vec1()?;
    if v.iter().all(|&x| keep(x)) {
        return Ok(None);
    }
    let rows: Vec<u32> = (0..v.len() as u32)
        .filter(|&i| keep(v[i as usize]))
        .collect();
    let n = rows.len();
    Ok(Some(Tensor::from_vec(rows, n, labels.device())?))
}

/// A zero loss still attached to `x`'s graph (a batch of soft-only examples has no task loss).
fn zero_like(x: &Tensor) -> Result<Tensor> {
    Ok((x.sum_all()? * 0.0)?)
}

/// Mean squared error (regression task loss, and logit matching for regression teachers).
pub fn mse(student: &Tensor, target: &Tensor) -> Result<Tensor> {
    same_shape("mse", student, target)?;
    Ok((student - target)?.sqr()?.mean_all()?)
}
