//! What a workload's clients speak — Kafka, MQTT or AMQP 0.9.1 — and so which sidecar serves
//! it, which kind of resource names its brokers, and which words its policies use. A gateway
//! workload (`mqtt-gateway`, `http-gateway`) serves MQTT or HTTP clients from Kafka: it reaches
//! a `KafkaCluster` and is judged by the mesh's Kafka policies.

use std::path::Path;

use serde::{Deserialize, Serialize};
use weir_core::config::ConfigError;
use weir_core::policy::Vocabulary;
use weir_core::rules::PolicyCheck;

use crate::kinds::Kind;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    #[default]
    Kafka,
    Mqtt,
    Amqp,
    MqttGateway,
    HttpGateway,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Kafka => "kafka",
            Protocol::Mqtt => "mqtt",
            Protocol::Amqp => "amqp",
            Protocol::MqttGateway => "mqtt-gateway",
            Protocol::HttpGateway => "http-gateway",
        }
    }

    /// A gateway into Kafka rather than a sidecar in front of a broker.
    pub fn is_gateway(self) -> bool {
        matches!(self, Protocol::MqttGateway | Protocol::HttpGateway)
    }

    /// The protocol of the `AuthorizationPolicy` resources that judge this workload's clients:
    /// a gateway's are judged as Kafka clients on the Kafka topics they reach.
    pub fn policy_protocol(self) -> Protocol {
        if self.is_gateway() {
            Protocol::Kafka
        } else {
            self
        }
    }

    /// The kind of resource that names the brokers a workload of this protocol reaches.
    pub fn broker_kind(self) -> Kind {
        match self {
            Protocol::Kafka | Protocol::MqttGateway | Protocol::HttpGateway => Kind::KafkaCluster,
            Protocol::Mqtt => Kind::MqttBroker,
            Protocol::Amqp => Kind::AmqpBroker,
        }
    }

    /// The `Workload` field that names that resource.
    pub fn broker_field(self) -> &'static str {
        match self {
            Protocol::Kafka | Protocol::MqttGateway | Protocol::HttpGateway => "cluster",
            Protocol::Mqtt | Protocol::Amqp => "broker",
        }
    }

    /// The policy words of this protocol's sidecar, and what it checks beyond them.
    pub fn vocabulary(self) -> (&'static Vocabulary, PolicyCheck) {
        match self {
            Protocol::Kafka | Protocol::MqttGateway | Protocol::HttpGateway => {
                (&weir_kafka_proxy::vocabulary::KAFKA, |_, _| Ok(()))
            }
            Protocol::Mqtt => (&weir_mqtt_proxy::authz::MQTT, weir_mqtt_proxy::authz::check_policy),
            Protocol::Amqp => (&weir_amqp_proxy::authz::AMQP, weir_amqp_proxy::authz::check_policy),
        }
    }

    /// Reads a rendered sidecar config (without `protocol`) as this protocol's sidecar will.
    pub fn check_config(self, config: serde_json::Value, origin: &Path) -> Result<(), ConfigError> {
        match self {
            Protocol::Kafka => weir_kafka_proxy::SidecarConfig::from_json(config, origin).map(drop),
            Protocol::Mqtt => weir_mqtt_proxy::MqttConfig::from_json(config, origin).map(drop),
            Protocol::Amqp => weir_amqp_proxy::AmqpConfig::from_json(config, origin).map(drop),
            Protocol::MqttGateway => weir_mqtt_gateway::MqttGatewayConfig::from_json(config, origin).map(drop),
            Protocol::HttpGateway => weir_http_gateway::HttpGatewayConfig::from_json(config, origin).map(drop),
        }
    }

    /// The protocol a stored resource's `spec.protocol` names (checked at apply; absent: Kafka).
    pub fn of(spec: &serde_json::Value) -> Protocol {
        spec.get("protocol").and_then(|p| serde_json::from_value(p.clone()).ok()).unwrap_or_default()
    }

    /// The protocol of a rendered sidecar config, and the config without it (the sidecar's
    /// own file has no such key).
    pub fn split(mut config: serde_json::Value) -> Result<(Protocol, serde_json::Value), String> {
        let protocol = match config.as_object_mut().and_then(|c| c.remove("protocol")) {
            None => Protocol::Kafka,
            Some(value) => serde_json::from_value(value.clone()).map_err(|_| {
                format!("unknown protocol {value}; expected kafka, mqtt, amqp, mqtt-gateway or http-gateway")
            })?,
        };
        Ok((protocol, config))
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
