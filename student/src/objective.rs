//! The objective of one training step: every configured term (see `terms`) evaluated on the student's
//! outputs against the teacher's (cached logits and/or an online forward pass), scaled by its scheduled
//! weight and, with `balance`, by the inverse of an EMA of its own magnitude, and summed.
//!
//! Hidden-state terms between models of different widths learn a linear projection student -> teacher
//! width. We use ONE projection per term, shared by all its mapped layers, as TinyBERT does (one `W_h`
//! for every layer): the projection cannot absorb layer-specific differences, so the student's layers
//! themselves must match, and it adds `h_s * h_t` parameters rather than that times the layer count.
//! Projections train with their own learning rate, live in the checkpoint (`objective.safetensors`)
//! so a resumed run continues them, and never reach the exported model.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use modeling::{EncoderConfig, EncoderOutput, Want};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::terms::{self, Bound, Relation, TemperatureSchedule, TermKind, TermSpec};
use crate::{loss, Error, Result, TrainConfig};

/// EMA momentum of the running term magnitudes for `balance`.
const BALANCE_MOMENTUM: f64 = 0.99;
/// Names of the projections' tensors start with this (and so never collide with model tensors).
pub const PROJECTION_PREFIX: &str = "distill.";

struct Term {
    name: String,
    kind: TermKind,
    weight: f64,
    schedule: terms::WeightSchedule,
    bound: Bound,
    proj: Option<Linear>,
}

/// The loss of one step: the total to differentiate, and each term's raw and weighted value.
pub struct StepLoss {
    pub total: Tensor,
    pub values: Vec<TermValue>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TermValue {
    pub name: String,
    pub kind: TermKind,
    pub raw: f32,
    pub weighted: f32,
}

/// What one step hands the objective. Teacher tensors must be detached.
pub struct StepInputs<'a> {
    /// Student logits [b, c].
    pub logits: &'a Tensor,
    pub student: &'a EncoderOutput,
    /// Gold labels: u32 class ids [b], or f32 scores [b, 1] for regression.
    pub labels: &'a Tensor,
    /// Teacher logits [b, c]: cached targets' rows, or the online teacher's.
    pub teacher_logits: Option<&'a Tensor>,
    /// The online teacher's states, when a token-level term needs them.
    pub teacher: Option<&'a EncoderOutput>,
    /// [b, s] f32, 1 for real tokens.
    pub mask: &'a Tensor,
    /// Word pooling when the teacher reads its own tokenization (different tokenizers): hidden-state
    /// terms then compare per-word means under the word mask instead of positions.
    pub words: Option<&'a loss::WordPools>,
    /// Training progress `step / total_steps`, for weight schedules.
    pub progress: f64,
}

pub struct Objective {
    terms: Vec<Term>,
    varmap: VarMap,
    /// Running magnitude of each term, for `balance` (None until the term's first step).
    ema: Vec<Option<f64>>,
    balance: bool,
    beta: f64,
    gamma: f64,
}

impl Objective {
    /// Binds the configured terms to the models (errors name the `distill` key) and creates the
    /// projections, seeded from `cfg.seed`. Terms of weight 0 are dropped: they cost nothing and need
    /// no teacher output (the shorthand with `alpha_kd: 0` is plain fine-tuning).
    pub fn new(
        cfg: &TrainConfig,
        student: &EncoderConfig,
        teacher: Option<&EncoderConfig>,
        device: &Device,
    ) -> Result<Self> {
        let o = &cfg.objective;
        o.validate().map_err(key_error)?;
        let specs: Vec<TermSpec> = o.resolved_terms(cfg.alpha_kd, cfg.temperature);
        let bound = terms::bind(&specs, o, cfg.temperature, student, teacher).map_err(key_error)?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::new();
        for (spec, b) in specs.iter().zip(bound) {
            let n = seen.entry(spec.kind.name()).or_insert(0);
            *n += 1;
            let name = match *n {
                1 => spec.kind.name().to_string(),
                k => format!("{}_{k}", spec.kind.name()),
            };
            if spec.weight == 0.0 {
                continue;
            }
            let proj = match &b {
                Bound::Hidden { widths, .. } if widths.0 != widths.1 => Some(projection(
                    widths.0,
                    widths.1,
                    vb.pp(format!("{PROJECTION_PREFIX}{name}.proj")),
                )?),
                _ => None,
            };
            out.push(Term {
                name,
                kind: spec.kind,
                weight: spec.weight,
                schedule: spec.schedule,
                bound: b,
                proj,
            });
        }
        let objective = Self {
            ema: vec![None; out.len()],
            terms: out,
            varmap,
            balance: o.balance,
            beta: o.temperature_beta,
            gamma: o.temperature_gamma,
        };
        objective.init_projections(cfg.seed)?;
        Ok(objective)
    }

