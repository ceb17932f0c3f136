//! `GET /metrics`: the server's counters in Prometheus' text format (version 0.0.4): requests by route and
//! status code, the latency of `/predict` and the examples per forward as histograms, and the inference
//! and connection counters of `/stats`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::batch::Stats;

/// A Prometheus histogram: counts per bucket (each bucket counted alone, summed when written), the sum and
/// the count.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// The sum, in millionths of the unit (atomics hold integers).
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v * 1e6).round() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {}", self.count.load(Ordering::Relaxed));
    }
}

/// Seconds, from a millisecond to ten seconds.
const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Examples per forward, powers of two.
pub const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// What the HTTP layer counts.
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(LATENCY_BOUNDS),
        }
    }
}

impl Metrics {
    fn record(&self, route: &str, status: u16, took: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), status)).or_default() += 1;
        }
        if route == "/predict" {
            self.latency.observe(took.as_secs_f64());
        }
    }

    /// The text of `/metrics`.
    pub fn render(&self, stats: &Stats) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP distill_requests_total HTTP requests answered, by route and status code.\n\
             # TYPE distill_requests_total counter\n",
        );
        if let Ok(m) = self.requests.lock() {
            for ((route, code), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "distill_requests_total{{route=\"{route}\",code=\"{code}\"}} {n}"
                );
            }
        }
        self.latency.write(
            &mut out,
            "distill_request_duration_seconds",
            "Time from a /predict request's arrival to its answer.",
        );
        stats.batch_sizes.write(
            &mut out,
            "distill_batch_size",
            "Examples per forward of the model.",
        );
        for (name, help, value) in stats.counters() {
            let _ = writeln!(
                out,
                "# HELP distill_{name}_total {help}\n# TYPE distill_{name}_total counter\ndistill_{name}_total {value}"
            );
        }
        out
    }
}

/// Middleware over the routes: counts each request by route and status, and times `/predict`.
pub async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let t0 = Instant::now();
    let response = next.run(req).await;
    m.record(&route, response.status().as_u16(), t0.elapsed());
    response
}
