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
use weir_core::policy::{Operation, PrincipalPolicy, ResourceType};
use weir_wire::message::{encode_request_keeping_header, encode_response, ResponseBody, ResponseMessage};
use weir_wire::resources::{Named, RequestFacts};
use weir_wire::scan::TopicRef;
use weir_wire::RequestHeaderPeek;

use super::{allows, need_for, resource_name, AfterResponse, AuthzEnv, AuthzError, Verdict};

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
        ApiKey::ListGroups if !ctx.view.allows(ResourceType::Cluster, "kafka-cluster", Operation::Describe) => {
            let view = ctx.view.clone();
            Ok(Verdict::Filter(ctx.after(move |r: &mut ListGroupsResponse| {
                r.groups.retain(|g| view.allows(ResourceType::Group, &g.group_id, Operation::Describe))
            })))
        }
        ApiKey::DescribeTopicPartitions if ctx.facts.all_topics => {
            let view = ctx.view.clone();
            Ok(Verdict::Filter(ctx.after(move |r: &mut DescribeTopicPartitionsResponse| {
                r.topics.retain(|t| {
                    let name = t.name.as_ref().map(|n| str_of(n)).unwrap_or("");
                    view.allows(ResourceType::Topic, name, Operation::Describe)
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
                    assignment.topic_partitions.retain(|t| {
                        names
                            .name(&t.topic_id)
                            .is_some_and(|n| view.allows(ResourceType::Topic, &n, Operation::Describe))
                    });
                }
            })))
        }
        // As Kafka answers it: a group whose members use topics the client may not describe
        // is not shown.
        ApiKey::ConsumerGroupDescribe => {
            let view = ctx.view.clone();
            Ok(Verdict::Filter(ctx.after(move |r: &mut ConsumerGroupDescribeResponse| {
                let describable = |name: &str| view.allows(ResourceType::Topic, name, Operation::Describe);
                for group in r.groups.iter_mut().filter(|g| g.error_code == 0) {
                    let hidden = group.members.iter().any(|m| {
                        let assigned =
                            [&m.assignment, &m.target_assignment].into_iter().flat_map(|a| &a.topic_partitions);
                        m.subscribed_topic_names
                            .iter()
                            .map(|n| str_of(n))
                            .chain(assigned.map(|t| str_of(&t.topic_name)))
                            .any(|name| !describable(name))
                    });
                    if hidden {
                        group.members.clear();
                        group.error_code = TOPIC_DENIED;
                        group.error_message = Some(StrBytes::from_static_str(
                            "The described group uses topics that the client is not authorized to describe.",
                        ));
                    }
                }
            })))
        }
        ApiKey::DescribeShareGroupOffsets if ctx.facts.all_topics => {
            let view = ctx.view.clone();
            Ok(Verdict::Filter(
                ctx.after(move |r: &mut DescribeShareGroupOffsetsResponse| hide_undescribable_share_offsets(&view, r)),
            ))
        }
        ApiKey::OffsetFetch if ctx.facts.all_topics => {
            let view = ctx.view.clone();
            let describable = move |name: &TopicName| view.allows(ResourceType::Topic, name, Operation::Describe);
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
            if view.allows(ResourceType::Topic, name, Operation::Describe) {
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
        t.name.as_ref().is_none_or(|name| {
            ctx.view.allows(ResourceType::Topic, name, Operation::Create)
                || ctx.view.allows(ResourceType::Cluster, "kafka-cluster", Operation::Create)
        })
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
        ApiKey::ShareGroupDescribe => {
            let request: ShareGroupDescribeRequest = ctx.decode()?;
            ctx.answer_list(
                request,
                |r| &mut r.group_ids,
                |g| !ctx.permits(Named::Group(g)),
                |g| {
                    share_group_describe_response::DescribedGroup::default()
                        .with_group_id(g)
                        .with_error_code(GROUP_DENIED)
                        .with_authorized_operations(i32::MIN)
                },
                |r: &mut ShareGroupDescribeResponse| &mut r.groups,
            )
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
        ApiKey::CreatePartitions => {
            let request: CreatePartitionsRequest = ctx.decode()?;
            ctx.answer_list(
                request,
                |r| &mut r.topics,
                |t| !ctx.named_topic(&t.name),
                |t| {
                    create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_name(t.name)
                        .with_error_code(TOPIC_DENIED)
                },
                |r: &mut CreatePartitionsResponse| &mut r.results,
            )
        }
        ApiKey::DeleteRecords => {
            use delete_records_response::*;
            let request: DeleteRecordsRequest = ctx.decode()?;
            ctx.answer_list(
                request,
                |r| &mut r.topics,
                |t| !ctx.named_topic(&t.name),
                |t| {
                    DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                DeleteRecordsPartitionResult::default()
                                    .with_partition_index(p.partition_index)
                                    .with_low_watermark(-1)
                                    .with_error_code(TOPIC_DENIED)
                            })
                            .collect(),
                    )
                },
                |r: &mut DeleteRecordsResponse| &mut r.topics,
            )
        }
        ApiKey::DeleteGroups => {
            let request: DeleteGroupsRequest = ctx.decode()?;
            ctx.answer_list(
                request,
                |r| &mut r.groups_names,
                |g| !ctx.permits(Named::Group(g)),
                |g| {
                    delete_groups_response::DeletableGroupResult::default()
                        .with_group_id(g)
                        .with_error_code(GROUP_DENIED)
                },
                |r: &mut DeleteGroupsResponse| &mut r.results,
            )
        }
        ApiKey::ConsumerGroupDescribe => {
            let request: ConsumerGroupDescribeRequest = ctx.decode()?;
            ctx.answer_list(
                request,
                |r| &mut r.group_ids,
                |g| !ctx.permits(Named::Group(g)),
                |g| {
                    consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(g)
                        .with_error_code(GROUP_DENIED)
                        .with_authorized_operations(i32::MIN)
                },
                |r: &mut ConsumerGroupDescribeResponse| &mut r.groups,
            )
        }
        ApiKey::OffsetDelete => {
            use offset_delete_response::*;
            let request: OffsetDeleteRequest = ctx.decode()?;
            if !ctx.permits(Named::Group(&request.group_id)) {
                return ctx.answer(&OffsetDeleteResponse::default().with_error_code(GROUP_DENIED));
            }
            ctx.answer_list(
                request,
                |r| &mut r.topics,
                |t| !ctx.named_topic(&t.name),
                |t| {
                    OffsetDeleteResponseTopic::default().with_name(t.name).with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(TOPIC_DENIED)
                            })
                            .collect(),
                    )
                },
                |r: &mut OffsetDeleteResponse| &mut r.topics,
            )
        }
        ApiKey::DescribeProducers => {
            use describe_producers_response::*;
            let request: DescribeProducersRequest = ctx.decode()?;
            ctx.answer_list(
                request,
                |r| &mut r.topics,
                |t| !ctx.named_topic(&t.name),
                |t| {
                    TopicResponse::default().with_name(t.name).with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| {
                                PartitionResponse::default().with_partition_index(*p).with_error_code(TOPIC_DENIED)
                            })
                            .collect(),
                    )
                },
                |r: &mut DescribeProducersResponse| &mut r.topics,
            )
        }
        ApiKey::DescribeTransactions => {
            let request: DescribeTransactionsRequest = ctx.decode()?;
            ctx.answer_list(
                request,
                |r| &mut r.transactional_ids,
                |id| !ctx.permits(Named::TransactionalId(id)),
                |id| {
                    describe_transactions_response::TransactionState::default()
                        .with_transactional_id(id)
                        .with_error_code(TRANSACTIONAL_ID_DENIED)
                },
                |r: &mut DescribeTransactionsResponse| &mut r.transaction_states,
            )
        }
        ApiKey::AlterConfigs => {
            let request: AlterConfigsRequest = ctx.decode()?;
            ctx.answer_list(
                request,
                |r| &mut r.resources,
                |r| {
                    !ctx.permits(Named::ConfigResource {
                        resource_type: r.resource_type,
                        name: str_of(&r.resource_name),
                    })
                },
                |r| {
                    alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_error_code(config_denied_code(r.resource_type))
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name)
                },
                |r: &mut AlterConfigsResponse| &mut r.responses,
            )
        }
        ApiKey::IncrementalAlterConfigs => {
            let request: IncrementalAlterConfigsRequest = ctx.decode()?;
            ctx.answer_list(
                request,
                |r| &mut r.resources,
                |r| {
                    !ctx.permits(Named::ConfigResource {
                        resource_type: r.resource_type,
                        name: str_of(&r.resource_name),
                    })
                },
                |r| {
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_error_code(config_denied_code(r.resource_type))
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name)
                },
                |r: &mut IncrementalAlterConfigsResponse| &mut r.responses,
            )
        }
        _ => cluster_admin(ctx),
    }
}

