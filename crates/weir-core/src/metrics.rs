//! Metrics every listener has, whatever protocol it speaks.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels naming a listener (e.g. `bootstrap` or `broker-3`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

/// Labels of a connection refused at accept: the listener, and which limit refused it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub listener: String,
    pub reason: &'static str,
}

/// Connection counts per listener, and the connections to the upstream service.
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    pub open: Family<ListenerLabels, Gauge>,
    pub accepted: Family<ListenerLabels, Counter>,
    pub refused: Family<RefusedLabels, Counter>,
    pub upstream_open: Gauge,
}

impl ConnectionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register("weir_connections_open", "Client connections open now, per listener", metrics.open.clone());
        registry.register(
            "weir_connections_accepted",
            "Client connections accepted, per listener",
            metrics.accepted.clone(),
        );
        registry.register(
            "weir_connections_refused",
            "Client connections closed at accept because a connection limit was reached, per listener and limit",
            metrics.refused.clone(),
        );
        registry.register(
            "weir_upstream_connections_open",
            "Connections to the upstream service (brokers) open now on behalf of clients",
            metrics.upstream_open.clone(),
        );
        metrics
    }

    /// Counts a connection refused at accept.
    pub fn refused(&self, listener: &str, reason: &'static str) {
        self.refused.get_or_create(&RefusedLabels { listener: listener.to_owned(), reason }).inc();
    }

    /// Counts an upstream connection made for a client; the guard counts it closed when dropped.
    pub fn upstream_opened(&self) -> OpenConnection {
        self.upstream_open.inc();
        OpenConnection { gauge: self.upstream_open.clone() }
    }

    /// Counts a new connection; the returned guard counts it closed when dropped.
    pub fn opened(&self, listener: &str) -> OpenConnection {
        let labels = ListenerLabels { listener: listener.to_owned() };
        self.accepted.get_or_create(&labels).inc();
        let gauge = self.open.get_or_create(&labels).clone();
        gauge.inc();
        OpenConnection { gauge }
    }
}

/// Decrements the open-connections gauge when the connection ends, however it ends.
pub struct OpenConnection {
    gauge: Gauge,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
