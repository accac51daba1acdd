//! The HTTP gateway: weir-core's front (rules with the Kafka policy's words, TLS, audit, the
//! accept loop and connection limits, the admin endpoint) serving HTTP/1.1, with the request
//! head and body each bounded in time and the body in size.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use weir_core::audit::{AuditLog, AuthorizationEvent};
use weir_core::config::ConfigError;
use weir_core::control::FlowDirection;
use weir_core::flows::Flows;
use weir_core::front::{Front, FrontConfig, FrontError};
use weir_core::identity::identify;
use weir_core::jwt::JwtValidator;
use weir_core::metrics::CappedNames;
use weir_core::rules::CurrentRules;
use weir_gateway::authz::KafkaAuthz;
use weir_gateway::{KafkaProducer, Tail};

use crate::api::{full, json, ApiError, Body};
use crate::config::HttpGatewayConfig;
use crate::consumers::{self, Consumers};
use crate::events;
use crate::identity::{caller, Caller};
use crate::produce;
use crate::records::Format;

/// The listener's name in logs, metrics and audit lines.
pub const LISTENER: &str = "http-gateway";

/// The OpenAPI document of what the gateway serves.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpGatewayError {
    #[error(transparent)]
    Front(#[from] FrontError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the Kafka client: {0}")]
    Kafka(#[from] weir_gateway::KafkaError),
    #[error("cannot load the bearer tokens' keys: {0}")]
    Jwks(#[from] weir_core::jwt::JwksError),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    topic: Arc<str>,
    principal: Arc<str>,
}

pub(crate) struct Metrics {
    requests: Family<RequestLabels, Counter>,
    records: Family<RecordLabels, Counter>,
    streams: Gauge,
    topics: CappedNames,
    /// Who produced to and read from which topic, for the mesh's topology.
    pub(crate) flows: Arc<Flows>,
}

/// What every request shares.
pub(crate) struct Shared {
    pub(crate) config: HttpGatewayConfig,
    rules: CurrentRules,
    bearer: Option<Arc<JwtValidator>>,
    producer: KafkaProducer,
    tail: Arc<Tail>,
    /// A permit per open event stream.
    streams: Arc<tokio::sync::Semaphore>,
    pub(crate) consumers: Arc<Consumers>,
    audit: Option<AuditLog>,
    pub(crate) metrics: Metrics,
    /// Cancelled when the gateway stops: ends event streams and background tasks.
    stopping: CancellationToken,
}

pub struct HttpGateway {
    front: Front,
    shared: Arc<Shared>,
}

impl HttpGateway {
    pub async fn bind(config: HttpGatewayConfig, origin: &Path) -> Result<Self, HttpGatewayError> {
        config.validate(origin)?;
        let rules = config.rule_sources(origin);
        let mut front = Front::bind(FrontConfig {
            name: LISTENER,
            listen: config.listen,
            admin: config.admin,
            audit: config.audit.as_ref(),
            rules,
            max_connections: config.limits.max_connections,
            max_connections_per_source: config.limits.max_connections_per_source,
        })
        .await?;
        let metrics = Metrics {
            requests: Family::default(),
            records: Family::default(),
            streams: Gauge::default(),
            flows: Arc::default(),
            topics: CappedNames::new(config.limits.max_metric_topics),
        };
        let http = front.registry.sub_registry_with_prefix("weir_http");
        http.register("requests", "Requests answered, per route and status", metrics.requests.clone());
        http.register("records", "Records written to Kafka, per topic and principal", metrics.records.clone());
        http.register("streams_open", "Event streams open now", metrics.streams.clone());
        let bearer = match &config.bearer {
            Some(bearer) => Some(JwtValidator::load(bearer.clone()).await?),
            None => None,
        };
        let stopping = CancellationToken::new();
        if let Some(validator) = &bearer {
            tokio::spawn(validator.clone().reload_on_change(stopping.clone()));
        }
        let producer = KafkaProducer::new(&config.kafka)?;
        let tail = Tail::start(&config.kafka, stopping.clone())?;
        let shared = Arc::new(Shared {
            rules: front.rules.clone(),
            audit: front.audit.clone(),
            bearer,
            producer,
            tail,
            streams: Arc::new(tokio::sync::Semaphore::new(config.limits.max_streams)),
            consumers: Arc::default(),
            metrics,
            stopping,
            config,
        });
        let idle = Duration::from_millis(shared.config.limits.consumer_idle_timeout_ms);
        tokio::spawn(shared.consumers.clone().expire(idle, shared.stopping.clone()));
        Ok(HttpGateway { front, shared })
    }

    /// The rules in force: replaced when the control plane sends new ones.
    pub fn rule_keeper(&self) -> Arc<weir_core::rules::RuleKeeper> {
        self.front.rule_keeper.clone()
    }

    /// What has flowed through it, for the mesh's topology.
    pub fn flows(&self) -> weir_core::control::FlowSource {
        self.shared.metrics.flows.source()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.front.local_addr()
    }

    /// Serves requests until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let current = self.shared.rules.borrow().clone();
        tracing::info!(
            listen = %self.shared.config.listen,
            kafka = %self.shared.config.kafka.bootstrap,
            tls = current.tls.is_some(),
            bearer = self.shared.bearer.is_some(),
            authorized = current.policy.is_some(),
            "HTTP gateway ready"
        );
        let shared = self.shared.clone();
        self.front.run(stop, move |tcp, peer| serve(shared.clone(), tcp, peer)).await;
        self.shared.stopping.cancel();
    }
}

/// One connection: TLS first (a client certificate names the principal), then HTTP/1.1.
async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let tls = shared.rules.borrow().tls.clone();
    let stream = match identify(tcp, tls.as_deref(), None).await {
        Ok(stream) => stream,
        Err(error) => return tracing::info!(%peer, %error, "HTTP gateway connection refused"),
    };
    let certified: Option<Arc<str>> = stream.principal.map(Arc::from);
    let io = TokioIo::new(tokio::io::join(stream.read, stream.write));
    let header_timeout = Duration::from_millis(shared.config.limits.header_timeout_ms);
    let service = hyper::service::service_fn(move |request| {
        let (shared, certified) = (shared.clone(), certified.clone());
        async move { Ok::<_, Infallible>(handle(&shared, request, certified.as_deref(), peer).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, service)
        .await;
    if let Err(error) = served {
        tracing::info!(%peer, %error, "HTTP gateway connection closed");
    }
}

async fn handle(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    certified: Option<&str>,
    peer: SocketAddr,
) -> Response<Body> {
    let origin = request.headers().get(ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (route, result) = route(shared, request, certified, peer).await;
    let mut response = result.unwrap_or_else(|error| {
        tracing::info!(%peer, route, status = error.status.as_u16(), message = %error.message, "HTTP request refused");
        error.response()
    });
    if let (Some(origin), Some(cors)) = (origin, &shared.config.cors) {
        if cors.allows(&origin) {
            allow_origin(&mut response, &origin);
        }
    }
    let labels = RequestLabels { route, status: response.status().as_u16() };
    shared.metrics.requests.get_or_create(&labels).inc();
    response
}

/// The route a request takes (its metric label) and its answer.
async fn route(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    certified: Option<&str>,
    peer: SocketAddr,
) -> (&'static str, Result<Response<Body>, ApiError>) {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(&path).split('/').collect();
    let method = request.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::OPTIONS, _) => ("preflight", preflight(shared, &request)),
        (&Method::GET, ["openapi.json"]) => ("openapi", Ok(openapi())),
        (&Method::GET, ["healthz"]) => ("healthz", Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"})))),
        (&Method::POST, ["topics", topic]) => {
            ("produce", produce_request(shared, request, topic, certified, peer).await)
        }
        (_, ["topics", _]) => ("produce", Err(not_allowed("POST records to a topic"))),
        (&Method::GET, ["topics", topic, "events"]) => {
            ("events", events_request(shared, request, topic, certified, peer).await)
        }
        (_, ["topics", _, "events"]) => ("events", Err(not_allowed("GET a topic's events"))),
        (_, ["consumers", rest @ ..]) => ("consumers", consumers_request(shared, request, rest, certified, peer).await),
        _ => ("unknown", Err(ApiError::new(StatusCode::NOT_FOUND, format!("no route {path}; see /openapi.json")))),
    }
}

fn not_allowed(what: &str) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("only {what} here"))
}

fn allow_origin(response: &mut Response<Body>, origin: &str) {
    if let Ok(origin) = HeaderValue::from_str(origin) {
        let headers = response.headers_mut();
        headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(hyper::header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// A browser asking whether a page of another origin may send a request (CORS preflight).
fn preflight(shared: &Shared, request: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let origin = request.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
    let allowed = match (origin, &shared.config.cors) {
        (Some(origin), Some(cors)) => cors.allows(origin),
        _ => false,
    };
    if !allowed {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "this origin may not call the gateway (see `cors`)"));
    }
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE"));
    headers.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, Accept, Last-Event-ID"),
    );
    headers.insert(hyper::header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    Ok(response)
}

fn openapi() -> Response<Body> {
    let mut response = Response::new(full(Bytes::from_static(OPENAPI.as_bytes())));
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Who sent `request`.
async fn who(shared: &Shared, request: &Request<Incoming>, certified: Option<&str>) -> Result<Caller, ApiError> {
    let fixed = shared.rules.borrow().fixed_principal.clone();
    caller(request.headers(), certified, shared.bearer.as_deref(), fixed.as_deref()).await
}

/// What a request asks of Kafka, for the policy and the audit log.
pub(crate) struct Asked<'a> {
    pub(crate) api: &'static str,
    pub(crate) operation: &'static str,
    pub(crate) resource_type: &'static str,
    pub(crate) resource: &'a str,
}

/// Refuses (403, and an audit line) what the policy does not let `who` do.
pub(crate) fn authorize(shared: &Shared, who: &Caller, peer: SocketAddr, asked: Asked<'_>) -> Result<(), ApiError> {
    let policy = shared.rules.borrow().policy.clone();
    let Some(policy) = policy else { return Ok(()) };
    let authz = KafkaAuthz::new(&policy, Some(&who.principal));
    let allowed = match (asked.resource_type, asked.operation) {
        ("topic", "write") => authz.may_write(asked.resource),
        ("topic", _) => authz.may_read(asked.resource),
        _ => authz.may_use_group(asked.resource),
    };
    if allowed {
        return Ok(());
    }
    if asked.resource_type == "topic" {
        let direction = if asked.operation == "write" { FlowDirection::Produce } else { FlowDirection::Consume };
        shared.metrics.flows.counters(&who.principal, "", asked.resource, direction).deny();
    }
    if let Some(audit) = &shared.audit {
        audit.authorization(&AuthorizationEvent {
            principal: &who.principal,
            api: asked.api,
            operation: asked.operation,
            resource_type: asked.resource_type,
            resource: asked.resource,
            client: peer,
            listener: LISTENER,
        });
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!("{} may not {} {} {}", who.principal, asked.operation, asked.resource_type, asked.resource),
    ))
}

fn known_topic(topic: &str) -> Result<(), ApiError> {
    weir_kafka_proxy::vocabulary::check_topic_name(topic).map_err(|why| ApiError::new(StatusCode::NOT_FOUND, why))
}

async fn produce_request(
    shared: &Shared,
    request: Request<Incoming>,
    topic: &str,
    certified: Option<&str>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    known_topic(topic)?;
    let who = who(shared, &request, certified).await?;
    authorize(
        shared,
        &who,
        peer,
        Asked { api: "produce", operation: "write", resource_type: "topic", resource: topic },
    )?;
    let content_type = request.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let format = Format::of(content_type)?;
    let body = read_body(shared, request.into_body()).await?;
    let records = produce::parse(&body, format, shared.config.limits.max_records)?;
    let (status, answer) = produce::produce(&shared.producer, topic, &records).await;
    let written = answer.offsets.iter().filter(|o| o.offset.is_some()).count();
    if written > 0 {
        let bytes: usize = records
            .iter()
            .zip(&answer.offsets)
            .filter(|(_, placed)| placed.offset.is_some())
            .map(|(r, _)| r.value.as_ref().map_or(0, Vec::len) + r.key.as_ref().map_or(0, Vec::len))
            .sum();
        shared
            .metrics
            .flows
            .counters(&who.principal, "", topic, FlowDirection::Produce)
            .count(written as u64, bytes as u64);
        let labels =
            RecordLabels { topic: shared.metrics.topics.label(topic), principal: who.principal.as_str().into() };
        shared.metrics.records.get_or_create(&labels).inc_by(written as u64);
    }
    Ok(json(status, &answer))
}

async fn events_request(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    topic: &str,
    certified: Option<&str>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    known_topic(topic)?;
    let who = who(shared, &request, certified).await?;
    authorize(shared, &who, peer, Asked { api: "events", operation: "read", resource_type: "topic", resource: topic })?;
    let last_event_id = request.headers().get("last-event-id").and_then(|v| v.to_str().ok());
    let asked = events::parse_request(request.uri().query(), last_event_id)?;
    let Ok(slot) = shared.streams.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} event streams are open: the most this gateway serves", shared.config.limits.max_streams),
        ));
    };
    let limits = &shared.config.limits;
    let source = events::Source {
        delivered: shared.metrics.flows.counters(&who.principal, "", topic, FlowDirection::Consume),
        tail: shared.tail.clone(),
        kafka: shared.config.kafka.clone(),
        rules: shared.rules.clone(),
        max_queued: limits.max_queued_events,
        keep_alive: Duration::from_millis(limits.keep_alive_ms),
    };
    let positions = events::resolve(&source, topic, &asked.begin).await?;
    let (sink, sent) = tokio::sync::mpsc::channel::<Bytes>(16);
    let (topic, principal, stop, open) =
        (Arc::<str>::from(topic), who.principal, shared.stopping.clone(), shared.metrics.streams.clone());
    tracing::debug!(%peer, %topic, principal, "event stream opened");
    tokio::spawn(async move {
        open.inc();
        events::stream(source, topic, principal, positions, asked.format, sink, stop).await;
        open.dec();
        drop(slot);
    });
    let frames = futures_util::stream::unfold(sent, |mut sent| async move {
        sent.recv().await.map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), sent))
    });
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

