//! Mixed-precision training: the `precision` setting, and the dynamic loss scale that f16 needs.
//!
//! The weights, their gradients and the AdamW moments stay f32 whatever the setting (the master
//! weights); `bf16` and `f16` set the dtype of the encoder's matrix products (`Encoder::set_compute_dtype`).
//! bf16 has f32's exponent range and trains as is. f16's smallest normal number is 6e-5, so small
//! gradients would flush to zero: the loss is multiplied by a large scale before backward and the
//! gradients divided by it in the update, and a step whose gradients overflowed is skipped and the
//! scale halved, as PyTorch's `GradScaler` does (same initial scale, factors and growth interval).

use candle_core::DType;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The dtype of the matrix products in training.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    #[serde(alias = "f32")]
    Fp32,
    Bf16,
    #[serde(alias = "fp16")]
    F16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::Fp32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    /// The default (for `skip_serializing_if`: a default setting leaves stamps as they were).
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// Says on stderr when the setting slows training down: candle's CPU backend has no half-precision
    /// matrix kernels, so on the CPU bf16 and f16 train several times slower than fp32 (docs/performance.md).
    pub fn note_for(self, device: &candle_core::Device) {
        if self != Precision::Fp32 && device.is_cpu() {
            tracing::info!(
                "note: precision {} on the CPU is slower than fp32 (no half-precision CPU kernels); it \
                 is meant for GPUs",
                self.name()
            );
        }
    }
}

/// `GradScaler`'s defaults.
const INIT_SCALE: f64 = 65536.0;
const GROWTH_INTERVAL: usize = 2000;

/// The dynamic loss scale (1 and fixed unless the precision is f16). Saved with `last/`, so a resumed
/// run goes on with the scale the interrupted one had.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    pub scale: f64,
    /// Steps since the last overflow (the scale doubles after `GROWTH_INTERVAL` of them).
    pub good_steps: usize,
    pub dynamic: bool,
}

impl LossScale {
    pub fn new(precision: Precision) -> Self {
        let dynamic = precision == Precision::F16;
        Self {
            scale: if dynamic { INIT_SCALE } else { 1.0 },
            good_steps: 0,
            dynamic,
        }
    }

    /// Records a step's outcome: an overflow halves the scale, a run of good steps doubles it.
    pub fn update(&mut self, overflowed: bool) {
        if !self.dynamic {
            return;
        }
        if overflowed {
            self.scale *= 0.5;
            self.good_steps = 0;
        } else {
            self.good_steps += 1;
            if self.good_steps == GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        }
    }

    /// Whether non-finite gradients may still be an f16 overflow that a smaller scale cures; below
    /// a scale of 1 they are a real divergence, reported as such.
    pub fn may_skip(&self) -> bool {
        self.dynamic && self.scale > 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_halves_on_overflow_and_doubles_after_a_run_of_good_steps() {
        let mut s = LossScale::new(Precision::F16);
        assert_eq!(s.scale, 65536.0);
        s.update(true);
        assert_eq!((s.scale, s.good_steps), (32768.0, 0));
        for _ in 0..GROWTH_INTERVAL - 1 {
            s.update(false);
        }
        assert_eq!(s.scale, 32768.0);
        s.update(false);
        assert_eq!((s.scale, s.good_steps), (65536.0, 0));
    }

    #[test]
    fn fp32_and_bf16_never_scale() {
        for p in [Precision::Fp32, Precision::Bf16] {
            let mut s = LossScale::new(p);
            s.update(true);
            assert_eq!(s.scale, 1.0);
            assert!(!s.may_skip());
        }
    }

    #[test]
    fn precision_names_parse_with_their_aliases() {
        for (text, p) in [
            ("fp32", Precision::Fp32),
            ("f32", Precision::Fp32),
            ("bf16", Precision::Bf16),
            ("f16", Precision::F16),
            ("fp16", Precision::F16),
        ] {
            assert_eq!(
                serde_json::from_str::<Precision>(&format!("\"{text}\"")).unwrap(),
                p
            );
        }
        assert!(serde_json::from_str::<Precision>("\"int8\"").is_err());
    }
}
