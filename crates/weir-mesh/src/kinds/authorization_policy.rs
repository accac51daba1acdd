//! `AuthorizationPolicy`: the rules of a sidecar's policy file, for the workloads of its
//! protocol its selector picks. A workload's policy is every selecting resource's rules
//! together (deny wins, as within one file). The rules are in the protocol's words: Kafka's
//! topics and groups, MQTT's topic filters, AMQP's exchanges and queues.

use serde::Deserialize;
use weir_core::policy::{Policy, RuleSpec};

use super::Selector;
use crate::error::MeshError;
use crate::protocol::Protocol;
use crate::resource::Resource;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    /// The workloads it may apply to: those of this protocol (default Kafka).
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub selector: Selector,
    pub rules: Vec<RuleSpec>,
}

pub(crate) fn check(resource: &Resource) -> Result<(), MeshError> {
    let spec: AuthorizationPolicySpec = super::spec(resource)?;
    if spec.protocol.is_gateway() {
        return Err(MeshError::invalid(
            resource.id(),
            "spec.protocol",
            format!(
                "{} workloads are judged by the Kafka policies (`protocol: kafka`) on the topics they reach",
                spec.protocol
            ),
        ));
    }
    let (words, check) = spec.protocol.vocabulary();
    let origin = super::origin(resource);
    let policy =
        Policy::from_rules(spec.rules, &origin, words).map_err(|err| super::from_config_error(resource, "", err))?;
    check(&policy, &origin).map_err(|err| super::from_config_error(resource, "", err))
}