/// Cluster administration denied: CLUSTER_AUTHORIZATION_FAILED where the broker puts it, at
/// the top level or on every item the request names (ACLs, quota entities, users,
/// partitions). `None` for requests only brokers and controllers send.
fn cluster_admin(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    match ctx.key() {
        // Delegation tokens: Kafka refuses what the principal may not do with
        // DELEGATION_TOKEN_AUTHORIZATION_FAILED, and describes only the tokens it may see.
        ApiKey::CreateDelegationToken => {
            ctx.answer(&CreateDelegationTokenResponse::default().with_error_code(TOKEN_DENIED))
        }
        ApiKey::RenewDelegationToken => {
            ctx.answer(&RenewDelegationTokenResponse::default().with_error_code(TOKEN_DENIED))
        }
        ApiKey::ExpireDelegationToken => {
            ctx.answer(&ExpireDelegationTokenResponse::default().with_error_code(TOKEN_DENIED))
        }
        ApiKey::DescribeDelegationToken => ctx.answer(&DescribeDelegationTokenResponse::default()),
        ApiKey::DescribeAcls => ctx.answer(&DescribeAclsResponse::default().with_error_code(CLUSTER_DENIED)),
        ApiKey::DescribeClientQuotas => {
            ctx.answer(&DescribeClientQuotasResponse::default().with_error_code(CLUSTER_DENIED))
        }
        ApiKey::DescribeUserScramCredentials => {
            ctx.answer(&DescribeUserScramCredentialsResponse::default().with_error_code(CLUSTER_DENIED))
        }
        ApiKey::DescribeQuorum => ctx.answer(&DescribeQuorumResponse::default().with_error_code(CLUSTER_DENIED)),
        ApiKey::ListTransactions => ctx.answer(&ListTransactionsResponse::default().with_error_code(CLUSTER_DENIED)),
        ApiKey::ListPartitionReassignments => {
            ctx.answer(&ListPartitionReassignmentsResponse::default().with_error_code(CLUSTER_DENIED))
        }
        ApiKey::AlterPartitionReassignments => {
            ctx.answer(&AlterPartitionReassignmentsResponse::default().with_error_code(CLUSTER_DENIED))
        }
        ApiKey::UpdateFeatures => ctx.answer(&UpdateFeaturesResponse::default().with_error_code(CLUSTER_DENIED)),
        ApiKey::ListConfigResources => {
            ctx.answer(&ListConfigResourcesResponse::default().with_error_code(CLUSTER_DENIED))
        }
        ApiKey::UnregisterBroker => ctx.answer(&UnregisterBrokerResponse::default().with_error_code(CLUSTER_DENIED)),
        ApiKey::AddRaftVoter => ctx.answer(&AddRaftVoterResponse::default().with_error_code(CLUSTER_DENIED)),
        ApiKey::RemoveRaftVoter => ctx.answer(&RemoveRaftVoterResponse::default().with_error_code(CLUSTER_DENIED)),
        // The broker answers no log directories; the error code exists from v3.
        ApiKey::DescribeLogDirs => {
            let code = if ctx.version() >= 3 { CLUSTER_DENIED } else { 0 };
            ctx.answer(&DescribeLogDirsResponse::default().with_error_code(code))
        }
        ApiKey::CreateAcls => {
            let request: CreateAclsRequest = ctx.decode()?;
            let denied = create_acls_response::AclCreationResult::default().with_error_code(CLUSTER_DENIED);
            ctx.answer(&CreateAclsResponse::default().with_results(vec![denied; request.creations.len()]))
        }
        ApiKey::DeleteAcls => {
            let request: DeleteAclsRequest = ctx.decode()?;
            let denied = delete_acls_response::DeleteAclsFilterResult::default().with_error_code(CLUSTER_DENIED);
            ctx.answer(&DeleteAclsResponse::default().with_filter_results(vec![denied; request.filters.len()]))
        }
        ApiKey::ElectLeaders => {
            use elect_leaders_response::*;
            let request: ElectLeadersRequest = ctx.decode()?;
            let results = request
                .topic_partitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|&p| PartitionResult::default().with_partition_id(p).with_error_code(CLUSTER_DENIED));
                    ReplicaElectionResult::default().with_topic(t.topic).with_partition_result(partitions.collect())
                })
                .collect();
            let code = if ctx.version() >= 1 { CLUSTER_DENIED } else { 0 };
            ctx.answer(&ElectLeadersResponse::default().with_error_code(code).with_replica_election_results(results))
        }
        ApiKey::AlterClientQuotas => {
            use alter_client_quotas_response::*;
            let request: AlterClientQuotasRequest = ctx.decode()?;
            let entries = request.entries.into_iter().map(|entry| {
                let entity = entry
                    .entity
                    .into_iter()
                    .map(|e| EntityData::default().with_entity_type(e.entity_type).with_entity_name(e.entity_name));
                EntryData::default().with_error_code(CLUSTER_DENIED).with_entity(entity.collect())
            });
            ctx.answer(&AlterClientQuotasResponse::default().with_entries(entries.collect()))
        }
        ApiKey::AlterUserScramCredentials => {
            use alter_user_scram_credentials_response::*;
            let request: AlterUserScramCredentialsRequest = ctx.decode()?;
            // One result per user, as the broker gives, however many changes name them.
            let mut users: Vec<StrBytes> = Vec::new();
            let named = request.deletions.into_iter().map(|d| d.name);
            for user in named.chain(request.upsertions.into_iter().map(|u| u.name)) {
                if !users.contains(&user) {
                    users.push(user);
                }
            }
            let results = users
                .into_iter()
                .map(|user| AlterUserScramCredentialsResult::default().with_user(user).with_error_code(CLUSTER_DENIED));
            ctx.answer(&AlterUserScramCredentialsResponse::default().with_results(results.collect()))
        }
        ApiKey::AlterReplicaLogDirs => {
            use alter_replica_log_dirs_response::*;
            let request: AlterReplicaLogDirsRequest = ctx.decode()?;
            let results = request.dirs.into_iter().flat_map(|dir| dir.topics).map(|t| {
                let partitions = t.partitions.iter().map(|&p| {
                    AlterReplicaLogDirPartitionResult::default().with_partition_index(p).with_error_code(CLUSTER_DENIED)
                });
                AlterReplicaLogDirTopicResult::default().with_topic_name(t.name).with_partitions(partitions.collect())
            });
            ctx.answer(&AlterReplicaLogDirsResponse::default().with_results(results.collect()))
        }
        _ => Ok(None),
    }
}

