//! `distill serve MODEL_DIR`: an HTTP JSON inference server for an exported model folder (the folders
//! `distill predict` reads), on the `inference` crate alone: it builds without the training crates.
//! `GET /health`, `GET /stats`, `GET /metrics`, and `POST /predict` for a classifier or `POST /embed`
//! (text-embeddings-inference's route) for an embedding model (a sentence-transformers or model2vec
//! folder: see `model`).
//!
//! Dynamic batching as in text-embeddings-inference: handlers tokenise their request and put it on one
//! queue; a single inference thread (a std thread: the forward is CPU-bound and blocking) takes the first
//! request, then whatever else arrives within `--max-wait-ms`, up to `--max-batch` examples, runs one
//! forward over all of them and answers each request through its oneshot. Concurrent requests thus share
//! forwards; `/stats` counts requests, batches and examples so that this can be checked. A request of more
//! than `--max-batch` texts runs alone, as several forwards of at most `--max-batch`.
//!
//! Every error is JSON `{"error": "..."}`: 400 for a body that is not JSON, 413 past `--max-body-bytes` or
//! `--max-texts`, 422 for JSON of the wrong shape or an empty (whitespace-only) input, 404/405 for unknown
//! routes and methods. SIGINT/SIGTERM
//! stop accepting, let in-flight requests finish, then exit 0.

mod batch;
mod histogram;
mod listen;
mod metrics;
mod model;
mod request;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use batch::{Job, Stats};
use inference::Runtime;
use model::Served;
pub use request::Inputs;
use request::{ApiError, Request};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Model folder (config.json, model.safetensors, tokenizer.json or vocab.txt).
    model_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one; the line `listening on http://ADDR` tells which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Longest input in tokens (longer inputs are truncated, as in `predict`).
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// Most examples in one forward; requests queued together share it.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// How long the inference thread waits for more requests after the first one of a batch.
    #[arg(long, default_value_t = 2)]
    max_wait_ms: u64,
    /// Most texts in one request (more: 413).
    #[arg(long, default_value_t = 64)]
    max_texts: usize,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Serve the model in dynamic int8 (as `predict --int8`). Results do not depend on batching:
    /// activations are quantized per token.
    #[arg(long)]
    int8: bool,
    /// What runs the model: our encoder, or the folder's ONNX graph in onnxruntime (as `predict`).
    #[arg(long, value_enum, default_value_t = Runtime::Candle)]
    runtime: Runtime,
    /// Most connections open at once; past it a new connection gets 503 and is closed at once. Lowered to
    /// fit under the process's open-file limit (raised to its hard limit at start).
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Seconds a client has to send a request's head (from connecting, or from its previous answer on a
    /// kept-alive connection: so also how long an idle connection stays open), and again its body.
    #[arg(long, default_value_t = 30)]
    read_timeout_secs: u64,
}

/// Tests only: a request with this text in an input makes its batch's forward fail (see `Job::fault`).
const FAULT_VAR: &str = "DISTILL_SERVE_FAULT";
/// Requests waiting for the inference thread; past this, handlers wait to enqueue (back-pressure).
const QUEUE_CAPACITY: usize = 1024;

/// What every handler shares.
struct AppState {
    model: Arc<Served>,
    queue: mpsc::Sender<Job>,
    stats: Arc<Stats>,
    metrics: Arc<metrics::Metrics>,
    model_dir: String,
    max_batch: usize,
    max_wait_ms: u64,
    max_texts: usize,
    max_body_bytes: usize,
    int8: bool,
    /// `candle`, or `onnxruntime (LIBRARY FILE)`.
    runtime: String,
    read_timeout: Duration,
    /// `DISTILL_SERVE_FAULT`, when set.
    fault: Option<String>,
}

