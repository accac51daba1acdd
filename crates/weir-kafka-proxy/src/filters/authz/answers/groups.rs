//! Answers for consumer groups and transactions denied by the policy: offsets, coordinators.

use super::*;

pub(super) fn offset_commit_entries(
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

pub(super) fn offset_commit(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    let mut request: OffsetCommitRequest = ctx.decode()?;
    if !ctx.permits(Named::Group(&request.group_id)) {
        let all = offset_commit_entries(std::mem::take(&mut request.topics), GROUP_DENIED);
        return ctx.answer(&OffsetCommitResponse::default().with_topics(all));
    }
    let denied = take_denied(&mut request.topics, |t| !ctx.topic(&t.name, &t.topic_id));
    let denied = offset_commit_entries(denied, TOPIC_DENIED);
    ctx.strip_or_answer(&request, request.topics.is_empty(), denied, |r: &mut OffsetCommitResponse| &mut r.topics)
}

pub(super) fn txn_offset_commit(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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

pub(super) fn offset_fetch(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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
            group.topics.retain(|t| view.allows(TOPIC, &t.name, DESCRIBE) || t.name.is_empty());
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

pub(super) fn find_coordinator(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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

pub(super) fn describe_groups(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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

pub(super) fn add_partitions_to_txn(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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

pub(super) fn delete_groups(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
    let request: DeleteGroupsRequest = ctx.decode()?;
    ctx.answer_list(
        request,
        |r| &mut r.groups_names,
        |g| !ctx.permits(Named::Group(g)),
        |g| delete_groups_response::DeletableGroupResult::default().with_group_id(g).with_error_code(GROUP_DENIED),
        |r: &mut DeleteGroupsResponse| &mut r.results,
    )
}

/// As Kafka answers it: a group whose members use topics the client may not describe is not
/// shown.
pub(super) fn hide_groups_using_undescribable_topics(ctx: &Ctx<'_>) -> Result<Verdict, AuthzError> {
    let view = ctx.view.clone();
    Ok(Verdict::Filter(ctx.after(move |r: &mut ConsumerGroupDescribeResponse| {
        let describable = |name: &str| view.allows(TOPIC, name, DESCRIBE);
        for group in r.groups.iter_mut().filter(|g| g.error_code == 0) {
            let hidden = group.members.iter().any(|m| {
                let assigned = [&m.assignment, &m.target_assignment].into_iter().flat_map(|a| &a.topic_partitions);
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

/// OffsetDelete: a denied group fails the whole request; denied topics fail per partition.
pub(super) fn offset_delete(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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

pub(super) fn describe_transactions(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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

pub(super) fn consumer_group_describe(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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
