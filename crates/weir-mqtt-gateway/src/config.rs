//! The MQTT gateway's configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use weir_core::audit::AuditConfig;
use weir_core::config::{invalid, load_yaml_file, ConfigError};
use weir_core::policy::AuthorizationConfig;
use weir_core::telemetry::LogConfig;
use weir_core::tls::TlsListenerConfig;
use weir_gateway::KafkaConfig;

use crate::mapping::{MappingConfig, Mappings};

/// ```yaml
/// listen: 127.0.0.1:1885
/// kafka: {bootstrap: 127.0.0.1:9092}
/// mappings:
///   - {mqtt: sensors/+/temp, kafka: sensors.temp, key: "{1}"}
/// credentials: /etc/weir/users.yaml            # CONNECT username/password checked
/// authorization: {policy: /etc/weir/policy.yaml}   # the mesh's Kafka policy
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttGatewayConfig {
    pub listen: SocketAddr,
    pub kafka: KafkaConfig,
    /// MQTT topics → Kafka topics and keys (see `mapping`).
    pub mappings: Vec<MappingConfig>,
    /// Admin HTTP: `/metrics`, `/healthz`, `/readyz`.
    #[serde(default)]
    pub admin: Option<SocketAddr>,
    /// TLS towards clients (MQTTS); with `client_ca`, a client certificate names the principal.
    #[serde(default)]
    pub tls: Option<TlsListenerConfig>,
    /// Users and passwords CONNECT is checked against (the Kafka sidecar's SASL file). Without
    /// it, clients act as `fixed_principal` (or `User:ANONYMOUS`).
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    #[serde(default)]
    pub fixed_principal: Option<String>,
    /// Who may write and read which Kafka topics: a policy in Kafka's words, the one a Kafka
    /// sidecar applies. Without it everything mapped is allowed.
    #[serde(default)]
    pub authorization: Option<AuthorizationConfig>,
    /// Logins and denials, one JSON line each.
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    /// Where persistent sessions are kept (see `sessions`).
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// Where retained messages are kept: a compacted topic keyed by MQTT topic name.
    #[serde(default)]
    pub retained: RetainedConfig,
    #[serde(default)]
    pub limits: GatewayLimits,
    #[serde(default)]
    pub log: LogConfig,
}

/// ```yaml
/// sessions: {topic: weir.mqtt-gateway.sessions, max_expiry_secs: 604800, save_interval_ms: 5000}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// The compacted Kafka topic persistent sessions live in (created if missing); every
    /// gateway instance sharing it shares the sessions.
    #[serde(default = "default_sessions_topic")]
    pub topic: String,
    #[serde(default = "default_sessions_partitions")]
    pub partitions: i32,
    /// The longest a session outlives its connection (MQTT 5 clients may ask for less; MQTT
    /// 3.1.1 sessions get this).
    #[serde(default = "default_max_expiry_secs")]
    pub max_expiry_secs: u32,
    /// How often a connected persistent session's positions are saved (what a gateway that
    /// dies delivers again, at most).
    #[serde(default = "default_save_interval_ms")]
    pub save_interval_ms: u64,
}

fn default_sessions_topic() -> String {
    "weir.mqtt-gateway.sessions".into()
}
fn default_sessions_partitions() -> i32 {
    3
}
fn default_max_expiry_secs() -> u32 {
    7 * 24 * 3600
}
fn default_save_interval_ms() -> u64 {
    5000
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            topic: default_sessions_topic(),
            partitions: default_sessions_partitions(),
            max_expiry_secs: default_max_expiry_secs(),
            save_interval_ms: default_save_interval_ms(),
        }
    }
}

/// ```yaml
/// retained: {topic: weir.mqtt-gateway.retained}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetainedConfig {
    /// The compacted Kafka topic retained messages live in (created if missing).
    #[serde(default = "default_retained_topic")]
    pub topic: String,
    #[serde(default = "default_sessions_partitions")]
    pub partitions: i32,
}

fn default_retained_topic() -> String {
    "weir.mqtt-gateway.retained".into()
}

