//! The AMQP sidecar's metrics (`weir_amqp_*` at the admin endpoint's `/metrics`, beside the
//! listener's `weir_connections_*`).
//!
//! Messages and body bytes per direction, exchange, queue and principal: a publish names its
//! exchange (`amq.default` for `""`) and no queue; a delivery (basic.deliver, basic.get-ok)
//! the exchange it was published to and the queue it came from. Names clients choose are
//! capped ([`CappedNames`]), so server-named queues cannot grow the metrics without bound.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
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

/// The message and body-byte counters of one label set.
#[derive(Clone)]
pub struct MessageCounters {
    messages: Counter,
    bytes: Counter,
}

impl MessageCounters {
    /// A message of `body` bytes passed.
    pub fn count(&self, body: u64) {
        self.messages.inc();
        self.bytes.inc_by(body);
    }
}

pub struct AmqpMetrics {
    messages: Family<MessageLabels, Counter>,
    bytes: Family<MessageLabels, Counter>,
    denied: Family<DeniedLabels, Counter>,
    names: CappedNames,
}

impl AmqpMetrics {
    pub fn new(registry: &mut Registry, max_names: usize) -> Arc<Self> {
        let metrics = Arc::new(AmqpMetrics {
            messages: Family::default(),
            bytes: Family::default(),
            denied: Family::default(),
            names: CappedNames::new(max_names),
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

    /// The labels of messages between `exchange` and `queue` (empty for a publish).
    pub fn labels(&self, direction: &'static str, exchange: &str, queue: &str, principal: &Arc<str>) -> MessageLabels {
        let queue = if queue.is_empty() { Arc::from("") } else { self.names.label(queue) };
        MessageLabels { direction, exchange: self.names.label(exchange), queue, principal: principal.clone() }
    }

    /// The counters of messages with `labels`: a connection keeps them for the exchange or
    /// consumer it uses most recently, and counts without looking them up again.
    pub fn counters(&self, labels: &MessageLabels) -> MessageCounters {
        MessageCounters {
            messages: self.messages.get_or_create(labels).clone(),
            bytes: self.bytes.get_or_create(labels).clone(),
        }
    }

    pub fn denied(&self, method: &'static str, principal: &Arc<str>) {
        self.denied.get_or_create(&DeniedLabels { method, principal: principal.clone() }).inc();
    }
}
