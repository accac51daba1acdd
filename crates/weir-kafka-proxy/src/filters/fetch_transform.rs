//! Record transformation on fetch (see [`crate::transform::fetch`]): a consumer whose
//! principal a rule covers reads the rule's topics with headers removed, JSON fields masked
//! and records taken out, every record it gets at its own offset.
//!
//! A Fetch response that may carry a covered topic is read whole before it goes on (never
//! streamed as it arrives): a full Fetch naming a covered topic (or a topic id not learned
//! yet), and every incremental Fetch of such a principal, whose session may hold covered
//! partitions the request does not name. A partition whose records cannot be read (a batch
//! of an old message format, a corrupt one) gets none: UNKNOWN_SERVER_ERROR, which
//! consumers retry, and a warning in the sidecar's log. Topics no rule covers go on as the
//! same bytes; so does a principal's whole traffic when no rule covers it.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, FetchResponse};

use crate::filter::ResponseContext;
use crate::filter::{later, ready, ConnectionInfo, Filter, FilterError, Hook, RequestAction, RequestContext};
use crate::filters::{fetch_may_carry, fetched_topic_name, unknown_fetch_topic_ids};
use crate::quota::ANONYMOUS;
use crate::snapshot::Snapshot;
use crate::transform::fetch::{CompiledFetchTransform, FetchPlan, Tally};
use crate::transform::TransformRule;

/// Left on a Fetch request whose response is transformed.
struct Transform;

pub(crate) struct FetchTransformFilter {
    rules: Arc<[TransformRule]>,
    /// The fetch transforms of the rules whose principals cover this connection's.
    mine: Vec<CompiledFetchTransform>,
    principal: String,
    decompressed_limit: usize,
    scratch: Vec<u8>,
}

impl FetchTransformFilter {
    pub(crate) fn new(snapshot: &Snapshot, connection: &ConnectionInfo, decompressed_limit: usize) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        let rules = snapshot.transforms.clone();
        let mut filter = Self { rules, mine: Vec::new(), principal, decompressed_limit, scratch: Vec::new() };
        filter.choose();
        filter
    }

    fn choose(&mut self) {
        let principal = &self.principal;
        self.mine = self
            .rules
            .iter()
            .filter(|r| r.covers_principal(principal))
            .filter_map(CompiledFetchTransform::new)
            .collect();
    }

    /// The response's covered partitions transformed.
    fn transform(&mut self, cx: &mut ResponseContext<'_>) -> Result<(), FilterError> {
        let version = cx.message.version();
        let ids = cx.services.topic_ids().clone();
        let (mine, limit, scratch) = (&self.mine, self.decompressed_limit, &mut self.scratch);
        let response: &mut FetchResponse = cx.message.decoded_mut().map_err(FilterError::BadResponse)?;
        for topic in &mut response.responses {
            // An id the cluster cannot name is no topic the broker serves records of.
            let Some(name) = fetched_topic_name(&ids, version, topic) else { continue };
            let Some(plan) = FetchPlan::for_topic(mine, &name) else { continue };
            let mut tally = Tally::default();
            for partition in &mut topic.partitions {
                let Some(records) = partition.records.as_ref().filter(|r| !r.is_empty()) else { continue };
                match plan.apply(records, limit, scratch, &mut tally) {
                    Ok(None) => {}
                    Ok(Some(rewritten)) => partition.records = Some(rewritten),
                    Err(why) => {
                        tracing::warn!(
                            topic = %name,
                            partition = partition.partition_index,
                            rule = plan.rule(),
                            "fetched records not served: {why}"
                        );
                        partition.records = Some(bytes::Bytes::new());
                        partition.error_code = ResponseError::UnknownServerError.code();
                    }
                }
            }
            cx.services.metrics().fetch_transformed(plan.rule(), &tally);
        }
        crate::filters::release_scratch(&mut self.scratch);
        Ok(())
    }
}

impl Filter for FetchTransformFilter {
    fn name(&self) -> &'static str {
        "fetch_transform"
    }

    fn wants_request(&self, api: ApiKey, _version: i16) -> bool {
        api == ApiKey::Fetch && !self.mine.is_empty()
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        let mine = &self.mine;
        ready(fetch_may_carry(cx, |topic| mine.iter().any(|rule| rule.covers(topic))).map(|covered| {
            if covered {
                cx.remember(Transform);
                cx.will_change_response();
            }
            RequestAction::Continue
        }))
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        if cx.take_note::<Transform>().is_none() {
            return ready(Ok(()));
        }
        let unknown = match unknown_fetch_topic_ids(cx) {
            Ok(unknown) => unknown,
            Err(err) => return ready(Err(err)),
        };
        if unknown.is_empty() {
            return ready(self.transform(cx));
        }
        later(async move {
            cx.services.resolve_topic_ids(&unknown).await;
            self.transform(cx)
        })
    }

    fn on_authenticated(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
        self.choose();
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) {
        if !Arc::ptr_eq(&self.rules, &snapshot.transforms) {
            self.rules = snapshot.transforms.clone();
            self.choose();
        }
    }
}
