//! The control plane's HTTP API, what `weir ctl` speaks (JSON; every request but `/healthz`
//! carries `Authorization: Bearer TOKEN`):
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/v1/resources[/KIND[/NAME]]` | `{version, items}` or one resource |
//! | `POST /api/v1/apply[?dryRun=true]` with `{resources: [...]}` | `{version, changes}` |
//! | `DELETE /api/v1/resources/KIND/NAME[?resourceVersion=N][&dryRun=true]` | `{version, changes}` |
//! | `GET /api/v1/sidecars` | `{version, sidecars}`: every sidecar seen, with its ACK/NACK state |
//! | `GET /api/v1/topology` | `{version, nodes, edges}`: who produces to and consumes from what |
//! | `GET /ui` | the topology page (no token needed for the page; it asks the API with one) |
//!
//! Refusals are `{error: {reason, message}}` with 401, 404, 409 (a stale `resourceVersion`),
//! 413, 422 (invalid or a broken reference) or 500 (the store failed; nothing changed).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weir_mesh::{Kind, MeshError, Resource};

use crate::ca::{CaError, MeshCa};
use crate::plane::{ControlPlane, WriteError};
use crate::sidecars::Sidecars;
use crate::topology::Topology;

/// The largest request body: a whole mesh's resources, with room to spare.
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// The file in the data directory holding the API token.
pub const TOKEN_FILE: &str = "ctl-token";
/// The file in the data directory holding the token sidecars join with.
pub const JOIN_TOKEN_FILE: &str = "join-token";

/// Reads a secret (`TOKEN_FILE`, `JOIN_TOKEN_FILE`) from the data directory, making one on
/// first start (256 random bits, readable only by the owner).
pub fn load_or_create_secret(dir: &Path, name: &str) -> std::io::Result<String> {
    let file = dir.join(name);
    match std::fs::read_to_string(&file) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let token = new_secret()?;
    weir_core::fs::write_private(&file, token.as_bytes())?;
    Ok(token)
}

/// 256 random bits, as hex: a token.
pub fn new_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| std::io::Error::other("no system randomness"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// SHA-256 of `text`, as lowercase hex: how a workload's join token is stored.
pub fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

struct Api {
    plane: Arc<ControlPlane>,
    sidecars: Arc<Sidecars>,
    topology: Arc<Topology>,
    ca: Arc<MeshCa>,
    rotation: Rotation,
    token: String,
}

/// What the API serves besides the state: the sidecars and the topology they report, and the
/// CA (whose root it rotates).
pub struct Observed {
    pub sidecars: Arc<Sidecars>,
    pub topology: Arc<Topology>,
    pub ca: Arc<MeshCa>,
    pub rotation: Rotation,
}

/// Whether this control plane may rotate its root through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    Allowed,
    /// Replicas on a shared store each hold their own copy of the CA: a rotation through one
    /// would leave the others trusting only the old root.
    SharedStore,
}

/// Serves the API until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    plane: Arc<ControlPlane>,
    observed: Observed,
    token: String,
    shutdown: CancellationToken,
) {
    let Observed { sidecars, topology, ca, rotation } = observed;
    let api = Arc::new(Api { plane, sidecars, topology, ca, rotation, token });
    weir_core::admin::serve_http(listener, shutdown, "API", move |req| {
        let api = api.clone();
        async move { api.handle(req).await }
    })
    .await
}

/// A refusal: its status, a one-word reason, and the message.
struct Refusal(StatusCode, &'static str, String);

impl From<WriteError> for Refusal {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Refused(err) => Refusal::from(err),
            WriteError::Store(err) => {
                tracing::error!(%err, "a change could not be stored");
                Refusal(StatusCode::INTERNAL_SERVER_ERROR, "StoreFailed", format!("{err}; nothing was changed"))
            }
        }
    }
}

impl From<MeshError> for Refusal {
    fn from(err: MeshError) -> Self {
        let reason = match err {
            MeshError::Invalid { .. } => "Invalid",
            MeshError::Conflict { .. } => "Conflict",
            MeshError::NotFound { .. } => "NotFound",
            MeshError::Reference { .. } => "Reference",
        };
        let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        Refusal(status, reason, err.to_string())
    }
}

fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, "BadRequest", message.into())
}

impl Api {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        if path == "/healthz" {
            return respond(StatusCode::OK, json!({"status": "ok"}));
        }
        // The page itself holds no data; its script asks the API with the token from the
        // address's fragment (`/ui#token=...`), which browsers never send to the server.
        if path == "/ui" || path == "/" {
            let mut response = Response::new(Full::new(Bytes::from_static(crate::ui::PAGE.as_bytes())));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            return response;
        }
        if !self.authorized(&req) {
            return refuse(Refusal(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "a valid `Authorization: Bearer TOKEN` is required (the token is in the control plane's data directory)".into(),
            ));
        }
        let result = self.route(req).await;
        match result {
            Ok(body) => respond(StatusCode::OK, body),
            Err(refusal) => {
                tracing::debug!(%method, %path, reason = refusal.1, message = %refusal.2, "API request refused");
                refuse(refusal)
            }
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let given = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = given.and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
        weir_core::sasl::constant_time_eq(token.as_bytes(), self.token.as_bytes())
    }

    async fn route(&self, req: Request<Incoming>) -> Result<serde_json::Value, Refusal> {
        let query = Query::parse(req.uri().query().unwrap_or_default());
        let path = req.uri().path().trim_end_matches('/').to_owned();
        let parts: Vec<&str> = path.strip_prefix("/api/v1/").unwrap_or_default().split('/').collect();
        match (req.method(), parts.as_slice()) {
            (&Method::GET, ["resources"]) => Ok(self.list(None)),
            (&Method::GET, ["resources", kind]) => Ok(self.list(Some(parse_kind(kind)?))),
            (&Method::GET, ["resources", kind, name]) => {
                let kind = parse_kind(kind)?;
                let state = self.plane.current();
                let found =
                    state.get(kind, name).ok_or_else(|| MeshError::NotFound { resource: format!("{kind}/{name}") })?;
                Ok(serde_json::to_value(found).unwrap_or_default())
            }
            (&Method::GET, ["topology"]) => {
                Ok(serde_json::to_value(self.topology.graph(&self.plane.current())).unwrap_or_default())
            }
            (&Method::GET, ["sidecars"]) => {
                Ok(json!({"version": self.plane.current().version, "sidecars": self.sidecars.all()}))
            }
            (&Method::POST, ["apply"]) => {
                let batch = read_batch(req).await?;
                let (version, changes) = self.plane.apply(&batch, query.dry_run).await?;
                Ok(json!({"version": version, "dryRun": query.dry_run, "changes": changes}))
            }
            (&Method::DELETE, ["resources", kind, name]) => {
                let kind = parse_kind(kind)?;
                let (version, change) =
                    self.plane.delete(kind, name, query.resource_version.as_deref(), query.dry_run).await?;
                Ok(json!({"version": version, "dryRun": query.dry_run, "changes": [change]}))
            }
            (&Method::GET, ["ca"]) => Ok(self.ca_status()),
            (&Method::POST, ["ca", "rotate"]) => {
                self.may_rotate()?;
                self.ca.start_rotation().map_err(ca_refusal)?;
                Ok(self.ca_status())
            }
            (&Method::POST, ["ca", "finish-rotation"]) => {
                self.may_rotate()?;
                if self.ca.status().rotation_started.is_some() {
                    let stale = self.sidecars_on_old_certificates();
                    if !stale.is_empty() && !query.force {
                        return Err(Refusal(
                            StatusCode::CONFLICT,
                            "Conflict",
                            format!(
                                "{} connected sidecar(s) still hold a certificate from the old root: {}; they renew \
                                 when they see the new bundle (see `weir ctl status`); --force drops them",
                                stale.len(),
                                stale.join(", ")
                            ),
                        ));
                    }
                }
                self.ca.finish_rotation().map_err(ca_refusal)?;
                Ok(self.ca_status())
            }
            (method, _) => Err(Refusal(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no such API: {method} {path}; see `weir ctl --help`"),
            )),
        }
    }

    fn ca_status(&self) -> serde_json::Value {
        let status = self.ca.status();
        let stale = status.rotation_started.map(|_| self.sidecars_on_old_certificates());
        json!({"ca": status, "sidecarsOnOldCertificates": stale})
    }

    /// Connected sidecars whose newest certificate the current root did not sign.
    fn sidecars_on_old_certificates(&self) -> Vec<String> {
        let signer = self.ca.signer();
        let sidecars = self.sidecars.all().into_iter();
        sidecars.filter(|s| s.connected && s.certificate_issuer != signer).map(|s| s.sidecar_id).collect()
    }

    fn may_rotate(&self) -> Result<(), Refusal> {
        match self.rotation {
            Rotation::Allowed => Ok(()),
            Rotation::SharedStore => Err(Refusal(
                StatusCode::CONFLICT,
                "Refused",
                "this control plane shares its store with replicas that hold their own copy of the CA: rotate \
                 with a supplied CA (--ca-cert/--ca-key/--ca-bundle) on every replica instead"
                    .into(),
            )),
        }
    }

    fn list(&self, kind: Option<Kind>) -> serde_json::Value {
        let state = self.plane.current();
        let items: Vec<&Resource> =
            state.resources.iter().filter(|r| kind.is_none_or(|k| r.kind == k.name())).collect();
        json!({"version": state.version, "items": items})
    }
}

