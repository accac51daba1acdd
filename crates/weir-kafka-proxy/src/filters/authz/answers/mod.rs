//! What a client gets back for what the policy denied: the errors a broker's authorizer would
//! return, in the shape of each response, with the allowed parts still served.
//!
//! Requests reach this module only after `weir_wire::resources` has walked them, which bounds
//! every declared array length by the frame, so decoding them here is safe.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use weir_core::policy::PrincipalPolicy;

use crate::vocabulary::*;
use weir_wire::message::{encode_request_keeping_header, encode_response, ResponseBody, ResponseMessage};
use weir_wire::resources::{Named, RequestFacts};
use weir_wire::scan::TopicRef;
use weir_wire::RequestHeaderPeek;

use super::{allows, need_for, resource_name, AfterResponse, AuthzEnv, AuthzError, Verdict};

mod cluster;
mod configs;
mod data;
mod groups;
mod share;

use cluster::*;
use configs::*;
use data::*;
use groups::*;
use share::*;

const TOPIC_DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();
const GROUP_DENIED: i16 = ResponseError::GroupAuthorizationFailed.code();
const CLUSTER_DENIED: i16 = ResponseError::ClusterAuthorizationFailed.code();
const TRANSACTIONAL_ID_DENIED: i16 = ResponseError::TransactionalIdAuthorizationFailed.code();
const NOT_ATTEMPTED: i16 = ResponseError::OperationNotAttempted.code();
const UNKNOWN_TOPIC_ID: i16 = ResponseError::UnknownTopicId.code();
const TOKEN_DENIED: i16 = ResponseError::DelegationTokenAuthorizationFailed.code();
/// The messages Kafka's `Errors` gives these codes, for the responses where brokers fill them.
const TOPIC_DENIED_MESSAGE: &str = "Topic authorization failed.";
const GROUP_DENIED_MESSAGE: &str = "Group authorization failed.";

/// One request being authorized.
pub(super) struct Ctx<'a> {
    pub env: &'a AuthzEnv<'a>,
    pub frame: &'a Bytes,
    pub peek: &'a RequestHeaderPeek,
    pub view: &'a Arc<PrincipalPolicy>,
    pub facts: RequestFacts,
}

impl Ctx<'_> {
    fn key(&self) -> ApiKey {
        self.peek.api_key
    }

    fn version(&self) -> i16 {
        self.peek.api_version
    }

    fn permits(&self, named: Named<'_>) -> bool {
        if let Named::Topic(TopicRef::Id(id)) = named {
            // No decision on an id's text: an id still unknown here was looked up and is not one.
            if self.env.topic_ids.name(&uuid::Uuid::from_bytes(id)).is_none() {
                return false;
            }
        }
        match need_for(self.key(), self.version(), &named) {
            Some(needed) => allows(self.view, needed, &resource_name(self.env, &named), self.key()),
            None => true,
        }
    }

    /// A topic named by name only (requests without topic ids).
    fn named_topic(&self, name: &str) -> bool {
        self.permits(Named::Topic(TopicRef::Name(name)))
    }

    fn topic(&self, name: &TopicName, id: &uuid::Uuid) -> bool {
        self.permits(Named::Topic(if id.is_nil() { TopicRef::Name(name) } else { TopicRef::Id(*id.as_bytes()) }))
    }

    /// The error for a topic that is not permitted: UNKNOWN_TOPIC_ID for an id the cluster
    /// could not name, else the authorization failure.
    fn topic_error(&self, id: &uuid::Uuid) -> i16 {
        if !id.is_nil() && self.env.topic_ids.name(id).is_none() {
            UNKNOWN_TOPIC_ID
        } else {
            TOPIC_DENIED
        }
    }

    fn decode<T: Decodable>(&self) -> Result<T, AuthzError> {
        weir_wire::message::decode_request(self.frame, self.peek).map_err(AuthzError::BadRequest)
    }

    fn answer<R: Encodable>(&self, response: &R) -> Result<Option<Verdict>, AuthzError> {
        let frame = encode_response(self.peek.correlation_id, self.key(), self.version(), response)
            .map_err(AuthzError::BadRequest)?;
        Ok(Some(Verdict::Answer(frame)))
    }

    fn forward<T: Encodable>(&self, request: &T, after: Option<AfterResponse>) -> Result<Verdict, AuthzError> {
        let frame = encode_request_keeping_header(self.frame, self.peek, request).map_err(AuthzError::BadRequest)?;
        Ok(Verdict::Rewritten(frame, after))
    }

    /// A step on the broker's response, decoded as `R` (once, for every filter that asks).
    fn after<R: ResponseBody>(&self, change: impl FnOnce(&mut R) + Send + Sync + 'static) -> AfterResponse {
        AfterResponse {
            change: Box::new(move |message: &mut ResponseMessage| {
                change(message.decoded_mut::<R>()?);
                Ok(())
            }),
            topic_ids: None,
        }
    }

    /// A step that judges topics the response names by id: `ids` reads them from the
    /// decoded response, so that the filter can look up the unknown ones first.
    fn after_naming_ids<R: ResponseBody>(
        &self,
        ids: fn(&R) -> Vec<uuid::Uuid>,
        change: impl FnOnce(&mut R) + Send + Sync + 'static,
    ) -> AfterResponse {
        let read = move |message: &mut ResponseMessage| Ok(ids(message.decoded::<R>()?));
        AfterResponse { topic_ids: Some(Box::new(read)), ..self.after(change) }
    }

    /// Answers locally when nothing allowed is left, else forwards what is left and appends
    /// the denied entries to the broker's answer.
    fn strip_or_answer<Req, R, E>(
        &self,
        request: &Req,
        nothing_left: bool,
        denied: Vec<E>,
        entries: fn(&mut R) -> &mut Vec<E>,
    ) -> Result<Option<Verdict>, AuthzError>
    where
        Req: Encodable,
        R: ResponseBody + Default,
        E: Send + Sync + 'static,
    {
        if nothing_left {
            let mut response = R::default();
            entries(&mut response).extend(denied);
            return self.answer(&response);
        }
        let after = self.after(move |response: &mut R| entries(response).extend(denied));
        self.forward(request, Some(after)).map(Some)
    }
}

