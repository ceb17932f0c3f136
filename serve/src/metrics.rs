//! `GET /metrics`: the server's counters in Prometheus' text format (version 0.0.4): requests by route and
//! status code, the latency of `/predict` and the examples per forward as histograms, and the inference
//! and connection counters of `/stats`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::batch::Stats;
use crate::histogram::Histogram;

/// Seconds, from a millisecond to ten seconds.
const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

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