fn produce(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    let mut request: ProduceRequest = ctx.decode()?;
    let transaction_denied =
        request.transactional_id.as_ref().is_some_and(|id| !ctx.permits(Named::TransactionalId(id)));
    let (denied, code) = if transaction_denied {
        (std::mem::take(&mut request.topic_data), TRANSACTIONAL_ID_DENIED)
    } else {
        (take_denied(&mut request.topic_data, |t| !ctx.topic(&t.name, &t.topic_id)), TOPIC_DENIED)
    };
    if request.acks == 0 {
        // No response is expected, so the denied records are dropped (and audited).
        return if request.topic_data.is_empty() {
            Ok(Some(Verdict::Drop))
        } else {
            ctx.forward(&request, None).map(Some)
        };
    }
    let denied = denied
        .into_iter()
        .map(|t| {
            let code = if code == TOPIC_DENIED { ctx.topic_error(&t.topic_id) } else { code };
            produce_response::TopicProduceResponse::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| {
                            produce_response::PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_error_code(code)
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    ctx.strip_or_answer(&request, request.topic_data.is_empty(), denied, |r: &mut ProduceResponse| &mut r.responses)
}

/// ShareFetch: a group outside the policy fails the whole request (its top-level error);
/// denied topics get TOPIC_AUTHORIZATION_FAILED per partition, the rest is served.
fn share_fetch(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    use share_fetch_response::*;
    let mut request: ShareFetchRequest = ctx.decode()?;
    if request.group_id.as_ref().is_some_and(|g| !ctx.permits(Named::Group(g))) {
        return ctx.answer(&ShareFetchResponse::default().with_error_code(GROUP_DENIED));
    }
    let denied = take_denied(&mut request.topics, |t| !ctx.topic(&TopicName::default(), &t.topic_id))
        .into_iter()
        .map(|t| {
            let code = ctx.topic_error(&t.topic_id);
            ShareFetchableTopicResponse::default().with_topic_id(t.topic_id).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| PartitionData::default().with_partition_index(p.partition_index).with_error_code(code))
                    .collect(),
            )
        })
        .collect();
    let nothing_left = request.topics.is_empty() && request.forgotten_topics_data.is_empty();
    ctx.strip_or_answer(&request, nothing_left, denied, |r: &mut ShareFetchResponse| &mut r.responses)
}

/// DescribeShareGroupOffsets (Admin.listShareGroupOffsets), as Kafka answers it: a group the
/// client may not describe gets GROUP_AUTHORIZATION_FAILED; named topics it may not describe
/// come back with TOPIC_AUTHORIZATION_FAILED per partition, beside the broker's answer for the
/// rest; a group asked for all its offsets shows only the describable topics.
fn describe_share_group_offsets(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    use describe_share_group_offsets_response::*;
    let mut request: DescribeShareGroupOffsetsRequest = ctx.decode()?;
    let mut denied_groups = Vec::new();
    let mut denied_topics: Vec<(GroupId, Vec<DescribeShareGroupOffsetsResponseTopic>)> = Vec::new();
    request.groups.retain_mut(|g| {
        if !ctx.permits(Named::Group(&g.group_id)) {
            denied_groups.push(
                DescribeShareGroupOffsetsResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(GROUP_DENIED),
            );
            return false;
        }
        // A group left with an empty list stays: the broker answers it with no topics and no
        // error, as it does when every topic named is unauthorized.
        let denied = g.topics.as_mut().map(|t| take_denied(t, |t| !ctx.named_topic(&t.topic_name)));
        if let Some(denied) = denied.filter(|d| !d.is_empty()) {
            let entries = denied.into_iter().map(|t| {
                let partitions = t.partitions.iter().map(|&p| {
                    DescribeShareGroupOffsetsResponsePartition::default()
                        .with_partition_index(p)
                        .with_start_offset(-1)
                        .with_error_code(TOPIC_DENIED)
                        .with_error_message(Some(StrBytes::from_static_str(TOPIC_DENIED_MESSAGE)))
                });
                DescribeShareGroupOffsetsResponseTopic::default()
                    .with_topic_name(t.topic_name)
                    .with_partitions(partitions.collect())
            });
            denied_topics.push((g.group_id.clone(), entries.collect()));
        }
        true
    });
    if request.groups.is_empty() {
        return ctx.answer(&DescribeShareGroupOffsetsResponse::default().with_groups(denied_groups));
    }
    let view = ctx.view.clone();
    let after = ctx.after(move |r: &mut DescribeShareGroupOffsetsResponse| {
        hide_undescribable_share_offsets(&view, r);
        for (id, entries) in denied_topics {
            match r.groups.iter_mut().find(|g| g.group_id == id) {
                // A group that failed as a whole is reported by its error alone, as Kafka does.
                Some(group) if group.error_code != 0 => {}
                Some(group) => group.topics.extend(entries),
                None => r
                    .groups
                    .push(DescribeShareGroupOffsetsResponseGroup::default().with_group_id(id).with_topics(entries)),
            }
        }
        r.groups.extend(denied_groups);
    });
    ctx.forward(&request, Some(after)).map(Some)
}

/// Offsets of topics the client may not describe are left out, as Kafka filters a group's
/// offsets asked for in full (a null topic list).
fn hide_undescribable_share_offsets(view: &PrincipalPolicy, r: &mut DescribeShareGroupOffsetsResponse) {
    for group in &mut r.groups {
        group.topics.retain(|t| view.allows(ResourceType::Topic, &t.topic_name, Operation::Describe));
    }
}

/// AlterShareGroupOffsets: without READ on the group the whole request fails with
/// GROUP_AUTHORIZATION_FAILED; topics without READ get TOPIC_AUTHORIZATION_FAILED per
/// partition, the rest is altered.
fn alter_share_group_offsets(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    use alter_share_group_offsets_response::*;
    let mut request: AlterShareGroupOffsetsRequest = ctx.decode()?;
    if !ctx.permits(Named::Group(&request.group_id)) {
        let message = Some(StrBytes::from_static_str(GROUP_DENIED_MESSAGE));
        return ctx.answer(
            &AlterShareGroupOffsetsResponse::default().with_error_code(GROUP_DENIED).with_error_message(message),
        );
    }
    let denied = take_denied(&mut request.topics, |t| !ctx.named_topic(&t.topic_name))
        .into_iter()
        .map(|t| {
            let partitions = t.partitions.iter().map(|p| {
                AlterShareGroupOffsetsResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(TOPIC_DENIED)
                    .with_error_message(Some(StrBytes::from_static_str(TOPIC_DENIED_MESSAGE)))
            });
            AlterShareGroupOffsetsResponseTopic::default()
                .with_topic_name(t.topic_name)
                .with_partitions(partitions.collect())
        })
        .collect();
    whole_or_merged(ctx, &request, request.topics.is_empty(), denied, |r: &mut AlterShareGroupOffsetsResponse| {
        (r.error_code, &mut r.responses)
    })
}

/// DeleteShareGroupOffsets: without DELETE on the group the whole request fails with
/// GROUP_AUTHORIZATION_FAILED; topics without READ get TOPIC_AUTHORIZATION_FAILED.
fn delete_share_group_offsets(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    use delete_share_group_offsets_response::*;
    let mut request: DeleteShareGroupOffsetsRequest = ctx.decode()?;
    if !ctx.permits(Named::Group(&request.group_id)) {
        let message = Some(StrBytes::from_static_str(GROUP_DENIED_MESSAGE));
        return ctx.answer(
            &DeleteShareGroupOffsetsResponse::default().with_error_code(GROUP_DENIED).with_error_message(message),
        );
    }
    let denied = take_denied(&mut request.topics, |t| !ctx.named_topic(&t.topic_name))
        .into_iter()
        .map(|t| {
            DeleteShareGroupOffsetsResponseTopic::default()
                .with_topic_name(t.topic_name)
                .with_error_code(TOPIC_DENIED)
                .with_error_message(Some(StrBytes::from_static_str(TOPIC_DENIED_MESSAGE)))
        })
        .collect();
    whole_or_merged(ctx, &request, request.topics.is_empty(), denied, |r: &mut DeleteShareGroupOffsetsResponse| {
        (r.error_code, &mut r.responses)
    })
}

/// Like [`Ctx::strip_or_answer`], for responses with a top-level error: a broker answer that
/// failed as a whole is passed on alone, as Kafka reports such a failure without the
/// per-topic errors.
fn whole_or_merged<Req, R, E>(
    ctx: &Ctx<'_>,
    request: &Req,
    nothing_left: bool,
    denied: Vec<E>,
    entries: fn(&mut R) -> (i16, &mut Vec<E>),
) -> Result<Option<Verdict>, AuthzError>
where
    Req: Encodable,
    R: ResponseBody + Default,
    E: Send + Sync + 'static,
{
    if nothing_left {
        let mut response = R::default();
        entries(&mut response).1.extend(denied);
        return ctx.answer(&response);
    }
    let after = ctx.after(move |response: &mut R| {
        if let (0, list) = entries(response) {
            list.extend(denied);
        }
    });
    ctx.forward(request, Some(after)).map(Some)
}

fn share_acknowledge(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    use share_acknowledge_response::*;
    let request: ShareAcknowledgeRequest = ctx.decode()?;
    if request.group_id.as_ref().is_some_and(|g| !ctx.permits(Named::Group(g))) {
        return ctx.answer(&ShareAcknowledgeResponse::default().with_error_code(GROUP_DENIED));
    }
    ctx.answer_list(
        request,
        |r| &mut r.topics,
        |t| !ctx.topic(&TopicName::default(), &t.topic_id),
        |t| {
            let code = ctx.topic_error(&t.topic_id);
            ShareAcknowledgeTopicResponse::default().with_topic_id(t.topic_id).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| PartitionData::default().with_partition_index(p.partition_index).with_error_code(code))
                    .collect(),
            )
        },
        |r: &mut ShareAcknowledgeResponse| &mut r.responses,
    )
}