impl Ctx<'_> {
    /// The usual partial answer: the denied items of one list of the request become `entry`s
    /// in the response's list; the rest of the request goes upstream (or, with nothing left,
    /// the answer is given here).
    fn answer_list<Req, T, R, E>(
        &self,
        mut request: Req,
        list: fn(&mut Req) -> &mut Vec<T>,
        is_denied: impl Fn(&T) -> bool,
        entry: impl FnMut(T) -> E,
        entries: fn(&mut R) -> &mut Vec<E>,
    ) -> Result<Option<Verdict>, AuthzError>
    where
        Req: Encodable,
        R: ResponseBody + Default,
        E: Send + Sync + 'static,
    {
        let denied = take_denied(list(&mut request), is_denied).into_iter().map(entry).collect();
        let nothing_left = list(&mut request).is_empty();
        self.strip_or_answer(&request, nothing_left, denied, entries)
    }
}

/// Moves the entries `denied` says are denied out of `items`.
fn take_denied<T>(items: &mut Vec<T>, denied: impl Fn(&T) -> bool) -> Vec<T> {
    let (out, keep) = std::mem::take(items).into_iter().partition(|t| denied(t));
    *items = keep;
    out
}

fn str_of(s: &StrBytes) -> &str {
    s
}

/// A request with nothing denied: only the responses that list what a client may not see
/// are changed on the way back.
pub(super) fn filter_only(ctx: &Ctx<'_>) -> Result<Verdict, AuthzError> {
    match ctx.key() {
        ApiKey::Metadata => metadata(ctx),
        ApiKey::ListGroups if !ctx.view.allows(CLUSTER, CLUSTER_NAME, DESCRIBE) => {
            let view = ctx.view.clone();
            Ok(Verdict::Filter(ctx.after(move |r: &mut ListGroupsResponse| {
                r.groups.retain(|g| view.allows(GROUP, &g.group_id, DESCRIBE))
            })))
        }
        ApiKey::DescribeTopicPartitions if ctx.facts.all_topics => {
            let view = ctx.view.clone();
            Ok(Verdict::Filter(ctx.after(move |r: &mut DescribeTopicPartitionsResponse| {
                r.topics.retain(|t| {
                    let name = t.name.as_ref().map(|n| str_of(n)).unwrap_or("");
                    view.allows(TOPIC, name, DESCRIBE)
                })
            })))
        }
        // KIP-848 assignments name topics by id and, with a regex subscription, may hold any
        // topic the regex matches: the member sees only those it may describe, as Kafka's
        // coordinator resolves a regex only to topics the member may describe.
        ApiKey::ConsumerGroupHeartbeat => {
            let (view, names) = (ctx.view.clone(), ctx.env.topic_ids.clone());
            let assigned = |r: &ConsumerGroupHeartbeatResponse| {
                r.assignment.iter().flat_map(|a| &a.topic_partitions).map(|t| t.topic_id).collect()
            };
            Ok(Verdict::Filter(ctx.after_naming_ids(assigned, move |r: &mut ConsumerGroupHeartbeatResponse| {
                if let Some(assignment) = &mut r.assignment {
                    assignment
                        .topic_partitions
                        .retain(|t| names.name(&t.topic_id).is_some_and(|n| view.allows(TOPIC, &n, DESCRIBE)));
                }
            })))
        }
        ApiKey::ConsumerGroupDescribe => hide_groups_using_undescribable_topics(ctx),
        ApiKey::DescribeShareGroupOffsets if ctx.facts.all_topics => {
            let view = ctx.view.clone();
            Ok(Verdict::Filter(
                ctx.after(move |r: &mut DescribeShareGroupOffsetsResponse| hide_undescribable_share_offsets(&view, r)),
            ))
        }
        ApiKey::OffsetFetch if ctx.facts.all_topics => {
            let view = ctx.view.clone();
            let describable = move |name: &TopicName| view.allows(TOPIC, name, DESCRIBE);
            Ok(Verdict::Filter(ctx.after(move |r: &mut OffsetFetchResponse| {
                r.topics.retain(|t| describable(&t.name));
                for group in &mut r.groups {
                    group.topics.retain(|t| describable(&t.name));
                }
            })))
        }
        _ => Ok(Verdict::Forward),
    }
}

