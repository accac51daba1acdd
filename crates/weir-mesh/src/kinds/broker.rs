//! `MqttBroker` and `AmqpBroker`: the broker an MQTT or AMQP workload's sidecar fronts, how it
//! reaches it and what it logs in with — the `upstream`, `upstream_tls` and
//! `broker_credentials` keys of those sidecars' config files.

use serde::Deserialize;
use weir_core::config::BrokerCredentials;

use crate::error::MeshError;
use crate::resource::Resource;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSpec {
    /// The broker, `host:port`.
    pub upstream: String,
    /// TLS towards it (`workload_identity: true` presents the workload's mesh certificate).
    #[serde(default)]
    pub upstream_tls: Option<weir_core::tls::TlsOriginConfig>,
    /// What the sidecar logs in to the broker with, in every client's stead.
    #[serde(default)]
    pub broker_credentials: Option<BrokerCredentials>,
}

pub(crate) fn check(resource: &Resource) -> Result<(), MeshError> {
    let spec: BrokerSpec = super::spec(resource)?;
    super::check_host_port(&spec.upstream).map_err(|m| MeshError::invalid(resource.id(), "spec.upstream", m))
}
