//! Fault injection (see [`crate::fault`]): delays, error codes, dropped connections and
//! damaged fetches, on a share of the requests its rules pick.
//!
//! Whether a rule fires is drawn when the request arrives. A request delay waits then (this
//! connection's next requests wait behind it; other connections do not). An error on Produce
//! is answered here, every partition failed and nothing written, as a broker fails a write.
//! Every other fault is owed to the response, which is then read whole: the broker serves the
//! request, and what the client hears is changed (an error code), late, damaged, or never
//! arrives (the connection is dropped). An `acks=0` produce has no response: only delays
//! reach it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, FetchResponse};
use weir_wire::records::ProducerSequence;
use weir_wire::resources::{scan_request_resources, Named};
use weir_wire::scan::TopicRef;

use crate::fault::{DelayOn, FaultAction, FaultPlan};
use crate::filter::{later, ready, ConnectionInfo, Filter, FilterError, Hook, RequestAction, RequestContext};
use crate::filter::{ResponseContext, Services};
use crate::quota::{covers, ANONYMOUS};
use crate::snapshot::Snapshot;

pub(crate) struct FaultFilter {
    plans: Arc<[FaultPlan]>,
    /// The plans whose principals cover this connection's.
    mine: Vec<usize>,
    principal: String,
    /// Partitions whose idempotent writes this connection failed, until the producer sends
    /// the failed batch again.
    held: HashMap<PartitionKey, Held>,
}

/// A partition a produce names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PartitionKey {
    Name(String, i32),
    Id([u8; 16], i32),
}

/// Why a partition's writes fail until its failed batch comes again. A broker that answers
/// NOT_LEADER_OR_FOLLOWER answers so to every write of the partition until the producer has
/// looked for the leader and starts again from the failed batch; a failure that let the
/// batches behind it through would show the broker a gap in the producer's sequence, which
/// no broker shows (and which left the Java producer retrying OUT_OF_ORDER_SEQUENCE_NUMBER
/// until its delivery timeout).
struct Held {
    writer: ProducerSequence,
    code: i16,
    rule: Arc<str>,
    since: Instant,
}

/// How long a hold lasts at most, should the producer never send the batch again.
const MAX_HOLD: Duration = Duration::from_secs(30);
/// Partitions one connection holds at most: a client naming ever more partitions under
/// injected errors cannot grow the table past this (those past it are not held).
const MAX_HELD: usize = 10_000;

/// A produce request's partitions, each with where its batch stands (idempotent producers).
fn produced_partitions(cx: &RequestContext<'_>) -> Result<Vec<(PartitionKey, Option<ProducerSequence>)>, FilterError> {
    let mut partitions = Vec::new();
    weir_wire::produce::scan_produce(cx.frame(), cx.header, |topic, index, records| {
        let key = match topic {
            TopicRef::Name(name) => PartitionKey::Name(name.to_owned(), index),
            TopicRef::Id(id) => PartitionKey::Id(id, index),
        };
        partitions.push((key, weir_wire::records::producer_sequence(records)));
    })
    .map_err(FilterError::BadRequestBody)?;
    Ok(partitions)
}

/// A fault owed to a request's response.
struct OwedFault {
    rule: Arc<str>,
    action: FaultAction,
    /// The rule's topics: a damaged fetch damages one of them (any, when empty).
    topics: Vec<String>,
}

struct Owed(Vec<OwedFault>);

