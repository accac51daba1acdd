//! One HTTP request to a service the sidecar depends on (a GET to a JWKS issuer or a schema
//! registry, a POST of spans to a trace collector): over HTTP/1.1, plain or TLS, its answer
//! bounded in size. One connection per request: what calls it caches the answers, or batches
//! what it sends. The caller bounds the time (`tokio::time::timeout`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

/// The system's CA bundle (Debian, Ubuntu, Alpine), for https URLs without a CA of their own.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a GET got no answer to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GetError(pub String);

/// An answer: its status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: hyper::StatusCode,
    pub body: Bytes,
}

/// The CA `ca` names, or the system's.
pub fn ca_or_system(ca: Option<&Path>) -> PathBuf {
    ca.map_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE), Path::to_owned)
}

/// GET `url` (`http://` or `https://`, the server checked against `ca`), accepting `accept`;
/// a body longer than `max_body` is an error.
pub async fn get(url: &str, accept: &str, ca: &Path, max_body: usize) -> Result<Answer, GetError> {
    send(hyper::Method::GET, url, &[("accept", accept)], Bytes::new(), ca, max_body).await
}

/// POST `body` of `content_type` to `url`, as [`get`] does a GET.
pub async fn post(url: &str, content_type: &str, body: Bytes, ca: &Path, max_body: usize) -> Result<Answer, GetError> {
    send(hyper::Method::POST, url, &[("content-type", content_type)], body, ca, max_body).await
}

/// POST `body` to `url` with these headers (a signed API call), as [`post`] does.
pub async fn post_with_headers(
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    ca: &Path,
    max_body: usize,
) -> Result<Answer, GetError> {
    send(hyper::Method::POST, url, headers, body, ca, max_body).await
}

/// What a request to `url` sends as its `Host` header (the host, and the port if the URL
/// names one): what a signature over the request's headers must cover.
pub fn host_header(url: &str) -> Result<String, GetError> {
    let uri: hyper::Uri = url.parse().map_err(|e| GetError(format!("not a URL: {e}")))?;
    uri.authority().map(|a| a.as_str().to_owned()).ok_or_else(|| GetError("the URL has no host".into()))
}

async fn send(
    method: hyper::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    ca: &Path,
    max_body: usize,
) -> Result<Answer, GetError> {
    let fail = |what: String| GetError(what);
    let uri: hyper::Uri = url.parse().map_err(|e| fail(format!("not a URL: {e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(fail("the URL must start with https:// or http://".into())),
    };
    let host = uri.host().ok_or_else(|| fail("the URL has no host".into()))?;
    let host = host.trim_matches(|c| c == '[' || c == ']').to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, uri.authority().map_or(host.as_str(), |a| a.as_str()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(http_body_util::Full::new(body)).map_err(|e| fail(e.to_string()))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| fail(format!("cannot connect: {e}")))?;
    if !https {
        return exchange(tcp, request, max_body).await;
    }
    let tls = crate::tls::client_config(&crate::tls::TlsOriginConfig {
        ca: ca.to_owned(),
        cert: None,
        key: None,
        reload_interval_ms: 0,
        workload_identity: false,
    })
    .map_err(|e| fail(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| fail(format!("bad host name: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| fail(format!("TLS handshake failed: {e}")))?;
    exchange(stream, request, max_body).await
}

async fn exchange<S>(
    stream: S,
    request: hyper::Request<http_body_util::Full<Bytes>>,
    max_body: usize,
) -> Result<Answer, GetError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let fail = |what: String| GetError(what);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| fail(format!("HTTP handshake failed: {e}")))?;
    let connection = tokio::spawn(connection);
    let outcome = async {
        let response = sender.send_request(request).await.map_err(|e| fail(format!("request failed: {e}")))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| fail(format!("reading the body failed: {e}")))?
            .to_bytes();
        Ok(Answer { status, body })
    }
    .await;
    connection.abort();
    outcome
}
