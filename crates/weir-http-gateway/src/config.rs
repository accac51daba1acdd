//! The HTTP gateway's configuration file.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;
use weir_core::audit::AuditConfig;
use weir_core::config::{invalid, load_yaml_file, ConfigError};
use weir_core::jwt::JwtConfig;
use weir_core::policy::AuthorizationConfig;
use weir_core::telemetry::LogConfig;
use weir_core::tls::TlsListenerConfig;
use weir_gateway::KafkaConfig;

/// ```yaml
/// listen: 127.0.0.1:18090
/// kafka: {bootstrap: 127.0.0.1:9092}
/// bearer: {jwks: /etc/weir/jwks.json, issuer: https://idp.example, audience: kafka}
/// authorization: {policy: /etc/weir/policy.yaml}    # the mesh's Kafka policy
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGatewayConfig {
    pub listen: SocketAddr,
    pub kafka: KafkaConfig,
    /// Admin HTTP: `/metrics`, `/healthz`, `/readyz`.
    #[serde(default)]
    pub admin: Option<SocketAddr>,
    /// HTTPS; with `client_ca`, a client certificate names the principal.
    #[serde(default)]
    pub tls: Option<TlsListenerConfig>,
    /// `Authorization: Bearer <JWT>` checked as SASL/OAUTHBEARER's tokens are; its principal
    /// claim names the principal (as `User:<claim>`).
    #[serde(default)]
    pub bearer: Option<JwtConfig>,
    /// The principal of requests that bring neither a client certificate nor a token; without
    /// it such requests are refused (401).
    #[serde(default)]
    pub fixed_principal: Option<String>,
    /// Who may write to which Kafka topics: the policy a Kafka sidecar applies, in Kafka's
    /// words. Without it everything is allowed.
    #[serde(default)]
    pub authorization: Option<AuthorizationConfig>,
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    /// Browsers on these origins may call the gateway from their pages (CORS).
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    #[serde(default)]
    pub limits: HttpLimits,
    #[serde(default)]
    pub log: LogConfig,
}

/// ```yaml
/// cors: {allowed_origins: ["https://app.example"]}    # or ["*"]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    pub allowed_origins: Vec<String>,
}

impl CorsConfig {
    /// Whether a page from `origin` may read the gateway's answers.
    pub fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLimits {
    /// The largest request body.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The most records one produce request may carry.
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// How long a client may take to send a request's head.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// How long a client may take to send a request's body.
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default)]
    pub max_connections_per_source: usize,
    /// How many distinct topics get metric series of their own (the rest: `_other`).
    #[serde(default = "default_max_metric_topics")]
    pub max_metric_topics: usize,
    /// How many event streams may be open at once.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// How many records an event stream may hold for a slow client before it leaves the live
    /// tail (and catches up by reading Kafka again).
    #[serde(default = "default_max_queued_events")]
    pub max_queued_events: usize,
    /// How often an idle event stream sends a comment, so proxies keep it and a client that
    /// went away is noticed.
    #[serde(default = "default_keep_alive_ms")]
    pub keep_alive_ms: u64,
    /// How many consumer instances the gateway holds (each is a Kafka group member).
    #[serde(default = "default_max_consumers")]
    pub max_consumers: usize,
    #[serde(default = "default_max_consumers_per_principal")]
    pub max_consumers_per_principal: usize,
    /// A consumer instance nobody used for this long is deleted.
    #[serde(default = "default_consumer_idle_timeout_ms")]
    pub consumer_idle_timeout_ms: u64,
    /// The longest a records request may wait for records.
    #[serde(default = "default_max_poll_wait_ms")]
    pub max_poll_wait_ms: u64,
    /// The most bytes of keys and values one records answer carries (a request's `max_bytes`
    /// may ask for less).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_max_records() -> usize {
    1000
}
fn default_header_timeout_ms() -> u64 {
    10_000
}
fn default_body_timeout_ms() -> u64 {
    30_000
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_metric_topics() -> usize {
    1000
}
fn default_max_streams() -> usize {
    1000
}
fn default_max_queued_events() -> usize {
    1024
}
fn default_keep_alive_ms() -> u64 {
    15_000
}
fn default_max_consumers() -> usize {
    100
}
fn default_max_consumers_per_principal() -> usize {
    10
}
fn default_consumer_idle_timeout_ms() -> u64 {
    300_000
}
fn default_max_poll_wait_ms() -> u64 {
    30_000
}
fn default_max_response_bytes() -> usize {
    4 * 1024 * 1024
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: default_max_body_bytes(),
            max_records: default_max_records(),
            header_timeout_ms: default_header_timeout_ms(),
            body_timeout_ms: default_body_timeout_ms(),
            max_connections: default_max_connections(),
            max_connections_per_source: 0,
            max_metric_topics: default_max_metric_topics(),
            max_streams: default_max_streams(),
            max_queued_events: default_max_queued_events(),
            keep_alive_ms: default_keep_alive_ms(),
            max_consumers: default_max_consumers(),
            max_consumers_per_principal: default_max_consumers_per_principal(),
            consumer_idle_timeout_ms: default_consumer_idle_timeout_ms(),
            max_poll_wait_ms: default_max_poll_wait_ms(),
            max_response_bytes: default_max_response_bytes(),
        }
    }
}

impl HttpGatewayConfig {
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
            None,
            self.fixed_principal.clone(),
            self.authorization.clone(),
            origin,
        )
    }

    /// Checks what the types cannot; `origin` names the file in errors.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        self.kafka.validate(origin)?;
        let limits = &self.limits;
        for (key, value) in [
            ("limits.max_body_bytes", limits.max_body_bytes as u64),
            ("limits.max_records", limits.max_records as u64),
            ("limits.header_timeout_ms", limits.header_timeout_ms),
            ("limits.body_timeout_ms", limits.body_timeout_ms),
            ("limits.max_queued_events", limits.max_queued_events as u64),
            ("limits.keep_alive_ms", limits.keep_alive_ms),
            ("limits.consumer_idle_timeout_ms", limits.consumer_idle_timeout_ms),
            ("limits.max_response_bytes", limits.max_response_bytes as u64),
        ] {
            if value == 0 {
                return Err(invalid(origin, key, "expected more than 0"));
            }
        }
        if let Some(bearer) = &self.bearer {
            if bearer.jwks.is_none() == bearer.jwks_url.is_none() {
                return Err(invalid(origin, "bearer", "expected one of `jwks` (a file) and `jwks_url`"));
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
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway/http.yaml");
        if let Err(error) = HttpGatewayConfig::from_file(&example) {
            panic!("{}: {error}", example.display());
        }
    }
}
