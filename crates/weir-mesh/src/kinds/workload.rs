//! `Workload`: one service and its sidecar — the protocol its clients speak, which cluster or
//! broker it reaches, where it listens, its limits. The sidecar started with `--workload NAME`
//! gets the config rendered from this, its cluster or broker and the policies that select it.
//!
//! A Kafka workload's fields are [`WorkloadSpec`]. An MQTT or AMQP workload's are those of its
//! sidecar's config file (`listen`, `admin`, `audit`, `limits`, `log`), checked by reading them
//! with that file's own type; what comes from other resources (the broker, the peer
//! authentication, the policies) is refused here with where it belongs. A gateway workload
//! (`mqtt-gateway`, `http-gateway`) likewise has its gateway file's fields and names a
//! `cluster`.

use std::net::SocketAddr;

use serde::Deserialize;
use weir_kafka_proxy::alias::TopicAlias;
use weir_kafka_proxy::canary::CanaryRule;
use weir_kafka_proxy::config::{BrokerPorts, Limits, LogConfig};
use weir_kafka_proxy::fault::FaultRule;
use weir_kafka_proxy::quota::QuotaRule;
use weir_kafka_proxy::safeguard::ProduceSafeguard;
use weir_kafka_proxy::schema_rules::{RegistryConfig, SchemaRule};
use weir_kafka_proxy::shadow::ShadowRule;
use weir_kafka_proxy::topic_limits::TopicCreationRule;

use crate::error::MeshError;
use crate::kinds::Kind;
use crate::protocol::Protocol;
use crate::resource::{check_name, Resource};

/// Workload fields that describe the workload to the mesh, not its sidecar's settings.
pub(crate) const MESH_ONLY: [&str; 6] = ["protocol", "cluster", "broker", "service", "namespace", "join_token_sha256"];

/// A Kafka workload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    #[serde(default)]
    pub protocol: Protocol,
    /// The `KafkaCluster` this workload's clients reach.
    pub cluster: String,
    /// The service's name in its identity (`spiffe://DOMAIN/ns/NAMESPACE/sa/SERVICE`);
    /// defaults to the workload's name.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// SHA-256 (hex) of this workload's own join token: its sidecars' first certificate needs
    /// that token, and the mesh-wide one is refused for it. `weir ctl token WORKLOAD` makes
    /// one. The token itself is never stored.
    #[serde(default)]
    pub join_token_sha256: Option<String>,
    /// Where the service's clients bootstrap.
    pub listen: SocketAddr,
    #[serde(default)]
    pub admin: Option<SocketAddr>,
    #[serde(default)]
    pub advertised_host: Option<String>,
    #[serde(default)]
    pub broker_ports: BrokerPorts,
    #[serde(default)]
    pub limits: Limits,
    /// Logins and denials of this workload's sidecar, one JSON line each (a file on the
    /// sidecar's host).
    #[serde(default)]
    pub audit: Option<weir_core::audit::AuditConfig>,
    /// Quotas of this workload's sidecar: byte rates, request time, connections (docs/traffic-policy.md); applied live.
    #[serde(default)]
    pub quotas: Vec<QuotaRule>,
    /// Fault injection (chaos) in this workload's sidecar (docs/traffic-policy.md); applied
    /// live, off when empty.
    #[serde(default)]
    pub faults: Vec<FaultRule>,
    /// Traffic shadowing from this workload's sidecar (docs/traffic-policy.md); applied live.
    #[serde(default)]
    pub shadows: Vec<ShadowRule>,
    /// Topic aliases in this workload's sidecar: the topic its code names is another topic
    /// (docs/traffic-policy.md); applied live.
    #[serde(default)]
    pub topic_aliases: Vec<TopicAlias>,
    /// Canary routing in this workload's sidecar: a share of a topic's partitions written to
    /// a canary topic (docs/traffic-policy.md); applied live.
    #[serde(default)]
    pub canaries: Vec<CanaryRule>,
    /// Limits on the topics this workload creates or grows (docs/event-policies.md); applied
    /// live.
    #[serde(default)]
    pub topic_creation: Vec<TopicCreationRule>,
    /// Produce safeguards on what this workload writes (docs/event-policies.md); applied live.
    #[serde(default)]
    pub produce_safeguards: Vec<ProduceSafeguard>,
    /// The schema registry this workload's sidecar asks (docs/event-policies.md); read at
    /// its start.
    #[serde(default)]
    pub schema_registry: Option<RegistryConfig>,
    /// Schema validation of what this workload writes (docs/event-policies.md); applied live.
    #[serde(default)]
    pub schema_validation: Vec<SchemaRule>,
    /// Record transformation of what this workload writes (docs/event-policies.md); applied
    /// live.
    #[serde(default)]
    pub transforms: Vec<weir_kafka_proxy::transform::TransformRule>,
    /// Where this workload's sidecar takes encryption keys from (docs/event-policies.md);
    /// read at its start.
    #[serde(default)]
    pub kms: Option<weir_kafka_proxy::encryption::KmsConfig>,
    /// Envelope encryption of what this workload writes and reads (docs/event-policies.md);
    /// applied live.
    #[serde(default)]
    pub encryption: Vec<weir_kafka_proxy::encryption::EncryptionRule>,
    /// Where this workload's sidecar exports spans (OTLP/HTTP, docs/event-policies.md); read
    /// at its start.
    #[serde(default)]
    pub otlp: Option<weir_core::otlp::OtlpConfig>,
    /// Tracing through record headers in this workload's sidecar (docs/event-policies.md);
    /// applied live.
    #[serde(default)]
    pub traces: Option<weir_kafka_proxy::traces::TraceRules>,
    #[serde(default)]
    pub workers: Option<usize>,
    #[serde(default)]
    pub log: Option<LogConfig>,
}

