//! The AMQP sidecar's configuration file (or `weir proxy --protocol amqp` flags).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use weir_core::audit::AuditConfig;
use weir_core::config::{invalid, load_yaml_file, BrokerCredentials, ConfigError};
use weir_core::policy::AuthorizationConfig;
use weir_core::telemetry::LogConfig;
use weir_core::tls::{TlsListenerConfig, TlsOriginConfig};

/// ```yaml
/// listen: 127.0.0.1:5673          # clients connect here
/// upstream: 127.0.0.1:5672        # RabbitMQ
/// credentials: /etc/weir/users.yaml   # PLAIN/AMQPLAIN logins checked (Kafka SASL's file)
/// authorization: {policy: /etc/weir/amqp-policy.yaml}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
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
    /// TLS towards clients (AMQPS); with `client_ca`, a client certificate names the principal
    /// (the Kafka sidecar's `tls:` keys).
    #[serde(default)]
    pub tls: Option<TlsListenerConfig>,
    /// Users and passwords logins are checked against: the same file as the Kafka sidecar's
    /// `sasl.credentials` (SCRAM entries). Without it, logins are not checked here (the
    /// broker still checks them) and connections act as `fixed_principal` (or
    /// `User:ANONYMOUS`).
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// The principal of every connection when there is no `credentials`.
    #[serde(default)]
    pub fixed_principal: Option<String>,
    /// What the sidecar logs in to the broker with (PLAIN), in every client's stead.
    #[serde(default)]
    pub broker_credentials: Option<BrokerCredentials>,
    /// Who may configure, write and read which exchanges and queues (see `authz`); without
    /// it everything is allowed.
    #[serde(default)]
    pub authorization: Option<AuthorizationConfig>,
    /// Logins and denials, one JSON line each.
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    #[serde(default)]
    pub limits: AmqpLimits,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpLimits {
    /// How long a new connection has, from accept, to send its protocol header and login.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// The largest login frame (connection.start-ok: what arrives before authentication).
    #[serde(default = "default_max_login_bytes")]
    pub max_login_bytes: usize,
    /// The largest frame after it, either way (RabbitMQ's default frame-max is 128 KiB).
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// How long connecting to the broker may take.
    #[serde(default = "default_upstream_connect_timeout_ms")]
    pub upstream_connect_timeout_ms: u64,
    /// Client connections at once (0: no limit), and from one address.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default)]
    pub max_connections_per_source: usize,
    /// How many distinct exchange and queue names get metric series of their own (the
    /// rest: `_other`).
    #[serde(default = "default_max_metric_names")]
    pub max_metric_names: usize,
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}
fn default_max_login_bytes() -> usize {
    64 * 1024
}
fn default_max_frame_bytes() -> usize {
    1024 * 1024
}
fn default_upstream_connect_timeout_ms() -> u64 {
    10_000
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_metric_names() -> usize {
    1000
}

impl Default for AmqpLimits {
    fn default() -> Self {
        AmqpLimits {
            handshake_timeout_ms: default_handshake_timeout_ms(),
            max_login_bytes: default_max_login_bytes(),
            max_frame_bytes: default_max_frame_bytes(),
            upstream_connect_timeout_ms: default_upstream_connect_timeout_ms(),
            max_connections: default_max_connections(),
            max_connections_per_source: 0,
            max_metric_names: default_max_metric_names(),
        }
    }
}

impl AmqpConfig {
    pub fn new(listen: SocketAddr, upstream: String) -> Self {
        AmqpConfig {
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
            limits: AmqpLimits::default(),
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
        let limits = &self.limits;
        // A login frame holds at least its header and ids; frame-max is at least 4096 in AMQP.
        if !(64..=limits.max_frame_bytes).contains(&limits.max_login_bytes)
            || limits.max_frame_bytes < weir_amqp::frame::MIN_FRAME_MAX
        {
            return Err(invalid(
                origin,
                "limits",
                "expected 64 <= max_login_bytes <= max_frame_bytes, and max_frame_bytes >= 4096 (AMQP's smallest frame-max)",
            ));
        }
        if limits.handshake_timeout_ms == 0 {
            return Err(invalid(origin, "limits.handshake_timeout_ms", "expected more than 0"));
        }
        Ok(())
    }
}
