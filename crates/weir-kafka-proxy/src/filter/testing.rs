//! What unit tests of filters need instead of a sidecar: [`Services`] with nothing behind it,
//! and request frames built from message structs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use uuid::Uuid;
use weir_core::audit::AuditLog;

use super::{ConnectionInfo, Services};
use crate::metrics::KafkaMetrics;
use crate::topic_ids::TopicIds;

/// Services of a sidecar that has learned nothing and asks no one.
pub(crate) struct TestServices {
    pub metrics: KafkaMetrics,
    pub topic_ids: Arc<TopicIds>,
    registry: prometheus_client::registry::Registry,
}

impl Default for TestServices {
    fn default() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = KafkaMetrics::register(&mut registry);
        Self { metrics, topic_ids: Arc::default(), registry }
    }
}

impl TestServices {
    /// The metrics as `/metrics` shows them.
    pub(crate) fn exposition(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("metrics encode");
        text
    }
}

impl Services for TestServices {
    fn metrics(&self) -> &KafkaMetrics {
        &self.metrics
    }

    fn audit(&self) -> Option<&AuditLog> {
        None
    }

    fn topic_ids(&self) -> &Arc<TopicIds> {
        &self.topic_ids
    }

    fn resolve_topic_ids<'a>(&'a self, _ids: &'a [Uuid]) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(std::future::ready(()))
    }

    fn cluster_versions(&self) -> Option<ApiVersionsResponse> {
        None
    }
}

/// A connection from 127.0.0.1:1 on the bootstrap listener.
pub(crate) fn connection(principal: Option<&str>) -> ConnectionInfo {
    ConnectionInfo {
        peer: "127.0.0.1:1".parse().expect("an address"),
        listener: "bootstrap".into(),
        principal: principal.map(str::to_owned),
        opened_at: Instant::now(),
    }
}

/// A request frame (length prefix, header with correlation id 42 and client id `t`, body).
pub(crate) fn request<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("t")))
        .encode(&mut buf, key.request_header_version(version))
        .expect("a header encodes");
    body.encode(&mut buf, version).expect("the body encodes");
    weir_wire::frame::with_length_prefix(&buf)
}
