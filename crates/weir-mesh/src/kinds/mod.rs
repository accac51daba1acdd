//! The kinds of resource and what each one's `spec` must hold: one module per kind, one arm
//! per kind in each match below. A later kind (quotas, routes, validation rules) adds a module
//! and its arms.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::MeshError;
use crate::resource::Resource;

pub mod authorization_policy;
pub mod broker;
pub mod certificate_revocation;
pub mod kafka_cluster;
pub mod peer_authentication;
pub mod workload;

/// The kinds of resource the mesh knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A Kafka cluster the mesh fronts: its brokers and how sidecars reach them.
    KafkaCluster,
    /// An MQTT broker the mesh fronts, and what its sidecars log in to it with.
    MqttBroker,
    /// An AMQP 0.9.1 broker (RabbitMQ) the mesh fronts, and what its sidecars log in with.
    AmqpBroker,
    /// One service's sidecar: its protocol, which cluster or broker, where it listens, its
    /// limits.
    Workload,
    /// Who may do what to which topics, groups, transactional ids, for the workloads selected.
    AuthorizationPolicy,
    /// How the selected workloads' clients prove who they are (TLS, SASL, a fixed principal).
    PeerAuthentication,
    /// Certificates of a workload issued before a moment, no longer accepted.
    CertificateRevocation,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::KafkaCluster,
        Kind::MqttBroker,
        Kind::AmqpBroker,
        Kind::Workload,
        Kind::AuthorizationPolicy,
        Kind::PeerAuthentication,
        Kind::CertificateRevocation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::KafkaCluster => "KafkaCluster",
            Kind::MqttBroker => "MqttBroker",
            Kind::AmqpBroker => "AmqpBroker",
            Kind::Workload => "Workload",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::CertificateRevocation => "CertificateRevocation",
        }
    }

    /// Short names for the CLI (`weir ctl get wl`), as `kubectl` has them.
    fn short_name(self) -> &'static str {
        match self {
            Kind::KafkaCluster => "kc",
            Kind::MqttBroker => "mb",
            Kind::AmqpBroker => "ab",
            Kind::Workload => "wl",
            Kind::AuthorizationPolicy => "ap",
            Kind::PeerAuthentication => "pa",
            Kind::CertificateRevocation => "revocation",
        }
    }

    /// The kind as written in a resource: exactly its name.
    pub fn parse_exact(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == text)
    }

    /// The kind as a person types it: any case, singular or plural, or the short name.
    pub fn parse(text: &str) -> Option<Kind> {
        let lower = text.to_ascii_lowercase();
        let singular = lower.strip_suffix('s').unwrap_or(&lower);
        Kind::ALL.into_iter().find(|k| {
            let name = k.name().to_ascii_lowercase();
            lower == name || singular == name || lower == k.short_name() || singular == k.short_name()
        })
    }

    pub fn names() -> String {
        Kind::ALL.map(Kind::name).join(", ")
    }

    /// Checks the resource's spec against this kind's type.
    pub(crate) fn check_spec(self, resource: &Resource) -> Result<(), MeshError> {
        match self {
            Kind::KafkaCluster => kafka_cluster::check(resource),
            Kind::MqttBroker | Kind::AmqpBroker => broker::check(resource),
            Kind::Workload => workload::check(resource),
            Kind::AuthorizationPolicy => authorization_policy::check(resource),
            Kind::PeerAuthentication => peer_authentication::check(resource),
            Kind::CertificateRevocation => certificate_revocation::check(resource),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads a resource's spec as the kind's type; errors name the resource and the field.
pub(crate) fn spec<T: DeserializeOwned>(resource: &Resource) -> Result<T, MeshError> {
    let value = if resource.spec.is_null() { serde_json::json!({}) } else { resource.spec.clone() };
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let field =
            if path.is_empty() || path == "?" || path == "." { "spec".to_owned() } else { format!("spec.{path}") };
        MeshError::invalid(resource.id(), field, crate::resource::first_line(&err.into_inner().to_string()))
    })
}

/// A config error from a shared checker, re-said about the resource (`spec.` + its key).
pub(crate) fn from_config_error(resource: &Resource, section: &str, err: weir_core::config::ConfigError) -> MeshError {
    match err {
        weir_core::config::ConfigError::Invalid { key, message, .. } => {
            let field = ["spec", section, if key == "." { "" } else { &key }]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(".");
            MeshError::invalid(resource.id(), field.replace(".[", "["), message)
        }
        other => MeshError::invalid(resource.id(), format!("spec.{section}"), other.to_string()),
    }
}

/// The origin a shared checker puts into its errors (replaced by [`from_config_error`]).
pub(crate) fn origin(resource: &Resource) -> std::path::PathBuf {
    Path::new(&resource.id()).to_owned()
}

/// A broker address: `host:port`.
pub(crate) fn check_host_port(server: &str) -> Result<(), String> {
    match server.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>())) {
        Some((host, Ok(_))) if !host.is_empty() => Ok(()),
        _ => Err(format!("`{server}` is not `host:port`")),
    }
}

/// Which workloads a policy applies to: those named, and those whose labels match. An empty
/// selector selects every workload (a mesh-wide default).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default)]
    pub workloads: Vec<String>,
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.workloads.is_empty() && self.match_labels.is_empty()
    }

    /// Whether the workload `name` with `labels` is selected.
    pub fn selects(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.is_empty() {
            return true;
        }
        let named = self.workloads.iter().any(|w| w == name);
        let labelled = !self.match_labels.is_empty() && self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v));
        named || labelled
    }
}
