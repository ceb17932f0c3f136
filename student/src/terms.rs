//! The distillation objective as configured: a list of loss terms, each with a weight and a weight
//! schedule, the temperature schedules of TextBrewer (Yang et al. 2020, `textbrewer/schedulers.py`), and
//! the checks that tie a term to the two models (layer indices, head counts, widths). The YAML section
//! `distill:` deserializes into these types; `objective` runs them.

use serde::{Deserialize, Serialize};
use teacher::EncoderConfig;

/// What a term compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TermKind {
    /// Soft cross-entropy with the teacher's logits at a temperature (MSE for regression).
    Kd,
    /// The task loss on gold labels (CE, or MSE for regression).
    Ce,
    /// MSE between student and teacher logits.
    LogitsMse,
    /// MSE between mapped hidden states, padding masked.
    HiddenMse,
    /// 1 - cosine between mapped hidden states (DistilBERT), padding masked.
    HiddenCosine,
    /// MSE between mapped attention probabilities (TinyBERT), padding masked.
    AttentionMse,
    /// MiniLMv2 self-attention relations of one layer pair.
    MinilmRelations,
}

impl TermKind {
    pub fn name(self) -> &'static str {
        match self {
            TermKind::Kd => "kd",
            TermKind::Ce => "ce",
            TermKind::LogitsMse => "logits_mse",
            TermKind::HiddenMse => "hidden_mse",
            TermKind::HiddenCosine => "hidden_cosine",
            TermKind::AttentionMse => "attention_mse",
            TermKind::MinilmRelations => "minilm_relations",
        }
    }

    /// Needs per-token teacher states, so a teacher forward pass inside the training step.
    pub fn token_level(self) -> bool {
        matches!(
            self,
            TermKind::HiddenMse
                | TermKind::HiddenCosine
                | TermKind::AttentionMse
                | TermKind::MinilmRelations
        )
    }

    /// Needs the teacher's logits (cached targets, or the online teacher's).
    pub fn uses_teacher_logits(self) -> bool {
        matches!(self, TermKind::Kd | TermKind::LogitsMse)
    }

    fn has_layer_map(self) -> bool {
        matches!(
            self,
            TermKind::HiddenMse | TermKind::HiddenCosine | TermKind::AttentionMse
        )
    }
}

/// A term's weight over training, as a factor of `weight` at progress `p = step / total_steps`
/// (TextBrewer's `linear_growth_weight_scheduler` / `linear_decay_weight_scheduler`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightSchedule {
    #[default]
    Constant,
    /// `p`: from 0 to the full weight.
    LinearGrowth,
    /// `1 - p`: from the full weight to 0.
    LinearDecay,
}

impl WeightSchedule {
    pub fn factor(self, progress: f64) -> f64 {
        let p = progress.clamp(0.0, 1.0);
        match self {
            WeightSchedule::Constant => 1.0,
            WeightSchedule::LinearGrowth => p,
            WeightSchedule::LinearDecay => 1.0 - p,
        }
    }
}

/// The temperature of a `kd` term, per example, from the detached logits (Wen et al. 2019,
/// arXiv:1911.07471, as TextBrewer implements it in `schedulers.py`):
/// - `flsw`: `w_i = (1 - cos(s_i, t_i))^gamma`, `T_i = T + beta (mean(w) - w_i)`: examples the student
///   already matches (small w) get a higher temperature, hard ones a lower.
/// - `cwsm`: `w_i = 1 / (max softmax(s_i) + 1e-3)`, `T_i = T + beta (mean(w) - w_i)`: confident student
///   predictions get a higher temperature.
///
/// TextBrewer does not guard the result; here it is floored at `MIN_TEMPERATURE` so a large beta cannot
/// make a temperature zero or negative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemperatureSchedule {
    #[default]
    Constant,
    Flsw,
    Cwsm,
}

pub const MIN_TEMPERATURE: f64 = 0.01;

/// Which MiniLMv2 relation: queries with queries, keys with keys, values with values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Relation {
    Qq,
    Kk,
    Vv,
}

fn one() -> f64 {
    1.0
}
fn is_constant(s: &WeightSchedule) -> bool {
    *s == WeightSchedule::Constant
}