fn ca_refusal(err: CaError) -> Refusal {
    match err {
        CaError::Refused(message) => Refusal(StatusCode::CONFLICT, "Refused", message),
        other => {
            tracing::error!(%other, "the CA failed");
            Refusal(StatusCode::INTERNAL_SERVER_ERROR, "CaFailed", other.to_string())
        }
    }
}

#[derive(Default)]
struct Query {
    dry_run: bool,
    force: bool,
    resource_version: Option<String>,
}

impl Query {
    fn parse(query: &str) -> Self {
        let mut parsed = Query::default();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("dryRun", value)) => parsed.dry_run = value == "true",
                Some(("force", value)) => parsed.force = value == "true",
                Some(("resourceVersion", value)) if !value.is_empty() => {
                    parsed.resource_version = Some(value.to_owned())
                }
                _ => {}
            }
        }
        parsed
    }
}

fn parse_kind(text: &str) -> Result<Kind, Refusal> {
    Kind::parse(text).ok_or_else(|| bad_request(format!("unknown kind `{text}`; expected one of {}", Kind::names())))
}

async fn read_batch(req: Request<Incoming>) -> Result<Vec<Resource>, Refusal> {
    let body = Limited::new(req.into_body(), MAX_BODY).collect().await.map_err(|_| {
        Refusal(StatusCode::PAYLOAD_TOO_LARGE, "TooLarge", format!("the request body is over {MAX_BODY} bytes"))
    })?;
    #[derive(serde::Deserialize)]
    struct Batch {
        resources: Vec<serde_json::Value>,
    }
    let batch: Batch = serde_json::from_slice(&body.to_bytes())
        .map_err(|e| bad_request(format!("the body is not `{{\"resources\": [...]}}`: {e}")))?;
    batch
        .resources
        .into_iter()
        .enumerate()
        .map(|(i, value)| serde_json::from_value(value).map_err(|e| bad_request(format!("resources[{i}]: {e}"))))
        .collect()
}

fn respond(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

fn refuse(Refusal(status, reason, message): Refusal) -> Response<Full<Bytes>> {
    respond(status, json!({"error": {"reason": reason, "message": message}}))
}
