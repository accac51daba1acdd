//! Answers for the data path denied by the policy: Produce, ListOffsets, OffsetForLeaderEpoch.

use super::*;

pub(super) fn produce(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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
    let denied =
        crate::answers::failed_produce(
            denied,
            |t| {
                if code == TOPIC_DENIED {
                    ctx.topic_error(&t.topic_id)
                } else {
                    code
                }
            },
        );
    ctx.strip_or_answer(&request, request.topic_data.is_empty(), denied, |r: &mut ProduceResponse| &mut r.responses)
}

pub(super) fn list_offsets(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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

pub(super) fn offset_for_leader_epoch(ctx: &Ctx<'_>) -> Result<Option<Verdict>, AuthzError> {
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
