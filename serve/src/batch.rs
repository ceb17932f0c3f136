//! The inference thread of `distill serve`: collects queued requests into one batch (up to `max_batch`
//! examples, waiting at most `max_wait` after the first), runs it through the model and answers each
//! request. Every forward holds at most `max_batch` examples: a single request larger than that is run
//! (and counted in `/stats` and the batch-size histogram) as several forwards.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use modeling::Encoded;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::histogram::{Histogram, BATCH_BOUNDS};
use crate::model::Served;

/// One request: its tokenised inputs and where its rows (logits or embeddings, or an error message) go.
pub struct Job {
    pub enc: Vec<Encoded>,
    pub reply: oneshot::Sender<std::result::Result<Vec<Vec<f32>>, String>>,
    /// Tests only (`DISTILL_SERVE_FAULT`): a forward that holds this request fails, as a model error would.
    pub fault: bool,
}

/// Counters since start, for `/stats` and `/metrics`: `batches < requests` shows that requests shared
/// forwards.
pub struct Stats {
    requests: AtomicU64,
    batches: AtomicU64,
    examples: AtomicU64,
    largest_batch: AtomicU64,
    failed_batches: AtomicU64,
    /// Requests answered with an error by a failed forward.
    failed_requests: AtomicU64,
    pub(super) connections: AtomicU64,
    pub(super) refused_connections: AtomicU64,
    pub(super) accept_errors: AtomicU64,
    /// Examples per forward.
    pub(super) batch_sizes: Histogram,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            examples: AtomicU64::new(0),
            largest_batch: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            failed_requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            batch_sizes: Histogram::new(BATCH_BOUNDS),
        }
    }
}

impl Stats {
    /// (name, help, value) of each counter, for `/metrics`.
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 8] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "inference_requests",
                "Requests run through the model.",
                get(&self.requests),
            ),
            (
                "forwards",
                "Forwards of the model (batches).",
                get(&self.batches),
            ),
            (
                "examples",
                "Examples run through the model.",
                get(&self.examples),
            ),
            (
                "failed_forwards",
                "Forwards that failed.",
                get(&self.failed_batches),
            ),
            (
                "failed_requests",
                "Requests answered with an error by a failed forward.",
                get(&self.failed_requests),
            ),
            (
                "connections",
                "Connections accepted.",
                get(&self.connections),
            ),
            (
                "refused_connections",
                "Connections refused past --max-connections.",
                get(&self.refused_connections),
            ),
            (
                "accept_errors",
                "Failed accepts (out of descriptors).",
                get(&self.accept_errors),
            ),
        ]
    }

    pub fn json(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "requests": get(&self.requests),
            "batches": get(&self.batches),
            "examples": get(&self.examples),
            "largest_batch": get(&self.largest_batch),
            "failed_batches": get(&self.failed_batches),
            "failed_requests": get(&self.failed_requests),
            "connections": get(&self.connections),
            "refused_connections": get(&self.refused_connections),
            "accept_errors": get(&self.accept_errors),
        })
    }
}

/// Starts the inference thread; it returns once every sender of `rx` is gone and the queue is drained.
pub fn spawn(
    model: Arc<Served>,
    rx: mpsc::Receiver<Job>,
    max_batch: usize,
    max_wait: Duration,
    stats: Arc<Stats>,
) -> Result<JoinHandle<()>> {
    // The thread's own timer for the batching wait: it does not depend on the server's runtime, which
    // may be gone first when shutdown gives up on stuck connections.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("starting the batching timer")?;
    std::thread::Builder::new()
        .name("inference".into())
        .spawn(move || {
            let mut queue = Queue {
                rx,
                rt,
                carried: None,
            };
            while let Some(jobs) = queue.next_batch(max_batch, max_wait) {
                run_batch(&model, jobs, max_batch, &stats);
            }
        })
        .context("starting the inference thread")
}

struct Queue {
    rx: mpsc::Receiver<Job>,
    /// Drives the timer that bounds the wait for more requests.
    rt: tokio::runtime::Runtime,
    /// A request that did not fit in the last batch: it opens the next one.
    carried: Option<Job>,
}

