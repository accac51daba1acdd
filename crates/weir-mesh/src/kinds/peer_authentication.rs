//! `PeerAuthentication`: how clients of the selected workloads prove who they are — the
//! `tls`, `sasl` and `fixed_principal` sections of a sidecar's config file. At most one
//! applies to a workload.

use serde::Deserialize;
use weir_core::sasl::SaslServerConfig;
use weir_core::tls::TlsListenerConfig;

use super::Selector;
use crate::error::MeshError;
use crate::resource::Resource;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerAuthenticationSpec {
    #[serde(default)]
    pub selector: Selector,
    #[serde(default)]
    pub tls: Option<TlsListenerConfig>,
    #[serde(default)]
    pub sasl: Option<SaslServerConfig>,
    #[serde(default)]
    pub fixed_principal: Option<String>,
}

pub(crate) fn check(resource: &Resource) -> Result<(), MeshError> {
    let _: PeerAuthenticationSpec = super::spec(resource)?;
    Ok(())
}
