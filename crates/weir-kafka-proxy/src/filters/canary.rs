//! Canary routing (see [`crate::canary`]): the batches a produce request carries for a split
//! topic's canary partitions are taken out of it and written to the same partitions of the
//! canary topic, by the connection's side writer (the sidecar's own connections to the canary
//! topic's leaders); the rest of the request goes to the broker as before. The canary's
//! answers take the place of the taken partitions' in the broker's answer, so the client hears
//! of every partition it wrote, with the offsets where its records really are.
//!
//! Both writes are under way at once. The side writer writes one request after another, in
//! the order they came, so a partition's batches reach the canary topic in the producer's
//! order (an idempotent producer's sequence holds there, as all of a partition's batches go
//! the same way). A request with a transactional id is not split: the canary partition was
//! never added to the transaction.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use weir_wire::scan::TopicRef;

use crate::answers::failed_partition;
use crate::canary::CanaryRule;
use crate::filter::ResponseContext;
use crate::filter::{later, ready, ConnectionInfo, Filter, FilterError, Hook, RequestAction, RequestContext};
use crate::quota::{covers, ANONYMOUS};
use crate::side::{is_retriable, ClusterAccess, TopicWriter};
use crate::snapshot::Snapshot;

/// The first Produce version that names topics by id.
const FIRST_BY_ID: i16 = 13;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;
const NETWORK_EXCEPTION: i16 = 13;

pub(crate) struct CanaryFilter {
    rules: Arc<[CanaryRule]>,
    /// The rules whose principals cover this connection's.
    mine: Vec<CanaryRule>,
    principal: String,
    cluster: Arc<ClusterAccess>,
    /// The connection's side writer, once a request was split.
    side: Option<mpsc::UnboundedSender<SideWrite>>,
}

/// One split request's canary part, for the side writer.
struct SideWrite {
    to: String,
    version: i16,
    acks: i16,
    timeout_ms: i32,
    partitions: Vec<PartitionProduceData>,
    /// Where the canary's answers go (none for `acks=0`).
    reply: Option<oneshot::Sender<Vec<PartitionProduceResponse>>>,
}

/// A split request's canary part, awaited with the broker's answer.
struct Routed {
    rule: Arc<str>,
    /// The split topic as the request named it.
    topic: Topic,
    /// Partitions taken, with their record counts.
    partitions: Vec<(i32, u64)>,
    answer: oneshot::Receiver<Vec<PartitionProduceResponse>>,
}

struct RoutedNote(Vec<Routed>);

#[derive(Clone)]
enum Topic {
    Name(TopicName),
    Id(Uuid),
}

impl Topic {
    fn entry(&self) -> TopicProduceResponse {
        match self {
            Topic::Name(name) => TopicProduceResponse::default().with_name(name.clone()),
            Topic::Id(id) => TopicProduceResponse::default().with_topic_id(*id),
        }
    }
}