impl Queue {
    /// The next batch: blocks for its first request, then takes what arrives before `max_wait` is up
    /// while the total stays within `max_batch` examples. None once the queue is closed and empty.
    fn next_batch(&mut self, max_batch: usize, max_wait: Duration) -> Option<Vec<Job>> {
        let first = match self.carried.take() {
            Some(j) => j,
            None => self.rx.blocking_recv()?,
        };
        let deadline = tokio::time::Instant::from_std(Instant::now() + max_wait);
        let mut n = first.enc.len();
        let mut jobs = vec![first];
        while n < max_batch {
            let next = match self.rx.try_recv() {
                Ok(j) => Some(j),
                Err(mpsc::error::TryRecvError::Empty) => {
                    let rx = &mut self.rx;
                    // None on timeout or once the queue is closed.
                    self.rt
                        .block_on(async { tokio::time::timeout_at(deadline, rx.recv()).await })
                        .ok()
                        .flatten()
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            let Some(job) = next else { break };
            if n + job.enc.len() > max_batch {
                self.carried = Some(job);
                break;
            }
            n += job.enc.len();
            jobs.push(job);
        }
        Some(jobs)
    }
}

/// One forward over every request of `jobs` (a single request larger than `max_batch` takes several, see
/// [`forward`]), then each request gets its rows. When the forward fails (an error, or a panic inside candle) and the
/// batch holds several requests, each is run again alone, so that only the requests that fail by
/// themselves get the error and the others sharing their batch are answered.
fn run_batch(model: &Served, mut jobs: Vec<Job>, max_batch: usize, stats: &Stats) {
    // Clients that gave up (their handler was dropped) need no forward.
    jobs.retain(|j| !j.reply.is_closed());
    if jobs.is_empty() {
        return;
    }
    let sizes: Vec<usize> = jobs.iter().map(|j| j.enc.len()).collect();
    let enc: Vec<Encoded> = jobs
        .iter_mut()
        .flat_map(|j| std::mem::take(&mut j.enc))
        .collect();
    stats
        .requests
        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
    stats
        .examples
        .fetch_add(enc.len() as u64, Ordering::Relaxed);
    let fault = jobs.iter().any(|j| j.fault);
    match forward(model, &enc, fault, max_batch, stats) {
        Ok(rows) => answer(jobs, &sizes, rows),
        Err(msg) if jobs.len() == 1 => fail(jobs, &msg, stats),
        Err(_) => {
            let mut start = 0;
            for (job, k) in jobs.into_iter().zip(sizes) {
                let part = &enc[start..start + k];
                start += k;
                match forward(model, part, job.fault, max_batch, stats) {
                    Ok(rows) => answer(vec![job], &[k], rows),
                    Err(msg) => fail(vec![job], &msg, stats),
                }
            }
        }
    }
}

/// The rows (logits or embeddings) of `enc`, in order, from forwards of at most `max_batch` examples each, so that the
/// counters see the forwards the model really runs; the first that fails fails them all (their rows
/// belong to one request, or to a batch that is then rerun request by request).
fn forward(
    model: &Served,
    enc: &[Encoded],
    fault: bool,
    max_batch: usize,
    stats: &Stats,
) -> std::result::Result<Vec<Vec<f32>>, String> {
    let mut rows = Vec::with_capacity(enc.len());
    for chunk in enc.chunks(max_batch.max(1)) {
        rows.extend(forward_one(model, chunk, fault, stats)?);
    }
    Ok(rows)
}

/// The rows of `enc`, in order, from one forward; `fault` fails it on purpose.
fn forward_one(
    model: &Served,
    enc: &[Encoded],
    fault: bool,
    stats: &Stats,
) -> std::result::Result<Vec<Vec<f32>>, String> {
    let n = enc.len() as u64;
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.largest_batch.fetch_max(n, Ordering::Relaxed);
    stats.batch_sizes.observe(n as f64);
    let out = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if fault {
            anyhow::bail!("injected fault ({})", crate::FAULT_VAR);
        }
        // `enc` already fits one forward: the model does not split it again.
        model.rows(enc)
    }));
    let result = match out {
        Ok(Ok(rows)) if rows.len() == enc.len() => Ok(rows),
        Ok(Ok(rows)) => Err(format!(
            "{} logit rows for {} inputs",
            rows.len(),
            enc.len()
        )),
        Ok(Err(e)) => Err(format!("inference failed: {e:#}")),
        Err(_) => Err("inference panicked".to_string()),
    };
    if let Err(msg) = &result {
        tracing::error!("error: {msg}");
        stats.failed_batches.fetch_add(1, Ordering::Relaxed);
    }
    result
}

/// Sends each request its rows. A client may have gone meanwhile: its send fails, and there is nothing
/// to do about it.
fn answer(jobs: Vec<Job>, sizes: &[usize], rows: Vec<Vec<f32>>) {
    let mut rows = rows.into_iter();
    for (job, &k) in jobs.into_iter().zip(sizes) {
        let _ = job.reply.send(Ok(rows.by_ref().take(k).collect()));
    }
}

fn fail(jobs: Vec<Job>, msg: &str, stats: &Stats) {
    stats
        .failed_requests
        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
    for job in jobs {
        let _ = job.reply.send(Err(msg.to_string()));
    }
}