impl FaultFilter {
    pub(crate) fn new(snapshot: &Snapshot, connection: &ConnectionInfo) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        let mut filter = Self { plans: snapshot.faults.clone(), mine: Vec::new(), principal, held: HashMap::new() };
        filter.choose();
        filter
    }

    /// Lets a held partition's failed batch through again, and forgets holds that no longer
    /// apply (another producer or epoch, or too old). The error and rule that fail this
    /// request, when it writes a held partition past its failed batch.
    fn release_or_hold(&mut self, partitions: &[(PartitionKey, Option<ProducerSequence>)]) -> Option<(i16, Arc<str>)> {
        if self.held.is_empty() {
            return None;
        }
        let mut fail = None;
        for (key, writer) in partitions {
            let Some(held) = self.held.get(key) else { continue };
            let same_producer =
                writer.is_some_and(|w| (w.producer_id, w.epoch) == (held.writer.producer_id, held.writer.epoch));
            match writer {
                Some(w)
                    if same_producer
                        && w.base_sequence > held.writer.base_sequence
                        && held.since.elapsed() < MAX_HOLD =>
                {
                    fail = Some((held.code, held.rule.clone()));
                }
                // An earlier batch, retried: it goes through, the hold stays.
                Some(w) if same_producer && w.base_sequence < held.writer.base_sequence => {}
                // The failed batch again, or a producer that started over.
                _ => {
                    self.held.remove(key);
                }
            }
        }
        fail
    }

    /// Holds every idempotently written partition of a request this filter failed.
    fn hold(&mut self, partitions: &[(PartitionKey, Option<ProducerSequence>)], code: i16, rule: &Arc<str>) {
        for (key, writer) in partitions {
            if self.held.len() >= MAX_HELD {
                return;
            }
            if let Some(writer) = writer {
                self.held.entry(key.clone()).or_insert_with(|| Held {
                    writer: *writer,
                    code,
                    rule: rule.clone(),
                    since: Instant::now(),
                });
            }
        }
    }

    fn choose(&mut self) {
        self.mine = (0..self.plans.len()).filter(|&i| covers(&self.plans[i].principals, &self.principal)).collect();
    }
}

/// Whether a request names one of `topics` (a topic named by id counts once the sidecar
/// knows its name).
fn names_a_topic(cx: &RequestContext<'_>, topics: &[String]) -> Result<bool, FilterError> {
    let (api, version) = (cx.header.api_key, cx.header.api_version);
    let ids = cx.services.topic_ids();
    let mut named = false;
    let mut visit = |n: Named<'_>| {
        named |= match n {
            Named::Topic(TopicRef::Name(name)) => topics.iter().any(|t| t == name),
            Named::Topic(TopicRef::Id(id)) => {
                ids.name(&uuid::Uuid::from_bytes(id)).is_some_and(|name| topics.iter().any(|t| **t == *name))
            }
            _ => false,
        }
    };
    if api == ApiKey::Produce {
        weir_wire::produce::scan_produce_names(cx.body(), version, &mut visit)
    } else {
        scan_request_resources(cx.body(), api, version, &mut visit).map(drop)
    }
    .map_err(FilterError::BadRequestBody)?;
    Ok(named)
}

fn injected(services: &dyn Services, rule: &str, action: FaultAction, api: ApiKey) {
    tracing::debug!(rule, fault = action.label(), ?api, "fault injected");
    services.metrics().fault_injected(rule, action.label());
}

