//! The sidecar's configuration: the same types serve a YAML file, command-line flags and (later)
//! snapshots from the control plane. Every field has a default except where to listen and
//! which cluster to front.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use weir_core::audit::AuditConfig;
use weir_core::config::{invalid, ConfigError};
use weir_core::policy::AuthorizationConfig;
use weir_core::sasl::{SaslClientConfig, SaslServerConfig};
pub use weir_core::telemetry::LogConfig;
use weir_core::tls::{TlsListenerConfig, TlsOriginConfig};

/// A Kafka sidecar.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarConfig {
    /// Where clients bootstrap (their `bootstrap.servers`).
    pub listen: SocketAddr,
    /// The cluster's bootstrap servers, `host:port`.
    pub bootstrap: Vec<String>,
    /// Admin HTTP address for `/metrics`, `/healthz`, `/readyz`; none when absent.
    #[serde(default)]
    pub admin: Option<SocketAddr>,
    /// Host written into rewritten broker addresses; defaults to the listen IP.
    #[serde(default)]
    pub advertised_host: Option<String>,
    /// The principal of every client of this sidecar when TLS does not name one: the mesh
    /// case, where the sidecar on loopback *is* its service's identity.
    #[serde(default)]
    pub fixed_principal: Option<String>,
    /// JSON-lines audit log of authentication outcomes; none when absent.
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    /// SASL terminated at the sidecar (clients authenticate here; brokers see the sidecar);
    /// absent: SASL exchanges pass through to the brokers unchanged.
    #[serde(default)]
    pub sasl: Option<SaslServerConfig>,
    /// TLS on the client side (all listeners); plaintext when absent.
    #[serde(default)]
    pub tls: Option<TlsListenerConfig>,
    /// Topic-level authorization by a policy file; every request is allowed when absent.
    #[serde(default)]
    pub authorization: Option<AuthorizationConfig>,
    /// Quotas per principal (and client id): byte rates, request time and connections, with Kafka's throttling semantics;
    /// changes apply live. None by default.
    #[serde(default)]
    pub quotas: Vec<crate::quota::QuotaRule>,
    /// Fault injection (chaos) rules; off when empty, the default. Changes apply live.
    #[serde(default)]
    pub faults: Vec<crate::fault::FaultRule>,
    /// Traffic shadowing: writes to a topic copied to a shadow topic; none by default.
    /// Changes apply live.
    #[serde(default)]
    pub shadows: Vec<crate::shadow::ShadowRule>,
    /// Topic aliases: a topic clients name is another topic of the cluster; none by
    /// default. Changes apply live.
    #[serde(default)]
    pub topic_aliases: Vec<crate::alias::TopicAlias>,
    /// Canary routing: a share of a topic's partitions written to another topic; none by
    /// default. Changes apply live.
    #[serde(default)]
    pub canaries: Vec<crate::canary::CanaryRule>,
    /// Topic creation limits: topics created or grown outside them are refused; none by
    /// default. Changes apply live.
    #[serde(default)]
    pub topic_creation: Vec<crate::topic_limits::TopicCreationRule>,
    /// Produce safeguards: writes to guarded topics that break a rule are refused; none by
    /// default. Changes apply live.
    #[serde(default)]
    pub produce_safeguards: Vec<crate::safeguard::ProduceSafeguard>,
    /// The schema registry that schema validation asks (its Confluent-compatible API); none
    /// by default. Read at start.
    #[serde(default)]
    pub schema_registry: Option<weir_schema::registry::RegistryConfig>,
    /// Schema validation: records written to covered topics that are not of the rule's
    /// format and schema are refused; none by default. Changes apply live.
    #[serde(default)]
    pub schema_validation: Vec<crate::schema_rules::SchemaRule>,
    /// Record transformation: headers of records written to covered topics removed and added
    /// (lineage); none by default. Changes apply live.
    #[serde(default)]
    pub transforms: Vec<crate::transform::TransformRule>,
    /// Where encryption's key-encryption keys are; none by default. Read at start.
    #[serde(default)]
    pub kms: Option<crate::encryption::KmsConfig>,
    /// Envelope encryption: records written to covered topics sealed, opened on fetch for
    /// the principals a rule names; none by default. Changes apply live.
    #[serde(default)]
    pub encryption: Vec<crate::encryption::EncryptionRule>,
    /// Where spans are exported (OTLP/HTTP); none by default. Read at start.
    #[serde(default)]
    pub otlp: Option<weir_core::otlp::OtlpConfig>,
    /// Tracing through record headers; off by default. Changes apply live.
    #[serde(default)]
    pub traces: Option<crate::traces::TraceRules>,
    #[serde(default)]
    pub broker_ports: BrokerPorts,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub limits: Limits,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(default = "defaults::shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Threads serving connections (at most this many cores busy at once). One by default, as
    /// a sidecar shares its host with the service it serves: a second thread cost more CPU per
    /// GB and did not move more (docs/benchmarks.md, issue 10). More for many busy TLS clients.
    #[serde(default = "defaults::workers")]
    pub workers: usize,
    #[serde(default)]
    pub log: LogConfig,
}

