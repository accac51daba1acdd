//! What every connection of one sidecar shares: the [`Services`] its filters may use, and the
//! chain of filters it builds for each connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use kafka_protocol::messages::ApiVersionsResponse;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use weir_core::audit::AuditLog;

use crate::config::SidecarConfig;
use crate::directory::BrokerDirectory;
use crate::filter::{ConnectionInfo, Filter, Services};
use crate::filters::addresses::AddressFilter;
use crate::filters::alias::AliasFilter;
use crate::filters::authz::ConnectionAuthz;
use crate::filters::canary::CanaryFilter;
use crate::filters::encryption::{DecryptFilter, EncryptFilter};
use crate::filters::fault::FaultFilter;
use crate::filters::fetch_sessions::{FetchSessionFilter, FetchSessionOwners};
use crate::filters::fetch_transform::FetchTransformFilter;
use crate::filters::quota::QuotaFilter;
use crate::filters::safeguard::SafeguardFilter;
use crate::filters::sasl::SaslFilter;
use crate::filters::schema::SchemaFilter;
use crate::filters::shadow::ShadowFilter;
use crate::filters::topic_limits::TopicLimitsFilter;
use crate::filters::trace::TraceFilter;
use crate::filters::traffic::TrafficFilter;
use crate::filters::transform::TransformFilter;
use crate::filters::ProduceFilter;
use crate::metrics::KafkaMetrics;
use crate::quota::QuotaMeters;
use crate::snapshot::{Snapshot, Snapshots};
use crate::topic_ids::TopicIds;
use crate::upstream::Connector;

/// State every connection of this sidecar shares.
pub struct Shared {
    pub config: SidecarConfig,
    pub metrics: KafkaMetrics,
    pub directory: Arc<BrokerDirectory>,
    pub connector: Connector,
    pub shutdown: CancellationToken,
    /// The live configuration: TLS, identity settings, SASL, the policy.
    pub snapshots: Snapshots,
    /// Where authentication outcomes are written, when configured.
    pub audit: Option<AuditLog>,
    /// Who opened each fetch session, so no one else can read it.
    pub fetch_sessions: Arc<FetchSessionOwners>,
    /// Quota meters, shared by all connections of a principal.
    pub quotas: Arc<QuotaMeters>,
    /// Brokers that failed to connect, and those ejected for it.
    pub outliers: Arc<crate::outlier::Outliers>,
    /// Request slots per broker (circuit breaking).
    pub slots: Arc<crate::breaker::BrokerSlots>,
    /// How the sidecar reaches its cluster for writes of its own (shadows, canaries).
    pub own_cluster: Arc<crate::side::ClusterAccess>,
    /// The writers of the shadow rules in use.
    pub shadows: Arc<crate::shadow::ShadowWriters>,
    /// Topic ids and their names, learned from Metadata and asked of the cluster.
    pub topic_ids: Arc<TopicIds>,
    /// The schema registry schema validation asks, when one is configured.
    pub schema_registry: Option<Arc<weir_schema::judge::SchemaRegistry>>,
    /// Encryption's data keys, when a KMS is configured.
    pub data_keys: Option<Arc<weir_envelope::DataKeys>>,
    /// Where spans go, when an OTLP endpoint is configured.
    pub spans: Option<Arc<weir_core::otlp::SpanSink>>,
    /// The cluster's ApiVersions (narrowed to what the sidecar handles), from the readiness
    /// probe: answers a client's ApiVersions before its upstream connection exists.
    pub broker_versions: RwLock<Option<ApiVersionsResponse>>,
}

impl Shared {
    /// The filters one connection runs, in chain order (see `filters`).
    ///
    /// SASL is set up when the connection opens (from the snapshot of that moment).
    /// Authorization, aliases, topic limits, safeguards, schema validation, transforms,
    /// quotas, faults, shadows and canaries are always in the chain, passing
    /// everything while the snapshot configures none, so that one published later applies to
    /// connections already open.
    pub(crate) fn filters_for(&self, snapshot: &Snapshot, connection: &ConnectionInfo) -> Vec<Box<dyn Filter>> {
        let mut chain: Vec<Box<dyn Filter>> = Vec::with_capacity(19);
        if let Some(server) = &snapshot.sasl {
            chain.push(Box::new(SaslFilter::new(server.clone(), connection.peer)));
        }
        chain.push(Box::new(FetchSessionFilter::new(self.fetch_sessions.clone())));
        chain.push(Box::new(AliasFilter::new(snapshot, connection)));
        let (policy, principal) = (snapshot.policy.clone(), connection.principal.as_deref());
        chain.push(Box::new(ConnectionAuthz::new(policy, principal, connection.peer, &connection.listener)));
        chain.push(Box::new(TopicLimitsFilter::new(snapshot, connection)));
        let decompressed = self.config.limits.max_decompressed_batch_bytes;
        chain.push(Box::new(ProduceFilter(SafeguardFilter::new(snapshot, connection, decompressed))));
        let registry = self.schema_registry.clone();
        let cluster = self.own_cluster.clone();
        chain.push(Box::new(ProduceFilter(SchemaFilter::new(snapshot, connection, registry, cluster, decompressed))));
        chain.push(Box::new(ProduceFilter(TransformFilter::new(snapshot, connection, decompressed))));
        chain.push(Box::new(FetchTransformFilter::new(snapshot, connection, decompressed)));
        let keys = self.data_keys.clone();
        chain.push(Box::new(ProduceFilter(EncryptFilter::new(snapshot, keys.clone(), decompressed))));
        chain.push(Box::new(DecryptFilter::new(snapshot, connection, keys, decompressed)));
        chain.push(Box::new(TraceFilter::new(snapshot, connection, self.spans.clone(), decompressed)));
        chain.push(Box::new(QuotaFilter::new(snapshot, self.quotas.clone(), connection)));
        let summarize = self.config.audit.as_ref().is_some_and(|audit| audit.connection_summaries);
        chain.push(Box::new(TrafficFilter::new(connection, summarize)));
        chain.push(Box::new(FaultFilter::new(snapshot, connection)));
        chain.push(Box::new(ShadowFilter::new(snapshot, self.shadows.clone(), connection)));
        chain.push(Box::new(CanaryFilter::new(snapshot, self.own_cluster.clone(), connection)));
        chain.push(Box::new(AddressFilter::new(self.directory.clone())));
        chain
    }
}

impl Services for Shared {
    fn metrics(&self) -> &KafkaMetrics {
        &self.metrics
    }

    fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    fn topic_ids(&self) -> &Arc<TopicIds> {
        &self.topic_ids
    }

    fn resolve_topic_ids<'a>(&'a self, ids: &'a [Uuid]) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let (connector, bootstrap) = (&self.connector, &self.config.bootstrap);
        Box::pin(self.topic_ids.resolve(ids, |wanted| connector.lookup_topic_ids(bootstrap, wanted)))
    }

    fn cluster_versions(&self) -> Option<ApiVersionsResponse> {
        self.broker_versions.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
