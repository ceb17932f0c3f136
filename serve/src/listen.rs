//! The accept loop of `distill serve`, built to survive its clients. Each connection is one of hyper's
//! HTTP/1 connections in a task of its own, with a header-read deadline: a head must arrive within
//! `--read-timeout-secs`, counted from the connection's start or from the end of its previous answer, so
//! a client that trickles its head byte by byte, stalls half-way, or holds a kept-alive connection open
//! and silent is closed at the deadline. (The body's own deadline is in the handler.) At most
//! `--max-connections` are open at once, under the open-file limit: past the cap a new connection gets a
//! 503 and is closed at once, never left waiting. Accept errors (out of descriptors) are counted and the
//! loop goes on. SIGINT/SIGTERM stop accepting and let open connections finish, for `SHUTDOWN_GRACE`.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::batch::Stats;

/// After SIGINT/SIGTERM, how long open connections may take to finish before the server exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Descriptors kept for everything but connections: the model files, the listener, stdio, the runtime.
const RESERVED_FILES: u64 = 64;

/// What bounds each client.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub read_timeout: Duration,
}

/// Raises the soft open-file limit as far as the hard one allows, and returns the connection cap that fits
/// under it: `asked`, or less (with a note) where the limit is lower.
pub fn connection_cap(asked: usize) -> usize {
    let soft = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let fit = usize::try_from(soft.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(usize::MAX);
    if asked > fit {
        tracing::warn!(
            "serve: --max-connections {asked} does not fit under the open-file limit ({soft}); using {fit}"
        );
        return fit;
    }
    asked
}

/// Serves `app` on `listener` until `shutdown` completes; true once every connection has finished, false
/// if some were still open `SHUTDOWN_GRACE` after it.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(());
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted: the listener
                    // is fine; wait a moment so that a full descriptor table does not spin the loop.
                    if stats.accept_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!("serve: accepting a connection failed ({e}); counted in /stats from now on");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.refused_connections.fetch_add(1, Ordering::Relaxed);
            refuse(&stream);
            continue;
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let (app, mut stop) = (app.clone(), stop_rx.clone());
        tasks.spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.read_timeout);
            let conn =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
            let mut conn = pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.changed() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(());
    let drained = async { while tasks.join_next().await.is_some() {} };
    tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_ok()
}

/// Answers a connection past the cap with a 503 (as far as the socket takes it without waiting) and
/// closes it.
fn refuse(stream: &TcpStream) {
    let body = r#"{"error": "too many open connections (--max-connections); try again shortly"}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n\
         retry-after: 1\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.try_write(format!("{head}{body}").as_bytes());
}