fn default_namespace() -> String {
    "default".into()
}

/// What the mesh reads of every workload, whatever its protocol.
#[derive(Debug, Clone, Deserialize)]
struct MeshFields {
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    service: Option<String>,
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default)]
    join_token_sha256: Option<String>,
}

pub(crate) fn check(resource: &Resource) -> Result<(), MeshError> {
    let fields: MeshFields = super::spec(resource)?;
    match fields.protocol {
        Protocol::Kafka => {
            let spec: WorkloadSpec = super::spec(resource)?;
            if spec.workers.is_some_and(|w| !(1..=256).contains(&w)) {
                return Err(MeshError::invalid(resource.id(), "spec.workers", "expected 1 to 256"));
            }
        }
        Protocol::Mqtt | Protocol::Amqp => check_broker_workload(resource, fields.protocol)?,
        Protocol::MqttGateway | Protocol::HttpGateway => check_gateway_workload(resource, fields.protocol)?,
    }
    let field = format!("spec.{}", fields.protocol.broker_field());
    check_name(&broker_of(resource).1).map_err(|m| MeshError::invalid(resource.id(), &field, m))?;
    check_name(&fields.namespace).map_err(|m| MeshError::invalid(resource.id(), "spec.namespace", m))?;
    if let Some(service) = &fields.service {
        check_name(service).map_err(|m| MeshError::invalid(resource.id(), "spec.service", m))?;
    }
    if let Some(digest) = &fields.join_token_sha256 {
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(MeshError::invalid(
                resource.id(),
                "spec.join_token_sha256",
                "expected a SHA-256 digest: 64 lowercase hex digits",
            ));
        }
    }
    Ok(())
}

/// Settings of an MQTT or AMQP sidecar's file that come from other resources.
const FROM_ELSEWHERE: [(&str, &str); 8] = [
    ("cluster", "is a Kafka workload's; this one names its broker in `broker`"),
    ("upstream", "comes from the broker resource the workload names in `broker`"),
    ("upstream_tls", "comes from the broker resource the workload names in `broker`"),
    ("broker_credentials", "comes from the broker resource the workload names in `broker`"),
    ("tls", "comes from a PeerAuthentication"),
    ("credentials", "comes from a PeerAuthentication (its `sasl.credentials`)"),
    ("fixed_principal", "comes from a PeerAuthentication"),
    ("authorization", "comes from AuthorizationPolicy resources with the workload's protocol"),
];