fn list_offsets(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    let request: ListOffsetsRequest = ctx.decode()?;
    ctx.answer_list(
        request,
        |r| &mut r.topics,
        |t| !ctx.named_topic(&t.name),
        |t| {
            list_offsets_response::ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        list_offsets_response::ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(TOPIC_DENIED)
                            .with_timestamp(-1)
                            .with_offset(-1)
                            .with_leader_epoch(-1)
                    })
                    .collect(),
            )
        },
        |r: &mut ListOffsetsResponse| &mut r.topics,
    )
}

fn offset_for_leader_epoch(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    let request: OffsetForLeaderEpochRequest = ctx.decode()?;
    ctx.answer_list(
        request,
        |r| &mut r.topics,
        |t| !ctx.named_topic(&t.topic),
        |t| {
            offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        offset_for_leader_epoch_response::EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_error_code(TOPIC_DENIED)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1)
                    })
                    .collect(),
            )
        },
        |r: &mut OffsetForLeaderEpochResponse| &mut r.topics,
    )
}

fn offset_commit_entries(
    topics: Vec<offset_commit_request::OffsetCommitRequestTopic>,
    code: i16,
) -> Vec<offset_commit_response::OffsetCommitResponseTopic> {
    topics
        .into_iter()
        .map(|t| {
            offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            offset_commit_response::OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect()
}

fn offset_commit(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    let mut request: OffsetCommitRequest = ctx.decode()?;
    if !ctx.permits(Named::Group(&request.group_id)) {
        let all = offset_commit_entries(std::mem::take(&mut request.topics), GROUP_DENIED);
        return ctx.answer(&OffsetCommitResponse::default().with_topics(all));
    }
    let denied = take_denied(&mut request.topics, |t| !ctx.topic(&t.name, &t.topic_id));
    let denied = offset_commit_entries(denied, TOPIC_DENIED);
    ctx.strip_or_answer(&request, request.topics.is_empty(), denied, |r: &mut OffsetCommitResponse| &mut r.topics)
}

fn txn_offset_commit(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    let mut request: TxnOffsetCommitRequest = ctx.decode()?;
    let whole = if !ctx.permits(Named::TransactionalId(&request.transactional_id)) {
        Some(TRANSACTIONAL_ID_DENIED)
    } else if !ctx.permits(Named::Group(&request.group_id)) {
        Some(GROUP_DENIED)
    } else {
        None
    };
    let (denied, code) = match whole {
        Some(code) => (std::mem::take(&mut request.topics), code),
        None => (take_denied(&mut request.topics, |t| !ctx.named_topic(&t.name)), TOPIC_DENIED),
    };
    let denied = denied
        .into_iter()
        .map(|t| {
            txn_offset_commit_response::TxnOffsetCommitResponseTopic::default().with_name(t.name).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect(),
            )
        })
        .collect();
    ctx.strip_or_answer(&request, request.topics.is_empty(), denied, |r: &mut TxnOffsetCommitResponse| &mut r.topics)
}

fn offset_fetch(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    use offset_fetch_response::*;
    let mut request: OffsetFetchRequest = ctx.decode()?;
    if ctx.version() <= 7 {
        let group_denied = !ctx.permits(Named::Group(&request.group_id));
        let topics = request.topics.get_or_insert_with(Vec::new);
        let (denied, code) = if group_denied {
            (std::mem::take(topics), GROUP_DENIED)
        } else {
            (take_denied(topics, |t| !ctx.named_topic(&t.name)), TOPIC_DENIED)
        };
        let nothing_left = topics.is_empty();
        let entries: Vec<_> = denied
            .into_iter()
            .map(|t| {
                OffsetFetchResponseTopic::default().with_name(t.name).with_partitions(
                    t.partition_indexes
                        .iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(-1)
                                .with_committed_leader_epoch(-1)
                                .with_error_code(code)
                        })
                        .collect(),
                )
            })
            .collect();
        if group_denied {
            let mut response = OffsetFetchResponse::default().with_topics(entries);
            if ctx.version() >= 2 {
                response.error_code = GROUP_DENIED;
            }
            return ctx.answer(&response);
        }
        return ctx.strip_or_answer(&request, nothing_left, entries, |r: &mut OffsetFetchResponse| &mut r.topics);
    }
    // v8+: several groups per request, each with its own topics.
    let mut denied_groups = Vec::new();
    let mut denied_topics: Vec<(GroupId, Vec<OffsetFetchResponseTopics>)> = Vec::new();
    request.groups.retain_mut(|g| {
        if !ctx.permits(Named::Group(&g.group_id)) {
            denied_groups.push(
                OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone()).with_error_code(GROUP_DENIED),
            );
            return false;
        }
        if let Some(topics) = &mut g.topics {
            let denied = take_denied(topics, |t| !ctx.topic(&t.name, &t.topic_id));
            if !denied.is_empty() {
                let entries = denied
                    .into_iter()
                    .map(|t| {
                        OffsetFetchResponseTopics::default()
                            .with_name(t.name)
                            .with_topic_id(t.topic_id)
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|p| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(*p)
                                            .with_committed_offset(-1)
                                            .with_committed_leader_epoch(-1)
                                            .with_error_code(TOPIC_DENIED)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                denied_topics.push((g.group_id.clone(), entries));
            }
        }
        true
    });
    if request.groups.is_empty() && denied_topics.is_empty() {
        return ctx.answer(&OffsetFetchResponse::default().with_groups(denied_groups));
    }
    let view = ctx.view.clone();
    let after = ctx.after(move |r: &mut OffsetFetchResponse| {
        for group in &mut r.groups {
            // Groups asked for all their topics: keep only the describable ones.
            group
                .topics
                .retain(|t| view.allows(ResourceType::Topic, &t.name, Operation::Describe) || t.name.is_empty());
        }
        for (id, entries) in denied_topics {
            match r.groups.iter_mut().find(|g| g.group_id == id) {
                Some(group) => group.topics.extend(entries),
                None => r.groups.push(OffsetFetchResponseGroup::default().with_group_id(id).with_topics(entries)),
            }
        }
        r.groups.extend(denied_groups);
    });
    ctx.forward(&request, Some(after)).map(Some)
}