/// Port-per-broker: broker `n` is reachable through the sidecar at `base + n`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerPorts {
    /// First port; defaults to the listen port + 1.
    #[serde(default)]
    pub base: Option<u16>,
    /// How many node ids (0..count) get a port.
    #[serde(default = "defaults::port_count")]
    pub count: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// A client connection with no request for this long is closed (as brokers do after
    /// `connections.max.idle.ms`).
    #[serde(default = "defaults::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Static name resolution for broker hosts, like `curl --resolve`: `host: ip`, or
    /// `"*.suffix": ip` for every host under a domain. Lets the sidecar reach brokers that
    /// advertise names only it can resolve.
    #[serde(default)]
    pub resolve: BTreeMap<String, IpAddr>,
    /// TLS towards the brokers; plaintext when absent.
    #[serde(default)]
    pub tls: Option<TlsOriginConfig>,
    /// SASL towards the brokers with the sidecar's own credentials, so services hold none.
    /// Absent: no SASL of the sidecar's own (a client's exchange may still pass through).
    #[serde(default)]
    pub sasl: Option<SaslClientConfig>,
    /// Broker credentials chosen by the client's principal (known at connect time: its
    /// certificate or `fixed_principal`); the first rule that matches wins, else `sasl`.
    #[serde(default)]
    pub sasl_by_principal: Vec<PrincipalSasl>,
    /// Brokers that fail to connect several times in a row are ejected for a while (on by
    /// default; `consecutive_failures: 0` turns it off).
    #[serde(default)]
    pub outlier_detection: crate::outlier::OutlierDetection,
    /// At most so many requests in flight to one broker (none by default).
    #[serde(default)]
    pub circuit_breaker: crate::breaker::CircuitBreaker,
}

/// One mapping from client principals to the broker identity the sidecar uses for them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSasl {
    /// Principal patterns: exact, `prefix*`, `*`, or a glob.
    pub principals: Vec<String>,
    pub sasl: SaslClientConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest frame accepted from a client or a broker.
    #[serde(default = "defaults::max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// Requests awaiting a response per connection before the sidecar stops reading more.
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// Largest frame accepted before the client has authenticated (SASL at the sidecar), as
    /// Kafka's `sasl.server.max.receive.size`: a larger one closes the connection unread.
    #[serde(default = "defaults::max_unauthenticated_frame_bytes")]
    pub max_unauthenticated_frame_bytes: usize,
    /// How long after connecting a client may take to finish its SASL exchange (SASL at the
    /// sidecar); then the connection is closed. (A TLS handshake has its own timeout.)
    #[serde(default = "defaults::authentication_timeout_ms")]
    pub authentication_timeout_ms: u64,
    /// Client connections held at once, all listeners together; more are closed at accept.
    /// 0: no limit (the descriptor limit still is one).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Client connections held at once from one IP address; 0: no limit.
    #[serde(default = "defaults::max_connections_per_source")]
    pub max_connections_per_source: usize,
    /// New client connections the sidecar serves a second, after a burst of one second's
    /// worth; those past it are served late (they wait in the listener's backlog). Absent:
    /// no limit.
    #[serde(default)]
    pub connections_per_second: Option<f64>,
    /// The most a compressed record batch may decompress to when a rule must read its
    /// records (a produce safeguard on record size or headers); a batch that grows larger is
    /// refused unread (POLICY_VIOLATION), so a small batch cannot make the sidecar hold a
    /// large one.
    #[serde(default = "defaults::max_decompressed_batch_bytes")]
    pub max_decompressed_batch_bytes: usize,
}