/// Metadata is filtered, never refused: topics the client may not describe disappear from a
/// listing of all topics and come back as TOPIC_AUTHORIZATION_FAILED when named. A topic the
/// client may not create is not auto-created either.
fn metadata(ctx: &Ctx<'_>) -> Result<Verdict, AuthzError> {
    let view = ctx.view.clone();
    let listing = ctx.facts.all_topics;
    let after = ctx.after(move |r: &mut MetadataResponse| {
        r.topics.retain_mut(|t| {
            let name = t.name.as_ref().map(|n| str_of(n)).unwrap_or("");
            if view.allows(TOPIC, name, DESCRIBE) {
                return true;
            }
            if listing {
                return false;
            }
            *t = metadata_response::MetadataResponseTopic::default()
                .with_name(t.name.clone())
                .with_error_code(TOPIC_DENIED)
                .with_topic_authorized_operations(i32::MIN);
            true
        })
    });
    if !ctx.facts.allow_auto_topic_creation || ctx.version() < 4 || listing {
        return Ok(Verdict::Filter(after));
    }
    let mut request: MetadataRequest = ctx.decode()?;
    let may_create = |t: &metadata_request::MetadataRequestTopic| {
        t.name
            .as_ref()
            .is_none_or(|name| ctx.view.allows(TOPIC, name, CREATE) || ctx.view.allows(CLUSTER, CLUSTER_NAME, CREATE))
    };
    if request.topics.iter().flatten().all(may_create) {
        return Ok(Verdict::Filter(after));
    }
    request.allow_auto_topic_creation = false;
    ctx.forward(&request, Some(after))
}

/// Fetch: denied topics answered with TOPIC_AUTHORIZATION_FAILED per partition. After a policy
/// change an incremental fetch session is closed (epoch -1), so the client starts a full one
/// that is checked topic by topic.
pub(super) fn fetch(ctx: &Ctx<'_>, reset_session: bool) -> Result<Verdict, AuthzError> {
    let mut request: FetchRequest = ctx.decode()?;
    let reset = reset_session && request.session_epoch > 0;
    if reset {
        request.session_epoch = -1;
    }
    let denied = take_denied(&mut request.topics, |t| !ctx.topic(&t.topic, &t.topic_id));
    if denied.is_empty() {
        return if reset { ctx.forward(&request, None) } else { Ok(Verdict::Forward) };
    }
    let denied: Vec<_> = denied
        .into_iter()
        .map(|t| {
            let code = ctx.topic_error(&t.topic_id);
            fetch_response::FetchableTopicResponse::default()
                .with_topic(t.topic)
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            fetch_response::PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(code)
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                                .with_preferred_read_replica((-1).into())
                                .with_records(Some(Bytes::new()))
                        })
                        .collect(),
                )
        })
        .collect();
    let nothing_left = request.topics.is_empty();
    let verdict = ctx.strip_or_answer(&request, nothing_left, denied, |r: &mut FetchResponse| &mut r.responses)?;
    Ok(verdict.unwrap_or(Verdict::Forward))
}

