//! The distillation objective as configured: a list of loss terms, each with a weight and a weight
//! schedule, the temperature schedules of TextBrewer (Yang et al. 2020, `textbrewer/schedulers.py`), and
//! the checks that tie a term to the two models (layer indices, head counts, widths). The YAML section
//! `distill:` deserializes into these types; `objective` runs them.

mod bind;
mod schedule;

pub use bind::{bind, uniform_map, Bound};
pub use schedule::{temperatures, TemperatureSchedule, WeightSchedule, MIN_TEMPERATURE};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a term compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

/// Which MiniLMv2 relation: queries with queries, keys with keys, values with values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TermSpec {
    pub kind: TermKind,
    /// The term's weight in the total loss.
    #[serde(default = "one")]
    pub weight: f64,
    /// How the weight changes over training (default constant).
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
    /// minilm_relations: the teacher's layer (default: its last).
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

#[cfg(test)]
mod tests {
    use super::*;

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
