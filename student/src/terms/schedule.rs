//! Schedules: a term's weight over the run (TextBrewer's weight schedulers) and the per-example
//! temperatures of kd terms (TextBrewer's temperature schedulers, `textbrewer/schedulers.py`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A term's weight over training, as a factor of `weight` at progress `p = step / total_steps`
/// (TextBrewer's `linear_growth_weight_scheduler` / `linear_decay_weight_scheduler`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TemperatureSchedule {
    #[default]
    Constant,
    Flsw,
    Cwsm,
}

pub const MIN_TEMPERATURE: f64 = 0.01;

/// Per-example temperatures [b] for a kd term from the detached logits (`student`, `teacher`: the rows
/// of [b, c]), following TextBrewer's `flsw_temperature_scheduler` and
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
}
