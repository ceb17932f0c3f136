//! Batch-1 latency: tokenised input to logits back on the host, one example at a time, as `compare`,
//! `predict --time` and the bench measure it, summarised by the one percentile of the project.

use std::time::Instant;

use anyhow::Result;
use modeling::Encoded;
use serde::{Deserialize, Serialize};

use crate::engine::Forward;

/// Batch-1 forward passes timed per model (the first examples, in file order) ...
pub const LATENCY_EXAMPLES: usize = 200;
/// ... after this many untimed ones (first-call allocations, kernel loading on a GPU).
pub const LATENCY_WARMUP: usize = 10;

/// Batch-1 latency of a model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Timed examples.
    pub examples: usize,
}

impl Latency {
    /// p50 and p99 of `ms`, the times of single passes, in any order.
    pub fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        Self {
            p50_ms: percentile(&ms, 0.5),
            p99_ms: percentile(&ms, 0.99),
            examples: ms.len(),
        }
    }
}

/// p50 and p99 of batch-1 forward passes over the first `LATENCY_EXAMPLES` examples, after
/// `LATENCY_WARMUP` untimed ones. Reading the logits back waits for the device, so GPU time counts.
pub fn batch1_latency(model: &impl Forward, data: &[Encoded], pad: u32) -> Result<Latency> {
    let n = data.len().min(LATENCY_EXAMPLES);
    let warm = data.len().min(LATENCY_WARMUP);
    let mut ms = Vec::with_capacity(n);
    for (i, e) in data
        .iter()
        .take(warm)
        .chain(data.iter().take(n))
        .enumerate()
    {
        let t0 = Instant::now();
        model.logits(&[e], pad)?.to_vec2::<f32>()?;
        if i >= warm {
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(Latency::of(ms))
}

/// The `q`-quantile (q in [0, 1]) of ascending `sorted` values, interpolating linearly between order
/// statistics as numpy's default `np.percentile(x, 100 * q)` does; NaN when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    match sorted.get(i + 1) {
        Some(next) if frac > 0.0 => sorted[i] + frac * (next - sorted[i]),
        _ => sorted[i.min(last)],
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy() {
        // np.percentile([1, 2, 3, 4, 10], [0, 25, 50, 90, 97.5, 100])
        //   = [1.0, 2.0, 3.0, 7.6, 9.4, 10.0]
        let x = [1.0, 2.0, 3.0, 4.0, 10.0];
        for (q, want) in [
            (0.0, 1.0),
            (0.25, 2.0),
            (0.5, 3.0),
            (0.9, 7.6),
            (0.975, 9.4),
            (1.0, 10.0),
        ] {
            assert!((percentile(&x, q) - want).abs() < 1e-12, "q {q}");
        }
        assert!(percentile(&[], 0.5).is_nan());
        assert_eq!(percentile(&[3.0], 0.975), 3.0);
    }
}
