//! AdamW (Loshchilov & Hutter, decoupled weight decay; PyTorch's `torch.optim.AdamW` update) with the
//! linear warmup/decay schedule of `transformers.get_linear_schedule_with_warmup`, global gradient-norm
//! clipping, and no weight decay on biases and LayerNorm weights (as HF's Trainer does).

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use kernels::adamw::{Moment, SumSquares, Update};

use crate::precision::{LossScale, Precision};
use crate::settings::Schedule;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Clip the global gradient norm to this value (0 disables).
    pub max_grad_norm: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub schedule: Schedule,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-4,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: 1.0,
            warmup_steps: 0,
            total_steps: 1,
            schedule: Schedule::Linear,
        }
    }
}

impl AdamWConfig {
    /// Learning rate for update number `step` (0-based): linear warmup to the peak, then the schedule's
    /// decay (linear or half a cosine to 0 at `total_steps`; constant stays at the peak).
    pub fn lr_at(&self, step: usize) -> f64 {
        let s = step as f64 + 1.0;
        let (w, t) = (self.warmup_steps as f64, self.total_steps.max(1) as f64);
        if s <= w {
            return self.learning_rate * s / w.max(1.0);
        }
        let progress = ((s - w) / (t - w).max(1.0)).min(1.0);
        let factor = match self.schedule {
            Schedule::Linear => ((t - s) / (t - w).max(1.0)).max(0.0),
            Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            Schedule::Constant => 1.0,
        };
        self.learning_rate * factor
    }
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    decay: bool,
    /// This parameter's learning rate relative to the schedule's (distillation projections have their own).
    lr_scale: f64,
}

pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    step: usize,
    /// Use the fused in-place CPU kernels (the plain tensor-op path remains for other devices).
    pub fused: bool,
}