/// One entry of `distill.terms`. Keys a kind does not use are refused by `validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermSpec {
    pub kind: TermKind,
    #[serde(default = "one")]
    pub weight: f64,
    #[serde(default, skip_serializing_if = "is_constant")]
    pub schedule: WeightSchedule,
    /// kd: overrides `distill.temperature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// kd: overrides `distill.temperature_schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_schedule: Option<TemperatureSchedule>,
    /// hidden_mse, hidden_cosine, attention_mse: `[[student, teacher], ...]` layer pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_map: Option<Vec<[usize; 2]>>,
    /// minilm_relations: the layers whose Q/K/V are compared (default: the last of each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student_layer: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_layer: Option<usize>,
    /// minilm_relations: heads the Q/K/V vectors are split into (default: the teacher's head count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation_heads: Option<usize>,
    /// minilm_relations: default all three.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relations: Option<Vec<Relation>>,
}

impl TermSpec {
    /// A term of `kind` with `weight` and every option at its default.
    pub fn new(kind: TermKind, weight: f64) -> Self {
        Self {
            kind,
            weight,
            schedule: WeightSchedule::Constant,
            temperature: None,
            temperature_schedule: None,
            layer_map: None,
            student_layer: None,
            teacher_layer: None,
            relation_heads: None,
            relations: None,
        }
    }
}

/// A configuration error: the key (relative to the `distill` section, e.g. `terms[2].layer_map[0]`)
/// and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn err<T>(key: impl Into<String>, message: impl Into<String>) -> Result<T, KeyError> {
    Err(KeyError {
        key: key.into(),
        message: message.into(),
    })
}

/// The settings of the objective besides the shorthand `alpha_kd` / `temperature`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectiveConfig {
    /// The terms; empty means the shorthand `[kd: alpha_kd, ce: 1 - alpha_kd]`.
    pub terms: Vec<TermSpec>,
    pub temperature_schedule: TemperatureSchedule,
    /// flsw and cwsm: how far per-example temperatures move from the base temperature.
    pub temperature_beta: f64,
    /// flsw: the exponent of (1 - cos).
    pub temperature_gamma: f64,
    /// Scale each term by the inverse of an EMA of its detached value.
    pub balance: bool,
    /// Learning rate of the hidden-state projections (default: the training learning rate).
    pub projection_lr: Option<f64>,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            terms: Vec::new(),
            temperature_schedule: TemperatureSchedule::Constant,
            temperature_beta: 1.0,
            temperature_gamma: 1.0,
            balance: false,
            projection_lr: None,
        }
    }
}

impl ObjectiveConfig {
    /// The terms in force: the configured list, or the shorthand.
    pub fn resolved_terms(&self, alpha_kd: f64, temperature: f64) -> Vec<TermSpec> {
        if !self.terms.is_empty() {
            return self.terms.clone();
        }
        let mut kd = TermSpec::new(TermKind::Kd, alpha_kd);
        kd.temperature = Some(temperature);
        vec![kd, TermSpec::new(TermKind::Ce, 1.0 - alpha_kd)]
    }

    /// Checks what can be checked without the models; keys are relative to the `distill` section.
    pub fn validate(&self) -> Result<(), KeyError> {
        let finite = |v: f64| v.is_finite();
        if !(finite(self.temperature_beta) && self.temperature_beta >= 0.0) {
            return err(
                "temperature_beta",
                format!("must not be negative (got {})", self.temperature_beta),
            );
        }
        if !(finite(self.temperature_gamma) && self.temperature_gamma > 0.0) {
            return err(
                "temperature_gamma",
                format!("must be positive (got {})", self.temperature_gamma),
            );
        }
        if let Some(lr) = self.projection_lr {
            if !(lr > 0.0 && lr < 1.0) {
                return err("projection_lr", format!("must be within (0, 1) (got {lr})"));
            }
        }
        for (i, t) in self.terms.iter().enumerate() {
            validate_term(t, &format!("terms[{i}]"))?;
        }
        if !self.terms.is_empty() && self.terms.iter().all(|t| t.weight == 0.0) {
            return err("terms", "every weight is 0: nothing would be trained");
        }
        Ok(())
    }
}

