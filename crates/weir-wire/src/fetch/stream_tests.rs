//! The streaming scan against the whole-body one, on responses from the reference encoder fed
//! in every piece size, and on broken ones.

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{ApiKey, FetchResponse, TopicName};
use kafka_protocol::protocol::{Decodable, Message, StrBytes};

use super::*;
use crate::message::{encode_response, ResponseFrame};
use crate::test_support::record_batch;

/// Three batches (7 records and a transaction marker), then the first 30 bytes of another: a
/// Fetch response may end a partition's records with a partial batch.
fn records() -> Bytes {
    let mut blob = record_batch(3, false);
    blob.extend(record_batch(4, false));
    blob.extend(record_batch(1, true));
    blob.extend(&record_batch(2, false)[..30]);
    Bytes::from(blob)
}

fn response(version: i16, with_endpoints: bool) -> FetchResponse {
    let partition = |index: i32, error: i16, records: Option<Bytes>| {
        let mut p = PartitionData::default()
            .with_partition_index(index)
            .with_error_code(error)
            .with_high_watermark(100)
            .with_aborted_transactions(Some(vec![
                AbortedTransaction::default().with_producer_id(7.into()),
                AbortedTransaction::default().with_producer_id(8.into()),
            ]))
            .with_records(records);
        if version >= 12 {
            p = p.with_current_leader(LeaderIdAndEpoch::default().with_leader_id(2.into()).with_leader_epoch(3));
        }
        p
    };
    let topic = |name: &'static str, id: u8, partitions| {
        let t = FetchableTopicResponse::default().with_partitions(partitions);
        if version >= 13 {
            t.with_topic_id(uuid::Uuid::from_bytes([id; 16]))
        } else {
            t.with_topic(TopicName(StrBytes::from_static_str(name)))
        }
    };
    FetchResponse::default()
        .with_session_id(if version >= 7 { 9 } else { 0 })
        .with_responses(vec![
            topic("orders", 1, vec![partition(0, 0, Some(records())), partition(1, 6, None)]),
            topic("empty", 3, vec![]),
            topic("audit", 2, vec![partition(4, 0, Some(Bytes::new())), partition(5, 0, Some(records()))]),
        ])
        .with_node_endpoints(if with_endpoints && version >= 16 {
            vec![NodeEndpoint::default()
                .with_node_id(2.into())
                .with_host(StrBytes::from_static_str("broker-2"))
                .with_port(9092)]
        } else {
            vec![]
        })
}

fn frame(version: i16, with_endpoints: bool) -> Bytes {
    encode_response(5, ApiKey::Fetch, version, &response(version, with_endpoints)).unwrap()
}

type Counted = Vec<(String, i32, i16, usize, u64)>;

fn key(topic: TopicRef<'_>) -> String {
    match topic {
        TopicRef::Name(name) => name.to_owned(),
        TopicRef::Id(id) => format!("{id:?}"),
    }
}

/// What the whole-body scan says of a frame.
fn whole(frame: &Bytes, version: i16) -> (FetchSummary, Counted) {
    let body = ResponseFrame::parse(frame, ApiKey::Fetch, version).unwrap().body();
    let mut seen = Vec::new();
    let summary = count_fetch_response(&body, version, |p| {
        seen.push((key(p.topic), p.partition, p.error_code, p.record_bytes, p.records))
    })
    .unwrap();
    (summary, seen)
}

/// Feeds `frame` as it would arrive in pieces of `piece` bytes, keeping (as the session does)
/// only what the scan has not consumed; returns the digest and the most ever kept.
fn streamed(frame: &[u8], version: i16, piece: usize) -> Result<(FetchDigest, usize), ScanError> {
    let mut scan = FetchStream::new(version, frame.len());
    let mut kept: Vec<u8> = Vec::new();
    let mut most = 0;
    for chunk in frame.chunks(piece) {
        kept.extend_from_slice(chunk);
        most = most.max(kept.len());
        let used = scan.feed(&kept)?;
        kept.drain(..used);
    }
    assert_eq!(scan.consumed() + kept.len(), frame.len());
    Ok((scan.finish()?, most))
}

fn counted(digest: &FetchDigest) -> Counted {
    digest.partitions().map(|p| (key(p.topic), p.partition, p.error_code, p.record_bytes, p.records)).collect()
}

#[test]
fn agrees_with_the_whole_body_scan_at_every_version_and_piece_size() {
    for version in FetchResponse::VERSIONS.min..=FetchResponse::VERSIONS.max {
        for endpoints in [false, true] {
            let frame = frame(version, endpoints);
            let (summary, partitions) = whole(&frame, version);
            assert_eq!(partitions[0].4, 7, "v{version}: 7 records, the marker and the partial batch not counted");
            for piece in [1, 2, 3, 7, 16, 61, 62, 100, 1000, frame.len()] {
                let (digest, most) =
                    streamed(&frame, version, piece).unwrap_or_else(|e| panic!("v{version} in pieces of {piece}: {e}"));
                assert_eq!(digest.summary, summary, "v{version} in pieces of {piece}");
                assert_eq!(counted(&digest), partitions, "v{version} in pieces of {piece}");
                if piece < 100 {
                    // Record batches are passed over, never held: only small pieces wait.
                    assert!(most < 100 + piece, "v{version}: {most} bytes held in pieces of {piece}");
                }
            }
        }
    }
}

