//! Kafka metrics. Hot-path handles (per api key) are resolved once at startup, and per-topic
//! handles once per connection, so counting a request never hashes a label or allocates.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;
use uuid::Uuid;
use weir_core::metrics::{ConnectionMetrics, DurationHistogram};

use crate::topic_ids::TopicIds;

/// Topic ids a connection remembers the names of; beyond this it asks the shared map.
const MAX_TOPICS_NAMED_BY_ID: usize = 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
    /// Who produced or fetched (empty when the client is not identified).
    pub principal: String,
}

/// Who a connection's traffic is counted for, shared by its two halves: the principal, set
/// once known (at connect for TLS or a fixed principal, after SASL otherwise), and the client
/// id of its first counted request (for the mesh's topology).
#[derive(Clone, Default)]
pub struct TrafficPrincipal(Arc<TrafficIdentity>);

#[derive(Default)]
struct TrafficIdentity {
    principal: OnceLock<String>,
    client_id: OnceLock<String>,
}

impl TrafficPrincipal {
    /// The first principal set wins (a SASL login after mTLS keeps the certificate's name here).
    pub fn set(&self, principal: &str) {
        let _ = self.0.principal.set(principal.to_owned());
    }

    pub(crate) fn get(&self) -> &str {
        self.0.principal.get().map_or("", String::as_str)
    }

    /// The first client id set wins (clients keep one per connection).
    pub fn set_client_id(&self, client_id: &str) {
        if self.0.client_id.get().is_none() {
            let _ = self.0.client_id.set(client_id.to_owned());
        }
    }