mod defaults {
    pub fn port_count() -> u16 {
        100
    }
    pub fn connect_timeout_ms() -> u64 {
        10_000
    }
    pub fn idle_timeout_ms() -> u64 {
        600_000
    }
    pub fn max_frame_bytes() -> usize {
        100 * 1024 * 1024
    }
    pub fn max_decompressed_batch_bytes() -> usize {
        64 * 1024 * 1024
    }
    pub fn max_in_flight() -> usize {
        1024
    }
    pub fn max_unauthenticated_frame_bytes() -> usize {
        512 * 1024
    }
    pub fn authentication_timeout_ms() -> u64 {
        5_000
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn max_connections_per_source() -> usize {
        1_000
    }
    pub fn shutdown_grace_ms() -> u64 {
        10_000
    }
    pub fn workers() -> usize {
        1
    }
}

impl Default for BrokerPorts {
    fn default() -> Self {
        Self { base: None, count: defaults::port_count() }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: defaults::connect_timeout_ms(),
            outlier_detection: Default::default(),
            circuit_breaker: Default::default(),
            idle_timeout_ms: defaults::idle_timeout_ms(),
            resolve: BTreeMap::new(),
            tls: None,
            sasl: None,
            sasl_by_principal: Vec::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: defaults::max_frame_bytes(),
            max_in_flight: defaults::max_in_flight(),
            max_unauthenticated_frame_bytes: defaults::max_unauthenticated_frame_bytes(),
            authentication_timeout_ms: defaults::authentication_timeout_ms(),
            max_connections: defaults::max_connections(),
            max_connections_per_source: defaults::max_connections_per_source(),
            connections_per_second: None,
            max_decompressed_batch_bytes: defaults::max_decompressed_batch_bytes(),
        }
    }
}

impl SidecarConfig {
    /// A config from the two settings that have no default.
    pub fn new(listen: SocketAddr, bootstrap: Vec<String>) -> Self {
        Self {
            listen,
            bootstrap,
            admin: None,
            advertised_host: None,
            fixed_principal: None,
            sasl: None,
            audit: None,
            tls: None,
            authorization: None,
            quotas: Vec::new(),
            faults: Vec::new(),
            shadows: Vec::new(),
            topic_aliases: Vec::new(),
            canaries: Vec::new(),
            topic_creation: Vec::new(),
            produce_safeguards: Vec::new(),
            schema_registry: None,
            schema_validation: Vec::new(),
            transforms: Vec::new(),
            kms: None,
            encryption: Vec::new(),
            otlp: None,
            traces: None,
            broker_ports: BrokerPorts::default(),
            upstream: UpstreamConfig::default(),
            limits: Limits::default(),
            shutdown_grace_ms: defaults::shutdown_grace_ms(),
            workers: defaults::workers(),
            log: LogConfig::default(),
        }
    }

    /// Reads a YAML config file.
    pub fn from_file(file: &Path) -> Result<Self, ConfigError> {
        let config: Self = weir_core::config::load_yaml_file(file)?;
        config.validate(file)?;
        Ok(config)
    }

    /// Reads a config sent as JSON (by the control plane); `origin` names it in errors.
    pub fn from_json(value: serde_json::Value, origin: &Path) -> Result<Self, ConfigError> {
        let config: Self = weir_core::config::from_json(value, origin)?;
        config.validate(origin)?;
        Ok(config)
    }

    /// The fault rules, checked and compiled; two with one name are refused.
    pub fn fault_plans(&self, origin: &Path) -> Result<Vec<crate::fault::FaultPlan>, ConfigError> {
        let mut plans = Vec::with_capacity(self.faults.len());
        for (i, rule) in self.faults.iter().enumerate() {
            plans.push(rule.compile(origin, &format!("faults[{i}]"))?);
        }
        unique_names(self.faults.iter().map(|rule| rule.name.as_str()), "faults", origin)?;
        Ok(plans)
    }

