//! How a gateway reaches Kafka: `kafka:` in its config file.

use std::collections::BTreeMap;
use std::path::Path;

use rdkafka::config::ClientConfig;
use serde::Deserialize;
use weir_core::config::{invalid, ConfigError};

/// ```yaml
/// kafka:
///   bootstrap: 127.0.0.1:9092
///   properties: {linger.ms: "5", security.protocol: sasl_plaintext, ...}   # librdkafka's
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Brokers to bootstrap from, `host:port[,host:port...]`.
    pub bootstrap: String,
    /// Further librdkafka properties (SASL towards the brokers, batching, timeouts). Those the
    /// gateway's guarantees rest on ([`FIXED`]) cannot be set.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// How long a record may wait for Kafka's acknowledgement (retries included) before the
    /// publish that carried it fails.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
}

fn default_delivery_timeout_ms() -> u64 {
    30_000
}

/// Properties the gateway sets itself: what it acknowledges must be on every in-sync replica,
/// written once, and it tracks positions itself.
pub const FIXED: &[&str] = &[
    "bootstrap.servers",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "message.timeout.ms",
    "delivery.timeout.ms",
];

impl KafkaConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap: bootstrap.into(),
            properties: BTreeMap::new(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
        }
    }

    /// Checks what the types cannot; `origin` names the file in errors.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        if self.bootstrap.split(',').any(|broker| !broker.trim().contains(':')) {
            return Err(invalid(
                origin,
                "kafka.bootstrap",
                format!("`{}` is not host:port[,host:port...]", self.bootstrap),
            ));
        }
        if let Some(fixed) = self.properties.keys().find(|key| FIXED.contains(&key.as_str())) {
            return Err(invalid(
                origin,
                &format!("kafka.properties.{fixed}"),
                "set by the gateway itself (its delivery guarantees rest on it)",
            ));
        }
        if self.delivery_timeout_ms == 0 {
            return Err(invalid(origin, "kafka.delivery_timeout_ms", "expected more than 0"));
        }
        Ok(())
    }

    /// librdkafka's settings for any of the gateway's clients.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap).set("log_level", "4");
        // A gateway forwards one client's message at a time: Nagle's algorithm would hold small
        // produce and fetch requests back behind delayed acknowledgements.
        config.set("socket.nagle.disable", "true");
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_the_guarantees_rest_on_are_refused_with_their_key() {
        let mut config = KafkaConfig::new("127.0.0.1:9092");
        config.properties.insert("acks".into(), "1".into());
        let err = config.validate(Path::new("gw.yaml")).unwrap_err().to_string();
        assert!(err.contains("kafka.properties.acks") && err.contains("set by the gateway"), "{err}");
        let err = KafkaConfig::new("localhost").validate(Path::new("gw.yaml")).unwrap_err().to_string();
        assert!(err.contains("kafka.bootstrap"), "{err}");
        config.properties.clear();
        config.properties.insert("linger.ms".into(), "5".into());
        config.validate(Path::new("gw.yaml")).unwrap();
    }
}
