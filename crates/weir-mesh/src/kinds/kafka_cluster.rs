//! `KafkaCluster`: the brokers a sidecar fronts, and how it reaches them — the `bootstrap` and
//! `upstream` sections of a sidecar's config file.

use serde::Deserialize;
use weir_kafka_proxy::config::UpstreamConfig;

use crate::error::MeshError;
use crate::resource::Resource;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaClusterSpec {
    /// `host:port` of one or more brokers.
    pub bootstrap: Vec<String>,
    /// TLS, SASL, timeouts and name resolution towards the brokers.
    #[serde(default)]
    pub upstream: UpstreamConfig,
}

pub(crate) fn check(resource: &Resource) -> Result<(), MeshError> {
    let spec: KafkaClusterSpec = super::spec(resource)?;
    if spec.bootstrap.is_empty() {
        return Err(MeshError::invalid(resource.id(), "spec.bootstrap", "at least one `host:port` is required"));
    }
    for (i, server) in spec.bootstrap.iter().enumerate() {
        super::check_host_port(server)
            .map_err(|m| MeshError::invalid(resource.id(), format!("spec.bootstrap[{i}]"), m))?;
    }
    Ok(())
}
