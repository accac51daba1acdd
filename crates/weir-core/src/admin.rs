//! The admin HTTP endpoint: `/metrics` (OpenMetrics), `/healthz` (the process runs),
//! `/readyz` (the upstream answered), and the JSON reports a proxy adds (`/upstreams`). Kept
//! on hyper directly: a handful of routes do not need a router.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A JSON report served at a path of its own, made when asked.
pub type Report = Arc<dyn Fn() -> String + Send + Sync>;

/// What the admin endpoint reports on.
#[derive(Clone)]
pub struct AdminState {
    pub registry: Arc<Registry>,
    /// `true` once the proxy can serve (its upstream answered).
    pub ready: watch::Receiver<bool>,
    /// Live state beyond the metrics, by path (`/upstreams`: the brokers' health).
    pub reports: Vec<(&'static str, Report)>,
}

/// Binds the admin listener; serve it with [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves admin requests until `shutdown` fires.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: CancellationToken) {
    serve_http(listener, shutdown, "admin", move |req| {
        let response = route(&req, &state);
        async move { response }
    })
    .await
}

/// Serves HTTP/1.1 on `listener` with `handle`, one task per connection, until `shutdown`
/// (the admin endpoint here; the control plane's API too). `what` names it in logs.
pub async fn serve_http<F, Fut>(listener: TcpListener, shutdown: CancellationToken, what: &'static str, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::debug!(%err, what, "accept failed");
                    continue;
                }
            },
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = handle(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            if let Err(err) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
            {
                tracing::debug!(%err, %peer, what, "HTTP connection ended with an error");
            }
        });
    }
}

fn route(req: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let mut body = String::with_capacity(16 * 1024);
            match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
                Ok(()) => Response::builder()
                    .header("content-type", OPENMETRICS)
                    .body(Full::new(Bytes::from(body)))
                    .unwrap_or_default(),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed\n"),
            }
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if *state.ready.borrow() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready: upstream has not answered yet\n"),
        path => match state.reports.iter().find(|(at, _)| *at == path) {
            Some((_, report)) => Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(report())))
                .unwrap_or_default(),
            None => text(StatusCode::NOT_FOUND, "not found; try /metrics, /healthz or /readyz\n"),
        },
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// The local address a bound admin listener got (useful with port 0).
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
