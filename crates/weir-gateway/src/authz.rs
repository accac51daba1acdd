//! What the mesh's Kafka authorization policy lets a gateway's client do: the same policy, in
//! Kafka's words, that a Kafka sidecar applies to Kafka clients. An MQTT device publishing
//! `sensors/7/temp`, mapped to Kafka topic `sensors.temp`, needs `write` on `topic:sensors.temp`;
//! a subscriber needs `read` on every Kafka topic its subscription can receive from.

use std::path::Path;
use std::sync::Arc;

use weir_core::config::ConfigError;
use weir_core::policy::{Policy, PrincipalPolicy};
use weir_core::rules::RuleSources;
use weir_kafka_proxy::vocabulary::{GROUP, KAFKA, READ, TOPIC, WRITE};

/// One client's rules, asked in Kafka's terms.
#[derive(Debug, Clone)]
pub struct KafkaAuthz {
    rules: PrincipalPolicy,
}

impl KafkaAuthz {
    pub fn new(policy: &Arc<Policy>, principal: Option<&str>) -> Self {
        KafkaAuthz { rules: policy.for_principal(principal) }
    }

    pub fn may_write(&self, topic: &str) -> bool {
        self.rules.allows(TOPIC, topic, WRITE)
    }

    pub fn may_read(&self, topic: &str) -> bool {
        self.rules.allows(TOPIC, topic, READ)
    }

    /// Joining a consumer group and committing its offsets (Kafka asks `read` on the group).
    pub fn may_use_group(&self, group: &str) -> bool {
        self.rules.allows(GROUP, group, READ)
    }
}

/// Whether the principal may do `op` on `topic` under `authz` (everything, without a policy).
pub fn allowed(authz: Option<&KafkaAuthz>, topic: &str, write: bool) -> bool {
    authz.is_none_or(|authz| if write { authz.may_write(topic) } else { authz.may_read(topic) })
}

/// Kafka policies need no check beyond their words.
fn no_check(_: &Policy, _: &Path) -> Result<(), ConfigError> {
    Ok(())
}

/// The rule sources of a gateway: its clients' TLS, credentials and fixed principal, and a
/// policy in Kafka's words. A gateway has no broker of its own kind: no upstream TLS.
pub fn rule_sources(
    tls: Option<weir_core::tls::TlsListenerConfig>,
    credentials: Option<std::path::PathBuf>,
    fixed_principal: Option<String>,
    authorization: Option<weir_core::policy::AuthorizationConfig>,
    origin: &Path,
) -> RuleSources {
    RuleSources {
        tls,
        upstream_tls: None,
        credentials,
        fixed_principal,
        authorization,
        origin: origin.to_owned(),
        words: &KAFKA,
        check: no_check,
    }
}
