//! A response's `throttle_time_ms`, found and raised in place for any api: what a quota at the
//! proxy tells a client (KIP-219) without decoding the response.
//!
//! Most responses carry the field first, so it is found without walking; the others (Produce,
//! ApiVersions, ...) are walked to it. Four bytes change; nothing else of the body does.

use kafka_protocol::messages::ApiKey;

use crate::scan::ScanError;
use crate::schema::{self, Entity, Op, Visitor};

/// Where in a response body of `api_key` at `version` its `throttle_time_ms` is, if the body
/// has one.
pub fn throttle_time_at(body: &[u8], api_key: ApiKey, version: i16) -> Result<Option<usize>, ScanError> {
    let Some(spec) = schema::response(api_key as i16) else { return Ok(None) };
    let Some(program) = spec.program(version) else { return Ok(None) };
    if let Some(Op::Int { entity: Entity::ThrottleTime, .. }) = program.ops.first() {
        if body.len() < 4 {
            let what = "the body ends before its throttle_time_ms";
            return Err(ScanError { message: spec.label, version, offset: body.len(), what });
        }
        return Ok(Some(0));
    }
    let mut found = Found { start: body.as_ptr() as usize, at: None };
    schema::walk_body(body, spec, version, &mut found)?;
    Ok(found.at)
}

/// Raises the `throttle_time_ms` of a response body to at least `ms`, in place. Returns
/// whether the body has the field (v0 of most apis does not; then the client cannot be told).
pub fn raise_throttle_time(body: &mut [u8], api_key: ApiKey, version: i16, ms: i32) -> Result<bool, ScanError> {
    let Some(at) = throttle_time_at(body, api_key, version)? else { return Ok(false) };
    raise_at(&mut body[at..at + 4], ms);
    Ok(true)
}

/// Raises the big-endian `i32` in `field` (four bytes) to at least `ms`.
pub fn raise_at(field: &mut [u8], ms: i32) {
    let current = i32::from_be_bytes([field[0], field[1], field[2], field[3]]);
    if current < ms {
        field.copy_from_slice(&ms.to_be_bytes());
    }
}

struct Found {
    start: usize,
    at: Option<usize>,
}

impl<'a> Visitor<'a> for Found {
    fn int_field(&mut self, entity: Entity, _value: i64, raw: &'a [u8]) {
        if entity == Entity::ThrottleTime {
            // The field's bytes are a slice of the body: its offset is their distance.
            self.at = Some(raw.as_ptr() as usize - self.start);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{ApiVersionsResponse, FetchResponse, MetadataResponse, ProduceResponse};
    use kafka_protocol::protocol::{Decodable, Encodable};

    use super::*;

    fn raised<T: Encodable + Decodable>(body: &T, api: ApiKey, version: i16, ms: i32) -> Option<T> {
        let mut bytes = BytesMut::new();
        body.encode(&mut bytes, version).unwrap();
        if !raise_throttle_time(&mut bytes, api, version, ms).unwrap() {
            return None;
        }
        Some(T::decode(&mut bytes.freeze(), version).unwrap())
    }

    #[test]
    fn the_throttle_is_raised_where_each_api_keeps_it_and_nothing_else_changes() {
        let produce = ProduceResponse::default().with_throttle_time_ms(20);
        for version in [3, 9, 13] {
            let out = raised(&produce, ApiKey::Produce, version, 1500).unwrap();
            assert_eq!(out, produce.clone().with_throttle_time_ms(1500), "Produce v{version} (field last)");
            assert_eq!(raised(&produce, ApiKey::Produce, version, 10).unwrap(), produce, "never lowered");
        }
        let fetch = FetchResponse::default().with_throttle_time_ms(20).with_session_id(77);
        for version in [7, 12, 17] {
            let out = raised(&fetch, ApiKey::Fetch, version, 900).unwrap();
            assert_eq!(out, fetch.clone().with_throttle_time_ms(900), "Fetch v{version} (field first)");
        }
        let versions = ApiVersionsResponse::default().with_api_keys(vec![ApiVersion::default().with_max_version(9)]);
        for version in [1, 3] {
            let out = raised(&versions, ApiKey::ApiVersions, version, 300).unwrap();
            assert_eq!(out, versions.clone().with_throttle_time_ms(300), "ApiVersions v{version}");
        }
        assert!(raised(&versions, ApiKey::ApiVersions, 0, 300).is_none(), "v0 has no throttle_time_ms");
        let metadata = MetadataResponse::default();
        assert_eq!(raised(&metadata, ApiKey::Metadata, 12, 5).unwrap().throttle_time_ms, 5);
        assert!(raised(&metadata, ApiKey::Metadata, 0, 5).is_none());
    }

    #[test]
    fn a_body_too_short_for_its_throttle_is_an_error() {
        let err = raise_throttle_time(&mut [0, 0], ApiKey::Fetch, 12, 5).unwrap_err();
        assert!(err.to_string().contains("Fetch response v12"), "{err}");
        assert!(raise_throttle_time(&mut [0, 0], ApiKey::Produce, 9, 5).is_err());
    }
}