impl CanaryFilter {
    pub(crate) fn new(snapshot: &Snapshot, cluster: Arc<ClusterAccess>, connection: &ConnectionInfo) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        let mut filter = Self { rules: snapshot.canaries.clone(), mine: Vec::new(), principal, cluster, side: None };
        filter.choose();
        filter
    }

    fn choose(&mut self) {
        let principal = &self.principal;
        self.mine = self.rules.iter().filter(|r| covers(&r.principals, principal)).cloned().collect();
    }

    fn rule_for(&self, topic: &str) -> Option<&CanaryRule> {
        self.mine.iter().find(|r| r.topic == topic)
    }

    fn side(&mut self) -> &mpsc::UnboundedSender<SideWrite> {
        self.side.get_or_insert_with(|| {
            let (send, writes) = mpsc::unbounded_channel();
            tokio::spawn(side_writer(self.cluster.clone(), writes));
            send
        })
    }

    /// Takes the canary partitions out of the request; None when it has none.
    fn split(&mut self, cx: &RequestContext<'_>) -> Result<Option<(Bytes, Vec<Routed>)>, FilterError> {
        let ids = cx.services.topic_ids();
        let name_of = |topic: TopicRef<'_>| match topic {
            TopicRef::Name(name) => Some(name.to_owned()),
            TopicRef::Id(id) => ids.name(&Uuid::from_bytes(id)).map(|n| n.to_string()),
        };
        let mut any = false;
        weir_wire::produce::scan_produce(cx.frame(), cx.header, |topic, partition, _| {
            any = any || name_of(topic).and_then(|n| self.rule_for(&n)).is_some_and(|r| r.routes(partition));
        })
        .map_err(FilterError::BadRequestBody)?;
        if !any {
            return Ok(None);
        }
        // Decoded only after the bounds-checked walk read it whole: no array length it
        // declares is larger than its bytes.
        let mut request: ProduceRequest =
            weir_wire::message::decode_request(cx.frame(), cx.header).map_err(FilterError::BadRequest)?;
        if request.transactional_id.is_some() {
            return Ok(None);
        }
        let version = cx.header.api_version;
        let mut routed = Vec::new();
        for topic in &mut request.topic_data {
            let (name, key) = if version >= FIRST_BY_ID {
                (ids.name(&topic.topic_id).map(|n| n.to_string()), Topic::Id(topic.topic_id))
            } else {
                (Some(topic.name.to_string()), Topic::Name(topic.name.clone()))
            };
            let Some(rule) = name.and_then(|n| self.rule_for(&n)).cloned() else { continue };
            let (canary, stay) =
                std::mem::take(&mut topic.partition_data).into_iter().partition(|p| rule.routes(p.index));
            topic.partition_data = stay;
            let canary: Vec<PartitionProduceData> = canary;
            if canary.is_empty() {
                continue;
            }
            let counts = canary
                .iter()
                .map(|p| (p.index, p.records.as_deref().map_or(0, weir_wire::records::count_records)))
                .collect();
            let (reply, answer) = oneshot::channel();
            let write = SideWrite {
                to: rule.to.clone(),
                version,
                acks: request.acks,
                timeout_ms: request.timeout_ms,
                partitions: canary,
                reply: (request.acks != 0).then_some(reply),
            };
            // The writer ends only with this filter.
            let _ = self.side().send(write);
            routed.push(Routed { rule: rule.name.as_str().into(), topic: key, partitions: counts, answer });
        }
        request.topic_data.retain(|t| !t.partition_data.is_empty());
        let frame = weir_wire::message::encode_request_keeping_header(cx.frame(), cx.header, &request)
            .map_err(FilterError::BadRequest)?;
        Ok(Some((frame, routed)))
    }
}

impl Filter for CanaryFilter {
    fn name(&self) -> &'static str {
        "canary"
    }

    fn wants_request(&self, api: ApiKey, _version: i16) -> bool {
        api == ApiKey::Produce && !self.mine.is_empty()
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        match self.split(cx) {
            Ok(None) => {}
            Ok(Some((frame, routed))) => {
                // What is left goes to the broker, even nothing (a produce of no topics is
                // answered at once): the answer keeps its place among the connection's.
                cx.replace_frame(frame);
                if weir_wire::produce::acks(cx.body(), cx.header.api_version).unwrap_or(1) != 0 {
                    cx.remember(RoutedNote(routed));
                    cx.will_change_response();
                }
            }
            Err(err) => return ready(Err(err)),
        }
        ready(Ok(RequestAction::Continue))
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        let Some(RoutedNote(routed)) = cx.take_note::<RoutedNote>() else { return ready(Ok(())) };
        later(async move {
            let mut answers = Vec::with_capacity(routed.len());
            for Routed { rule, topic, partitions, answer } in routed {
                // The side writer is gone only if the sidecar stops: the client may retry.
                let parts = answer.await.unwrap_or_else(|_| {
                    partitions.iter().map(|(p, _)| failed_partition(*p, NETWORK_EXCEPTION)).collect()
                });
                let written: u64 = parts
                    .iter()
                    .filter(|a| a.error_code == 0)
                    .filter_map(|a| partitions.iter().find(|(p, _)| *p == a.index).map(|(_, n)| n))
                    .sum();
                cx.services.metrics().canary_routed(&rule, written);
                answers.push((topic, parts));
            }
            let response = cx.message.decoded_mut::<ProduceResponse>().map_err(FilterError::BadResponse)?;
            let answers = answers.into_iter().map(|(topic, parts)| topic.entry().with_partition_responses(parts));
            crate::answers::merge_produce_answers(&mut response.responses, answers);
            Ok(())
        })
    }

    fn on_authenticated(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
        self.choose();
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) {
        self.rules = snapshot.canaries.clone();
        self.choose();
    }
}

