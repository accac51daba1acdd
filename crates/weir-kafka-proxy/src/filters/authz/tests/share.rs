//! Share groups (KIP-932): fetch, acknowledge and offset administration under the policy.

use super::*;

#[tokio::test]
async fn share_groups_are_authorized_like_consumer_groups() {
    let s = Setup::new("share").await;
    let (ok, secret) = (uuid::Uuid::from_u128(11), uuid::Uuid::from_u128(12));
    s.topic_ids.learn(
        &MetadataResponse::default().with_topics(
            [("ok", ok), ("secret", secret)]
                .map(|(n, id)| {
                    metadata_response::MetadataResponseTopic::default().with_name(Some(topic(n))).with_topic_id(id)
                })
                .to_vec(),
        ),
    );
    let mut conn = s.connection();
    let share = |g: &'static str| Some(GroupId(StrBytes::from_static_str(g)));
    let fetch_topic = |id| {
        share_fetch_request::FetchTopic::default()
            .with_topic_id(id)
            .with_partitions(vec![share_fetch_request::FetchPartition::default().with_partition_index(0)])
    };
    let body = ShareFetchRequest::default()
        .with_group_id(share("g-ok"))
        .with_topics(vec![fetch_topic(ok), fetch_topic(secret)]);
    let Verdict::Rewritten(frame, Some(after)) = s.check(&mut conn, ApiKey::ShareFetch, 1, &body) else {
        panic!("expected the allowed topic forwarded");
    };
    let forwarded: ShareFetchRequest = decode_forwarded(&frame);
    assert_eq!(forwarded.topics.iter().map(|t| t.topic_id).collect::<Vec<_>>(), [ok]);
    let broker = ShareFetchResponse::default()
        .with_responses(vec![share_fetch_response::ShareFetchableTopicResponse::default().with_topic_id(ok)]);
    let merged =
        after.apply_to(encode_response(42, ApiKey::ShareFetch, 1, &broker).unwrap(), ApiKey::ShareFetch, 1).unwrap();
    let (_, merged): (_, ShareFetchResponse) = decode_response(&merged, ApiKey::ShareFetch, 1).unwrap();
    assert_eq!(merged.responses[1].topic_id, secret);
    assert_eq!(merged.responses[1].partitions[0].error_code, 29);

    let other = body.clone().with_group_id(share("g-other"));
    let r: ShareFetchResponse = answer(s.check(&mut conn, ApiKey::ShareFetch, 1, &other), ApiKey::ShareFetch, 1);
    assert_eq!(r.error_code, 30);
    let heartbeat = ShareGroupHeartbeatRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g-other")));
    let r: ShareGroupHeartbeatResponse =
        answer(s.check(&mut conn, ApiKey::ShareGroupHeartbeat, 1, &heartbeat), ApiKey::ShareGroupHeartbeat, 1);
    assert_eq!(r.error_code, 30);
}

