//! Error codes written into a broker's response in place, for any api: what fault injection
//! tells a client whose request the broker served.
//!
//! The schema walk finds every `ErrorCode` field of the response ([`Entity::ErrorCode`] inside
//! entries, [`Entity::TopLevelErrorCode`] of the whole body). The codes of the entries are the
//! ones a client acts on per topic or partition, so they are set when the response has any;
//! the body's own code only when it has no entries (JoinGroup, Heartbeat, ...). A Fetch
//! response thus keeps its session's code and fails its partitions, as a broker that lost
//! leadership answers.

use kafka_protocol::messages::ApiKey;

use crate::scan::ScanError;
use crate::schema::{self, Entity, Visitor};

/// Where the error codes of a body are.
#[derive(Default)]
struct ErrorCodes {
    start: usize,
    in_entries: Vec<usize>,
    top_level: Vec<usize>,
}

impl<'a> Visitor<'a> for ErrorCodes {
    fn int_field(&mut self, entity: Entity, _value: i64, raw: &'a [u8]) {
        // The field's bytes are a slice of the body: its offset is their distance.
        let at = raw.as_ptr() as usize - self.start;
        match entity {
            Entity::ErrorCode => self.in_entries.push(at),
            Entity::TopLevelErrorCode => self.top_level.push(at),
            _ => {}
        }
    }
}

/// Sets the error codes of a response body of `api_key` at `version` to `code` (see the
/// module doc for which). Returns how many were set: zero for a response with none (or an
/// api the specs do not define), which the caller reports.
pub fn set_error_codes(body: &mut [u8], api_key: ApiKey, version: i16, code: i16) -> Result<usize, ScanError> {
    let Some(spec) = schema::response(api_key as i16) else {
        return Ok(0);
    };
    let mut found = ErrorCodes { start: body.as_ptr() as usize, ..ErrorCodes::default() };
    schema::walk_body(body, spec, version, &mut found)?;
    let at = if found.in_entries.is_empty() { found.top_level } else { found.in_entries };
    for &offset in &at {
        body[offset..offset + 2].copy_from_slice(&code.to_be_bytes());
    }
    Ok(at.len())
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
    use kafka_protocol::messages::{FetchResponse, HeartbeatResponse, ProduceResponse, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    use super::*;

    const NOT_LEADER: i16 = 6;

    fn encoded<T: Encodable>(message: &T, version: i16) -> BytesMut {
        let mut out = BytesMut::new();
        message.encode(&mut out, version).unwrap();
        out
    }

    #[test]
    fn every_partition_of_a_produce_response_gets_the_code_and_the_rest_is_unchanged() {
        let partition = |index| PartitionProduceResponse::default().with_index(index).with_base_offset(41);
        let topic = |name: &'static str| {
            TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_static_str(name)))
                .with_partition_responses(vec![partition(0), partition(1)])
        };
        let response = ProduceResponse::default().with_responses(vec![topic("a"), topic("b")]).with_throttle_time_ms(5);
        for version in [3, 8, 9, 11, 13] {
            let mut body = encoded(&response, version);
            assert_eq!(set_error_codes(&mut body, ApiKey::Produce, version, NOT_LEADER).unwrap(), 4, "v{version}");
            let back = ProduceResponse::decode(&mut Bytes::from(body), version).unwrap();
            let codes: Vec<_> =
                back.responses.iter().flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)).collect();
            assert_eq!(codes, [NOT_LEADER; 4], "v{version}");
            assert_eq!(back.responses[1].partition_responses[1].base_offset, 41);
            assert_eq!(back.throttle_time_ms, 5);
        }
    }

    #[test]
    fn a_fetch_response_fails_its_partitions_and_keeps_its_session_code() {
        let response =
            FetchResponse::default().with_session_id(9).with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![PartitionData::default().with_partition_index(2).with_high_watermark(7)])]);
        let version = 12;
        let mut body = encoded(&response, version);
        assert_eq!(set_error_codes(&mut body, ApiKey::Fetch, version, NOT_LEADER).unwrap(), 1);
        let back = FetchResponse::decode(&mut Bytes::from(body), version).unwrap();
        assert_eq!(back.error_code, 0);
        assert_eq!(back.session_id, 9);
        assert_eq!(back.responses[0].partitions[0].error_code, NOT_LEADER);
        assert_eq!(back.responses[0].partitions[0].high_watermark, 7);
    }

    #[test]
    fn a_response_without_entries_gets_its_own_code() {
        let mut body = encoded(&HeartbeatResponse::default(), 4);
        assert_eq!(set_error_codes(&mut body, ApiKey::Heartbeat, 4, 27).unwrap(), 1);
        assert_eq!(HeartbeatResponse::decode(&mut Bytes::from(body), 4).unwrap().error_code, 27);
    }

    #[test]
    fn a_truncated_body_is_refused_and_left_alone() {
        let mut body = encoded(&HeartbeatResponse::default(), 4);
        let mut short = body.split_to(body.len() - 1);
        let before = short.clone();
        assert!(set_error_codes(&mut short, ApiKey::Heartbeat, 4, 27).is_err());
        assert_eq!(short, before);
    }
}
