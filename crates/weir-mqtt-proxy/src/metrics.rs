//! The MQTT sidecar's metrics (`weir_mqtt_*` at the admin endpoint's `/metrics`).
//!
//! Messages and payload bytes per topic, direction and principal. MQTT topic names can be
//! unbounded (`devices/<serial>/state`), so at most `max_topics` distinct names get a series
//! of their own; the rest are counted under `topic="_other"`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use weir_core::control::{FlowDirection, FlowSource};
use weir_core::flows::{FlowCounters, Flows, Party};
use weir_core::metrics::CappedNames;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// `publish` (client to broker) or `deliver` (broker to client).
    pub direction: &'static str,
    pub topic: Arc<str>,
    /// The client's principal (`User:ANONYMOUS` when none).
    pub principal: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeniedLabels {
    /// `publish`, `subscribe` or `connect` (credentials, or a will).
    pub operation: &'static str,
    pub principal: Arc<str>,
}

/// One topic's message and byte counters in one direction, for one connection: the metric
/// series and the topology's flow.
pub struct TopicCounters {
    /// The topic name they count (not the label, which may be `_other`).
    pub topic: Box<str>,
    messages: Counter,
    bytes: Counter,
    flow: Arc<FlowCounters>,
}

impl TopicCounters {
    pub fn count(&self, payload: usize) {
        self.messages.inc();
        self.bytes.inc_by(payload as u64);
        self.flow.count(1, payload as u64);
    }
}

pub struct MqttMetrics {
    messages: Family<MessageLabels, Counter>,
    bytes: Family<MessageLabels, Counter>,
    denied: Family<DeniedLabels, Counter>,
    topics: CappedNames,
    /// Who publishes to and receives from which topic, for the mesh's topology.
    flows: Arc<Flows>,
}

/// The topology's direction of a message passed in `direction` (`publish` or `deliver`), or
/// of a refused `publish`, `subscribe` or `connect` (a will).
fn flow_direction(direction: &str) -> FlowDirection {
    match direction {
        "deliver" | "subscribe" => FlowDirection::Consume,
        _ => FlowDirection::Produce,
    }
}

impl MqttMetrics {
    pub fn new(registry: &mut Registry, max_topics: usize) -> Arc<Self> {
        let metrics = Arc::new(MqttMetrics {
            messages: Family::default(),
            bytes: Family::default(),
            denied: Family::default(),
            topics: CappedNames::new(max_topics),
            flows: Arc::default(),
        });
        let mqtt = registry.sub_registry_with_prefix("weir_mqtt");
        mqtt.register(
            "messages",
            "PUBLISH packets passed, per direction, topic and principal",
            metrics.messages.clone(),
        );
        mqtt.register(
            "payload_bytes",
            "PUBLISH payload bytes passed, per direction, topic and principal",
            metrics.bytes.clone(),
        );
        mqtt.register(
            "denied",
            "Operations the policy or the credentials refused, per operation and principal",
            metrics.denied.clone(),
        );
        metrics
    }

    /// A PUBLISH passed in `direction`.
    pub fn message(&self, direction: &'static str, topic: &str, who: &Party, payload: usize) {
        self.counters(direction, topic, who).count(payload);
    }

    /// The counters of messages passed in `direction` on `topic`: a connection keeps them for
    /// the topic it uses most recently, and counts without looking them up again.
    pub fn counters(&self, direction: &'static str, topic: &str, who: &Party) -> TopicCounters {
        let label = self.topics.label(topic);
        let labels = MessageLabels { direction, topic: label, principal: who.principal.clone() };
        TopicCounters {
            topic: topic.into(),
            messages: self.messages.get_or_create(&labels).clone(),
            bytes: self.bytes.get_or_create(&labels).clone(),
            flow: self.flows.counters(&who.principal, &who.client_id, topic, flow_direction(direction)),
        }
    }

    /// Counts a message of `payload` bytes on `topic`, with the counters of the last topic
    /// counted kept in `counted` (most connections publish to, or receive, one topic after
    /// another).
    pub fn count(
        &self,
        counted: &mut Option<TopicCounters>,
        direction: &'static str,
        topic: &str,
        who: &Party,
        payload: usize,
    ) {
        match counted {
            Some(counters) if *counters.topic == *topic => counters.count(payload),
            _ => counted.insert(self.counters(direction, topic, who)).count(payload),
        }
    }

    /// A login refused (`connect`), before the client has a party.
    pub fn denied(&self, operation: &'static str, principal: &Arc<str>) {
        self.denied.get_or_create(&DeniedLabels { operation, principal: principal.clone() }).inc();
    }

    /// `operation` (`publish`, `subscribe`, `connect` for a will) on `topic` (a filter, for
    /// `subscribe`) refused.
    pub fn denied_on(&self, operation: &'static str, topic: &str, who: &Party) {
        self.denied(operation, &who.principal);
        self.flows.counters(&who.principal, &who.client_id, topic, flow_direction(operation)).deny();
    }

    /// What has flowed, for the control plane's topology.
    pub fn flows(&self) -> FlowSource {
        self.flows.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_beyond_the_limit_are_counted_together() {
        let mut registry = Registry::default();
        let metrics = MqttMetrics::new(&mut registry, 2);
        let who = Party::new(Arc::from("User:a"), "c1");
        for topic in ["a", "b", "c", "d", "a"] {
            metrics.message("publish", topic, &who, 10);
        }
        metrics.message("deliver", "a", &who, 5);
        metrics.denied_on("subscribe", "#", &who);
        // The topology sees every topic by name, not only those with a series of their own.
        let mut flows = (metrics.flows())();
        flows.sort_by(|a, b| (&a.resource, a.direction as u8).cmp(&(&b.resource, b.direction as u8)));
        let seen: Vec<_> =
            flows.iter().map(|f| (f.resource.as_str(), f.direction, f.records, f.bytes, f.denied)).collect();
        assert_eq!(
            seen,
            [
                ("#", FlowDirection::Consume, 0, 0, 1),
                ("a", FlowDirection::Produce, 2, 20, 0),
                ("a", FlowDirection::Consume, 1, 5, 0),
                ("b", FlowDirection::Produce, 1, 10, 0),
                ("c", FlowDirection::Produce, 1, 10, 0),
                ("d", FlowDirection::Produce, 1, 10, 0),
            ]
        );
        assert!(flows.iter().all(|f| f.principal == "User:a" && f.client_id == "c1"));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"weir_mqtt_messages_total{direction="publish",topic="a",principal="User:a"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"weir_mqtt_messages_total{direction="publish",topic="_other",principal="User:a"} 2"#));
        assert!(text.contains(r#"weir_mqtt_payload_bytes_total{direction="publish",topic="b",principal="User:a"} 10"#));
    }
}