fn validate_term(t: &TermSpec, key: &str) -> Result<(), KeyError> {
    let kind = t.kind.name();
    if !(t.weight.is_finite() && t.weight >= 0.0) {
        return err(
            format!("{key}.weight"),
            format!("must be a non-negative number (got {})", t.weight),
        );
    }
    let only = |present: bool, field: &str, kinds: &str| -> Result<(), KeyError> {
        if present {
            return err(
                format!("{key}.{field}"),
                format!("not used by a `{kind}` term (only by {kinds})"),
            );
        }
        Ok(())
    };
    let is_kd = t.kind == TermKind::Kd;
    let is_rel = t.kind == TermKind::MinilmRelations;
    only(!is_kd && t.temperature.is_some(), "temperature", "kd")?;
    only(
        !is_kd && t.temperature_schedule.is_some(),
        "temperature_schedule",
        "kd",
    )?;
    let maps = "hidden_mse, hidden_cosine and attention_mse";
    only(
        !t.kind.has_layer_map() && t.layer_map.is_some(),
        "layer_map",
        maps,
    )?;
    for (field, present) in [
        ("student_layer", t.student_layer.is_some()),
        ("teacher_layer", t.teacher_layer.is_some()),
        ("relation_heads", t.relation_heads.is_some()),
        ("relations", t.relations.is_some()),
    ] {
        only(!is_rel && present, field, "minilm_relations")?;
    }
    if let Some(temp) = t.temperature {
        if !(temp.is_finite() && temp > 0.0) {
            return err(
                format!("{key}.temperature"),
                format!("must be positive (got {temp})"),
            );
        }
    }
    if let Some(map) = &t.layer_map {
        if map.is_empty() {
            return err(format!("{key}.layer_map"), "must list at least one pair");
        }
    }
    if t.relation_heads == Some(0) {
        return err(format!("{key}.relation_heads"), "must be positive");
    }
    if let Some(r) = &t.relations {
        if r.is_empty() {
            return err(
                format!("{key}.relations"),
                "must list at least one of qq, kk, vv",
            );
        }
        for (i, x) in r.iter().enumerate() {
            if r[..i].contains(x) {
                return err(
                    format!("{key}.relations[{i}]"),
                    format!("{x:?} is listed twice").to_lowercase(),
                );
            }
        }
    }
    Ok(())
}

/// A term tied to the two models: layer pairs resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Kd {
        temperature: f64,
        schedule: TemperatureSchedule,
    },
    Ce,
    LogitsMse,
    /// `(student, teacher)` hidden-state indices (0 = embeddings); widths (student, teacher).
    Hidden {
        pairs: Vec<(usize, usize)>,
        cosine: bool,
        widths: (usize, usize),
    },
    /// `(student, teacher)` layer numbers (1-based: the attention of layer l).
    Attention {
        pairs: Vec<(usize, usize)>,
    },
    Relations {
        student_layer: usize,
        teacher_layer: usize,
        heads: usize,
        relations: Vec<Relation>,
    },
}

/// The default layer map: student `i` with teacher `round(i * L_t / L_s)`, for `i` in `from..=L_s`.
pub fn uniform_map(
    student_layers: usize,
    teacher_layers: usize,
    from: usize,
) -> Vec<(usize, usize)> {
    let ls = student_layers.max(1);
    (from..=student_layers)
        .map(|i| (i, (2 * i * teacher_layers + ls) / (2 * ls)))
        .collect()
}

/// Ties each term to the models. `key` of an error is relative to `distill` (`terms[i]...`); with the
/// shorthand there is no list, and the shorthand's two terms cannot fail here.
pub fn bind(
    terms: &[TermSpec],
    defaults: &ObjectiveConfig,
    temperature: f64,
    student: &EncoderConfig,
    teacher: Option<&EncoderConfig>,
) -> Result<Vec<Bound>, KeyError> {
    terms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            bind_one(
                t,
                &format!("terms[{i}]"),
                defaults,
                temperature,
                student,
                teacher,
            )
        })
        .collect()
}