fn find_coordinator(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    let request: FindCoordinatorRequest = ctx.decode()?;
    let code = if request.key_type == 1 { TRANSACTIONAL_ID_DENIED } else { GROUP_DENIED };
    let key_type = request.key_type;
    if ctx.version() <= 3 {
        return ctx
            .answer(&FindCoordinatorResponse::default().with_error_code(code).with_node_id((-1).into()).with_port(-1));
    }
    ctx.answer_list(
        request,
        |r| &mut r.coordinator_keys,
        |k| !ctx.permits(Named::CoordinatorKey { key_type, key: str_of(k) }),
        |key| {
            find_coordinator_response::Coordinator::default()
                .with_key(key)
                .with_node_id((-1).into())
                .with_port(-1)
                .with_error_code(code)
        },
        |r: &mut FindCoordinatorResponse| &mut r.coordinators,
    )
}

fn describe_groups(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    let request: DescribeGroupsRequest = ctx.decode()?;
    ctx.answer_list(
        request,
        |r| &mut r.groups,
        |g| !ctx.permits(Named::Group(g)),
        |g| {
            describe_groups_response::DescribedGroup::default()
                .with_group_id(g)
                .with_error_code(GROUP_DENIED)
                .with_authorized_operations(i32::MIN)
        },
        |r: &mut DescribeGroupsResponse| &mut r.groups,
    )
}