impl Default for RetainedConfig {
    fn default() -> Self {
        RetainedConfig { topic: default_retained_topic(), partitions: default_sessions_partitions() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayLimits {
    /// How long a new connection has to send its CONNECT.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// The largest CONNECT (what arrives before authentication).
    #[serde(default = "default_max_connect_bytes")]
    pub max_connect_bytes: usize,
    /// The largest packet a client may send after it.
    #[serde(default = "default_max_packet_bytes")]
    pub max_packet_bytes: usize,
    /// QoS 1 and 2 publishes of one connection waiting for Kafka at once; beyond, the gateway
    /// reads no more from that client until Kafka answers.
    #[serde(default = "default_max_pending_publishes")]
    pub max_pending_publishes: usize,
    /// Messages for one subscriber queued at the gateway; a subscriber that falls this far
    /// behind is disconnected (it reconnects and resumes: see docs/gateways.md).
    #[serde(default = "default_max_queued_deliveries")]
    pub max_queued_deliveries: usize,
    /// QoS 1 deliveries a client has not acknowledged at once (MQTT 5 clients may ask for
    /// fewer with Receive Maximum).
    #[serde(default = "default_max_inflight_deliveries")]
    pub max_inflight_deliveries: u16,
    /// How many distinct topics get metric series of their own (the rest: `_other`).
    #[serde(default = "default_max_metric_topics")]
    pub max_metric_topics: usize,
    /// Client connections at once (0: no limit), and from one address.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default)]
    pub max_connections_per_source: usize,
}

fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_max_connect_bytes() -> usize {
    64 * 1024
}
fn default_max_packet_bytes() -> usize {
    1024 * 1024
}
fn default_max_pending_publishes() -> usize {
    1000
}
fn default_max_queued_deliveries() -> usize {
    10_000
}
fn default_max_inflight_deliveries() -> u16 {
    100
}
fn default_max_metric_topics() -> usize {
    1000
}
fn default_max_connections() -> usize {
    10_000
}

impl Default for GatewayLimits {
    fn default() -> Self {
        GatewayLimits {
            connect_timeout_ms: default_connect_timeout_ms(),
            max_connect_bytes: default_max_connect_bytes(),
            max_packet_bytes: default_max_packet_bytes(),
            max_pending_publishes: default_max_pending_publishes(),
            max_queued_deliveries: default_max_queued_deliveries(),
            max_inflight_deliveries: default_max_inflight_deliveries(),
            max_metric_topics: default_max_metric_topics(),
            max_connections: default_max_connections(),
            max_connections_per_source: 0,
        }
    }
}

impl MqttGatewayConfig {
    pub fn from_file(file: &Path) -> Result<Self, ConfigError> {
        let config: Self = load_yaml_file(file)?;
        config.validate(file)?;
        Ok(config)
    }

    /// The config as the control plane renders it (JSON in the file's schema).
    pub fn from_json(value: serde_json::Value, origin: &Path) -> Result<Self, ConfigError> {
        let config: Self = weir_core::config::from_json(value, origin)?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Where the rules its clients are judged by come from: its TLS, credentials, fixed
    /// principal and Kafka policy.
    pub fn rule_sources(&self, origin: &Path) -> weir_core::rules::RuleSources {
        weir_gateway::authz::rule_sources(
            self.tls.clone(),
            self.credentials.clone(),
            self.fixed_principal.clone(),
            self.authorization.clone(),
            origin,
        )
    }

    /// The mapping rules, compiled; `origin` names the file in errors.
    pub fn mappings(&self, origin: &Path) -> Result<Mappings, ConfigError> {
        Mappings::new(&self.mappings, origin)
    }

    /// Checks what the types cannot; `origin` names the file (or the command line) in errors.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        self.kafka.validate(origin)?;
        if self.mappings(origin)?.is_empty() {
            return Err(invalid(origin, "mappings", "no rule: nothing could be published or subscribed"));
        }
        weir_kafka_proxy::vocabulary::check_topic_name(&self.sessions.topic)
            .map_err(|why| invalid(origin, "sessions.topic", why))?;
        weir_kafka_proxy::vocabulary::check_topic_name(&self.retained.topic)
            .map_err(|why| invalid(origin, "retained.topic", why))?;
        if self.retained.partitions < 1 || self.retained.topic == self.sessions.topic {
            return Err(invalid(origin, "retained", "expected partitions >= 1 and a topic of its own"));
        }
        if self.sessions.partitions < 1 || self.sessions.save_interval_ms == 0 {
            return Err(invalid(origin, "sessions", "expected partitions >= 1 and save_interval_ms > 0"));
        }
        if self.credentials.is_some() && self.fixed_principal.is_some() {
            return Err(invalid(origin, "fixed_principal", "clients authenticate with `credentials`: not both"));
        }
        let limits = &self.limits;
        if !(16..=limits.max_packet_bytes).contains(&limits.max_connect_bytes) || limits.max_packet_bytes > 268_435_460
        {
            return Err(invalid(
                origin,
                "limits",
                "expected 16 <= max_connect_bytes <= max_packet_bytes <= 268435460 (MQTT's largest packet)",
            ));
        }
        for (key, value) in [
            ("limits.connect_timeout_ms", limits.connect_timeout_ms as usize),
            ("limits.max_pending_publishes", limits.max_pending_publishes),
            ("limits.max_queued_deliveries", limits.max_queued_deliveries),
            ("limits.max_inflight_deliveries", usize::from(limits.max_inflight_deliveries)),
        ] {
            if value == 0 {
                return Err(invalid(origin, key, "expected more than 0"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_starts_example_config_reads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway/mqtt.yaml");
        if let Err(error) = MqttGatewayConfig::from_file(&example) {
            panic!("{}: {error}", example.display());
        }
    }
}