async fn consumers_request(
    shared: &Shared,
    request: Request<Incoming>,
    rest: &[&str],
    certified: Option<&str>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let who = who(shared, &request, certified).await?;
    consumers::route(shared, request, rest, who, peer).await
}

/// The whole body, at most `max_body_bytes`, within `body_timeout_ms`.
pub(crate) async fn read_body(shared: &Shared, body: Incoming) -> Result<Bytes, ApiError> {
    let limits = &shared.config.limits;
    let collect = Limited::new(body, limits.max_body_bytes).collect();
    match tokio::time::timeout(Duration::from_millis(limits.body_timeout_ms), collect).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} ms", limits.body_timeout_ms),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("a body over {} bytes", limits.max_body_bytes)))
        }
        Ok(Err(error)) => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("reading the body: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_reads_and_names_every_route_served() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.0.3");
        let instance = "/consumers/{group}/instances/{name}";
        let consumers =
            ["", "/subscription", "/records", "/offsets", "/positions", "/positions/beginning", "/positions/end"]
                .map(|tail| format!("{instance}{tail}"));
        let served = ["/topics/{topic}", "/topics/{topic}/events", "/consumers/{group}", "/openapi.json", "/healthz"];
        for path in served.iter().copied().chain(consumers.iter().map(String::as_str)) {
            assert!(doc["paths"][path].is_object(), "{path} is documented");
        }
    }
}