impl Filter for FaultFilter {
    fn name(&self) -> &'static str {
        "fault"
    }

    fn wants_request(&self, api: ApiKey, _version: i16) -> bool {
        // Holds outlive the rule that made them: a producer must find its failed batch's
        // partition failing until it sends that batch again, even once injection is off.
        self.mine.iter().any(|&i| self.plans[i].wants(api)) || (api == ApiKey::Produce && !self.held.is_empty())
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        let api = cx.header.api_key;
        let no_response = api == ApiKey::Produce
            && weir_wire::produce::acks(cx.body(), cx.header.api_version).is_ok_and(|acks| acks == 0);
        let mut delay = Duration::ZERO;
        let mut owed = Vec::new();
        let mut answer = None;
        let partitions = match api == ApiKey::Produce && !no_response {
            true => match produced_partitions(cx) {
                Ok(partitions) => partitions,
                Err(err) => return ready(Err(err)),
            },
            false => Vec::new(),
        };
        let mut held_back = self.release_or_hold(&partitions);
        for plan in self.mine.iter().map(|&i| &self.plans[i]) {
            if !plan.wants(api) || !plan.fires() {
                continue;
            }
            match names_a_topic(cx, &plan.topics) {
                Ok(false) if !plan.topics.is_empty() => continue,
                Err(err) => return ready(Err(err)),
                _ => {}
            }
            match plan.action {
                FaultAction::Delay { min, max, on: DelayOn::Request } => {
                    injected(cx.services, &plan.name, plan.action, api);
                    delay += FaultPlan::delay(min, max);
                }
                _ if no_response => {}
                // A broker that fails a produce has written nothing: so the request never
                // reaches one (were it written, a client would rightly count it lost and
                // write it again).
                FaultAction::Error(code) if api == ApiKey::Produce => {
                    held_back = Some((code, plan.name.clone()));
                    break;
                }
                action => owed.push(OwedFault { rule: plan.name.clone(), action, topics: plan.topics.clone() }),
            }
        }
        if let Some((code, rule)) = held_back {
            injected(cx.services, &rule, FaultAction::Error(code), api);
            self.hold(&partitions, code, &rule);
            answer = Some(code);
        }
        let action = match answer.map(|code| crate::answers::failed_produce_answer(cx.frame(), cx.header, code)) {
            Some(Ok(frame)) => RequestAction::Answer(frame),
            Some(Err(err)) => return ready(Err(err)),
            None => {
                if !owed.is_empty() {
                    cx.will_change_response();
                    cx.remember(Owed(owed));
                }
                RequestAction::Continue
            }
        };
        if delay.is_zero() {
            return ready(Ok(action));
        }
        later(async move {
            tokio::time::sleep(delay).await;
            Ok(action)
        })
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        let Some(Owed(owed)) = cx.take_note::<Owed>() else { return ready(Ok(())) };
        let api = cx.message.api_key();
        let mut delay = Duration::ZERO;
        for OwedFault { rule, action, topics } in owed {
            let applied = match action {
                FaultAction::Delay { min, max, .. } => {
                    delay += FaultPlan::delay(min, max);
                    true
                }
                FaultAction::Error(code) => match cx.message.set_error_codes(code) {
                    Ok(set) => set > 0,
                    Err(err) => return ready(Err(FilterError::BadResponse(err))),
                },
                FaultAction::DropConnection => {
                    injected(cx.services, &rule, action, api);
                    return ready(Err(FilterError::FaultInjected(rule)));
                }
                FaultAction::DuplicateBatches | FaultAction::CorruptBatch => match damage_fetch(cx, action, &topics) {
                    Ok(damaged) => damaged,
                    Err(err) => return ready(Err(err)),
                },
            };
            if applied {
                injected(cx.services, &rule, action, api);
            }
        }
        if delay.is_zero() {
            return ready(Ok(()));
        }
        later(async move {
            tokio::time::sleep(delay).await;
            Ok(())
        })
    }

    fn on_authenticated(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
        self.choose();
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) {
        if !Arc::ptr_eq(&self.plans, &snapshot.faults) {
            self.plans = snapshot.faults.clone();
            self.choose();
        }
    }
}