fn bind_one(
    t: &TermSpec,
    key: &str,
    defaults: &ObjectiveConfig,
    temperature: f64,
    student: &EncoderConfig,
    teacher: Option<&EncoderConfig>,
) -> Result<Bound, KeyError> {
    let teacher = || -> Result<&EncoderConfig, KeyError> {
        teacher.ok_or_else(|| KeyError {
            key: format!("{key}.kind"),
            message: format!(
                "`{}` compares per-token teacher states, but no teacher model was given",
                t.kind.name()
            ),
        })
    };
    let (sl, hs) = (student.num_hidden_layers, student.hidden_size);
    Ok(match t.kind {
        TermKind::Kd => Bound::Kd {
            temperature: t.temperature.unwrap_or(temperature),
            schedule: t
                .temperature_schedule
                .unwrap_or(defaults.temperature_schedule),
        },
        TermKind::Ce => Bound::Ce,
        TermKind::LogitsMse => Bound::LogitsMse,
        TermKind::HiddenMse | TermKind::HiddenCosine => {
            let tc = teacher()?;
            let pairs = layer_pairs(t, key, sl, tc.num_hidden_layers, 0)?;
            Bound::Hidden {
                pairs,
                cosine: t.kind == TermKind::HiddenCosine,
                widths: (hs, tc.hidden_size),
            }
        }
        TermKind::AttentionMse => {
            let tc = teacher()?;
            let (sh, th) = (student.num_attention_heads, tc.num_attention_heads);
            if sh != th {
                return err(
                    format!("{key}.kind"),
                    format!(
                        "attention_mse compares attention heads one to one, but the student has {sh} heads and the teacher {th} (set student.num_heads to {th}, or use minilm_relations, which allows different head counts)"
                    ),
                );
            }
            Bound::Attention {
                pairs: layer_pairs(t, key, sl, tc.num_hidden_layers, 1)?,
            }
        }
        TermKind::MinilmRelations => {
            let tc = teacher()?;
            let tl = tc.num_hidden_layers;
            let student_layer = t.student_layer.unwrap_or(sl);
            let teacher_layer = t.teacher_layer.unwrap_or(tl);
            check_layer(
                &format!("{key}.student_layer"),
                "student",
                student_layer,
                sl,
                1,
            )?;
            check_layer(
                &format!("{key}.teacher_layer"),
                "teacher",
                teacher_layer,
                tl,
                1,
            )?;
            let heads = t.relation_heads.unwrap_or(tc.num_attention_heads);
            for (who, w) in [("student", hs), ("teacher", tc.hidden_size)] {
                if heads == 0 || w % heads != 0 {
                    let k = if t.relation_heads.is_some() {
                        format!("{key}.relation_heads")
                    } else {
                        format!("{key}.relation_heads (default: the teacher's head count)")
                    };
                    return err(
                        k,
                        format!("{heads} does not divide the {who}'s hidden size {w}"),
                    );
                }
            }
            Bound::Relations {
                student_layer,
                teacher_layer,
                heads,
                relations: t
                    .relations
                    .clone()
                    .unwrap_or_else(|| vec![Relation::Qq, Relation::Kk, Relation::Vv]),
            }
        }
    })
}

fn layer_pairs(
    t: &TermSpec,
    key: &str,
    student_layers: usize,
    teacher_layers: usize,
    first: usize,
) -> Result<Vec<(usize, usize)>, KeyError> {
    let Some(map) = &t.layer_map else {
        return Ok(uniform_map(student_layers, teacher_layers, first)
            .into_iter()
            .map(|(s, te)| (s, te.max(first)))
            .collect());
    };
    for (j, [s, te]) in map.iter().enumerate() {
        let k = format!("{key}.layer_map[{j}]");
        check_layer(&k, "student", *s, student_layers, first)?;
        check_layer(&k, "teacher", *te, teacher_layers, first)?;
    }
    Ok(map.iter().map(|[s, te]| (*s, *te)).collect())
}

/// `first` is 0 for hidden states (0 = embeddings) and 1 for attention and Q/K/V (layers 1..=L).
fn check_layer(
    key: &str,
    who: &str,
    l: usize,
    layers: usize,
    first: usize,
) -> Result<(), KeyError> {
    if l < first || l > layers {
        let range = if first == 0 {
            format!("hidden states 0..={layers}, 0 = embeddings")
        } else {
            format!("layers 1..={layers}; the embeddings (0) have no attention")
        };
        return err(
            key,
            format!("{who} layer {l} does not exist (the {who} has {range})"),
        );
    }
    Ok(())
}

