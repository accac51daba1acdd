//! Answers for share groups (KIP-932) denied by the policy: fetch, acknowledge, offsets.

use super::*;

/// ShareFetch: a group outside the policy fails the whole request (its top-level error);
/// denied topics get TOPIC_AUTHORIZATION_FAILED per partition, the rest is served.
pub(super) fn share_fetch(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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
pub(super) fn describe_share_group_offsets(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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
pub(super) fn hide_undescribable_share_offsets(view: &PrincipalPolicy, r: &mut DescribeShareGroupOffsetsResponse) {
    for group in &mut r.groups {
        group.topics.retain(|t| view.allows(TOPIC, &t.topic_name, DESCRIBE));
    }
}

/// AlterShareGroupOffsets: without READ on the group the whole request fails with
/// GROUP_AUTHORIZATION_FAILED; topics without READ get TOPIC_AUTHORIZATION_FAILED per
/// partition, the rest is altered.
pub(super) fn alter_share_group_offsets(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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
pub(super) fn delete_share_group_offsets(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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
pub(super) fn whole_or_merged<Req, R, E>(
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

pub(super) fn share_acknowledge(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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

pub(super) fn share_group_describe(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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