    /// Checks what serde cannot; `origin` names where the config came from in errors.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        if self.bootstrap.is_empty() {
            return Err(invalid(origin, "bootstrap", "at least one bootstrap server is required"));
        }
        if !(1..=256).contains(&self.workers) {
            return Err(invalid(origin, "workers", format!("must be 1 to 256, not {}", self.workers)));
        }
        for (i, server) in self.bootstrap.iter().enumerate() {
            if split_host_port(server).is_none() {
                return Err(invalid(origin, &format!("bootstrap[{i}]"), format!("`{server}` is not host:port")));
            }
        }
        for (i, rule) in self.quotas.iter().enumerate() {
            rule.validate(origin, &format!("quotas[{i}]"))?;
        }
        unique_names(self.quotas.iter().map(|rule| rule.name.as_str()), "quotas", origin)?;
        self.fault_plans(origin)?;
        if let Some(rate) = self.limits.connections_per_second.filter(|rate| rate.is_nan() || *rate < 1.0) {
            return Err(invalid(origin, "limits.connections_per_second", format!("must be at least 1, not {rate}")));
        }
        crate::shadow::validate_rules(&self.shadows, origin)?;
        crate::alias::validate_aliases(&self.topic_aliases, origin)?;
        crate::canary::validate_rules(&self.canaries, origin)?;
        crate::topic_limits::validate_rules(&self.topic_creation, origin)?;
        crate::safeguard::validate_rules(&self.produce_safeguards, origin)?;
        if let Some(Err((field, why))) = self.schema_registry.as_ref().map(|registry| registry.check()) {
            return Err(invalid(origin, &format!("schema_registry.{field}"), why));
        }
        crate::schema_rules::validate_rules(&self.schema_validation, self.schema_registry.is_some(), origin)?;
        crate::transform::validate_rules(&self.transforms, origin)?;
        crate::encryption::validate_rules(&self.encryption, self.kms.is_some(), origin)?;
        if let Some(Err((field, why))) = self.otlp.as_ref().map(|otlp| otlp.check()) {
            return Err(invalid(origin, &format!("otlp.{field}"), why));
        }
        if let Some(traces) = &self.traces {
            traces.validate(origin, self.otlp.is_some())?;
        }
        if let Err((field, why)) = self.upstream.outlier_detection.validate() {
            return Err(invalid(origin, &format!("upstream.outlier_detection.{field}"), why));
        }
        if let Err((field, why)) = self.upstream.circuit_breaker.validate() {
            return Err(invalid(origin, &format!("upstream.circuit_breaker.{field}"), why));
        }
        let (first, last) = self.broker_port_range();
        if u32::from(first) + u32::from(self.broker_ports.count) > 65536 {
            return Err(invalid(
                origin,
                "broker_ports",
                format!("{} ports from {first} run past 65535", self.broker_ports.count),
            ));
        }
        if self.broker_ports.count > 0 && (first..=last).contains(&self.listen.port()) {
            return Err(invalid(
                origin,
                "broker_ports.base",
                format!("range {first}-{last} contains the listen port {}", self.listen.port()),
            ));
        }
        if self.limits.max_frame_bytes < 1024 || self.limits.max_frame_bytes > i32::MAX as usize {
            return Err(invalid(origin, "limits.max_frame_bytes", "expected between 1024 and 2147483647"));
        }
        let decompressed = self.limits.max_decompressed_batch_bytes;
        if !(1024..=i32::MAX as usize).contains(&decompressed) {
            return Err(invalid(origin, "limits.max_decompressed_batch_bytes", "expected between 1024 and 2147483647"));
        }
        if self.limits.max_in_flight == 0 {
            return Err(invalid(origin, "limits.max_in_flight", "expected at least 1"));
        }
        let unauthenticated = self.limits.max_unauthenticated_frame_bytes;
        if unauthenticated < 1024 || unauthenticated > self.limits.max_frame_bytes {
            return Err(invalid(
                origin,
                "limits.max_unauthenticated_frame_bytes",
                format!("expected between 1024 and limits.max_frame_bytes ({})", self.limits.max_frame_bytes),
            ));
        }
        if self.limits.authentication_timeout_ms == 0 {
            return Err(invalid(origin, "limits.authentication_timeout_ms", "expected at least 1"));
        }
        if let Some(sasl) = &self.sasl {
            sasl.check().map_err(|(key, message)| invalid(origin, key, message))?;
        }
        for host in self.upstream.resolve.keys() {
            if host.is_empty() || host == "*." {
                return Err(invalid(origin, "upstream.resolve", "empty host name"));
            }
        }
        Ok(())
    }

    /// Inclusive range of broker listener ports.
    pub fn broker_port_range(&self) -> (u16, u16) {
        let first = self.broker_ports.base.unwrap_or_else(|| self.listen.port().saturating_add(1));
        let last = first.saturating_add(self.broker_ports.count.saturating_sub(1));
        (first, last)
    }

    /// The host clients are told to connect to.
    pub fn advertised_host(&self) -> String {
        self.advertised_host.clone().unwrap_or_else(|| self.listen.ip().to_string())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream.connect_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream.idle_timeout_ms)
    }

    pub fn authentication_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.authentication_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// Splits `host:port` (or `[v6]:port`).