/// An MQTT or AMQP workload: its sidecar settings read with the sidecar's own config type.
fn check_broker_workload(resource: &Resource, protocol: Protocol) -> Result<(), MeshError> {
    let spec = resource.spec.as_object().cloned().unwrap_or_default();
    for (key, why) in FROM_ELSEWHERE {
        if spec.contains_key(key) {
            return Err(MeshError::invalid(resource.id(), format!("spec.{key}"), format!("`{key}` {why}")));
        }
    }
    if !spec.contains_key("broker") {
        return Err(MeshError::invalid(
            resource.id(),
            "spec.broker",
            format!("a {protocol} workload names the {} it reaches in `broker`", protocol.broker_kind()),
        ));
    }
    let mut settings = spec;
    for key in MESH_ONLY {
        settings.remove(key);
    }
    // The real broker comes at render time; any address reads the same.
    settings.insert("upstream".into(), "broker.invalid:1".into());
    protocol
        .check_config(serde_json::Value::Object(settings), &super::origin(resource))
        .map_err(|err| super::from_config_error(resource, "", err))
}

/// Settings of a gateway's file that come from other resources.
const GATEWAY_FROM_ELSEWHERE: [(&str, &str); 6] = [
    ("broker", "is an MQTT or AMQP sidecar's; a gateway names the KafkaCluster it reaches in `cluster`"),
    ("tls", "comes from a PeerAuthentication"),
    ("credentials", "comes from a PeerAuthentication (its `sasl.credentials`)"),
    ("bearer", "comes from a PeerAuthentication (its `sasl.oauthbearer`)"),
    ("fixed_principal", "comes from a PeerAuthentication"),
    ("authorization", "comes from the Kafka AuthorizationPolicy resources that select the workload"),
];

/// A gateway workload: its settings read with the gateway's own config type, the brokers
/// coming from its KafkaCluster.
fn check_gateway_workload(resource: &Resource, protocol: Protocol) -> Result<(), MeshError> {
    let spec = resource.spec.as_object().cloned().unwrap_or_default();
    for (key, why) in GATEWAY_FROM_ELSEWHERE {
        if spec.contains_key(key) {
            return Err(MeshError::invalid(resource.id(), format!("spec.{key}"), format!("`{key}` {why}")));
        }
    }
    if spec.get("kafka").and_then(|k| k.get("bootstrap")).is_some() {
        return Err(MeshError::invalid(
            resource.id(),
            "spec.kafka.bootstrap",
            "`kafka.bootstrap` comes from the KafkaCluster the workload names in `cluster`",
        ));
    }
    if !spec.contains_key("cluster") {
        return Err(MeshError::invalid(
            resource.id(),
            "spec.cluster",
            "a gateway names the KafkaCluster it reaches in `cluster`",
        ));
    }
    let mut settings = spec;
    for key in MESH_ONLY {
        settings.remove(key);
    }
    // The real brokers come at render time; any address reads the same.
    let kafka = settings.entry("kafka").or_insert_with(|| serde_json::json!({}));
    if let Some(kafka) = kafka.as_object_mut() {
        kafka.insert("bootstrap".into(), "broker.invalid:9092".into());
    }
    protocol
        .check_config(serde_json::Value::Object(settings), &super::origin(resource))
        .map_err(|err| super::from_config_error(resource, "", err))
}

/// The kind and name of the cluster or broker a stored workload reaches (checked at apply).
pub fn broker_of(resource: &Resource) -> (Kind, String) {
    let protocol = Protocol::of(&resource.spec);
    let name = resource.spec.get(protocol.broker_field()).and_then(|c| c.as_str()).unwrap_or_default();
    (protocol.broker_kind(), name.to_owned())
}

/// The SHA-256 (hex) of the workload's own join token, if it has one.
pub fn join_token_sha256(resource: &Resource) -> Option<&str> {
    resource.spec.get("join_token_sha256").and_then(|v| v.as_str())
}

/// The workload's SPIFFE id in `trust_domain`: `spiffe://DOMAIN/ns/NAMESPACE/sa/SERVICE`.
pub fn spiffe_id(resource: &Resource, trust_domain: &str) -> String {
    let namespace = resource.spec.get("namespace").and_then(|v| v.as_str()).unwrap_or("default");
    let service = resource.spec.get("service").and_then(|v| v.as_str()).unwrap_or(&resource.metadata.name);
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service}")
}
