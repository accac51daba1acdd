//! The MQTT sidecar: weir-core's broker-sidecar front (rules, TLS, audit, listeners, accept
//! loop) with MQTT's words, metrics and session.

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use weir_core::front::{Front, FrontConfig, FrontError};
use weir_core::rules::{RuleKeeper, RuleSources};

use crate::authz::{check_policy, MQTT};
use crate::config::MqttConfig;
use crate::metrics::MqttMetrics;
use crate::session::{serve, Shared, LISTENER};

/// Why the sidecar could not start.
pub type MqttSidecarError = FrontError;

/// Who may log in and what they may do, from `config` (named `origin` in errors), in
/// MQTT's words.
pub fn rule_sources(config: &MqttConfig, origin: &Path) -> RuleSources {
    RuleSources {
        tls: config.tls.clone(),
        upstream_tls: config.upstream_tls.clone(),
        credentials: config.credentials.clone(),
        fixed_principal: config.fixed_principal.clone(),
        authorization: config.authorization.clone(),
        origin: origin.to_owned(),
        words: &MQTT,
        check: check_policy,
    }
}

pub struct MqttSidecar {
    front: Front,
    shared: Arc<Shared>,
}

impl MqttSidecar {
    /// Reads the credentials, the policy and the TLS files, opens the audit log and binds the
    /// listeners.
    pub async fn bind(config: MqttConfig, origin: &Path) -> Result<Self, MqttSidecarError> {
        let rules = rule_sources(&config, origin);
        let mut front = Front::bind(FrontConfig {
            name: LISTENER,
            listen: config.listen,
            admin: config.admin,
            audit: config.audit.as_ref(),
            rules,
            max_connections: config.limits.max_connections,
            max_connections_per_source: config.limits.max_connections_per_source,
        })
        .await?;
        let metrics = MqttMetrics::new(&mut front.registry, config.limits.max_metric_topics);
        let shared = Arc::new(Shared { rules: front.rules.clone(), audit: front.audit.clone(), config, metrics });
        Ok(MqttSidecar { front, shared })
    }

    /// What has flowed through it, for the mesh's topology.
    pub fn flows(&self) -> weir_core::control::FlowSource {
        self.shared.metrics.flows()
    }

    /// What puts new rules in force (a managed sidecar's snapshots).
    pub fn rule_keeper(&self) -> Arc<RuleKeeper> {
        self.front.rule_keeper.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.front.local_addr()
    }

    /// Serves clients until `stop`; connections open then end with the process.
    pub async fn run(self, stop: CancellationToken) {
        let (config, current) = (&self.shared.config, self.shared.rules.borrow().clone());
        tracing::info!(
            listen = %config.listen,
            upstream = %config.upstream,
            tls = current.tls.is_some(),
            authenticated = current.credentials.is_some(),
            authorized = current.policy.is_some(),
            "MQTT sidecar ready"
        );
        let shared = self.shared.clone();
        self.front.run(stop, move |client, peer| serve(shared.clone(), client, peer)).await;
    }
}