pub fn run(a: &ServeArgs) -> Result<()> {
    for (flag, v) in [
        ("--max-batch", a.max_batch),
        ("--max-texts", a.max_texts),
        ("--max-body-bytes", a.max_body_bytes),
        ("--max-connections", a.max_connections),
        ("--read-timeout-secs", a.read_timeout_secs as usize),
    ] {
        if v == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    let model = Arc::new(Served::load(&a.model_dir, a.max_len, a.int8, a.runtime)?);
    // HTTP parsing and JSON are light next to the forward: a few async threads suffice; tokenising runs
    // on the blocking pool, sized alike.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 4);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .max_blocking_threads(threads)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let stats = Arc::new(Stats::default());
    let worker = batch::spawn(
        model.clone(),
        rx,
        a.max_batch,
        Duration::from_millis(a.max_wait_ms),
        stats.clone(),
    )?;
    let state = Arc::new(AppState {
        model,
        queue: tx,
        stats,
        metrics: Arc::new(metrics::Metrics::default()),
        model_dir: a.model_dir.display().to_string(),
        max_batch: a.max_batch,
        max_wait_ms: a.max_wait_ms,
        max_texts: a.max_texts,
        max_body_bytes: a.max_body_bytes,
        int8: a.int8,
        runtime: a.runtime.describe()?,
        read_timeout: Duration::from_secs(a.read_timeout_secs),
        fault: std::env::var(FAULT_VAR).ok().filter(|m| !m.is_empty()),
    });
    if !rt.block_on(serve(a, state))? {
        // Connections still open hold the queue: leave them and the inference thread to the exit.
        rt.shutdown_background();
        return Ok(());
    }
    // The router (and with it the queue's sender) is gone: the inference thread drains and stops.
    if worker.join().is_err() {
        bail!("the inference thread panicked");
    }
    Ok(())
}

fn router(state: Arc<AppState>) -> Router {
    let tracked = state.metrics.clone();
    Router::new()
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/metrics", get(prometheus))
        .route("/predict", post(predict))
        .route("/embed", post(embed))
        .route_layer(axum::middleware::from_fn_with_state(
            tracked,
            metrics::track,
        ))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .with_state(state)
}

/// Serves until a signal; true once every connection has finished, false if some were still open
/// `SHUTDOWN_GRACE` after it.
async fn serve(a: &ServeArgs, state: Arc<AppState>) -> Result<bool> {
    let addr = format!("{}:{}", a.host, a.port);
    let limits = listen::Limits {
        max_connections: listen::connection_cap(a.max_connections),
        read_timeout: state.read_timeout,
    };
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local: SocketAddr = listener.local_addr()?;
    // Handlers are in place before the address is announced: a signal right after it is not lost.
    let signals = Signals::new()?;
    let shutdown = async move {
        let name = signals.recv().await;
        tracing::info!("{name}: finishing in-flight requests");
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{local}")?;
        out.flush()?;
    }
    let stats = state.stats.clone();
    let finished = listen::serve(listener, router(state), limits, stats, shutdown).await;
    if !finished {
        tracing::warn!(
            "connections still open {:?} after the signal: exiting anyway",
            listen::SHUTDOWN_GRACE
        );
    }
    Ok(finished)
}

/// SIGINT and SIGTERM, registered at once (tokio registers a handler when the stream is made).
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> Result<Self> {
        Ok(Self {})
    }

    /// Waits for the first signal and names it.
    #[cfg(unix)]
    async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }

    #[cfg(not(unix))]
    async fn recv(self) -> &'static str {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(_) => std::future::pending().await,
        }
    }
}

async fn health(State(s): State<Arc<AppState>>) -> Json<Value> {
    let mut h = json!({
        "status": "ok",
        "model_dir": s.model_dir,
        "max_len": s.model.max_len(),
        "max_batch": s.max_batch,
        "max_wait_ms": s.max_wait_ms,
        "max_texts": s.max_texts,
        "max_body_bytes": s.max_body_bytes,
        "int8": s.int8,
        "runtime": s.runtime,
        "stats": s.stats.json(),
    });
    if let (Some(h), Value::Object(d)) = (h.as_object_mut(), s.model.describe()) {
        h.extend(d);
    }
    Json(h)
}