/// Builds the answer to a request with denied parts; `None` when this api has no partial
/// answer here (the connection is then closed with the reason).
pub(super) fn deny(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    match ctx.key() {
        ApiKey::Produce => produce(ctx),
        ApiKey::Fetch => fetch(ctx, false).map(Some),
        ApiKey::Metadata => metadata(ctx).map(Some),
        ApiKey::ListOffsets => list_offsets(ctx),
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch(ctx),
        ApiKey::OffsetCommit => offset_commit(ctx),
        ApiKey::OffsetFetch => offset_fetch(ctx),
        ApiKey::FindCoordinator => find_coordinator(ctx),
        ApiKey::JoinGroup => {
            ctx.answer(&JoinGroupResponse::default().with_error_code(GROUP_DENIED).with_generation_id(-1))
        }
        ApiKey::SyncGroup => ctx.answer(&SyncGroupResponse::default().with_error_code(GROUP_DENIED)),
        ApiKey::Heartbeat => ctx.answer(&HeartbeatResponse::default().with_error_code(GROUP_DENIED)),
        ApiKey::LeaveGroup => ctx.answer(&LeaveGroupResponse::default().with_error_code(GROUP_DENIED)),
        ApiKey::ConsumerGroupHeartbeat => {
            let request: ConsumerGroupHeartbeatRequest = ctx.decode()?;
            let code = if ctx.permits(Named::Group(&request.group_id)) { TOPIC_DENIED } else { GROUP_DENIED };
            ctx.answer(&ConsumerGroupHeartbeatResponse::default().with_error_code(code))
        }
        ApiKey::DescribeGroups => describe_groups(ctx),
        ApiKey::ShareGroupHeartbeat => {
            let request: ShareGroupHeartbeatRequest = ctx.decode()?;
            let code = if ctx.permits(Named::Group(&request.group_id)) { TOPIC_DENIED } else { GROUP_DENIED };
            ctx.answer(&ShareGroupHeartbeatResponse::default().with_error_code(code))
        }
        ApiKey::DescribeShareGroupOffsets => describe_share_group_offsets(ctx),
        ApiKey::AlterShareGroupOffsets => alter_share_group_offsets(ctx),
        ApiKey::DeleteShareGroupOffsets => delete_share_group_offsets(ctx),
        ApiKey::ShareFetch => share_fetch(ctx),
        ApiKey::ShareAcknowledge => share_acknowledge(ctx),
        ApiKey::InitProducerId => {
            let request: InitProducerIdRequest = ctx.decode()?;
            let code = if request.transactional_id.is_some() { TRANSACTIONAL_ID_DENIED } else { CLUSTER_DENIED };
            ctx.answer(
                &InitProducerIdResponse::default()
                    .with_error_code(code)
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1),
            )
        }
        ApiKey::AddPartitionsToTxn => add_partitions_to_txn(ctx),
        ApiKey::AddOffsetsToTxn => {
            let request: AddOffsetsToTxnRequest = ctx.decode()?;
            let code = if ctx.permits(Named::TransactionalId(&request.transactional_id)) {
                GROUP_DENIED
            } else {
                TRANSACTIONAL_ID_DENIED
            };
            ctx.answer(&AddOffsetsToTxnResponse::default().with_error_code(code))
        }
        ApiKey::EndTxn => ctx.answer(&EndTxnResponse::default().with_error_code(TRANSACTIONAL_ID_DENIED)),
        ApiKey::TxnOffsetCommit => txn_offset_commit(ctx),
        ApiKey::CreateTopics => create_topics(ctx),
        ApiKey::DeleteTopics => delete_topics(ctx),
        ApiKey::DescribeConfigs => describe_configs(ctx),
        ApiKey::DescribeCluster => ctx.answer(&DescribeClusterResponse::default().with_error_code(CLUSTER_DENIED)),
        ApiKey::DescribeTopicPartitions => describe_topic_partitions(ctx),
        ApiKey::ShareGroupDescribe => share_group_describe(ctx),
        ApiKey::CreatePartitions => create_partitions(ctx),
        ApiKey::DeleteRecords => delete_records(ctx),
        ApiKey::DeleteGroups => delete_groups(ctx),
        ApiKey::ConsumerGroupDescribe => consumer_group_describe(ctx),
        ApiKey::OffsetDelete => offset_delete(ctx),
        ApiKey::DescribeProducers => describe_producers(ctx),
        ApiKey::DescribeTransactions => describe_transactions(ctx),
        ApiKey::AlterConfigs => alter_configs(ctx),
        ApiKey::IncrementalAlterConfigs => incremental_alter_configs(ctx),
        _ => cluster_admin(ctx),
    }
}
