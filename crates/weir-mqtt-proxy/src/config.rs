//! The MQTT sidecar's configuration file (or `weir proxy --protocol mqtt` flags).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use weir_core::audit::AuditConfig;
use weir_core::config::{invalid, load_yaml_file, BrokerCredentials, ConfigError};
use weir_core::policy::AuthorizationConfig;
use weir_core::telemetry::LogConfig;
use weir_core::tls::{TlsListenerConfig, TlsOriginConfig};

/// ```yaml
/// listen: 127.0.0.1:1884          # clients connect here
/// upstream: 127.0.0.1:1883        # the MQTT broker
/// credentials: /etc/weir/users.yaml   # CONNECT username/password checked (Kafka SASL's file)
/// authorization: {policy: /etc/weir/mqtt-policy.yaml}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub listen: SocketAddr,
    /// The broker, `host:port`.
    pub upstream: String,
    /// TLS towards the broker (`ca`, and `cert`/`key` for a broker that wants a client
    /// certificate, or `workload_identity` for the mesh's); without it, plaintext. The host of
    /// `upstream` is the name the broker's certificate must hold.
    #[serde(default)]
    pub upstream_tls: Option<TlsOriginConfig>,
    /// Admin HTTP: `/metrics`, `/healthz`, `/readyz`.
    #[serde(default)]
    pub admin: Option<SocketAddr>,
    /// TLS towards clients (MQTTS); with `client_ca`, a client certificate names the principal
    /// (the Kafka sidecar's `tls:` keys).
    #[serde(default)]
    pub tls: Option<TlsListenerConfig>,
    /// Users and passwords CONNECT is checked against: the same file as the Kafka sidecar's
    /// `sasl.credentials` (SCRAM entries). Without it, clients are not authenticated and
    /// act as `fixed_principal` (or `User:ANONYMOUS`).
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// The principal of every connection when there is no `credentials`.
    #[serde(default)]
    pub fixed_principal: Option<String>,
    /// What the sidecar logs in to the broker with, in every client's stead: the clients'
    /// own credentials then never reach the broker.
    #[serde(default)]
    pub broker_credentials: Option<BrokerCredentials>,
    /// Who may publish and subscribe to which topics (MQTT's words: see `authz`); without it
    /// everything is allowed.
    #[serde(default)]
    pub authorization: Option<AuthorizationConfig>,
    /// Logins and denials, one JSON line each.
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    #[serde(default)]
    pub limits: MqttLimits,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttLimits {
    /// How long a new connection has to send its CONNECT.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// The largest CONNECT (what arrives before authentication).
    #[serde(default = "default_max_connect_bytes")]
    pub max_connect_bytes: usize,
    /// The largest packet after it, either way.
    #[serde(default = "default_max_packet_bytes")]
    pub max_packet_bytes: usize,
    /// How long connecting to the broker may take.
    #[serde(default = "default_upstream_connect_timeout_ms")]
    pub upstream_connect_timeout_ms: u64,
    /// How many distinct topic names get metric series of their own (the rest: `_other`).
    #[serde(default = "default_max_metric_topics")]
    pub max_metric_topics: usize,
    /// Client connections at once (0: no limit), and from one address.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default)]
    pub max_connections_per_source: usize,
}

fn default_max_connections() -> usize {
    10_000
}

fn default_max_metric_topics() -> usize {
    1000
}

fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_max_connect_bytes() -> usize {
    64 * 1024
}
fn default_max_packet_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_upstream_connect_timeout_ms() -> u64 {
    10_000
}

impl Default for MqttLimits {
    fn default() -> Self {
        MqttLimits {
            connect_timeout_ms: default_connect_timeout_ms(),
            max_connect_bytes: default_max_connect_bytes(),
            max_packet_bytes: default_max_packet_bytes(),
            upstream_connect_timeout_ms: default_upstream_connect_timeout_ms(),
            max_metric_topics: default_max_metric_topics(),
            max_connections: default_max_connections(),
            max_connections_per_source: 0,
        }
    }
}

impl MqttConfig {
    pub fn new(listen: SocketAddr, upstream: String) -> Self {
        MqttConfig {
            listen,
            upstream,
            upstream_tls: None,
            admin: None,
            tls: None,
            credentials: None,
            fixed_principal: None,
            broker_credentials: None,
            authorization: None,
            audit: None,
            limits: MqttLimits::default(),
            log: LogConfig::default(),
        }
    }

    pub fn from_file(file: &Path) -> Result<Self, ConfigError> {
        load_yaml_file(file)
    }

    /// The config as JSON (a managed sidecar's snapshot), read and checked as a file is.
    pub fn from_json(value: serde_json::Value, origin: &Path) -> Result<Self, ConfigError> {
        let config: Self = weir_core::config::from_json(value, origin)?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks what the types cannot; `origin` names the file (or the command line) in errors.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        if !self.upstream.contains(':') {
            return Err(invalid(origin, "upstream", format!("`{}` is not host:port", self.upstream)));
        }
        if self.credentials.is_some() && self.fixed_principal.is_some() {
            return Err(invalid(origin, "fixed_principal", "clients authenticate with `credentials`: not both"));
        }
        // MQTT's largest packet is 256 MiB; a CONNECT needs at least its fixed header.
        let limits = &self.limits;
        if !(16..=limits.max_packet_bytes).contains(&limits.max_connect_bytes) || limits.max_packet_bytes > 268_435_460
        {
            return Err(invalid(
                origin,
                "limits",
                "expected 16 <= max_connect_bytes <= max_packet_bytes <= 268435460 (MQTT's largest packet)",
            ));
        }
        if let Some(broker) = &self.broker_credentials {
            // MQTT strings carry at most 65,535 bytes.
            if broker.username.len() > 65_535 || broker.password.len() > 65_535 {
                return Err(invalid(origin, "broker_credentials", "a username or password over 65535 bytes"));
            }
        }
        if limits.connect_timeout_ms == 0 {
            return Err(invalid(origin, "limits.connect_timeout_ms", "expected more than 0"));
        }
        Ok(())
    }
}
