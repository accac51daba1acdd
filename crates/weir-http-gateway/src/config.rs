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
    #[serde(default)]
    pub limits: HttpLimits,
    #[serde(default)]
    pub log: LogConfig,
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
        }
    }
}

impl HttpGatewayConfig {
    pub fn from_file(file: &Path) -> Result<Self, ConfigError> {
        let config: Self = load_yaml_file(file)?;
        config.validate(file)?;
        Ok(config)
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