async fn stats(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(s.stats.json())
}

async fn prometheus(State(s): State<Arc<AppState>>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(&s.stats),
    )
}

/// The request body, within `--max-body-bytes` and received within the read deadline.
async fn read_body(s: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let read = tokio::time::timeout(s.read_timeout, axum::body::to_bytes(body, s.max_body_bytes));
    match read.await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_length_limit(&e) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body larger than {} bytes (--max-body-bytes)",
                s.max_body_bytes
            ),
        )),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("reading the body: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {} s (--read-timeout-secs)",
                s.read_timeout.as_secs()
            ),
        )),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The inputs of a `/predict` body, checked against `max_texts`; else the HTTP status and message: 400 for a
/// body that is not JSON, 422 for JSON of the wrong shape, 413 for too many texts. Public for the fuzz target.
pub fn parse_request(body: &[u8], max_texts: usize) -> Result<Inputs, (u16, String)> {
    request::parse(body, max_texts)
        .map(|r| r.inputs)
        .map_err(|e| (e.status.as_u16(), e.message))
}

async fn predict(State(s): State<Arc<AppState>>, body: Body) -> Result<Json<Value>, ApiError> {
    let Served::Classifier(predictor) = &*s.model else {
        return Err(ApiError::unprocessable(
            "this server runs an embedding model: POST /embed",
        ));
    };
    let labels = predictor.labels.clone();
    let body = read_body(&s, body).await?;
    let Request { inputs, shape } = request::parse(&body, s.max_texts)?;
    let rows = infer(&s, inputs, shape.truncates()).await?;
    Ok(Json(request::answer(shape, &rows, &labels)))
}

/// text-embeddings-inference's `/embed`: one embedding per input, a list of lists.
async fn embed(State(s): State<Arc<AppState>>, body: Body) -> Result<Json<Value>, ApiError> {
    if matches!(&*s.model, Served::Classifier(_)) {
        return Err(ApiError::unprocessable(
            "this server runs a classifier: POST /predict",
        ));
    }
    let body = read_body(&s, body).await?;
    let r = request::parse_embed(&body, s.max_texts)?;
    let inputs = r.inputs.into_iter().map(|t| (t, None)).collect();
    let mut rows = infer(&s, inputs, r.truncate).await?;
    if r.normalize {
        for row in &mut rows {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|x| *x /= norm);
        }
    }
    Ok(Json(json!(rows)))
}

/// Tokenises `inputs`, refusing one past `--max-len` unless `truncate`, queues them and waits for their rows.
async fn infer(s: &AppState, inputs: Inputs, truncate: bool) -> Result<Vec<Vec<f32>>, ApiError> {
    let fault = s.fault.as_deref().is_some_and(|m| {
        inputs
            .iter()
            .any(|(a, b)| a.contains(m) || b.as_deref().is_some_and(|b| b.contains(m)))
    });
    // Tokenising is CPU work proportional to the body: keep it off the async threads.
    let model = s.model.clone();
    let counted = tokio::task::spawn_blocking(move || {
        inputs
            .iter()
            .map(|(a, b)| model.encode_counted(a, b.as_deref()))
            .collect::<Result<Vec<_>>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokeniser task failed: {e}")))?
    .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    if !truncate {
        if let Some(i) = counted.iter().position(|(_, cut)| *cut) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "input {i} is longer than the {} tokens this server takes (--max-len); send \"truncate\": true to cut it",
                    s.model.max_len()
                ),
            ));
        }
    }
    let enc = counted.into_iter().map(|(e, _)| e).collect();
    let (reply, answer) = oneshot::channel();
    s.queue
        .send(Job { enc, reply, fault })
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    answer
        .await
        .map_err(|_| ApiError::internal("the inference thread stopped"))?
        .map_err(ApiError::internal)
}
