//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the property tests that run in
//! CI: feed arbitrary bytes through exactly the decoding the proxy does and require that it
//! only ever returns errors.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};

use crate::frame::split_frame;
use crate::header::RequestHeaderPeek;
use crate::message::ResponseFrame;
use crate::produce::scan_produce;

/// The frame limit used while fuzzing: large enough for interesting frames, small enough that
/// a hostile length prefix cannot make the fuzzer allocate much.
pub const FUZZ_MAX_FRAME: usize = 1 << 20;

/// Bytes as a client would send them, through exactly what the proxy does with them: split
/// into frames, peek each header, read the resources each request names, rename its topics
/// (a topic alias), scan Produce requests and copy their batches (a shadow), and read each
/// batch's records, decompressed (a record policy).
pub fn exercise_client_bytes(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let mut scratch = Vec::new();
    while let Ok(Some(frame)) = split_frame(&mut buf, FUZZ_MAX_FRAME) {
        let Ok(peek) = RequestHeaderPeek::parse(&frame) else { continue };
        let _ = peek.client_id_str();
        if !peek.version_is_known() {
            continue;
        }
        // What authorization reads of every request (the walkers' own tests check that a body
        // they accept decodes in full).
        let body = frame.get(peek.body_offset..).unwrap_or_default();
        let _ = crate::resources::scan_request_resources(body, peek.api_key, peek.api_version, |_| {});
        let _ = crate::rename::rename_request_topics(&frame, &peek, &|name| Some(format!("{name}-alias")));
        if peek.api_key == ApiKey::Produce {
            let _ = crate::produce::scan_produce_names(body, peek.api_version, |_| {});
            let _ = scan_produce(&frame, &peek, |_, _, records| {
                crate::records::count_records(records);
                crate::records::plain_copy(records);
                for batch in crate::records::batches(records) {
                    if let Ok(records) = crate::record_view::batch_records(batch.bytes, FUZZ_MAX_FRAME, &mut scratch) {
                        records.flatten().for_each(|record| {
                            record.headers().count();
                        });
                    }
                }
            });
        }
    }
}

/// A Fetch response body as the sidecar reads every one of them: in place when whole, and (a
/// large one) piece by piece as it streams through.
pub fn exercise_fetch_response(version: i16, data: &[u8]) {
    let _ = crate::fetch::count_fetch_response(data, version, |_| {});
    // As a frame (prefix, correlation id, empty header tags when flexible) in uneven pieces.
    let mut frame = Vec::with_capacity(data.len() + 9);
    let header: &[u8] = if version >= 12 { &[0, 0, 0, 1, 0] } else { &[0, 0, 0, 1] };
    frame.extend_from_slice(&((header.len() + data.len()) as i32).to_be_bytes());
    frame.extend_from_slice(header);
    frame.extend_from_slice(data);
    let mut scan = crate::fetch::FetchStream::new(version, frame.len());
    let mut kept = Vec::new();
    for piece in frame.chunks(7) {
        kept.extend_from_slice(piece);
        match scan.feed(&kept) {
            Ok(used) => drop(kept.drain(..used)),
            Err(_) => return,
        }
    }
    let _ = scan.finish();
}

/// Bytes as a broker would send them in answer to `api_key` at `version`, decoded as the
/// sidecar decodes responses: only once `response_bounds` has walked them. (kafka-protocol's
/// decoder pre-allocates every declared array length; this entry point first found that a
/// broker declaring 2^31 elements aborted the process, hence the walk.)
pub fn exercise_broker_bytes(api_key: ApiKey, version: i16, data: &[u8]) {
    let mut framed = BytesMut::with_capacity(data.len() + 4);
    framed.extend_from_slice(&(data.len() as i32).to_be_bytes());
    framed.extend_from_slice(data);
    let frame: Bytes = framed.freeze();
    if let Ok(parsed) = ResponseFrame::parse(&frame, api_key, version) {
        let _ = crate::header::response_correlation_id(&frame);
        if api_key == ApiKey::Produce {
            let _ = crate::produce::scan_produce_response(&parsed.body(), version, |_, _, _| {});
        }
        if crate::response_bounds::check_response_body(&parsed.body(), api_key, version) == Ok(true) {
            let _ = ResponseKind::decode(api_key, &mut parsed.body(), version);
        }
        // A topic alias names every topic of the answer back.
        let mut message = crate::message::ResponseMessage::new(frame.clone(), api_key, version);
        let _ = message.rename_topics(&|name| Some(format!("{name}-alias")));
        // A quota raises any answer's throttle time.
        let mut message = crate::message::ResponseMessage::new(frame.clone(), api_key, version);
        let _ = message.raise_throttle_time_ms(1000);
    }
    let _ = crate::records::count_records(data);
    // Records read in place, as a record policy reads them: every item visited, headers too.
    for record in crate::record_view::records(data, i32::MAX).flatten() {
        let _ = record.headers().count();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift), so the test needs no extra dependency.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        let valid = {
            use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
            use kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
            use kafka_protocol::protocol::{Encodable, StrBytes};
            let mut body = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(ApiKey::Produce as i16)
                .with_request_api_version(9)
                .with_client_id(Some(StrBytes::from_static_str("fuzz")))
                .encode(&mut body, 2)
                .unwrap();
            let partition = PartitionProduceData::default().with_records(Some(Bytes::from_static(&[0; 70])));
            ProduceRequest::default()
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_data(vec![partition])])
                .encode(&mut body, 9)
                .unwrap();
            crate::frame::with_length_prefix(&body).to_vec()
        };
        let fetch_frame = {
            use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
            use kafka_protocol::messages::{FetchRequest, RequestHeader, TopicName};
            use kafka_protocol::protocol::{Encodable, StrBytes};
            let mut body = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(ApiKey::Fetch as i16)
                .with_request_api_version(12)
                .encode(&mut body, 2)
                .unwrap();
            let topic = |n: &'static str| {
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str(n)))
                    .with_partitions(vec![FetchPartition::default(), FetchPartition::default().with_partition(1)])
            };
            FetchRequest::default().with_topics(vec![topic("a"), topic("b")]).encode(&mut body, 12).unwrap();
            crate::frame::with_length_prefix(&body).to_vec()
        };
        for seed in 0..3000u64 {
            let len = (seed % 200) as usize;
            exercise_client_bytes(&noise(seed, len));
            let mut mutated = fetch_frame.clone();
            let at = 4 + (seed as usize * 13) % (mutated.len() - 4);
            mutated[at] ^= noise(seed + 7, 1)[0] | 1;
            exercise_client_bytes(&mutated);
            // A valid Produce frame with a few bytes flipped reaches the Produce scanner.
            let mut mutated = valid.clone();
            for (i, b) in noise(seed, 3).into_iter().enumerate() {
                let at = 4 + (b as usize + i * 7) % (mutated.len() - 4);
                mutated[at] ^= noise(seed + 1, 1)[0] | 1;
            }
            exercise_client_bytes(&mutated);
            let fetch = kafka_protocol::messages::ApiKey::Fetch.valid_versions();
            exercise_fetch_response(fetch.min + (seed as i16 % (fetch.max - fetch.min + 1)), &noise(seed, len));
            // Broker bytes for the responses the sidecar decodes, at a version each.
            let keys = [ApiKey::Metadata, ApiKey::Produce, ApiKey::FindCoordinator, ApiKey::ApiVersions];
            let key = keys[seed as usize % keys.len()];
            let range = key.valid_versions();
            exercise_broker_bytes(key, range.min + (seed as i16 % (range.max - range.min + 1)), &noise(seed, len));
        }
    }
}