pub fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// Refuses the first rule of the config list `list` whose name (`names`, in order) an earlier
/// rule has: names stand for rules in metrics, logs and refusals.
pub(crate) fn unique_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
    list: &str,
    origin: &Path,
) -> Result<(), ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        if let Some(j) = seen.iter().position(|earlier| *earlier == name) {
            let why = format!("`{name}` is also {list}[{j}]'s name");
            return Err(invalid(origin, &format!("{list}[{i}].name"), why));
        }
        seen.push(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SidecarConfig, String> {
        let config: SidecarConfig =
            weir_core::config::parse_yaml(text, Path::new("sidecar.yaml")).map_err(|e| e.to_string())?;
        config.validate(Path::new("sidecar.yaml")).map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("listen: 127.0.0.1:19092\nbootstrap: [127.0.0.1:9092]\n").unwrap();
        assert_eq!(c.broker_port_range(), (19093, 19192));
        assert_eq!(c.advertised_host(), "127.0.0.1");
        assert_eq!(c.limits.max_frame_bytes, 100 * 1024 * 1024);
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("listen: 127.0.0.1:19092\nbootstrap: [nope]\n").unwrap_err();
        assert!(e.contains("sidecar.yaml") && e.contains("`bootstrap[0]`"), "{e}");
        let e = parse("listen: 127.0.0.1:19092\nbootstrap: [a:1]\nbroker_ports: {base: 19000}\n").unwrap_err();
        assert!(e.contains("`broker_ports.base`"), "{e}");
        let e = parse("listen: 127.0.0.1:19092\nbootstrap: [a:1]\nlimits: {max_in_flight: x}\n").unwrap_err();
        assert!(e.contains("`limits.max_in_flight`"), "{e}");
        let e = parse("listen: nowhere\nbootstrap: [a:1]\n").unwrap_err();
        assert!(e.contains("`listen`"), "{e}");
        let e = parse("listen: 127.0.0.1:1\nbootstrap: [a:1]\nlimits: {connections_per_second: 0.5}\n").unwrap_err();
        assert!(e.contains("`limits.connections_per_second`") && e.contains("0.5"), "{e}");
        let e = parse(
            "listen: 127.0.0.1:1\nbootstrap: [a:1]\nupstream: {circuit_breaker: {max_connections_per_broker: 0}}\n",
        );
        assert!(e.unwrap_err().contains("`upstream.circuit_breaker.max_connections_per_broker`"));
    }

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("a.b:9092"), Some(("a.b", 9092)));
        assert_eq!(split_host_port("[::1]:9092"), Some(("::1", 9092)));
        assert_eq!(split_host_port("a.b"), None);
        assert_eq!(split_host_port(":1"), None);
    }
}
