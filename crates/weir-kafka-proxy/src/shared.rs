//! What every connection of one sidecar shares, and the [`Services`] its filters may use.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use kafka_protocol::messages::ApiVersionsResponse;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use weir_core::audit::AuditLog;

use crate::config::SidecarConfig;
use crate::directory::BrokerDirectory;
use crate::filter::Services;
use crate::filters::fetch_sessions::FetchSessionOwners;
use crate::metrics::KafkaMetrics;
use crate::snapshot::Snapshots;
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
    /// Topic ids and their names, learned from Metadata and asked of the cluster.
    pub topic_ids: Arc<TopicIds>,
    /// The cluster's ApiVersions (narrowed to what the sidecar handles), from the readiness
    /// probe: answers a client's ApiVersions before its upstream connection exists.
    pub broker_versions: RwLock<Option<ApiVersionsResponse>>,
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