    pub(crate) fn client_id(&self) -> &str {
        self.0.client_id.get().map_or("", String::as_str)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    pub client_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub api: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrincipalLabels {
    pub principal: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MechanismLabels {
    pub mechanism: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    /// The failure budget that was spent: `source` or `user`.
    pub by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    pub principal: String,
    pub operation: &'static str,
    pub resource_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    pub quota: String,
    pub traffic: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub rule: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub rule: String,
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaRuleLabels {
    pub quota: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerLabels {
    pub broker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerLimitLabels {
    pub broker: String,
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    pub rule: String,
    pub fault: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub rule: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowDropLabels {
    pub rule: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

fn latency_histogram() -> DurationHistogram {
    // 50 µs .. ~26 s
    DurationHistogram::new(exponential_buckets(0.00005, 2.0, 20))
}

/// Every Kafka metric the sidecar exports.
pub struct KafkaMetrics {
    pub connections: ConnectionMetrics,
    /// Who produces to and consumes from which topic, for the control plane's topology.
    pub flows: weir_core::flows::Flows,
    requests: Family<ApiLabels, Counter>,
    responses: Family<ApiLabels, Counter>,
    request_bytes: Family<ApiLabels, Counter>,
    response_bytes: Family<ApiLabels, Counter>,
    upstream_seconds: Family<ApiLabels, DurationHistogram, fn() -> DurationHistogram>,
    proxy_seconds: Family<ApiLabels, DurationHistogram, fn() -> DurationHistogram>,
    rewrites: Family<ApiLabels, Counter>,
    response_errors: Family<ErrorLabels, Counter>,
    client_requests: Family<ClientLabels, Counter>,
    produced_records: Family<TopicLabels, Counter>,
    produced_bytes: Family<TopicLabels, Counter>,
    fetched_records: Family<TopicLabels, Counter>,
    fetched_bytes: Family<TopicLabels, Counter>,
    closed_connections: Family<ReasonLabels, Counter>,
    authenticated: Family<PrincipalLabels, Counter>,
    authentication_failures: Family<MechanismLabels, Counter>,
    authentication_throttled: Family<BudgetLabels, Counter>,
    denials: Family<DenialLabels, Counter>,
    throttled: Family<ApiLabels, Counter>,
    throttle_seconds: Family<ApiLabels, Counter<f64, AtomicU64>>,
    quota_throttled: Family<QuotaLabels, Counter>,
    quota_request_seconds: Family<QuotaRuleLabels, Counter<f64, AtomicU64>>,
    faults_injected: Family<FaultLabels, Counter>,
    connect_failures: Family<BrokerLabels, Counter>,
    ejections: Family<BrokerLabels, Counter>,
    ejected: Family<BrokerLabels, prometheus_client::metrics::gauge::Gauge>,
    over_broker_limit: Family<BrokerLimitLabels, Counter>,
    over_connection_limit: Family<BrokerLimitLabels, Counter>,
    canary_records: Family<RuleLabels, Counter>,
    topic_creation_refused: Family<RuleLabels, Counter>,
    produce_refused: Family<RefusalLabels, Counter>,
    schema_records: Family<VerdictLabels, Counter>,
    schema_refused: Family<RuleLabels, Counter>,
    schema_dead_lettered: Family<RuleLabels, Counter>,
    fetch_transformed: Family<OutcomeLabels, Counter>,
    sealed: Family<RuleLabels, Counter>,
    opened: Family<RuleLabels, Counter>,
    /// What shadow rules wrote and dropped.
    pub shadows: ShadowFamilies,
    per_api: Vec<OnceLock<ApiMetrics>>,
}

/// The shadow rules' metric families: shared with the shadow writers, which outlive no
/// sidecar but are made long after its metrics.
#[derive(Clone, Default)]
pub struct ShadowFamilies {
    written: Family<RuleLabels, Counter>,
    dropped: Family<ShadowDropLabels, Counter>,
    queued: Family<RuleLabels, prometheus_client::metrics::gauge::Gauge>,
}

impl ShadowFamilies {
    /// The handles of one rule, resolved once per writer.
    pub fn rule(&self, rule: &str) -> ShadowMetrics {
        let labels = RuleLabels { rule: rule.to_owned() };
        let dropped = |reason| self.dropped.get_or_create(&ShadowDropLabels { rule: rule.to_owned(), reason }).clone();
        ShadowMetrics {
            written: self.written.get_or_create(&labels).clone(),
            queue_full: dropped("queue_full"),
            unreachable: dropped("unreachable"),
            refused: dropped("refused"),
            stopped: dropped("stopped"),
            queued_bytes: self.queued.get_or_create(&labels).clone(),
        }
    }
}

/// Handles for one shadow rule.
#[derive(Clone)]
pub struct ShadowMetrics {
    pub written: Counter,
    pub queue_full: Counter,
    pub unreachable: Counter,
    pub refused: Counter,
    pub stopped: Counter,
    pub queued_bytes: prometheus_client::metrics::gauge::Gauge,
}

/// Handles for one api key.
#[derive(Clone)]
pub struct ApiMetrics {
    pub requests: Counter,
    pub responses: Counter,
    pub request_bytes: Counter,
    pub response_bytes: Counter,
    pub upstream_seconds: DurationHistogram,
    pub proxy_seconds: DurationHistogram,
    pub rewrites: Counter,
}

impl KafkaMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let connections = ConnectionMetrics::register(registry);
        let kafka = registry.sub_registry_with_prefix("weir_kafka");
        let mut m = Self {
            connections,
            requests: Family::default(),
            responses: Family::default(),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            upstream_seconds: Family::new_with_constructor(latency_histogram),
            proxy_seconds: Family::new_with_constructor(latency_histogram),
            rewrites: Family::default(),
            response_errors: Family::default(),
            client_requests: Family::default(),
            produced_records: Family::default(),
            produced_bytes: Family::default(),
            fetched_records: Family::default(),
            fetched_bytes: Family::default(),
            closed_connections: Family::default(),
            authenticated: Family::default(),
            authentication_failures: Family::default(),
            authentication_throttled: Family::default(),
            throttled: Family::default(),
            throttle_seconds: Family::default(),
            quota_throttled: Family::default(),
            quota_request_seconds: Family::default(),
            faults_injected: Family::default(),
            connect_failures: Family::default(),
            ejections: Family::default(),
            ejected: Family::default(),
            over_broker_limit: Family::default(),
            over_connection_limit: Family::default(),
            shadows: ShadowFamilies::default(),
            canary_records: Family::default(),
            topic_creation_refused: Family::default(),
            produce_refused: Family::default(),
            schema_records: Family::default(),
            schema_refused: Family::default(),
            schema_dead_lettered: Family::default(),
            fetch_transformed: Family::default(),
            sealed: Family::default(),
            opened: Family::default(),
            denials: Family::default(),
            flows: Default::default(),
            per_api: Vec::new(),
        };
        kafka.register("requests", "Requests received from clients, per api key", m.requests.clone());
        kafka.register("responses", "Responses returned to clients, per api key", m.responses.clone());
        kafka.register("request_bytes", "Request bytes received from clients, per api key", m.request_bytes.clone());
        kafka.register("response_bytes", "Response bytes returned to clients, per api key", m.response_bytes.clone());
        kafka.register(
            "upstream_latency_seconds",
            "Time from forwarding a request to receiving the broker's response",
            m.upstream_seconds.clone(),
        );
        kafka.register(
            "proxy_latency_seconds",
            "Time a request and its response spent in the sidecar itself",
            m.proxy_seconds.clone(),
        );
        kafka.register(
            "address_rewrites",
            "Broker addresses rewritten to sidecar listeners, per api key",
            m.rewrites.clone(),
        );
        kafka.register(
            "response_errors",
            "Error codes in the responses the sidecar decodes, per api key",
            m.response_errors.clone(),
        );
        kafka.register("client_requests", "Requests per client id", m.client_requests.clone());
        kafka.register("produced_records", "Records produced, per topic", m.produced_records.clone());
        kafka.register("produced_bytes", "Record-batch bytes produced, per topic", m.produced_bytes.clone());
        kafka.register("fetched_records", "Records fetched, per topic", m.fetched_records.clone());
        kafka.register("fetched_bytes", "Record-batch bytes fetched, per topic", m.fetched_bytes.clone());
        kafka.register(
            "closed_connections",
            "Connections the sidecar closed, per reason",
            m.closed_connections.clone(),
        );
        kafka.register(
            "authenticated_connections",
            "Client connections authenticated, per principal (empty: TLS without a client certificate)",
            m.authenticated.clone(),
        );
        kafka.register(
            "authentication_failures",
            "Failed client authentications, per mechanism (tls, sasl)",
            m.authentication_failures.clone(),
        );
        kafka.register(
            "authentication_throttled",
            "SASL authentications refused unchecked because a failure budget was spent, per budget (source, user); \
             also counted in authentication_failures",
            m.authentication_throttled.clone(),
        );
        kafka.register(
            "authorization_denials",
            "Requests or parts of requests the policy denied, per principal, operation and resource type",
            m.denials.clone(),
        );
        kafka.register(
            "throttled_responses",
            "Responses that told their client to back off (a quota; throttle_time_ms), per api key",
            m.throttled.clone(),
        );
        kafka.register(
            "throttle_seconds",
            "Time clients were told to back off (quotas), summed, per api key",
            m.throttle_seconds.clone(),
        );
        kafka.register(
            "quota_throttled_requests",
            "Requests over a quota, per quota rule and traffic (produce, fetch, request, connections, connection_rate)",
            m.quota_throttled.clone(),
        );
        kafka.register(
            "quota_request_seconds",
            "Time inside the sidecar metered against request quotas (request_percentage), per quota rule",
            m.quota_request_seconds.clone(),
        );
        kafka.register(
            "faults_injected",
            "Faults injected into requests and responses (fault injection rules), per rule and fault",
            m.faults_injected.clone(),
        );
        kafka.register(
            "upstream_connect_failures",
            "Connects to a broker that failed (refused or timed out), per broker address",
            m.connect_failures.clone(),
        );
        kafka.register(
            "upstream_ejections",
            "Times a broker was ejected after failed connects in a row (outlier detection)",
            m.ejections.clone(),
        );
        kafka.register(
            "upstream_ejected",
            "1 from a broker's ejection until a connect to it succeeds again",
            m.ejected.clone(),
        );
        kafka.register(
            "upstream_requests_over_limit",
            "Requests that found their broker's request limit reached (circuit breaking), per broker and action (queued, rejected)",
            m.over_broker_limit.clone(),
        );
        kafka.register(
            "upstream_connections_over_limit",
            "Client connections that found their broker's connection limit reached, per broker and action",
            m.over_connection_limit.clone(),
        );
        kafka.register(
            "canary_records",
            "Records a canary rule wrote to its canary topic instead of the split topic, per rule",
            m.canary_records.clone(),
        );
        kafka.register(
            "topic_creation_refused",
            "Topics a topic_creation rule refused to create or grow, per rule",
            m.topic_creation_refused.clone(),
        );
        kafka.register(
            "produce_refused_records",
            "Records a produce safeguard refused, per rule and reason (read_only, client_id, acks, compression, batch_size, record_size, missing_header, unreadable, too_large_to_read)",
            m.produce_refused.clone(),
        );
        kafka.register(
            "schema_records",
            "Records a schema_validation rule judged, per rule and verdict (valid, not_framed, unknown_schema, wrong_subject, wrong_type, unusable_schema, invalid, unchecked)",
            m.schema_records.clone(),
        );
        kafka.register(
            "schema_refused_records",
            "Records not written because their batch held a record a schema_validation rule refused (or the registry could not judge), per rule",
            m.schema_refused.clone(),
        );
        kafka.register(
            "schema_dead_lettered_records",
            "Invalid records a schema_validation rule wrote to its dead-letter topic, per rule",
            m.schema_dead_lettered.clone(),
        );
        kafka.register(
            "sealed_records",
            "Record values an encryption rule sealed on produce (whole or by field), per rule",
            m.sealed.clone(),
        );
        kafka.register(
            "opened_records",
            "Sealed records an encryption rule opened on fetch for a principal it names, per rule",
            m.opened.clone(),
        );
        kafka.register(
            "fetch_transformed_records",
            "Records of topics a fetch transform covers, as served, per rule (the first covering the topic) and outcome (unchanged, changed, dropped, unreadable: taken out because a mask could not read the value)",
            m.fetch_transformed.clone(),
        );
        kafka.register(
            "shadow_records",
            "Records a shadow rule wrote to its shadow topic, per rule",
            m.shadows.written.clone(),
        );
        kafka.register(
            "shadow_dropped_records",
            "Records a shadow rule did not write (queue_full, unreachable, refused, stopped), per rule and reason",
            m.shadows.dropped.clone(),
        );
        kafka.register(
            "shadow_queue_bytes",
            "Record bytes waiting to be written to a shadow topic, per rule",
            m.shadows.queued.clone(),
        );
        let max_key = ApiKey::iter().map(|k| k as i16).max().unwrap_or(0) as usize;
        m.per_api = (0..=max_key).map(|_| OnceLock::new()).collect();
        m
    }

    /// Handles for an api key, created on its first use so `/metrics` lists only keys seen.
    pub fn api(&self, key: ApiKey) -> &ApiMetrics {
        // Indexing cannot fail: the table has a slot for every ApiKey variant.
        self.per_api[key as i16 as usize].get_or_init(|| {
            let labels = ApiLabels { api: format!("{key:?}") };
            ApiMetrics {
                requests: self.requests.get_or_create(&labels).clone(),
                responses: self.responses.get_or_create(&labels).clone(),
                request_bytes: self.request_bytes.get_or_create(&labels).clone(),
                response_bytes: self.response_bytes.get_or_create(&labels).clone(),
                upstream_seconds: self.upstream_seconds.get_or_create(&labels).clone(),
                proxy_seconds: self.proxy_seconds.get_or_create(&labels).clone(),
                rewrites: self.rewrites.get_or_create(&labels).clone(),
            }
        })
    }

    pub fn response_error(&self, key: ApiKey, code: i16) {
        let error = kafka_protocol::error::ResponseError::try_from_code(code)
            .map(|e| e.to_string())
            .unwrap_or_else(|| code.to_string());
        self.response_errors.get_or_create(&ErrorLabels { api: format!("{key:?}"), error }).inc();
    }

    pub fn client(&self, client_id: &str) -> Counter {
        self.client_requests.get_or_create(&ClientLabels { client_id: client_id.to_owned() }).clone()
    }

    pub fn authenticated(&self, principal: &str) {
        self.authenticated.get_or_create(&PrincipalLabels { principal: principal.to_owned() }).inc();
    }

    pub fn authentication_failed(&self, mechanism: &str) {
        self.authentication_failures.get_or_create(&MechanismLabels { mechanism: mechanism.to_owned() }).inc();
    }

    pub fn authentication_throttled(&self, by: &'static str) {
        self.authentication_throttled.get_or_create(&BudgetLabels { by }).inc();
    }

    pub fn denied(&self, principal: &str, operation: &'static str, resource_type: &'static str) {
        let labels = DenialLabels { principal: principal.to_owned(), operation, resource_type };
        self.denials.get_or_create(&labels).inc();
    }

    /// A response told its client to back off for `wait`.
    pub fn throttled(&self, api: ApiKey, wait: std::time::Duration) {
        let labels = ApiLabels { api: format!("{api:?}") };
        self.throttled.get_or_create(&labels).inc();
        self.throttle_seconds.get_or_create(&labels).inc_by(wait.as_secs_f64());
    }

    /// A request went over the quota `rule`.
    pub fn over_quota(&self, rule: &str, traffic: &'static str) {
        self.quota_throttled.get_or_create(&QuotaLabels { quota: rule.to_owned(), traffic }).inc();
    }

    /// Time a request quota rule metered.
    pub fn request_time_metered(&self, rule: &str, spent: std::time::Duration) {
        self.quota_request_seconds
            .get_or_create(&QuotaRuleLabels { quota: rule.to_owned() })
            .inc_by(spent.as_secs_f64());
    }

    /// The fault injection rule `rule` injected `fault`.
    pub fn fault_injected(&self, rule: &str, fault: &'static str) {
        self.faults_injected.get_or_create(&FaultLabels { rule: rule.to_owned(), fault }).inc();
    }

    /// A produce safeguard refused a partition's `records` for `reason`.
    pub fn produce_refused(&self, rule: &str, reason: &'static str, records: u64) {
        self.produce_refused.get_or_create(&RefusalLabels { rule: rule.to_owned(), reason }).inc_by(records);
    }

    /// A schema validation rule judged `records` records with this verdict.
    pub fn schema_records(&self, rule: &str, verdict: &'static str, records: u64) {
        self.schema_records.get_or_create(&VerdictLabels { rule: rule.to_owned(), verdict }).inc_by(records);
    }

    /// A schema validation rule refused a partition's `records`.
    pub fn schema_refused(&self, rule: &str, records: u64) {
        self.schema_refused.get_or_create(&RuleLabels { rule: rule.to_owned() }).inc_by(records);
    }

    /// A schema validation rule wrote `records` invalid records to its dead-letter topic.
    pub fn schema_dead_lettered(&self, rule: &str, records: u64) {
        self.schema_dead_lettered.get_or_create(&RuleLabels { rule: rule.to_owned() }).inc_by(records);
    }

    /// What fetch transforms (`rule` the first covering the topic) did to a partition's records.
    pub fn fetch_transformed(&self, rule: &str, tally: &crate::transform::fetch::Tally) {
        let counts = [("unchanged", tally.kept), ("changed", tally.changed), ("dropped", tally.dropped)];
        for (outcome, records) in counts.into_iter().chain([("unreadable", tally.unreadable)]) {
            if records > 0 {
                self.fetch_transformed.get_or_create(&OutcomeLabels { rule: rule.to_owned(), outcome }).inc_by(records);
            }
        }
    }

    /// An encryption rule sealed `records` values.
    pub fn sealed(&self, rule: &str, records: u64) {
        self.sealed.get_or_create(&RuleLabels { rule: rule.to_owned() }).inc_by(records);
    }

    /// An encryption rule opened `records` sealed records.
    pub fn opened(&self, rule: &str, records: u64) {
        self.opened.get_or_create(&RuleLabels { rule: rule.to_owned() }).inc_by(records);
    }

    /// A topic creation rule refused a topic (created or grown).
    pub fn topic_creation_refused(&self, rule: &str) {
        self.topic_creation_refused.get_or_create(&RuleLabels { rule: rule.to_owned() }).inc();
    }

    /// A canary rule wrote `records` to its canary topic.
    pub fn canary_routed(&self, rule: &str, records: u64) {
        self.canary_records.get_or_create(&RuleLabels { rule: rule.to_owned() }).inc_by(records);
    }

    pub fn connect_failed(&self, broker: &str) {
        self.connect_failures.get_or_create(&BrokerLabels { broker: broker.to_owned() }).inc();
    }

    /// Outlier detection ejected `broker`.
    pub fn ejected(&self, broker: &str) {
        let labels = BrokerLabels { broker: broker.to_owned() };
        self.ejections.get_or_create(&labels).inc();
        self.ejected.get_or_create(&labels).set(1);
    }

    /// A request found `broker`'s request limit reached, and was `action` (queued, rejected).
    /// A client connection found `broker`'s connection limit reached: `queued` or `rejected`.
    pub fn over_connection_limit(&self, broker: &str, action: &'static str) {
        self.over_connection_limit.get_or_create(&BrokerLimitLabels { broker: broker.to_owned(), action }).inc();
    }

    pub fn over_broker_limit(&self, broker: &str, action: &'static str) {
        self.over_broker_limit.get_or_create(&BrokerLimitLabels { broker: broker.to_owned(), action }).inc();
    }

    /// A broker with failures on record connected again.
    pub fn broker_back(&self, broker: &str) {
        self.ejected.get_or_create(&BrokerLabels { broker: broker.to_owned() }).set(0);
    }

    pub fn closed(&self, reason: &str) {
        self.closed_connections.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }
}

/// Records and bytes counters for one topic: the process-wide ones, and this connection's.
#[derive(Clone)]
pub struct TopicCounters {
    pub records: Counter,
    pub bytes: Counter,
    flow: std::sync::Arc<weir_core::flows::FlowCounters>,
    connection_records: u64,
    connection_bytes: u64,
}

/// Per-connection cache of per-topic handles, so the label lookup happens once per topic; it
/// also keeps the connection's own totals for its audit summary.
pub struct TopicCache {
    direction: Direction,
    principal: TrafficPrincipal,
    handles: HashMap<String, TopicCounters>,
    /// Names of the topic ids this connection used, so the shared id map is read once per id.
    id_names: HashMap<[u8; 16], String>,
}

#[derive(Clone, Copy)]
pub enum Direction {
    Produced,
    Fetched,
}

impl TopicCache {
    pub fn new(direction: Direction, principal: TrafficPrincipal) -> Self {
        Self { direction, principal, handles: HashMap::new(), id_names: HashMap::new() }
    }

    pub fn principal(&self) -> &TrafficPrincipal {
        &self.principal
    }

    /// Counts `records` records in `bytes` bytes for `topic`.
    pub fn add(&mut self, metrics: &KafkaMetrics, topic: &str, records: u64, bytes: u64) {
        if !self.handles.contains_key(topic) {
            let labels = TopicLabels { topic: topic.to_owned(), principal: self.principal.get().to_owned() };
            let (records, bytes) = match self.direction {
                Direction::Produced => (&metrics.produced_records, &metrics.produced_bytes),
                Direction::Fetched => (&metrics.fetched_records, &metrics.fetched_bytes),
            };
            let direction = match self.direction {
                Direction::Produced => weir_core::control::FlowDirection::Produce,
                Direction::Fetched => weir_core::control::FlowDirection::Consume,
            };
            let counters = TopicCounters {
                records: records.get_or_create(&labels).clone(),
                bytes: bytes.get_or_create(&labels).clone(),
                flow: metrics.flows.counters(&labels.principal, self.principal.client_id(), topic, direction),
                connection_records: 0,
                connection_bytes: 0,
            };
            self.handles.insert(topic.to_owned(), counters);
        }
        if let Some(counters) = self.handles.get_mut(topic) {
            counters.records.inc_by(records);
            counters.bytes.inc_by(bytes);
            counters.flow.count(records, bytes);
            counters.connection_records += records;
            counters.connection_bytes += bytes;
        }
    }

    /// Counts for a topic named by id: by its name once known (until then by the id's text).
    pub fn add_by_id(&mut self, metrics: &KafkaMetrics, ids: &TopicIds, id: [u8; 16], records: u64, bytes: u64) {
        if let Some(name) = self.id_names.get(&id) {
            let name = name.clone();
            return self.add(metrics, &name, records, bytes);
        }
        let uuid = Uuid::from_bytes(id);
        match ids.name(&uuid) {
            Some(name) => {
                self.add(metrics, &name, records, bytes);
                if self.id_names.len() < MAX_TOPICS_NAMED_BY_ID {
                    self.id_names.insert(id, name.to_string());
                }
            }
            None => self.add(metrics, &uuid.to_string(), records, bytes),
        }
    }

    /// This connection's totals per topic.
    pub fn totals(&self) -> std::collections::BTreeMap<String, weir_core::audit::TopicTotals> {
        self.handles
            .iter()
            .map(|(topic, c)| {
                (
                    topic.clone(),
                    weir_core::audit::TopicTotals { records: c.connection_records, bytes: c.connection_bytes },
                )
            })
            .collect()
    }
}
