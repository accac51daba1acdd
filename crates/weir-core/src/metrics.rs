//! Metrics every listener has, whatever protocol it speaks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
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
    pub delayed: Family<ListenerLabels, Counter>,
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
            "weir_connections_delayed",
            "Client connections served late because the connection creation rate was reached, per listener",
            metrics.delayed.clone(),
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

    /// Counts a connection served late by the creation rate.
    pub fn delayed(&self, listener: &str) {
        self.delayed.get_or_create(&ListenerLabels { listener: listener.to_owned() }).inc();
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

/// A histogram of durations whose observations are atomic adds, never a lock: every response
/// observes two (per api key, from every connection at once), where prometheus-client's own
/// `Histogram` takes a mutex per observation. Exposed as a classic Prometheus histogram in
/// seconds.
#[derive(Clone, Debug)]
pub struct DurationHistogram {
    inner: Arc<HistogramCells>,
}

#[derive(Debug)]
struct HistogramCells {
    /// Upper bounds in nanoseconds, ascending; one more cell than bounds counts the rest.
    bounds: Vec<u64>,
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// Buckets with these upper bounds, in seconds.
    pub fn new(bounds_seconds: impl IntoIterator<Item = f64>) -> Self {
        let mut bounds: Vec<u64> = bounds_seconds.into_iter().map(|s| (s * 1e9) as u64).collect();
        bounds.sort_unstable();
        bounds.dedup();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self { inner: Arc::new(HistogramCells { bounds, counts, sum_nanos: AtomicU64::new(0) }) }
    }

    pub fn observe(&self, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let cells = &*self.inner;
        let bucket = cells.bounds.partition_point(|bound| *bound < nanos);
        cells.counts[bucket].fetch_add(1, Ordering::Relaxed);
        cells.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far and their sum in seconds.
    pub fn count_and_sum(&self) -> (u64, f64) {
        let count = self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        (count, self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let cells = &*self.inner;
        // Per-bucket counts (the encoder accumulates them), the last one open-ended.
        let upper = cells.bounds.iter().map(|b| *b as f64 / 1e9).chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> = upper.zip(cells.counts.iter().map(|c| c.load(Ordering::Relaxed))).collect();
        let (count, sum) = self.count_and_sum();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Label values for names clients choose (MQTT topics, AMQP queues): the first `max` distinct
/// names get series of their own, the rest share [`CappedNames::OTHER`], so a client cannot
/// grow the metrics without bound.
pub struct CappedNames {
    named: std::sync::Mutex<std::collections::HashSet<Arc<str>>>,
    max: usize,
}

impl CappedNames {
    /// Where the names beyond the limit are counted.
    pub const OTHER: &'static str = "_other";

    pub fn new(max: usize) -> Self {
        CappedNames { named: Default::default(), max }
    }

    /// The label value for `name`.
    pub fn label(&self, name: &str) -> Arc<str> {
        let mut named = self.named.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = named.get(name) {
            return known.clone();
        }
        if named.len() >= self.max {
            return Arc::from(Self::OTHER);
        }
        let label: Arc<str> = Arc::from(name);
        named.insert(label.clone());
        label
    }
}

#[cfg(test)]
mod histogram_tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_expose_as_a_classic_histogram() {
        let h = DurationHistogram::new([0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(2));
        let (count, sum) = h.count_and_sum();
        assert_eq!(count, 4);
        assert!((sum - 2.0065).abs() < 1e-9, "{sum}");
        let mut registry = Registry::default();
        registry.register("t", "test", h);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in ["t_bucket{le=\"0.001\"} 2", "t_bucket{le=\"0.01\"} 3", "t_bucket{le=\"+Inf\"} 4", "t_count 4"] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