/// A connection's side writer: writes each split request's canary part in turn.
async fn side_writer(cluster: Arc<ClusterAccess>, mut writes: mpsc::UnboundedReceiver<SideWrite>) {
    let mut writers: Vec<TopicWriter> = Vec::new();
    while let Some(write) = writes.recv().await {
        let at = match writers.iter().position(|w| w.topic() == write.to) {
            Some(at) => at,
            None => {
                writers.push(cluster.writer(&write.to));
                writers.len() - 1
            }
        };
        let answers = write_canary(&mut writers[at], &write).await;
        if let Some(reply) = write.reply {
            let _ = reply.send(answers);
        }
    }
}

/// Writes one canary part: each of its partitions to its leader. Every partition gets an
/// answer: the canary broker's, or the error a client retries (the leader is looked up again
/// next time).
async fn write_canary(writer: &mut TopicWriter, write: &SideWrite) -> Vec<PartitionProduceResponse> {
    let (leaders, topic_id) = match writer.leaders().await {
        Ok(known) => (known.leaders.clone(), known.topic_id),
        Err(why) => {
            tracing::debug!(canary = %write.to, %why, "the canary topic's leaders are not known");
            return write.partitions.iter().map(|p| failed_partition(p.index, LEADER_NOT_AVAILABLE)).collect();
        }
    };
    let mut answers = Vec::with_capacity(write.partitions.len());
    let mut by_leader: Vec<(i32, Vec<PartitionProduceData>)> = Vec::new();
    for partition in &write.partitions {
        let leader = usize::try_from(partition.index).ok().and_then(|i| leaders.get(i)).copied();
        match leader {
            None => answers.push(failed_partition(partition.index, UNKNOWN_TOPIC_OR_PARTITION)),
            Some(-1) => answers.push(failed_partition(partition.index, LEADER_NOT_AVAILABLE)),
            Some(leader) => match by_leader.iter_mut().find(|(l, _)| *l == leader) {
                Some((_, parts)) => parts.push(partition.clone()),
                None => by_leader.push((leader, vec![partition.clone()])),
            },
        }
    }
    let topic = if write.version >= FIRST_BY_ID {
        TopicProduceData::default().with_topic_id(topic_id)
    } else {
        TopicProduceData::default().with_name(TopicName(StrBytes::from_string(write.to.clone())))
    };
    let timeout = std::time::Duration::from_millis(write.timeout_ms.max(0) as u64);
    for (leader, parts) in by_leader {
        let indexes: Vec<i32> = parts.iter().map(|p| p.index).collect();
        let request = ProduceRequest::default()
            .with_acks(if write.acks == 0 { 1 } else { write.acks })
            .with_timeout_ms(write.timeout_ms)
            .with_topic_data(vec![topic.clone().with_partition_data(parts)]);
        match writer.produce(leader, write.version, &request, timeout).await {
            Ok(answer) => {
                let parts = answer.responses.into_iter().flat_map(|t| t.partition_responses);
                // The canary's leader is not the split topic's: no hint of it goes back.
                let parts: Vec<_> = parts.map(|p| p.with_current_leader(Default::default())).collect();
                if parts.iter().any(|p| is_retriable(p.error_code)) {
                    writer.forget_leaders();
                }
                answers.extend(parts);
            }
            Err(why) => {
                tracing::debug!(canary = %write.to, %why, "writing to the canary topic failed");
                answers.extend(indexes.into_iter().map(|p| failed_partition(p, NETWORK_EXCEPTION)));
            }
        }
    }
    answers
}
