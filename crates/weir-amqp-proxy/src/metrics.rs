//! The AMQP sidecar's metrics (`weir_amqp_*` at the admin endpoint's `/metrics`, beside the
//! listener's `weir_connections_*`).
//!
//! Messages and body bytes per direction, exchange, queue and principal: a publish names its
//! exchange (`amq.default` for `""`) and no queue; a delivery (basic.deliver, basic.get-ok)
//! the exchange it was published to and the queue it came from. Names clients choose are
//! capped ([`CappedNames`]), so server-named queues cannot grow the metrics without bound.
//!
//! The same counting feeds the mesh's topology: who writes to which `exchange:NAME` and reads
//! from which `queue:NAME` (weir-core's `flows`).

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
    pub exchange: Arc<str>,
    /// Empty for publishes.
    pub queue: Arc<str>,
    /// The client's principal (`User:ANONYMOUS` when none).
    pub principal: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeniedLabels {
    /// The refused method (`basic.publish`), or `connection.start-ok` for a login.
    pub method: &'static str,
    pub principal: Arc<str>,
}

/// The message and body-byte counters of one label set, and of its flow in the topology.
#[derive(Clone)]
pub struct MessageCounters {
    messages: Counter,
    bytes: Counter,
    flow: Arc<FlowCounters>,
}

impl MessageCounters {
    /// A message of `body` bytes passed.
    pub fn count(&self, body: u64) {
        self.messages.inc();
        self.bytes.inc_by(body);
        self.flow.count(1, body);
    }
}

pub struct AmqpMetrics {
    messages: Family<MessageLabels, Counter>,
    bytes: Family<MessageLabels, Counter>,
    denied: Family<DeniedLabels, Counter>,
    names: CappedNames,
    flows: Arc<Flows>,
}

impl AmqpMetrics {
    pub fn new(registry: &mut Registry, max_names: usize) -> Arc<Self> {
        let metrics = Arc::new(AmqpMetrics {
            messages: Family::default(),
            bytes: Family::default(),
            denied: Family::default(),
            names: CappedNames::new(max_names),
            flows: Arc::default(),
        });
        let amqp = registry.sub_registry_with_prefix("weir_amqp");
        amqp.register(
            "messages",
            "Messages passed, per direction, exchange, queue (deliveries) and principal",
            metrics.messages.clone(),
        );
        amqp.register(
            "body_bytes",
            "Message body bytes passed, per direction, exchange, queue (deliveries) and principal",
            metrics.bytes.clone(),
        );
        amqp.register(
            "denied",
            "Methods the policy or the credentials refused, per method and principal",
            metrics.denied.clone(),
        );
        metrics
    }

    /// The counters of messages passed in `direction` (`publish`, `deliver`) between
    /// `exchange` and `queue` (empty for a publish): a connection keeps them for the exchange
    /// or consumer it uses most recently, and counts without looking them up again.
    pub fn counters(&self, direction: &'static str, exchange: &str, queue: &str, who: &Party) -> MessageCounters {
        let queue_label = if queue.is_empty() { Arc::from("") } else { self.names.label(queue) };
        let labels = MessageLabels {
            direction,
            exchange: self.names.label(exchange),
            queue: queue_label,
            principal: who.principal.clone(),
        };
        // The topology: publishes write to their exchange, deliveries read from their queue
        // (or, for a consumer tag never seen, from the exchange they were published to).
        let flow = match direction {
            "publish" => (format!("exchange:{exchange}"), FlowDirection::Produce),
            _ if queue.is_empty() => (format!("exchange:{exchange}"), FlowDirection::Consume),
            _ => (format!("queue:{queue}"), FlowDirection::Consume),
        };
        MessageCounters {
            messages: self.messages.get_or_create(&labels).clone(),
            bytes: self.bytes.get_or_create(&labels).clone(),
            flow: self.flows.counters(&who.principal, &who.client_id, &flow.0, flow.1),
        }
    }

    /// A refused `method` that wanted to write to an exchange or read from a queue counts
    /// as a refused flow too; configuring one does not.
    pub fn denied_on(&self, method: &'static str, resource_type: &str, operation: &str, name: &str, who: &Party) {
        self.denied(method, &who.principal);
        let direction = match (resource_type, operation) {
            ("exchange", "write") => FlowDirection::Produce,
            ("queue", "read") => FlowDirection::Consume,
            _ => return,
        };
        self.flows.counters(&who.principal, &who.client_id, &format!("{resource_type}:{name}"), direction).deny();
    }

    /// What has flowed, for the control plane's topology.
    pub fn flows(&self) -> FlowSource {
        self.flows.source()
    }

    pub fn denied(&self, method: &'static str, principal: &Arc<str>) {
        self.denied.get_or_create(&DeniedLabels { method, principal: principal.clone() }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_flow_to_their_exchange_and_deliveries_from_their_queue() {
        let metrics = AmqpMetrics::new(&mut Registry::default(), 1);
        let who = Party::new(Arc::from("User:app"), "billing-1");
        metrics.counters("publish", "orders", "", &who).count(10);
        metrics.counters("publish", "orders", "", &who).count(5);
        // Past the metric's name cap, the topology still names the queue.
        metrics.counters("deliver", "orders", "invoices", &who).count(7);
        metrics.denied_on("basic.consume", "queue", "read", "secret", &who);
        metrics.denied_on("queue.declare", "queue", "configure", "secret", &who);
        let mut flows = (metrics.flows())();
        flows.sort_by(|a, b| a.resource.cmp(&b.resource));
        let seen: Vec<_> =
            flows.iter().map(|f| (f.resource.as_str(), f.direction, f.records, f.bytes, f.denied)).collect();
        assert_eq!(
            seen,
            [
                ("exchange:orders", FlowDirection::Produce, 2, 15, 0),
                ("queue:invoices", FlowDirection::Consume, 1, 7, 0),
                ("queue:secret", FlowDirection::Consume, 0, 0, 1),
            ]
        );
        assert!(flows.iter().all(|f| f.client_id == "billing-1"));
    }
}
