//! One optimizer step: the step's micro-batches (this rank's share of them), their losses weighted so
//! that the summed gradients are those of one batch, the gradients summed over the data-parallel group,
//! the update, and what the step logs.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::{LoggedTerm, Task};
use crate::dist::{Group, Reduction};
use crate::optim::AdamW;
use crate::precision::LossScale;
use crate::records::{StepRecord, TermRecord};
use crate::{Error, Result};

/// Seed of the dropout masks of micro-batch `micro` (= step with no accumulation).
fn dropout_seed(seed: u64, micro: usize) -> u64 {
    seed ^ (micro as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// What one optimizer step did, for the progress bar and the metrics log.
pub(super) struct StepLine {
    loss: f32,
    terms: Vec<LoggedTerm>,
    lr: f64,
    grad_norm: f64,
    pub(super) tokens: usize,
    /// With f16: the loss scale the step used, and whether its update was skipped (an overflow).
    loss_scale: Option<(f64, bool)>,
}

impl StepLine {
    pub(super) fn record(&self, step: usize, epoch: f64) -> StepRecord {
        StepRecord {
            step,
            epoch,
            loss: self.loss,
            terms: self
                .terms
                .iter()
                .map(|v| {
                    let r = TermRecord {
                        raw: v.raw,
                        weighted: v.weighted,
                    };
                    (v.name.clone(), r)
                })
                .collect(),
            lr: self.lr,
            grad_norm: self.grad_norm,
            loss_scale: self.loss_scale.map(|(s, _)| s),
            skipped: self.loss_scale.map(|(_, k)| k),
        }
    }
}

/// One AdamW update from the micro-batches of `batches` (the step's, over the whole group), each loss
/// weighted by its share of their loss units so that the summed gradients are those of one batch.
/// This rank computes its contiguous share of them; the group sums gradients and log values.
#[allow(clippy::too_many_arguments)]
pub(super) fn optimizer_step<T: Task>(
    task: &mut T,
    opt: &mut AdamW,
    ls: &mut LossScale,
    vars: &[Var],
    batches: &[Vec<usize>],
    (epoch, step, k, progress): (usize, usize, usize, f64),
    seed: u64,
    (group, how): (&Group, Reduction),
) -> Result<(f32, StepLine)> {
    let n = batches.len();
    let units = if n == 1 {
        vec![1usize]
    } else {
        batches
            .iter()
            .map(|b| task.loss_units(b, epoch))
            .collect::<Result<Vec<_>>>()?
    };
    let sum = units.iter().sum::<usize>().max(1) as f64;
    // Rank r takes micro-batches [r·k, (r+1)·k); in an epoch's last, shorter step the last ranks may
    // have none. Dropout seeds count micro-batches as if every step had all of them.
    let r = group.rank();
    let mine = (r * k).min(n)..((r + 1) * k).min(n);
    let per_step = k * group.world();
    let mut acc: Option<GradStore> = None;
    let mut line = StepLine {
        loss: 0.0,
        terms: Vec::new(),
        lr: 0.0,
        grad_norm: 0.0,
        tokens: 0,
        loss_scale: None,
    };
    for j in mine.clone() {
        let (batch, u) = (&batches[j], units[j]);
        task.reseed_dropout(dropout_seed(seed, step * per_step + j));
        // A lone micro-batch keeps its loss unscaled: bit-identical to training without accumulation.
        let scale = if n == 1 { 1.0 } else { u as f64 / sum };
        // The loss scale multiplies the backward pass only: `m.loss` is the unscaled loss.
        let m = task.micro_step(batch, epoch, scale * ls.scale, step, progress)?;
        let w = scale as f32;
        if j == mine.start {
            line.loss = m.loss * w;
            line.terms = m.terms.iter().map(|t| scaled(t, w)).collect();
        } else {
            line.loss += m.loss * w;
            for (a, t) in line.terms.iter_mut().zip(&m.terms) {
                a.raw += t.raw * w;
                a.weighted += t.weighted * w;
            }
        }
        line.tokens += m.tokens;
        acc = Some(match acc {
            None if n == 1 => m.grads,
            None => keep_vars(m.grads, vars),
            Some(mut a) => {
                let mut g = m.grads;
                for v in vars {
                    if let Some(new) = g.remove(v.as_tensor()) {
                        let sum = match a.remove(v.as_tensor()) {
                            Some(old) => (old + new)?,
                            None => new,
                        };
                        a.insert(v.as_tensor(), sum);
                    }
                }
                a
            }
        });
    }
    let grads = if group.world() > 1 || group.sums_on_gpu() {
        line = merge_lines(line, group)?;
        all_reduce(acc.unwrap_or_default(), vars, group, how)?
    } else {
        acc.ok_or_else(|| Error::Msg("an optimizer step without micro-batches".into()))?
    };
    let info = opt.step_scaled(&grads, ls)?;
    if ls.dynamic {
        line.loss_scale = Some((ls.scale, info.skipped));
    }
    ls.update(info.skipped);
    line.lr = info.lr;
    line.grad_norm = info.grad_norm;
    Ok((line.loss, line))
}

/// The gradients summed over the group, in `vars` order through one flat buffer on their device (NCCL
/// sums it there on GPUs). A parameter that no rank has a gradient for stays without one (AdamW leaves
/// it alone, as in one process).
fn all_reduce(
    mut grads: GradStore,
    vars: &[Var],
    group: &Group,
    how: Reduction,
) -> Result<GradStore> {
    let Some(device) = vars.first().map(|v| v.device().clone()) else {
        return Ok(grads);
    };
    // The values, then one presence flag per parameter.
    let mut parts = Vec::with_capacity(vars.len() + 1);
    let mut present = Vec::with_capacity(vars.len());
    for v in vars {
        match grads.remove(v.as_tensor()) {
            Some(g) => {
                parts.push(g.flatten_all()?.to_dtype(DType::F32)?);
                present.push(1f32);
            }
            None => {
                parts.push(Tensor::zeros(v.elem_count(), DType::F32, &device)?);
                present.push(0f32);
            }
        }
    }
    let flags = present.len();
    parts.push(Tensor::from_vec(present, flags, &device)?);
    let sum = group.sum(&Tensor::cat(&parts, 0)?, how)?;
    let total = sum.elem_count() - flags;
    let present = sum.narrow(0, total, flags)?.to_vec1::<f32>()?;
    let mut out = GradStore::default();
    let mut at = 0;
    for (v, p) in vars.iter().zip(present) {
        let n = v.elem_count();
        if p > 0.0 {
            let g = sum
                .narrow(0, at, n)?
                .reshape(v.shape())?
                .to_dtype(v.dtype())?;
            out.insert(v.as_tensor(), g);
        }
        at += n;
    }
    Ok(out)
}

/// What a rank logs of its share of a step, for rank 0 to add up.
#[derive(Serialize, Deserialize)]
struct Share {
    loss: f32,
    pub(super) tokens: usize,
    terms: Vec<(String, f32, f32)>,
}

/// Rank 0's line with every rank's loss, terms and tokens added (others keep their own line).
fn merge_lines(mut line: StepLine, group: &Group) -> Result<StepLine> {
    let share = Share {
        loss: line.loss,
        tokens: line.tokens,
        terms: line
            .terms
            .iter()
            .map(|t| (t.name.clone(), t.raw, t.weighted))
            .collect(),
    };
    let bytes = serde_json::to_vec(&share).map_err(|e| Error::Msg(e.to_string()))?;
    for other in group.gather(&bytes)?.iter().skip(1) {
        let s: Share = serde_json::from_slice(other).map_err(|e| Error::Msg(e.to_string()))?;
        line.loss += s.loss;
        line.tokens += s.tokens;
        for (name, raw, weighted) in s.terms {
            match line.terms.iter_mut().find(|t| t.name == name) {
                Some(t) => {
                    t.raw += raw;
                    t.weighted += weighted;
                }
                None => line.terms.push(LoggedTerm {
                    name,
                    raw,
                    weighted,
                }),
            }
        }
    }
    Ok(line)
}

/// Refuses to train when the ranks start from different weights (another `student.init` or seed):
/// each rank puts a checksum of its weights in its own slot and the sum shows them all.
pub(super) fn same_start(vars: &[Var], group: &Group) -> Result<()> {
    if group.world() == 1 {
        return Ok(());
    }
    let (mut s1, mut s2) = (0f64, 0f64);
    for v in vars {
        for x in v.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()? {
            s1 += x as f64;
            s2 += (x as f64) * (x as f64);
        }
    }
    let mut sums = vec![0f32; 2 * group.world()];
    sums[2 * group.rank()] = s1 as f32;
    sums[2 * group.rank() + 1] = s2 as f32;
    group.all_reduce_sum(&mut sums, Reduction::Deterministic)?;
    if let Some(r) = (1..group.world()).find(|&r| sums[2 * r..2 * r + 2] != sums[..2]) {
        return Err(Error::Msg(format!(
            "data-parallel rank {r} starts from other weights than rank 0 (another student.init, seed \
             or last/ checkpoint?)"
        )));
    }
    Ok(())
}

fn scaled(t: &LoggedTerm, w: f32) -> LoggedTerm {
    LoggedTerm {
        name: t.name.clone(),
        raw: t.raw * w,
        weighted: t.weighted * w,
    }
}

/// Only the parameters' gradients: the intermediate ones would stay alive across micro-batches.
fn keep_vars(mut grads: GradStore, vars: &[Var]) -> GradStore {
    let mut out = GradStore::default();
    for v in vars {
        if let Some(g) = grads.remove(v.as_tensor()) {
            out.insert(v.as_tensor(), g);
        }
    }
    out
}