/// Per-example temperatures [b] for a kd term from the detached logits (`student`, `teacher` rows of
/// [b, c], flattened row-major), following TextBrewer's `flsw_temperature_scheduler` and
/// `cwsm_temperature_scheduler` (see `TemperatureSchedule`).
pub fn temperatures(
    schedule: TemperatureSchedule,
    base: f64,
    beta: f64,
    gamma: f64,
    student: &[Vec<f32>],
    teacher: &[Vec<f32>],
) -> Vec<f64> {
    let w: Vec<f64> = match schedule {
        TemperatureSchedule::Constant => return vec![base; student.len()],
        TemperatureSchedule::Flsw => student
            .iter()
            .zip(teacher)
            .map(|(s, t)| {
                let dot: f64 = s.iter().zip(t).map(|(a, b)| *a as f64 * *b as f64).sum();
                let ns: f64 = s.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
                let nt: f64 = t.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
                // All-zero logits have no direction: cos 0 rather than NaN. Rounding can push
                // 1 - cos a hair below 0, where a fractional power is NaN.
                (1.0 - dot / (ns * nt).max(1e-12)).max(0.0).powf(gamma)
            })
            .collect(),
        TemperatureSchedule::Cwsm => student
            .iter()
            .map(|s| {
                let m = s.iter().fold(f64::NEG_INFINITY, |m, x| m.max(*x as f64));
                let z: f64 = s.iter().map(|x| (*x as f64 - m).exp()).sum();
                // max softmax = exp(max - max) / z = 1 / z
                1.0 / (1.0 / z + 1e-3)
            })
            .collect(),
    };
    let mean = w.iter().sum::<f64>() / w.len().max(1) as f64;
    w.iter()
        .map(|wi| (base + (mean - wi) * beta).max(MIN_TEMPERATURE))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(a: f64, b: f64) -> Vec<Vec<f32>> {
        (0..2)
            .map(|r| {
                (0..3)
                    .map(|c| (((r * 3 + c) as f64 * a + b).sin() * 2.0) as f32)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn flsw_and_cwsm_match_textbrewer() {
        // textbrewer/schedulers.py, in torch 2.15 (float64), beta 1, gamma 2, base temperature 2:
        // seq = lambda shape, a, b: torch.sin(torch.arange(math.prod(shape)) * a + b).reshape(shape)
        // ls = seq((2, 3), .8, 0.) * 2; lt = seq((2, 3), .5, 1.) * 2
        // flsw_temperature_scheduler_builder(1, 2)(ls, lt, 2.)  # [1.988797290390353, 2.011202709609647]
        // cwsm_temperature_scheduler_builder(1)(ls, lt, 2.)     # [1.792291095588021, 2.207708904411979]
        let (s, t) = (rows(0.8, 0.0), rows(0.5, 1.0));
        let f = temperatures(TemperatureSchedule::Flsw, 2.0, 1.0, 2.0, &s, &t);
        let c = temperatures(TemperatureSchedule::Cwsm, 2.0, 1.0, 2.0, &s, &t);
        for (got, want) in f.iter().chain(&c).zip([
            1.988797290390353,
            2.011202709609647,
            1.792291095588021,
            2.207708904411979,
        ]) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        let k = temperatures(TemperatureSchedule::Constant, 3.0, 1.0, 2.0, &s, &t);
        assert_eq!(k, vec![3.0, 3.0]);
        // A huge beta is floored, never zero or negative.
        let f = temperatures(TemperatureSchedule::Cwsm, 1.0, 1e6, 1.0, &s, &t);
        assert!(f.iter().all(|&x| x >= MIN_TEMPERATURE));
    }

    #[test]
    fn weight_schedules() {
        assert_eq!(WeightSchedule::Constant.factor(0.3), 1.0);
        assert_eq!(WeightSchedule::LinearGrowth.factor(0.25), 0.25);
        assert_eq!(WeightSchedule::LinearDecay.factor(0.25), 0.75);
        assert_eq!(WeightSchedule::LinearDecay.factor(2.0), 0.0);
    }

    #[test]
    fn uniform_map_includes_the_embeddings_and_the_last_layer() {
        assert_eq!(uniform_map(2, 6, 0), vec![(0, 0), (1, 3), (2, 6)]);
        assert_eq!(uniform_map(4, 6, 1), vec![(1, 2), (2, 3), (3, 5), (4, 6)]);
        assert_eq!(uniform_map(3, 3, 0), vec![(0, 0), (1, 1), (2, 2), (3, 3)]);
    }

    fn model(layers: usize, hidden: usize, heads: usize) -> EncoderConfig {
        let mut c = EncoderConfig::tiny(100);
        c.num_hidden_layers = layers;
        c.hidden_size = hidden;
        c.num_attention_heads = heads;
        c
    }

    fn bind1(t: TermSpec, s: &EncoderConfig, te: &EncoderConfig) -> Result<Bound, KeyError> {
        bind(&[t], &ObjectiveConfig::default(), 2.0, s, Some(te)).map(|mut v| v.remove(0))
    }

    #[test]
    fn binding_checks_layers_heads_and_widths() {
        let (s, t) = (model(2, 32, 4), model(6, 48, 12));
        let mut h = TermSpec::new(TermKind::HiddenMse, 1.0);
        assert_eq!(
            bind1(h.clone(), &s, &t).unwrap(),
            Bound::Hidden {
                pairs: vec![(0, 0), (1, 3), (2, 6)],
                cosine: false,
                widths: (32, 48)
            }
        );
        h.layer_map = Some(vec![[0, 0], [2, 7]]);
        let e = bind1(h, &s, &t).unwrap_err();
        assert_eq!(e.key, "terms[0].layer_map[1]");
        assert!(e.message.contains("teacher layer 7"), "{e}");

        let a = TermSpec::new(TermKind::AttentionMse, 1.0);
        let e = bind1(a.clone(), &s, &t).unwrap_err();
        assert!(e.message.contains("4 heads and the teacher 12"), "{e}");
        let s12 = model(2, 48, 12);
        assert_eq!(
            bind1(a, &s12, &t).unwrap(),
            Bound::Attention {
                pairs: vec![(1, 3), (2, 6)]
            }
        );
        let mut a0 = TermSpec::new(TermKind::AttentionMse, 1.0);
        a0.layer_map = Some(vec![[0, 1]]);
        let e = bind1(a0, &s12, &t).unwrap_err();
        assert!(e.message.contains("no attention"), "{e}");

        // Relations: the default heads (teacher's 12) do not divide the student's 32.
        let mut r = TermSpec::new(TermKind::MinilmRelations, 1.0);
        let e = bind1(r.clone(), &s, &t).unwrap_err();
        assert!(e.key.starts_with("terms[0].relation_heads"), "{e}");
        assert!(e.message.contains("student's hidden size 32"), "{e}");
        r.relation_heads = Some(8);
        assert_eq!(
            bind1(r.clone(), &s, &t).unwrap(),
            Bound::Relations {
                student_layer: 2,
                teacher_layer: 6,
                heads: 8,
                relations: vec![Relation::Qq, Relation::Kk, Relation::Vv]
            }
        );
        r.teacher_layer = Some(0);
        assert_eq!(bind1(r, &s, &t).unwrap_err().key, "terms[0].teacher_layer");
        // Token-level terms need a teacher.
        let e = bind(
            &[TermSpec::new(TermKind::HiddenCosine, 1.0)],
            &ObjectiveConfig::default(),
            2.0,
            &s,
            None,
        )
        .unwrap_err();
        assert_eq!(e.key, "terms[0].kind");
    }

    #[test]
    fn static_validation_names_the_key() {
        let check = |t: TermSpec| {
            let c = ObjectiveConfig {
                terms: vec![TermSpec::new(TermKind::Ce, 1.0), t],
                ..Default::default()
            };
            c.validate().unwrap_err()
        };
        let e = check(TermSpec::new(TermKind::Kd, -1.0));
        assert_eq!(e.key, "terms[1].weight");
        let mut t = TermSpec::new(TermKind::Ce, 1.0);
        t.layer_map = Some(vec![[0, 0]]);
        let e = check(t);
        assert_eq!(e.key, "terms[1].layer_map");
        assert!(e.message.contains("not used by a `ce` term"), "{e}");
        let mut t = TermSpec::new(TermKind::MinilmRelations, 1.0);
        t.relations = Some(vec![Relation::Qq, Relation::Qq]);
        assert_eq!(check(t).key, "terms[1].relations[1]");
        let mut t = TermSpec::new(TermKind::HiddenMse, 1.0);
        t.temperature = Some(2.0);
        assert_eq!(check(t).key, "terms[1].temperature");
        let zero = ObjectiveConfig {
            terms: vec![TermSpec::new(TermKind::Ce, 0.0)],
            ..Default::default()
        };
        assert_eq!(zero.validate().unwrap_err().key, "terms");
    }

    #[test]
    fn shorthand_is_kd_and_ce() {
        let t = ObjectiveConfig::default().resolved_terms(0.3, 4.0);
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].kind, t[0].weight, t[0].temperature),
            (TermKind::Kd, 0.3, Some(4.0))
        );
        assert_eq!((t[1].kind, t[1].weight), (TermKind::Ce, 0.7));
    }
}
