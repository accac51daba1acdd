//! The HTTP gateway: weir-core's front (rules with the Kafka policy's words, TLS, audit, the
//! accept loop and connection limits, the admin endpoint) serving HTTP/1.1, with the request
//! head and body each bounded in time and the body in size.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use weir_core::audit::{AuditLog, AuthorizationEvent};
use weir_core::config::ConfigError;
use weir_core::front::{Front, FrontConfig, FrontError};
use weir_core::identity::identify;
use weir_core::jwt::JwtValidator;
use weir_core::metrics::CappedNames;
use weir_core::rules::CurrentRules;
use weir_gateway::authz::{allowed, rule_sources, KafkaAuthz};
use weir_gateway::KafkaProducer;

use crate::api::{json, ApiError, Body};
use crate::config::HttpGatewayConfig;
use crate::identity::{caller, Caller};
use crate::produce::{self, Format};

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

struct Metrics {
    requests: Family<RequestLabels, Counter>,
    records: Family<RecordLabels, Counter>,
    topics: CappedNames,
}

/// What every request shares.
struct Shared {
    config: HttpGatewayConfig,
    rules: CurrentRules,
    bearer: Option<Arc<JwtValidator>>,
    producer: KafkaProducer,
    audit: Option<AuditLog>,
    metrics: Metrics,
}

pub struct HttpGateway {
    front: Front,
    shared: Arc<Shared>,
    bearer_stop: CancellationToken,
}

impl HttpGateway {
    pub async fn bind(config: HttpGatewayConfig, origin: &Path) -> Result<Self, HttpGatewayError> {
        config.validate(origin)?;
        let rules = rule_sources(
            config.tls.clone(),
            None,
            config.fixed_principal.clone(),
            config.authorization.clone(),
            origin,
        );
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
            topics: CappedNames::new(config.limits.max_metric_topics),
        };
        let http = front.registry.sub_registry_with_prefix("weir_http");
        http.register("requests", "Requests answered, per route and status", metrics.requests.clone());
        http.register("records", "Records written to Kafka, per topic and principal", metrics.records.clone());
        let bearer = match &config.bearer {
            Some(bearer) => Some(JwtValidator::load(bearer.clone()).await?),
            None => None,
        };
        let bearer_stop = CancellationToken::new();
        if let Some(validator) = &bearer {
            tokio::spawn(validator.clone().reload_on_change(bearer_stop.clone()));
        }
        let producer = KafkaProducer::new(&config.kafka)?;
        let shared = Arc::new(Shared {
            rules: front.rules.clone(),
            audit: front.audit.clone(),
            bearer,
            producer,
            metrics,
            config,
        });
        Ok(HttpGateway { front, shared, bearer_stop })
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
        self.bearer_stop.cancel();
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
    shared: &Shared,
    request: Request<Incoming>,
    certified: Option<&str>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let (route, response) = match (request.method(), path.as_str()) {
        (&Method::GET, "/openapi.json") => ("openapi", openapi()),
        (&Method::GET, "/healthz") => ("healthz", json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
        (method, path) if path.starts_with("/topics/") => {
            let topic = &path["/topics/".len()..];
            match *method {
                Method::POST => ("produce", produce_route(shared, request, topic, certified, peer).await),
                _ => ("produce", ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "POST records to a topic").response()),
            }
        }
        _ => {
            ("unknown", ApiError::new(StatusCode::NOT_FOUND, format!("no route {path}; see /openapi.json")).response())
        }
    };
    let labels = RequestLabels { route, status: response.status().as_u16() };
    shared.metrics.requests.get_or_create(&labels).inc();
    response
}

fn openapi() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

async fn produce_route(
    shared: &Shared,
    request: Request<Incoming>,
    topic: &str,
    certified: Option<&str>,
    peer: SocketAddr,
) -> Response<Body> {
    match produce_request(shared, request, topic, certified, peer).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(%peer, topic, status = error.status.as_u16(), message = %error.message, "HTTP produce refused");
            error.response()
        }
    }
}

async fn produce_request(
    shared: &Shared,
    request: Request<Incoming>,
    topic: &str,
    certified: Option<&str>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    weir_kafka_proxy::vocabulary::check_topic_name(topic).map_err(|why| ApiError::new(StatusCode::NOT_FOUND, why))?;
    let fixed = shared.rules.borrow().fixed_principal.clone();
    let who: Caller = caller(request.headers(), certified, shared.bearer.as_deref(), fixed.as_deref()).await?;
    let policy = shared.rules.borrow().policy.clone();
    let authz = policy.as_ref().map(|policy| KafkaAuthz::new(policy, Some(&who.principal)));
    if !allowed(authz.as_ref(), topic, true) {
        if let Some(audit) = &shared.audit {
            audit.authorization(&AuthorizationEvent {
                principal: &who.principal,
                api: "produce",
                operation: "write",
                resource_type: "topic",
                resource: topic,
                client: peer,
                listener: LISTENER,
            });
        }
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("{} may not write to topic {topic}", who.principal)));
    }
    let content_type = request.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let format = Format::of(content_type)?;
    let body = read_body(shared, request.into_body()).await?;
    let records = produce::parse(&body, format, shared.config.limits.max_records)?;
    let (status, answer) = produce::produce(&shared.producer, topic, &records).await;
    let written = answer.offsets.iter().filter(|o| o.offset.is_some()).count();
    if written > 0 {
        let labels =
            RecordLabels { topic: shared.metrics.topics.label(topic), principal: who.principal.as_str().into() };
        shared.metrics.records.get_or_create(&labels).inc_by(written as u64);
    }
    Ok(json(status, &answer))
}

/// The whole body, at most `max_body_bytes`, within `body_timeout_ms`.
async fn read_body(shared: &Shared, body: Incoming) -> Result<Bytes, ApiError> {
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
        for path in ["/topics/{topic}", "/openapi.json", "/healthz"] {
            assert!(doc["paths"][path].is_object(), "{path} is documented");
        }
    }
}
