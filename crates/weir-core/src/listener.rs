//! Accepting client connections, whatever protocol they speak: connection limits at accept,
//! one task per connection (tracked, for a graceful shutdown), a `conn{id, peer, principal}`
//! span around everything the connection logs, and a backoff when accepting fails.
//!
//! What a connection then speaks is the caller's: it hands `serve` the accepted stream.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::admission::Admission;
use crate::metrics::ConnectionMetrics;

/// What the accept loops of one process share.
pub struct Acceptor {
    admission: Arc<Admission>,
    metrics: ConnectionMetrics,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    next_connection: AtomicU64,
}

impl Acceptor {
    pub fn new(
        admission: Arc<Admission>,
        metrics: ConnectionMetrics,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Self> {
        Arc::new(Self { admission, metrics, shutdown, tracker, next_connection: AtomicU64::new(1) })
    }

    /// Accepts on `listener` (named `name` in logs and metrics) until shutdown. A connection
    /// over a limit is closed at once and counted; every other one is served by `serve` on a
    /// task of its own, and keeps its place in the limits until that task ends.
    pub async fn run<F, Fut>(self: Arc<Self>, listener: TcpListener, name: String, serve: F)
    where
        F: Fn(TcpStream, SocketAddr) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut backoff = Duration::ZERO;
        let mut last_warning: Option<Instant> = None;
        loop {
            let accepted = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::ZERO;
                    // Over the creation rate: this connection waits, and so do those behind
                    // it in the listener's backlog (as Kafka's acceptor does).
                    let wait = self.admission.pace();
                    if !wait.is_zero() {
                        self.metrics.delayed(&name);
                        tokio::select! {
                            _ = self.shutdown.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    // Refused before the connection costs more than its socket: no task, no
                    // buffers, no upstream connection.
                    let admitted = match self.admission.admit(peer.ip()) {
                        Ok(admitted) => admitted,
                        Err(refused) => {
                            self.metrics.refused(&name, refused.reason());
                            tracing::debug!(%peer, listener = %name, %refused, "connection refused");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
                    let span = tracing::info_span!("conn", id, %peer, principal = tracing::field::Empty);
                    // Boxed: moved into the task's future and awaited there, it would be
                    // stored twice in the task (the connection's largest allocation).
                    let connection = Box::pin(serve(stream, peer));
                    self.tracker.spawn(
                        async move {
                            connection.await;
                            drop(admitted);
                        }
                        .instrument(span),
                    );
                }
                Err(err) => {
                    // Out of file descriptors, typically: back off (10 ms doubling to 1 s)
                    // instead of spinning, keep accepting, and warn at most every 10 s.
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(%err, listener = %name, ?backoff, "accept failed; backing off");
                        last_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn serves_admitted_connections_and_closes_the_rest_at_accept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = ConnectionMetrics::default();
        let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
        let acceptor = Acceptor::new(Admission::new(1, 0), metrics.clone(), shutdown.clone(), tracker.clone());
        let (served_tx, mut served) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(acceptor.run(listener, "test".into(), move |stream, _| {
            let served_tx = served_tx.clone();
            async move {
                let _ = served_tx.send(());
                // Hold the place until the client goes.
                let mut stream = stream;
                let _ = stream.read(&mut [0u8; 1]).await;
            }
        }));
        let first = TcpStream::connect(addr).await.unwrap();
        served.recv().await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert_eq!(second.read(&mut [0u8; 1]).await.unwrap(), 0, "a connection over the limit was served");
        let refused = crate::metrics::RefusedLabels { listener: "test".into(), reason: "total_limit" };
        assert_eq!(metrics.refused.get_or_create(&refused).get(), 1);
        drop(first);
        tracker.close();
        shutdown.cancel();
    }
}
