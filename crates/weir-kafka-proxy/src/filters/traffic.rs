//! Who produces and fetches what: records and bytes per topic and principal, the errors the
//! broker answers per partition, and (when configured) a summary of each connection in the
//! audit log. Produce requests and Produce and Fetch responses are walked in place, never
//! decoded.

use kafka_protocol::messages::ApiKey;
use weir_core::audit::ConnectionEvent;
use weir_wire::produce::{scan_produce, scan_produce_response};
use weir_wire::records::count_records;
use weir_wire::scan::TopicRef;

use crate::filter::{ready, ConnectionInfo, Filter, FilterError, Hook, RequestAction, RequestContext};
use crate::filter::{ResponseContext, Services};
use crate::metrics::{Direction, KafkaMetrics, TopicCache, TrafficPrincipal};
use crate::topic_ids::TopicIds;

pub(crate) struct TrafficFilter {
    produced: TopicCache,
    fetched: TopicCache,
    /// The consumer group this connection last named, so that a Heartbeat every few seconds
    /// costs a comparison, not a lock.
    group: Vec<u8>,
    /// Write a summary of the connection to the audit log when it ends.
    summarize: bool,
}

impl TrafficFilter {
    pub(crate) fn new(connection: &ConnectionInfo, summarize: bool) -> Self {
        let principal = TrafficPrincipal::default();
        if let Some(name) = &connection.principal {
            principal.set(name);
        }
        Self {
            produced: TopicCache::new(Direction::Produced, principal.clone()),
            fetched: TopicCache::new(Direction::Fetched, principal),
            group: Vec::new(),
            summarize,
        }
    }
}

/// Counts one partition's records for its topic, named by name or by id.
fn count(cache: &mut TopicCache, metrics: &KafkaMetrics, ids: &TopicIds, topic: TopicRef<'_>, count: u64, size: u64) {
    match topic {
        TopicRef::Name(name) => cache.add(metrics, name, count, size),
        TopicRef::Id(id) => cache.add_by_id(metrics, ids, id, count, size),
    }
}

impl Filter for TrafficFilter {
    fn name(&self) -> &'static str {
        "traffic"
    }

    fn wants_request(&self, api: ApiKey, _version: i16) -> bool {
        use ApiKey::*;
        matches!(api, Produce | Fetch | OffsetCommit | JoinGroup | Heartbeat | LeaveGroup | SyncGroup)
    }

    fn wants_response(&self, api: ApiKey, _version: i16) -> bool {
        matches!(api, ApiKey::Produce | ApiKey::Fetch)
    }

    /// Counts what a Produce request carries (what is left of it after authorization); notes
    /// the connection's client id and the consumer group its group requests name.
    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        let traffic = self.produced.principal();
        traffic.set_client_id(cx.header.client_id_str());
        if cx.header.api_key != ApiKey::Produce {
            if let Some(group) = cx.header.group_id(cx.frame()).filter(|g| *g != self.group.as_slice()) {
                self.group = group.to_vec();
                let group = String::from_utf8_lossy(group);
                cx.services.metrics().flows.set_group(traffic.get(), traffic.client_id(), &group);
            }
            return ready(Ok(RequestAction::Continue));
        }
        let (metrics, ids) = (cx.services.metrics(), &**cx.services.topic_ids());
        let produced = &mut self.produced;
        let scanned = scan_produce(cx.frame(), cx.header, |topic, _partition, records| {
            count(produced, metrics, ids, topic, count_records(records), records.len() as u64)
        });
        ready(scanned.map(|_acks| RequestAction::Continue).map_err(FilterError::BadRequestBody))
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        ready(self.count_response(cx))
    }

    fn on_authenticated(&mut self, principal: &str) {
        // The first principal wins: a SASL login after mTLS keeps the certificate's name here.
        self.produced.principal().set(principal);
    }

    fn on_connection_end(&mut self, connection: &ConnectionInfo, services: &dyn Services) {
        let Some(audit) = services.audit().filter(|_| self.summarize) else { return };
        audit.connection(&ConnectionEvent {
            principal: connection.principal.as_deref(),
            client: connection.peer,
            listener: &connection.listener,
            duration_ms: connection.opened_at.elapsed().as_millis() as u64,
            produced: self.produced.totals(),
            fetched: self.fetched.totals(),
        });
    }
}

impl TrafficFilter {
    fn count_response(&mut self, cx: &mut ResponseContext<'_>) -> Result<(), FilterError> {
        let (key, version) = (cx.message.api_key(), cx.message.version());
        let (metrics, ids) = (cx.services.metrics(), &**cx.services.topic_ids());
        match key {
            ApiKey::Produce => {
                let body = cx.message.body().map_err(FilterError::BadResponse)?;
                scan_produce_response(&body, version, |_, _, error| {
                    if error != 0 {
                        metrics.response_error(key, error);
                    }
                })
                .map_err(FilterError::BadResponseBody)?;
            }
            ApiKey::Fetch => {
                let fetched = &mut self.fetched;
                // Whole, or (a large one) counted while it streamed through.
                let summary = cx
                    .message
                    .fetch_counts(|p| {
                        if p.record_bytes > 0 {
                            count(fetched, metrics, ids, p.topic, p.records, p.record_bytes as u64);
                        }
                        if p.error_code != 0 {
                            metrics.response_error(key, p.error_code);
                        }
                    })
                    .map_err(FilterError::BadResponse)?;
                if summary.error_code != 0 {
                    metrics.response_error(key, summary.error_code);
                }
            }
            _ => {}
        }
        Ok(())
    }
}