fn add_partitions_to_txn(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    use add_partitions_to_txn_response::*;
    if ctx.version() > 3 {
        return ctx.answer(&AddPartitionsToTxnResponse::default().with_error_code(CLUSTER_DENIED));
    }
    // As a broker does: nothing is added when any part is denied; the allowed parts are
    // reported as not attempted.
    let request: AddPartitionsToTxnRequest = ctx.decode()?;
    let transaction_denied = !ctx.permits(Named::TransactionalId(&request.v3_and_below_transactional_id));
    let results = request
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let code = if transaction_denied {
                TRANSACTIONAL_ID_DENIED
            } else if !ctx.named_topic(&t.name) {
                TOPIC_DENIED
            } else {
                NOT_ATTEMPTED
            };
            AddPartitionsToTxnTopicResult::default().with_name(t.name.clone()).with_results_by_partition(
                t.partitions
                    .iter()
                    .map(|p| {
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(*p)
                            .with_partition_error_code(code)
                    })
                    .collect(),
            )
        })
        .collect();
    ctx.answer(&AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results))
}

fn create_topics(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    let mut request: CreateTopicsRequest = ctx.decode()?;
    let denied = take_denied(&mut request.topics, |t| !ctx.named_topic(&t.name))
        .into_iter()
        .map(|t| {
            create_topics_response::CreatableTopicResult::default()
                .with_name(t.name)
                .with_error_code(TOPIC_DENIED)
                .with_error_message(Some(StrBytes::from_static_str("Authorization failed.")))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        })
        .map(|r| if ctx.version() >= 5 { r } else { r.with_num_partitions(0).with_replication_factor(0) })
        .collect();
    ctx.strip_or_answer(&request, request.topics.is_empty(), denied, |r: &mut CreateTopicsResponse| &mut r.topics)
}

