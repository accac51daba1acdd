//! `MqttBroker` and `AmqpBroker`: the broker an MQTT or AMQP workload's sidecar fronts, and
//! what the sidecar logs in to it with — the `upstream` and `broker_credentials` keys of those
//! sidecars' config files.

use serde::Deserialize;
use weir_core::config::BrokerCredentials;

use crate::error::MeshError;
use crate::resource::Resource;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSpec {
    /// The broker, `host:port`.
    pub upstream: String,
    /// What the sidecar logs in to the broker with, in every client's stead.
    #[serde(default)]
    pub broker_credentials: Option<BrokerCredentials>,
}

pub(crate) fn check(resource: &Resource) -> Result<(), MeshError> {
    let spec: BrokerSpec = super::spec(resource)?;
    super::check_host_port(&spec.upstream).map_err(|m| MeshError::invalid(resource.id(), "spec.upstream", m))
}