#[test]
fn a_short_frame_or_bytes_after_the_end_are_errors() {
    for version in [4, 11, 12, 16, 17] {
        let frame = frame(version, true);
        for cut in [5, 20, frame.len() / 2, frame.len() - 1] {
            let mut scan = FetchStream::new(version, frame.len());
            let used = scan.feed(&frame[..cut]).unwrap();
            assert!(used <= cut);
            assert!(scan.finish().is_err(), "v{version}: a frame cut at {cut} was accepted");
        }
        // The frame's length says less than what follows.
        let mut scan = FetchStream::new(version, frame.len() + 3);
        let mut longer = frame.to_vec();
        longer.extend([0, 0, 0]);
        let err = scan.feed(&longer).unwrap_err();
        assert_eq!(err.what, "bytes after the end of the response", "v{version}");
    }
}

#[test]
fn hostile_lengths_are_refused_before_any_wait() {
    let version = 12;
    let mut frame = frame(version, false).to_vec();
    // The compact topics array (right after throttle, error and session) claims 2^28 entries.
    let topics_at = 4 + 4 + 1 + 4 + 2 + 4;
    frame.splice(topics_at..topics_at + 1, [0x80, 0x80, 0x80, 0x80, 0x01]);
    let mut scan = FetchStream::new(version, frame.len());
    let err = scan.feed(&frame[..30]).unwrap_err();
    assert_eq!(err.what, "array longer than the message");
    // Where the length ends, counted from the body (after prefix, correlation id, header tags).
    assert_eq!(err.offset, topics_at + 5 - 9, "located in the body");
}

#[test]
fn a_piece_longer_than_the_window_is_an_error_not_a_wait() {
    let version = 12;
    let mut response = response(version, false);
    // A topic-level unknown tagged field larger than the window.
    response.responses[0].unknown_tagged_fields.insert(9, Bytes::from(vec![0u8; MAX_PIECE + 10]));
    let frame = encode_response(5, ApiKey::Fetch, version, &response).unwrap();
    // Byte by byte, as a slow broker might send it: the scan gives up once it holds a
    // window's worth of one field, instead of waiting for ever more.
    let err = streamed(&frame, version, 1).unwrap_err();
    assert_eq!(err.what, "a field longer than the streaming window");
}

#[test]
fn a_records_length_beyond_the_frame_is_refused_at_once() {
    let version = 4;
    let response = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![PartitionData::default().with_records(Some(Bytes::from_static(b"0123456789")))])]);
    let mut frame = encode_response(5, ApiKey::Fetch, version, &response).unwrap().to_vec();
    // The records field is the last 14 bytes: its i32 length, then the ten bytes.
    let at = frame.len() - 14;
    assert_eq!(&frame[at..at + 4], &10i32.to_be_bytes());
    frame[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    let mut scan = FetchStream::new(version, frame.len());
    let err = scan.feed(&frame).unwrap_err();
    assert_eq!(err.what, "records longer than the message");
}

#[test]
fn spans_locate_each_partitions_error_code_and_records_for_rewriting_in_place() {
    for version in FetchResponse::VERSIONS.min..=FetchResponse::VERSIONS.max {
        let frame = frame(version, true);
        for piece in [1, 7, 100, frame.len()] {
            let mut scan = FetchStream::new(version, frame.len()).keep_spans();
            let (mut spans, mut kept, mut start) = (Vec::new(), Vec::new(), 0);
            for chunk in frame.chunks(piece) {
                kept.extend_from_slice(chunk);
                let used = scan.feed(&kept).unwrap();
                kept.drain(..used);
                start += used;
                // A partition in progress starts where the scan has read to, or before.
                if let Some((_, at)) = scan.partition_in_progress() {
                    assert!(at <= start, "v{version}");
                }
                spans.extend(scan.take_spans());
            }
            let names: Vec<String> = spans.iter().map(|s| key(scan.topic(s.topic).unwrap())).collect();
            let want: Vec<String> = if version >= 13 {
                [[1u8; 16], [1; 16], [2; 16], [2; 16]].iter().map(|id| format!("{id:?}")).collect()
            } else {
                ["orders", "orders", "audit", "audit"].map(str::to_owned).to_vec()
            };
            assert_eq!(names, want, "v{version} in pieces of {piece}");
            assert_eq!(spans.iter().map(|s| s.partition).collect::<Vec<_>>(), [0, 1, 4, 5]);
            assert_eq!(spans.iter().map(|s| s.index).collect::<Vec<_>>(), [0, 1, 2, 3]);
            let mut rewritten = frame.to_vec();
            for span in &spans {
                let code = i16::from_be_bytes([frame[span.error_code_at], frame[span.error_code_at + 1]]);
                assert_eq!(code, if span.partition == 1 { 6 } else { 0 }, "v{version} p{}", span.partition);
                let expected = if matches!(span.partition, 0 | 5) { records() } else { Bytes::new() };
                assert_eq!(&frame[span.records.clone()], &expected[..], "v{version} p{}", span.partition);
                // Rewritten in place, the frame reads as a response with those changes.
                rewritten[span.error_code_at..span.error_code_at + 2].copy_from_slice(&29i16.to_be_bytes());
                rewritten[span.records.clone()].fill(0xAB);
            }
            // The digest says what was served.
            scan.fail_partition(3, 29);
            let digest = scan.finish().unwrap();
            let last = digest.partitions().last().unwrap();
            assert_eq!((last.partition, last.error_code, last.records, last.record_bytes), (5, 29, 0, 0));
            let body = ResponseFrame::parse(&Bytes::from(rewritten), ApiKey::Fetch, version).unwrap().body();
            let decoded = FetchResponse::decode(&mut &body[..], version).unwrap();
            let partitions = decoded.responses.iter().flat_map(|t| &t.partitions);
            for p in partitions {
                assert_eq!(p.error_code, 29);
                let records = p.records.clone().unwrap_or_default();
                assert!(records.iter().all(|b| *b == 0xAB), "v{version}");
            }
        }
    }
}