/// KIP-932 offset administration (Admin.listShareGroupOffsets, alterShareGroupOffsets,
/// deleteShareGroupOffsets) gets Kafka's answers: the group's error, per group or for the
/// whole request, and the topic's error per topic or partition beside the broker's answer.
#[tokio::test]
async fn share_group_offsets_are_authorized_per_group_and_topic() {
    let s = Setup::new("share-offsets").await;
    let mut conn = s.connection();
    let group = |g: &'static str| GroupId(StrBytes::from_static_str(g));
    let names = |topics: &[describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseTopic]| {
        topics.iter().map(|t| t.topic_name.0.to_string()).collect::<Vec<_>>()
    };
    for version in versions::<DescribeShareGroupOffsetsRequest>() {
        use describe_share_group_offsets_request::*;
        use describe_share_group_offsets_response::*;
        let key = ApiKey::DescribeShareGroupOffsets;
        let asked = |name, partitions: &[i32]| {
            DescribeShareGroupOffsetsRequestTopic::default()
                .with_topic_name(topic(name))
                .with_partitions(partitions.to_vec())
        };
        let ask =
            |g, topics| DescribeShareGroupOffsetsRequestGroup::default().with_group_id(group(g)).with_topics(topics);
        let offsets = |name| {
            DescribeShareGroupOffsetsResponseTopic::default().with_topic_name(topic(name)).with_partitions(vec![
                DescribeShareGroupOffsetsResponsePartition::default().with_partition_index(0).with_start_offset(5),
            ])
        };
        let broker = |topics| {
            let group =
                DescribeShareGroupOffsetsResponseGroup::default().with_group_id(group("g-ok")).with_topics(topics);
            encode_response(42, key, version, &DescribeShareGroupOffsetsResponse::default().with_groups(vec![group]))
                .unwrap()
        };
        let merge = |after: crate::filters::authz::AfterResponse, frame| -> DescribeShareGroupOffsetsResponse {
            decode_response(&after.apply_to(frame, key, version).unwrap(), key, version).unwrap().1
        };

        // The allowed group's allowed topic goes upstream; the rest is answered beside it.
        let body = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
            ask("g-ok", Some(vec![asked("ok", &[0]), asked("secret", &[1, 2])])),
            ask("g-other", Some(vec![asked("ok", &[0])])),
        ]);
        let Verdict::Rewritten(frame, Some(after)) = s.check(&mut conn, key, version, &body) else {
            panic!("v{version}: expected the allowed group forwarded");
        };
        let forwarded: DescribeShareGroupOffsetsRequest = decode_forwarded(&frame);
        assert_eq!(forwarded.groups, vec![ask("g-ok", Some(vec![asked("ok", &[0])]))], "v{version}");
        let merged = merge(after, broker(vec![offsets("ok")]));
        let groups: Vec<_> = merged.groups.iter().map(|g| (g.group_id.0.to_string(), g.error_code)).collect();
        assert_eq!(groups, [("g-ok".to_owned(), 0), ("g-other".to_owned(), 30)], "v{version}");
        assert_eq!(names(&merged.groups[0].topics), ["ok", "secret"], "v{version}");
        let denied: Vec<_> =
            merged.groups[0].topics[1].partitions.iter().map(|p| (p.partition_index, p.error_code)).collect();
        assert_eq!(denied, [(1, 29), (2, 29)], "v{version}");

        // Only denied topics: the group is still asked, with none, as Kafka asks its coordinator.
        let body = DescribeShareGroupOffsetsRequest::default()
            .with_groups(vec![ask("g-ok", Some(vec![asked("secret", &[0])]))]);
        let Verdict::Rewritten(frame, Some(after)) = s.check(&mut conn, key, version, &body) else {
            panic!("v{version}: expected the group forwarded");
        };
        let forwarded: DescribeShareGroupOffsetsRequest = decode_forwarded(&frame);
        assert_eq!(forwarded.groups, vec![ask("g-ok", Some(vec![]))], "v{version}");
        assert_eq!(names(&merge(after, broker(vec![])).groups[0].topics), ["secret"], "v{version}");

        // A group denied as a whole is answered here.
        let body = DescribeShareGroupOffsetsRequest::default().with_groups(vec![ask("g-other", None)]);
        let r: DescribeShareGroupOffsetsResponse = answer(s.check(&mut conn, key, version, &body), key, version);
        assert_eq!(r.groups.iter().map(|g| g.error_code).collect::<Vec<_>>(), [30], "v{version}");

        // All of an allowed group's offsets: those of topics it may not describe are hidden.
        let body = DescribeShareGroupOffsetsRequest::default().with_groups(vec![ask("g-ok", None)]);
        let Verdict::Filter(after) = s.check(&mut conn, key, version, &body) else {
            panic!("v{version}: expected the response filtered");
        };
        let merged = merge(after, broker(vec![offsets("ok"), offsets("secret")]));
        assert_eq!(names(&merged.groups[0].topics), ["ok"], "v{version}");
    }
    for version in versions::<AlterShareGroupOffsetsRequest>() {
        use alter_share_group_offsets_request::*;
        use alter_share_group_offsets_response::*;
        let key = ApiKey::AlterShareGroupOffsets;
        let alter = |name| {
            AlterShareGroupOffsetsRequestTopic::default().with_topic_name(topic(name)).with_partitions(vec![
                AlterShareGroupOffsetsRequestPartition::default().with_partition_index(3).with_start_offset(0),
            ])
        };
        let body = AlterShareGroupOffsetsRequest::default()
            .with_group_id(group("g-ok"))
            .with_topics(vec![alter("ok"), alter("secret")]);
        let Verdict::Rewritten(frame, Some(after)) = s.check(&mut conn, key, version, &body) else {
            panic!("v{version}: expected the allowed topic forwarded");
        };
        let forwarded: AlterShareGroupOffsetsRequest = decode_forwarded(&frame);
        assert_eq!(forwarded.topics, vec![alter("ok")], "v{version}");
        let altered = AlterShareGroupOffsetsResponse::default()
            .with_responses(vec![AlterShareGroupOffsetsResponseTopic::default().with_topic_name(topic("ok"))]);
        let merged = after.apply_to(encode_response(42, key, version, &altered).unwrap(), key, version).unwrap();
        let (_, merged): (_, AlterShareGroupOffsetsResponse) = decode_response(&merged, key, version).unwrap();
        let topics: Vec<_> = merged.responses.iter().map(|t| t.topic_name.0.to_string()).collect();
        assert_eq!(topics, ["ok", "secret"], "v{version}");
        assert_eq!(merged.responses[1].partitions[0].error_code, 29, "v{version}");
        assert_eq!(merged.responses[1].partitions[0].partition_index, 3, "v{version}");

        // A broker answer that failed as a whole stays whole.
        let Verdict::Rewritten(_, Some(after)) = s.check(&mut conn, key, version, &body) else { panic!() };
        let failed = AlterShareGroupOffsetsResponse::default().with_error_code(68); // NON_EMPTY_GROUP
        let merged = after.apply_to(encode_response(42, key, version, &failed).unwrap(), key, version).unwrap();
        let (_, merged): (_, AlterShareGroupOffsetsResponse) = decode_response(&merged, key, version).unwrap();
        assert_eq!((merged.error_code, merged.responses.len()), (68, 0), "v{version}");

        // Without READ on the group, nothing is altered.
        let other = body.clone().with_group_id(group("g-other"));
        let r: AlterShareGroupOffsetsResponse = answer(s.check(&mut conn, key, version, &other), key, version);
        assert_eq!((r.error_code, r.responses.len()), (30, 0), "v{version}");
        let only_denied = body.clone().with_topics(vec![alter("secret")]);
        let r: AlterShareGroupOffsetsResponse = answer(s.check(&mut conn, key, version, &only_denied), key, version);
        assert_eq!(r.responses[0].partitions[0].error_code, 29, "v{version}");
    }
    for version in versions::<DeleteShareGroupOffsetsRequest>() {
        use delete_share_group_offsets_request::*;
        use delete_share_group_offsets_response::*;
        let key = ApiKey::DeleteShareGroupOffsets;
        let delete = |name| DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(topic(name));
        let body = DeleteShareGroupOffsetsRequest::default()
            .with_group_id(group("g-ok"))
            .with_topics(vec![delete("secret"), delete("ok")]);
        let Verdict::Rewritten(frame, Some(after)) = s.check(&mut conn, key, version, &body) else {
            panic!("v{version}: expected the allowed topic forwarded");
        };
        let forwarded: DeleteShareGroupOffsetsRequest = decode_forwarded(&frame);
        assert_eq!(forwarded.topics, vec![delete("ok")], "v{version}");
        let deleted = DeleteShareGroupOffsetsResponse::default()
            .with_responses(vec![DeleteShareGroupOffsetsResponseTopic::default().with_topic_name(topic("ok"))]);
        let merged = after.apply_to(encode_response(42, key, version, &deleted).unwrap(), key, version).unwrap();
        let (_, merged): (_, DeleteShareGroupOffsetsResponse) = decode_response(&merged, key, version).unwrap();
        let topics: Vec<_> = merged.responses.iter().map(|t| (t.topic_name.0.to_string(), t.error_code)).collect();
        assert_eq!(topics, [("ok".to_owned(), 0), ("secret".to_owned(), 29)], "v{version}");

        let other = body.clone().with_group_id(group("g-other"));
        let r: DeleteShareGroupOffsetsResponse = answer(s.check(&mut conn, key, version, &other), key, version);
        assert_eq!((r.error_code, r.responses.len()), (30, 0), "v{version}");
        let only_denied = body.clone().with_topics(vec![delete("secret")]);
        let r: DeleteShareGroupOffsetsResponse = answer(s.check(&mut conn, key, version, &only_denied), key, version);
        assert_eq!(r.responses.iter().map(|t| t.error_code).collect::<Vec<_>>(), [29], "v{version}");
    }
}