fn delete_topics(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    use delete_topics_response::DeletableTopicResult;
    let mut request: DeleteTopicsRequest = ctx.decode()?;
    let denied: Vec<_> = if ctx.version() <= 5 {
        take_denied(&mut request.topic_names, |name| !ctx.named_topic(name))
            .into_iter()
            .map(|name| DeletableTopicResult::default().with_name(Some(name)).with_error_code(TOPIC_DENIED))
            .collect()
    } else {
        take_denied(&mut request.topics, |t| match &t.name {
            Some(name) => !ctx.named_topic(name),
            None => !ctx.topic(&TopicName::default(), &t.topic_id),
        })
        .into_iter()
        .map(|t| {
            DeletableTopicResult::default().with_name(t.name).with_topic_id(t.topic_id).with_error_code(TOPIC_DENIED)
        })
        .collect()
    };
    let nothing_left = request.topic_names.is_empty() && request.topics.is_empty();
    ctx.strip_or_answer(&request, nothing_left, denied, |r: &mut DeleteTopicsResponse| &mut r.responses)
}

/// The authorization error for a config resource: 2 topic, 32 group, else the cluster.
fn config_denied_code(resource_type: i8) -> i16 {
    match resource_type {
        2 => TOPIC_DENIED,
        32 => GROUP_DENIED,
        _ => CLUSTER_DENIED,
    }
}

/// DescribeTopicPartitions (what admin clients use to describe topics since Kafka 3.8): named
/// topics the client may not describe come back as TOPIC_AUTHORIZATION_FAILED; a listing of
/// all topics leaves them out.
fn describe_topic_partitions(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    let request: DescribeTopicPartitionsRequest = ctx.decode()?;
    ctx.answer_list(
        request,
        |r| &mut r.topics,
        |t| !ctx.named_topic(&t.name),
        |t| {
            describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(t.name))
                .with_error_code(TOPIC_DENIED)
                .with_topic_authorized_operations(i32::MIN)
        },
        |r: &mut DescribeTopicPartitionsResponse| &mut r.topics,
    )
}

fn describe_configs(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    let request: DescribeConfigsRequest = ctx.decode()?;
    ctx.answer_list(
        request,
        |r| &mut r.resources,
        |r| !ctx.permits(Named::ConfigResource { resource_type: r.resource_type, name: str_of(&r.resource_name) }),
        |r| {
            describe_configs_response::DescribeConfigsResult::default()
                .with_error_code(config_denied_code(r.resource_type))
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
        },
        |r: &mut DescribeConfigsResponse| &mut r.results,
    )
}
