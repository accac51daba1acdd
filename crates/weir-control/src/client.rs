//! The client side of the API (what `weir ctl` uses): one HTTP/1 connection per call, JSON in
//! and out, refusals turned back into the control plane's own words.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the control plane at {address}: {error}")]
    Connect { address: String, error: std::io::Error },
    #[error("talking to the control plane at {address}: {error}")]
    Http { address: String, error: hyper::Error },
    /// The control plane refused; `reason` is its one word (`Invalid`, `Conflict`, ...).
    #[error("{message}")]
    Refused { status: u16, reason: String, message: String },
    #[error("the control plane at {address} answered something that is not its API ({status}): {body}")]
    NotTheApi { address: String, status: u16, body: String },
}

/// Where the control plane's API is, and the token that opens it.
#[derive(Debug, Clone)]
pub struct ApiClient {
    address: String,
    token: String,
}

impl ApiClient {
    /// `address` is `host:port` (an `http://` prefix is accepted).
    pub fn new(address: &str, token: &str) -> Self {
        let address = address.trim_start_matches("http://").trim_end_matches('/').to_owned();
        Self { address, token: token.trim().to_owned() }
    }

    pub async fn get(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value, ClientError> {
        self.call(Method::POST, path, Some(body.to_string())).await
    }

    pub async fn delete(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.call(Method::DELETE, path, None).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<String>) -> Result<serde_json::Value, ClientError> {
        let address = &self.address;
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| ClientError::Connect { address: address.clone(), error })?;
        let http = |error| ClientError::Http { address: address.clone(), error };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, address.as_str())
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::NotTheApi { address: address.clone(), status: 0, body: e.to_string() })?;
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.map_err(http)?.to_bytes();
        let not_the_api = || ClientError::NotTheApi {
            address: address.clone(),
            status,
            body: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| not_the_api())?;
        if status == 200 {
            return Ok(value);
        }
        let error = value.get("error").ok_or_else(not_the_api)?;
        let text = |key: &str| error.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        Err(ClientError::Refused { status, reason: text("reason"), message: text("message") })
    }
}
