//! Answers for cluster administration and topic/config management denied by the policy.

use super::*;

/// Cluster administration denied: CLUSTER_AUTHORIZATION_FAILED where the broker puts it, at
/// the top level or on every item the request names (ACLs, quota entities, users,
/// partitions). `None` for requests only brokers and controllers send.
pub(super) fn cluster_admin(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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

pub(super) fn create_topics(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    let mut request: CreateTopicsRequest = ctx.decode()?;
    let denied = take_denied(&mut request.topics, |t| !ctx.named_topic(&t.name))
        .into_iter()
        .map(|t| {
            let message = Some(StrBytes::from_static_str("Authorization failed."));
            crate::answers::refused_topic_creation(t.name, TOPIC_DENIED, message, ctx.version())
        })
        .collect();
    ctx.strip_or_answer(&request, request.topics.is_empty(), denied, |r: &mut CreateTopicsResponse| &mut r.topics)
}

pub(super) fn delete_topics(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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

/// DescribeTopicPartitions (what admin clients use to describe topics since Kafka 3.8): named
/// topics the client may not describe come back as TOPIC_AUTHORIZATION_FAILED; a listing of
/// all topics leaves them out.
pub(super) fn describe_topic_partitions(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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

pub(super) fn create_partitions(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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

pub(super) fn delete_records(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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

pub(super) fn describe_producers(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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
                    .map(|p| PartitionResponse::default().with_partition_index(*p).with_error_code(TOPIC_DENIED))
                    .collect(),
            )
        },
        |r: &mut DescribeProducersResponse| &mut r.topics,
    )
}