/// Duplicates or corrupts the first record batch of the first partition (of one of `topics`,
/// unless empty) that has one. Returns whether there was one.
fn damage_fetch(cx: &mut ResponseContext<'_>, action: FaultAction, topics: &[String]) -> Result<bool, FilterError> {
    let damage = |records: &Bytes| match action {
        FaultAction::DuplicateBatches => weir_wire::records::duplicate_first_batch(records),
        _ => weir_wire::records::corrupt_first_batch(records),
    };
    // Read first, so that a response with nothing to damage is not encoded again.
    let response: &FetchResponse = cx.message.decoded().map_err(FilterError::BadResponse)?;
    let ids = cx.services.topic_ids();
    let chosen = |topic: &kafka_protocol::messages::fetch_response::FetchableTopicResponse| {
        let name = if topic.topic.0.is_empty() { ids.name(&topic.topic_id) } else { Some(topic.topic.0.clone()) };
        topics.is_empty() || name.is_some_and(|name| topics.iter().any(|t| **t == *name))
    };
    let found = response.responses.iter().enumerate().filter(|(_, topic)| chosen(topic)).find_map(|(t, topic)| {
        topic
            .partitions
            .iter()
            .enumerate()
            .find_map(|(p, partition)| partition.records.as_ref().and_then(&damage).map(|damaged| (t, p, damaged)))
    });
    let Some((t, p, damaged)) = found else { return Ok(false) };
    let response: &mut FetchResponse = cx.message.decoded_mut().map_err(FilterError::BadResponse)?;
    response.responses[t].partitions[p].records = Some(damaged);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
    use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse, ProduceRequest, ProduceResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use weir_wire::message::{decode_response, encode_response, ResponseMessage};
    use weir_wire::RequestHeaderPeek;

    use super::*;
    use crate::config::SidecarConfig;
    use crate::filter::testing::{connection, request, TestServices};
    use crate::filter::FilterChain;

    fn chain(faults: &str, principal: &str) -> FilterChain {
        let yaml = format!("listen: 127.0.0.1:1\nbootstrap: [b:1]\nfaults: {faults}");
        let config: SidecarConfig = weir_core::config::parse_yaml(&yaml, Path::new("t")).unwrap();
        let snapshot = Snapshot { faults: config.fault_plans(Path::new("t")).unwrap().into(), ..Snapshot::default() };
        let connection = connection(Some(principal));
        FilterChain::new(vec![Box::new(FaultFilter::new(&snapshot, &connection))], connection)
    }

    fn name(topic: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(topic))
    }

    fn produce(topic: &'static str, acks: i16) -> (RequestHeaderPeek, Bytes) {
        let data = TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0)]);
        let frame = request(ApiKey::Produce, 9, &ProduceRequest::default().with_acks(acks).with_topic_data(vec![data]));
        (RequestHeaderPeek::parse(&frame).unwrap(), frame)
    }

    fn produced(topic: &'static str) -> ResponseMessage {
        let body = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
            .with_name(name(topic))
            .with_partition_responses(vec![PartitionProduceResponse::default().with_base_offset(5)])]);
        ResponseMessage::new(encode_response(42, ApiKey::Produce, 9, &body).unwrap(), ApiKey::Produce, 9)
    }

    fn error_code(message: ResponseMessage) -> i16 {
        let (_, body): (_, ProduceResponse) =
            decode_response(&message.into_frame().unwrap(), ApiKey::Produce, 9).unwrap();
        body.responses[0].partition_responses[0].error_code
    }

    const NOT_LEADER: &str =
        "[{name: nl, api_keys: [Produce], topics: [orders], rate: 1, inject: {error: NOT_LEADER_OR_FOLLOWER}}]";

    #[tokio::test]
    async fn a_produce_error_is_answered_here_for_the_rules_topics_only_and_nothing_is_forwarded() {
        let services = TestServices::default();
        let mut chain = chain(NOT_LEADER, "User:app");
        let (peek, frame) = produce("orders", -1);
        let outcome = chain.on_request(&services, &peek, frame).await.unwrap();
        let RequestAction::Answer(answer) = outcome.action else { panic!("{:?}", outcome.action) };
        let (header, body): (_, ProduceResponse) = decode_response(&answer, ApiKey::Produce, 9).unwrap();
        assert_eq!(header.correlation_id, 42);
        let partition = &body.responses[0].partition_responses[0];
        assert_eq!((body.responses[0].name.0.as_str(), partition.error_code, partition.base_offset), ("orders", 6, -1));
        let metrics = services.exposition();
        assert!(metrics.contains(r#"weir_kafka_faults_injected_total{rule="nl",fault="error"} 1"#), "{metrics}");

        let (peek, frame) = produce("payments", -1);
        let outcome = chain.on_request(&services, &peek, frame).await.unwrap();
        assert!(matches!(outcome.action, RequestAction::Continue) && !outcome.changes_response);
        let mut answer = produced("payments");
        chain.on_response(&services, &mut answer, outcome.notes).await.unwrap();
        assert_eq!(error_code(answer), 0);
    }

    /// A produce to `orders` partition 0 of one idempotent batch at `sequence`.
    fn idempotent_produce(sequence: i32) -> (RequestHeaderPeek, Bytes) {
        use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 9,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence,
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        };
        let mut records = bytes::BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression: Compression::None };
        RecordBatchEncoder::encode(&mut records, &[record], &options).unwrap();
        let data = TopicProduceData::default().with_name(name("orders")).with_partition_data(vec![
            PartitionProduceData::default().with_index(0).with_records(Some(records.freeze())),
        ]);
        let frame = request(ApiKey::Produce, 9, &ProduceRequest::default().with_acks(-1).with_topic_data(vec![data]));
        (RequestHeaderPeek::parse(&frame).unwrap(), frame)
    }

    #[tokio::test]
    async fn after_a_failed_idempotent_write_the_partition_fails_until_that_batch_comes_again() {
        async fn outcome(chain: &mut FilterChain, services: &TestServices, sequence: i32) -> RequestAction {
            let (peek, frame) = idempotent_produce(sequence);
            chain.on_request(services, &peek, frame).await.unwrap().action
        }
        let services = TestServices::default();
        let mut chain = chain(NOT_LEADER, "User:app");
        assert!(matches!(outcome(&mut chain, &services, 0).await, RequestAction::Answer(_)), "the rule fires");
        // The rule is gone, yet the batch behind the failed one is failed too: a broker that
        // said NOT_LEADER_OR_FOLLOWER says it until the producer starts again from there.
        chain.on_snapshot(&Snapshot::default());
        assert!(matches!(outcome(&mut chain, &services, 10).await, RequestAction::Answer(_)));
        let again = outcome(&mut chain, &services, 0).await;
        assert!(matches!(again, RequestAction::Continue), "the failed batch again");
        assert!(matches!(outcome(&mut chain, &services, 10).await, RequestAction::Continue));
    }

    #[test]
    fn a_client_naming_ever_more_partitions_cannot_grow_the_holds_past_the_bound() {
        let connection = connection(Some("User:app"));
        let mut filter = FaultFilter::new(&Snapshot::default(), &connection);
        let writer = ProducerSequence { producer_id: 9, epoch: 0, base_sequence: 0 };
        let partitions: Vec<_> =
            (0..MAX_HELD as i32 + 5_000).map(|i| (PartitionKey::Name("orders".into(), i), Some(writer))).collect();
        filter.hold(&partitions, 6, &Arc::from("nl"));
        filter.hold(&partitions, 6, &Arc::from("nl"));
        assert_eq!(filter.held.len(), MAX_HELD);
    }

    #[tokio::test]
    async fn an_error_on_another_api_is_set_in_the_brokers_answer() {
        let services = TestServices::default();
        let mut chain = chain("[{name: rebalance, api_keys: [Heartbeat], rate: 1, inject: {error: 27}}]", "User:app");
        let frame = request(ApiKey::Heartbeat, 4, &HeartbeatRequest::default());
        let outcome = chain.on_request(&services, &RequestHeaderPeek::parse(&frame).unwrap(), frame).await.unwrap();
        assert!(matches!(outcome.action, RequestAction::Continue) && outcome.changes_response);
        let served = encode_response(42, ApiKey::Heartbeat, 4, &HeartbeatResponse::default()).unwrap();
        let mut answer = ResponseMessage::new(served, ApiKey::Heartbeat, 4);
        chain.on_response(&services, &mut answer, outcome.notes).await.unwrap();
        let (_, body): (_, HeartbeatResponse) =
            decode_response(&answer.into_frame().unwrap(), ApiKey::Heartbeat, 4).unwrap();
        assert_eq!(body.error_code, 27);
    }

    #[tokio::test]
    async fn rules_for_other_principals_and_acks_0_produces_are_left_alone() {
        let services = TestServices::default();
        let for_other = NOT_LEADER.replace("rate: 1", "principals: ['User:other'], rate: 1");
        let (peek, frame) = produce("orders", -1);
        assert!(!chain(&for_other, "User:app").on_request(&services, &peek, frame).await.unwrap().changes_response);
        let (peek, frame) = produce("orders", 0);
        let outcome = chain(NOT_LEADER, "User:app").on_request(&services, &peek, frame).await.unwrap();
        assert!(matches!(outcome.action, RequestAction::Continue) && !outcome.changes_response);
    }

    #[tokio::test]
    async fn a_drop_rule_closes_the_connection_once_the_broker_answered() {
        let services = TestServices::default();
        let mut chain = chain("[{name: cut, rate: 1, inject: drop_connection}]", "User:app");
        let (peek, frame) = produce("orders", -1);
        let outcome = chain.on_request(&services, &peek, frame).await.unwrap();
        assert!(matches!(outcome.action, RequestAction::Continue), "the broker still gets the request");
        let err = chain.on_response(&services, &mut produced("orders"), outcome.notes).await.unwrap_err();
        assert!(matches!(&err, FilterError::FaultInjected(rule) if &**rule == "cut"), "{err}");
        assert_eq!(err.reason(), "fault_injected");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_delay_holds_the_request_for_its_time() {
        let services = TestServices::default();
        let mut chain = chain("[{name: slow, rate: 1, inject: {delay: {ms: 250}}}]", "User:app");
        let (peek, frame) = produce("orders", -1);
        let start = tokio::time::Instant::now();
        chain.on_request(&services, &peek, frame).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(250));
    }
}
