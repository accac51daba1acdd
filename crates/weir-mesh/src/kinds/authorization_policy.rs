//! `AuthorizationPolicy`: the rules of a sidecar's policy file, for the workloads its
//! selector picks. A workload's policy is every selecting resource's rules together (deny
//! wins, as within one file).

use serde::Deserialize;
use weir_core::policy::{Policy, RuleSpec};
use weir_kafka_proxy::vocabulary::KAFKA;

use super::Selector;
use crate::error::MeshError;
use crate::resource::Resource;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    #[serde(default)]
    pub selector: Selector,
    pub rules: Vec<RuleSpec>,
}

pub(crate) fn check(resource: &Resource) -> Result<(), MeshError> {
    let spec: AuthorizationPolicySpec = super::spec(resource)?;
    Policy::from_rules(spec.rules, &super::origin(resource), &KAFKA)
        .map_err(|err| super::from_config_error(resource, "", err))?;
    Ok(())
}