    /// Draws every projection as `torch.nn.Linear` initialises it (uniform in ±1/sqrt(in), weight and
    /// bias), from a `StdRng` seeded by the run's seed (candle's CPU RNG cannot be seeded).
    fn init_projections(&self, seed: u64) -> Result<()> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x0B1E_C71E);
        for (name, var) in self.named_vars() {
            let fan_in = self
                .terms
                .iter()
                .find(|t| name.starts_with(&format!("{PROJECTION_PREFIX}{}.", t.name)))
                .and_then(|t| match t.bound {
                    Bound::Hidden { widths, .. } => Some(widths.0),
                    _ => None,
                })
                .unwrap_or(1);
            let bound = 1.0 / (fan_in as f32).sqrt();
            let data: Vec<f32> = (0..var.elem_count())
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            var.set(&Tensor::from_vec(data, var.shape(), var.device())?)?;
        }
        Ok(())
    }

    /// The projections' tensors, sorted by name (they train beside the model's).
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let data = match self.varmap.data().lock() {
            Ok(d) => d,
            Err(p) => p.into_inner(),
        };
        let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Some term compares per-token teacher states: the teacher runs inside each step.
    pub fn needs_teacher_states(&self) -> bool {
        self.terms.iter().any(|t| t.kind.token_level())
    }

    /// Some term compares logits with the teacher's.
    pub fn needs_teacher_logits(&self) -> bool {
        self.terms.iter().any(|t| t.kind.uses_teacher_logits())
    }

    /// What both forward passes must return.
    pub fn want(&self) -> Want {
        Want {
            attentions: self
                .terms
                .iter()
                .any(|t| matches!(t.bound, Bound::Attention { .. })),
            qkv: self
                .terms
                .iter()
                .any(|t| matches!(t.bound, Bound::Relations { .. })),
        }
    }

    /// Evaluates every term and sums them, updating the running magnitudes when balancing.
    pub fn loss(&mut self, x: &StepInputs) -> Result<StepLoss> {
        let mut total: Option<Tensor> = None;
        let mut values = Vec::with_capacity(self.terms.len());
        for (i, term) in self.terms.iter().enumerate() {
            let raw = self.term_value(term, x)?;
            let raw_v = raw.to_scalar::<f32>()?;
            let mut coef = term.weight * term.schedule.factor(x.progress);
            if self.balance && raw_v.is_finite() {
                let m = match self.ema[i] {
                    Some(e) => BALANCE_MOMENTUM * e + (1.0 - BALANCE_MOMENTUM) * raw_v as f64,
                    None => raw_v as f64,
                };
                self.ema[i] = Some(m);
                coef /= m.abs().max(1e-8);
            }
            let weighted = (&raw * coef)?;
            values.push(TermValue {
                name: term.name.clone(),
                kind: term.kind,
                raw: raw_v,
                weighted: raw_v * coef as f32,
            });
            total = Some(match total {
                Some(t) => (t + weighted)?,
                None => weighted,
            });
        }
        let total = total.ok_or_else(|| Error::Msg("the objective has no terms".into()))?;
        Ok(StepLoss { total, values })
    }

    fn term_value(&self, term: &Term, x: &StepInputs) -> Result<Tensor> {
        let regression = x.logits.dims().last() == Some(&1);
        let teacher_logits = || {
            x.teacher_logits
                .ok_or_else(|| Error::Msg(format!("`{}` needs teacher logits", term.name)))
        };
        let teacher = || {
            x.teacher.ok_or_else(|| {
                Error::Msg(format!("`{}` needs the online teacher's states", term.name))
            })
        };
        match &term.bound {
            Bound::Ce if regression => Ok(loss::mse_labelled(x.logits, x.labels)?),
            Bound::Ce => Ok(loss::ce(x.logits, x.labels)?),
            Bound::LogitsMse => loss::logits_mse(x.logits, teacher_logits()?),
            Bound::Kd { .. } if regression => Ok(loss::mse(x.logits, teacher_logits()?)?),
            Bound::Kd {
                temperature,
                schedule: TemperatureSchedule::Constant,
            } => loss::kd(x.logits, teacher_logits()?, *temperature),
            Bound::Kd {
                temperature,
                schedule,
            } => {
                let t = teacher_logits()?;
                let s_rows = x.logits.detach().to_vec2::<f32>()?;
                let t_rows = t.to_vec2::<f32>()?;
                let temps = terms::temperatures(
                    *schedule,
                    *temperature,
                    self.beta,
                    self.gamma,
                    &s_rows,
                    &t_rows,
                );
                let temps: Vec<f32> = temps.iter().map(|&v| v as f32).collect();
                let temps = Tensor::new(temps, x.logits.device())?;
                loss::kd_per_example(x.logits, t, &temps)
            }
            Bound::Hidden { pairs, cosine, .. } => {
                let t = teacher()?;
                let mut sum: Option<Tensor> = None;
                for &(ls, lt) in pairs {
                    let s = layer(&x.student.hidden_states, ls, "student hidden states")?;
                    let s = match &term.proj {
                        Some(p) => p.forward(s)?, // [b, s, h_s] -> [b, s, h_t]
                        None => s.clone(),
                    };
                    let th = layer(&t.hidden_states, lt, "teacher hidden states")?;
                    let (s, th, mask) = match x.words {
                        Some(w) => (
                            loss::pool_words(&s, &w.student)?, // [b, words, h_t]
                            loss::pool_words(th, &w.teacher)?,
                            &w.mask,
                        ),
                        None => (s, th.clone(), x.mask),
                    };
                    let v = if *cosine {
                        loss::hidden_cosine(&s, &th, mask)?
                    } else {
                        loss::hidden_mse(&s, &th, mask)?
                    };
                    sum = Some(match sum {
                        Some(a) => (a + v)?,
                        None => v,
                    });
                }
                mean_of(sum, pairs.len())
            }
            Bound::Attention { pairs } => {
                let t = teacher()?;
                let mut sum: Option<Tensor> = None;
                for &(ls, lt) in pairs {
                    let s = layer(&x.student.attentions, ls - 1, "student attentions")?;
                    let ta = layer(&t.attentions, lt - 1, "teacher attentions")?;
                    let v = match x.words {
                        // [b, heads, words, words]: query tokens averaged, key tokens summed.
                        Some(w) => loss::attention_mse(
                            &loss::pool_attention(s, &w.student)?,
                            &loss::pool_attention(ta, &w.teacher)?,
                            &w.mask,
                        )?,
                        None => loss::attention_mse(s, ta, x.mask)?,
                    };
                    sum = Some(match sum {
                        Some(a) => (a + v)?,
                        None => v,
                    });
                }
                mean_of(sum, pairs.len())
            }
            Bound::Relations {
                student_layer,
                teacher_layer,
                heads,
                relations,
            } => {
                let t = teacher()?;
                let s = layer(&x.student.qkv, student_layer - 1, "student Q/K/V")?;
                let tq = layer(&t.qkv, teacher_layer - 1, "teacher Q/K/V")?;
                let pick = |q: &modeling::Qkv, r: Relation| match r {
                    Relation::Qq => q.q.clone(),
                    Relation::Kk => q.k.clone(),
                    Relation::Vv => q.v.clone(),
                };
                let ss: Vec<Tensor> = relations.iter().map(|&r| pick(s, r)).collect();
                let ts: Vec<Tensor> = relations.iter().map(|&r| pick(tq, r)).collect();
                // Different tokenizers: relations between words, from per-word means of Q/K/V.
                let (ss, ts, mask) = match x.words {
                    Some(w) => (
                        ss.iter()
                            .map(|q| loss::pool_words(q, &w.student))
                            .collect::<Result<Vec<_>>>()?,
                        ts.iter()
                            .map(|q| loss::pool_words(q, &w.teacher))
                            .collect::<Result<Vec<_>>>()?,
                        &w.mask,
                    ),
                    None => (ss, ts, x.mask),
                };
                let sr: Vec<&Tensor> = ss.iter().collect();
                let tr: Vec<&Tensor> = ts.iter().collect();
                loss::minilm_relations(&sr, &tr, mask, *heads)
            }
        }
    }

    /// Whether the checkpoint needs `objective.safetensors` (projections or running magnitudes).
    pub fn has_state(&self) -> bool {
        self.balance || !self.named_vars().is_empty()
    }

    /// Saves the projections and the running magnitudes (as f64, so a resumed run is bit-identical).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut t: HashMap<String, Tensor> = self
            .named_vars()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect();
        let ema: Vec<f64> = self.ema.iter().map(|e| e.unwrap_or(f64::NAN)).collect();
        t.insert("balance_ema".into(), Tensor::new(ema, &Device::Cpu)?);
        Ok(modeling::save_tensors(&t, path)?)
    }

    /// Restores what `save` wrote; every projection must be present with its shape.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let dev = self
            .named_vars()
            .first()
            .map(|(_, v)| v.device().clone())
            .unwrap_or(Device::Cpu);
        let t = candle_core::safetensors::load(path, &dev)
            .map_err(|e| Error::file(path, e.to_string()))?;
        for (name, var) in self.named_vars() {
            let src = t
                .get(&name)
                .filter(|x| x.dims() == var.dims())
                .ok_or_else(|| Error::file(path, format!("missing or misshapen `{name}`")))?;
            var.set(src)?;
        }
        let ema = t
            .get("balance_ema")
            .ok_or_else(|| Error::file(path, "missing `balance_ema`"))?
            .to_vec1::<f64>()?;
        if ema.len() != self.ema.len() {
            return Err(Error::file(
                path,
                "balance_ema belongs to another term list",
            ));
        }
        self.ema = ema
            .into_iter()
            .map(|v| if v.is_nan() { None } else { Some(v) })
            .collect();
        Ok(())
    }
}

fn key_error(e: terms::KeyError) -> Error {
    Error::Msg(e.to_string())
}

fn layer<'a, T>(v: &'a [T], i: usize, what: &str) -> Result<&'a T> {
    v.get(i)
        .ok_or_else(|| Error::Msg(format!("{what}: index {i} of {} missing", v.len())))
}

fn mean_of(sum: Option<Tensor>, n: usize) -> Result<Tensor> {
    let s = sum.ok_or_else(|| Error::Msg("a layer map with no pairs".into()))?;
    Ok((s / n as f64)?)
}

/// A linear map `in -> out` with bias (HF-style `weight` [out, in], `bias` [out]); zeros until `init`.
fn projection(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints((out_dim, in_dim), "weight", candle_nn::Init::Const(0.))?;
    let b = vb.get_with_hints(out_dim, "bias", candle_nn::Init::Const(0.))?;
    Ok(Linear::new(w, Some(b)))
}