/// What one update did, for logs.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    pub lr: f64,
    pub grad_norm: f64,
    /// The gradients overflowed under an f16 loss scale and the update was skipped.
    pub skipped: bool,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        Self::with_groups(vec![(vars, 1.0)], cfg)
    }

    /// Parameter groups, each with a learning rate scale relative to `cfg.learning_rate`'s schedule
    /// (as PyTorch's per-group `lr`); clipping takes the gradient norm over all groups together.
    pub fn with_groups(groups: Vec<(Vec<(String, Var)>, f64)>, cfg: AdamWConfig) -> Result<Self> {
        let slots = groups
            .into_iter()
            .flat_map(|(vars, scale)| vars.into_iter().map(move |v| (v, scale)))
            .map(|((name, var), lr_scale)| {
                // No decay on biases and LayerNorms, whatever the module calls them (RoBERTa's MLM head
                // has `lm_head.layer_norm`), as transformers' Trainer excludes every LayerNorm layer.
                let decay = !(name.ends_with(".bias")
                    || name.contains("LayerNorm")
                    || name.contains("layer_norm"));
                // Two allocations: the moments are updated in place and must not share storage.
                let m = var.as_tensor().zeros_like()?.contiguous()?;
                let v = var.as_tensor().zeros_like()?.contiguous()?;
                Ok(Slot {
                    name,
                    var,
                    m,
                    v,
                    decay,
                    lr_scale,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg,
            slots,
            step: 0,
            fused: true,
        })
    }

    pub fn step_count(&self) -> usize {
        self.step
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// Applies one update from `grads`. Parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<StepInfo> {
        self.step_scaled(grads, &LossScale::new(Precision::Fp32))
    }

    /// `step` for the gradients of a loss multiplied by `ls.scale`, divided by it in the update (one
    /// factor with the clipping, so no unscaled copy is made). Non-finite gradients skip the update
    /// while `ls.may_skip()` (an f16 overflow) and stop training otherwise.
    pub fn step_scaled(&mut self, grads: &GradStore, ls: &LossScale) -> Result<StepInfo> {
        let mut sq = 0f64;
        // Off the CPU each parameter's sum stays on the device and the total is read once: a read
        // per parameter would wait for the device as many times a step.
        let mut on_device = Vec::new();
        for s in &self.slots {
            if let Some(g) = grads.get(s.var.as_tensor()) {
                if g.device().is_cpu() && g.dtype() == candle_core::DType::F32 {
                    // One pass, no squared copy of every gradient.
                    sq += g
                        .contiguous()?
                        .apply_op1_no_bwd(&SumSquares)?
                        .to_scalar::<f64>()?;
                } else {
                    on_device.push(g.to_dtype(candle_core::DType::F32)?.sqr()?.sum_all()?);
                }
            }
        }
        if !on_device.is_empty() {
            sq += Tensor::stack(&on_device, 0)?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
        let norm = sq.sqrt() / ls.scale;
        if !norm.is_finite() && ls.may_skip() {
            return Ok(StepInfo {
                lr: self.cfg.lr_at(self.step),
                grad_norm: norm,
                skipped: true,
            });
        }
        if !norm.is_finite() {
            return Err(Error::NonFinite {
                step: self.step,
                what: "gradient norm".into(),
            });
        }
        let clip = if self.cfg.max_grad_norm > 0.0 && norm > self.cfg.max_grad_norm {
            self.cfg.max_grad_norm / (norm + 1e-6)
        } else {
            1.0
        };
        // Exactly `clip` when the loss is not scaled.
        let factor = clip / ls.scale;
        let base_lr = self.cfg.lr_at(self.step);
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            let wd = if s.decay { self.cfg.weight_decay } else { 0.0 };
            let lr = base_lr * s.lr_scale;
            let p = s.var.as_tensor();
            if self.fused && p.device().is_cpu() && p.is_contiguous() {
                // One fused pass over each buffer instead of a dozen allocating tensor ops.
                let g = g.contiguous()?;
                s.m.inplace_op2(
                    &g,
                    &Moment {
                        beta: b1,
                        scale: factor,
                        square: false,
                    },
                )?;
                s.v.inplace_op2(
                    &g,
                    &Moment {
                        beta: b2,
                        scale: factor,
                        square: true,
                    },
                )?;
                p.inplace_op3(
                    &s.m,
                    &s.v,
                    &Update {
                        lr,
                        wd,
                        bc1,
                        bc2,
                        eps: self.cfg.eps,
                    },
                )?;
                continue;
            }
            let g = (g * factor)?;
            s.m = ((&s.m * b1)? + (&g * (1.0 - b1))?)?;
            s.v = ((&s.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let mut p = p.clone();
            if wd > 0.0 {
                p = (p * (1.0 - lr * wd))?;
            }
            let denom = ((&s.v / bc2)?.sqrt()? + self.cfg.eps)?;
            let update = ((&s.m / bc1)? / denom)?;
            s.var.set(&(p - (update * lr)?)?)?;
        }
        Ok(StepInfo {
            lr: base_lr,
            grad_norm: norm,
            skipped: false,
        })
    }

    /// Saves the moments and the step count (with the parameter names they belong to).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut t: HashMap<String, Tensor> = HashMap::new();
        for s in &self.slots {
            t.insert(format!("m.{}", s.name), s.m.clone());
            t.insert(format!("v.{}", s.name), s.v.clone());
        }
        t.insert(
            "step".into(),
            Tensor::new(&[self.step as u32], &Device::Cpu)?,
        );
        Ok(modeling::save_tensors(&t, path)?)
    }

    /// Restores moments and step saved by `save`; every parameter must be present with its shape.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let dev = self
            .slots
            .first()
            .map(|s| s.var.device().clone())
            .unwrap_or(Device::Cpu);
        let t = candle_core::safetensors::load(path, &dev)
            .map_err(|e| Error::file(path, e.to_string()))?;
        for s in &mut self.slots {
            let get = |k: String| {
                t.get(&k)
                    .filter(|x| x.dims() == s.var.dims())
                    .cloned()
                    .ok_or_else(|| Error::file(path, format!("missing or misshapen `{k}`")))
            };
            s.m = get(format!("m.{}", s.name))?;
            s.v = get(format!("v.{}", s.name))?;
        }
        let step = t
            .get("step")
            .ok_or_else(|| Error::file(path, "missing `step`"))?
            .to_vec1::<u32>()?;
        self.step = step.first().copied().unwrap_or(0) as usize;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_kernels_match_the_plain_tensor_ops() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut randn =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect() };
        let init = [randn(300), randn(7)];
        let targets = [randn(300), randn(7)];
        let run = |fused: bool| -> Vec<Vec<f32>> {
            let vars: Vec<(String, Var)> = init
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let name = if i == 0 { "w.weight" } else { "w.bias" };
                    (
                        name.to_string(),
                        Var::from_vec(v.clone(), v.len(), &Device::Cpu).unwrap(),
                    )
                })
                .collect();
            let cfg = AdamWConfig {
                learning_rate: 0.05,
                warmup_steps: 2,
                total_steps: 10,
                max_grad_norm: 0.5,
                ..Default::default()
            };
            let mut opt = AdamW::new(vars.clone(), cfg).unwrap();
            opt.fused = fused;
            for _ in 0..4 {
                let mut loss = Tensor::new(0f32, &Device::Cpu).unwrap();
                for ((_, v), t) in vars.iter().zip(&targets) {
                    let t = Tensor::new(t.as_slice(), &Device::Cpu).unwrap();
                    let d = (v.as_tensor() - t)
                        .unwrap()
                        .sqr()
                        .unwrap()
                        .sum_all()
                        .unwrap();
                    loss = (loss + d).unwrap();
                }
                opt.step(&loss.backward().unwrap()).unwrap();
            }
            vars.iter()
                .map(|(_, v)| v.as_tensor().to_vec1().unwrap())
                .collect()
        };
        let (a, b) = (run(true), run(false));
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
    }

    #[test]
    fn a_scaled_loss_gives_the_same_update_and_an_overflow_is_skipped() {
        let cfg = AdamWConfig {
            learning_rate: 0.1,
            max_grad_norm: 0.5,
            total_steps: 100,
            ..Default::default()
        };
        let mut ls = LossScale::new(Precision::F16);
        for fused in [true, false] {
            let a = Var::new(&[1f32, -2.0, 3.0], &Device::Cpu).unwrap();
            let b = Var::new(&[1f32, -2.0, 3.0], &Device::Cpu).unwrap();
            let mut oa = AdamW::new(vec![("a".into(), a.clone())], cfg).unwrap();
            let mut ob = AdamW::new(vec![("b".into(), b.clone())], cfg).unwrap();
            (oa.fused, ob.fused) = (fused, fused);
            for _ in 0..3 {
                let la = a.as_tensor().sqr().unwrap().sum_all().unwrap();
                let lb = b.as_tensor().sqr().unwrap().sum_all().unwrap();
                let ia = oa.step(&la.backward().unwrap()).unwrap();
                let scaled = (lb * ls.scale).unwrap();
                let ib = ob.step_scaled(&scaled.backward().unwrap(), &ls).unwrap();
                assert!(!ib.skipped);
                assert!(
                    (ia.grad_norm - ib.grad_norm).abs() < 1e-9,
                    "clipping sees the true norm"
                );
            }
            let (x, y) = (
                a.as_tensor().to_vec1::<f32>().unwrap(),
                b.as_tensor().to_vec1::<f32>().unwrap(),
            );
            for (x, y) in x.iter().zip(&y) {
                assert!((x - y).abs() < 1e-6, "{x} vs {y}");
            }
            // Gradients that overflowed: no update, no optimizer step; at a scale of 1 they are an error.
            let inf = (b.as_tensor() * f64::INFINITY).unwrap().sum_all().unwrap();
            let info = ob.step_scaled(&inf.backward().unwrap(), &ls).unwrap();
            assert!(info.skipped);
            assert_eq!(ob.step_count(), 3);
            assert_eq!(b.as_tensor().to_vec1::<f32>().unwrap(), y);
            ls.scale = 1.0;
            let inf = (b.as_tensor() * f64::INFINITY).unwrap().sum_all().unwrap();
            assert!(ob.step_scaled(&inf.backward().unwrap(), &ls).is_err());
            ls = LossScale::new(Precision::F16);
        }
    }

    #[test]
    fn the_norm_summed_off_the_fast_path_is_the_same() {
        // f64 gradients take the path other devices take (per-parameter sums kept as tensors, one
        // read); f32 ones on the CPU the fused pass. Both see the same clipping norm.
        let norm = |dtype: candle_core::DType| -> f64 {
            let vars: Vec<(String, Var)> = [vec![3f32, -4.0], vec![12f32]]
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let t = Tensor::new(v, &Device::Cpu)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap();
                    (format!("p{i}"), Var::from_tensor(&t).unwrap())
                })
                .collect();
            let mut opt = AdamW::new(vars.clone(), AdamWConfig::default()).unwrap();
            opt.fused = false;
            let loss = vars
                .iter()
                .map(|(_, v)| (v.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap())
                .reduce(|a, b| (a + b).unwrap())
                .unwrap();
            opt.step(&loss.backward().unwrap()).unwrap().grad_norm
        };
        // The gradients are the values themselves: (3, -4, 12), norm 13.
        assert!((norm(candle_core::DType::F32) - 13.0).abs() < 1e-9);
        assert!((norm(candle_core::DType::F64) - 13.0).abs() < 1e-9);
    }

    #[test]
    fn a_group_with_half_the_learning_rate_moves_half_as_far() {
        let a = Var::new(&[1f32, -2.0], &Device::Cpu).unwrap();
        let b = Var::new(&[1f32, -2.0], &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            learning_rate: 0.1,
            weight_decay: 0.0,
            total_steps: 1_000,
            ..Default::default()
        };
        let groups = vec![
            (vec![("a".to_string(), a.clone())], 1.0),
            (vec![("b".to_string(), b.clone())], 0.5),
        ];
        let mut opt = AdamW::with_groups(groups, cfg).unwrap();
        let loss = (a.as_tensor().sqr().unwrap().sum_all().unwrap()
            + b.as_tensor().sqr().unwrap().sum_all().unwrap())
        .unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let da: Vec<f32> = a.as_tensor().to_vec1().unwrap();
        let db: Vec<f32> = b.as_tensor().to_vec1().unwrap();
        for (i, x0) in [1f32, -2.0].iter().enumerate() {
            let (sa, sb) = (x0 - da[i], x0 - db[i]);
            assert!((sb - 0.5 * sa).abs() < 1e-6, "{sa} vs {sb}");
        }
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let c = AdamWConfig {
            learning_rate: 1.0,
            warmup_steps: 4,
            total_steps: 12,
            ..Default::default()
        };
        assert_eq!(c.lr_at(0), 0.25);
        assert_eq!(c.lr_at(3), 1.0);
        assert!((c.lr_at(7) - 0.5).abs() < 1e-12);
        assert_eq!(c.lr_at(11), 0.0);
    }

    #[test]
    fn cosine_and_constant_match_transformers() {
        // transformers' get_cosine_schedule_with_warmup(opt, 4, 12) and get_constant_schedule_with_warmup(opt,
        // 4): the learning rates of its updates 1..=12 (update n uses lambda(n), as `lr_at(n - 1)` does).
        let cosine = [
            0.25, 0.5, 0.75, 1.0, 0.96194, 0.853553, 0.691342, 0.5, 0.308658, 0.146447, 0.03806,
            0.0,
        ];
        let constant = [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        for (schedule, want) in [(Schedule::Cosine, cosine), (Schedule::Constant, constant)] {
            let c = AdamWConfig {
                learning_rate: 1.0,
                warmup_steps: 4,
                total_steps: 12,
                schedule,
                ..Default::default()
            };
            for (step, w) in want.iter().enumerate() {
                assert!((c.lr_at(step) - w).abs() < 1e-6, "{schedule:?} {step}");
            }
        }
    }

    #[test]
    fn adamw_matches_pytorch_first_steps() {
        // Reference: torch.optim.AdamW's documented update, written out below in f64 on loss = sum(p^2).
        let var = Var::new(&[1f32, -2.0], &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            learning_rate: 0.1,
            weight_decay: 0.01,
            max_grad_norm: 0.0,
            warmup_steps: 0,
            total_steps: 1_000_000,
            ..Default::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], cfg).unwrap();
        // Hold the learning rate constant (as the torch snippet does): total steps is huge.
        for _ in 0..2 {
            let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap();
            opt.step(&g).unwrap();
        }
        let p = var.as_tensor().to_vec1::<f32>().unwrap();
        let mut want = [1f64, -2.0];
        let (mut m, mut v) = ([0f64; 2], [0f64; 2]);
        for t in 1..=2 {
            for i in 0..2 {
                let g = 2.0 * want[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let lr = 0.1 * (1.0 - (t as f64 - 1.0) / 1_000_000.0);
                want[i] *= 1.0 - lr * 0.01;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.999f64.powi(t));
                want[i] -= lr * mh / (vh.sqrt() + 1e-8);
            }
        }
        for i in 0..2 {
            assert!((p[i] as f64 - want[i]).abs() < 1e-5, "{p:?} vs {want:?}");
        }
    }
}
