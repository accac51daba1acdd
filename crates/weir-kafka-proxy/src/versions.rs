//! ApiVersions: clients are offered only what both the broker and the sidecar understand.
//!
//! The sidecar must be able to decode every version it lets through for the api keys it
//! rewrites, and must know every api key's schema to be sure no broker address slips past;
//! so a key or version the codec does not know is not advertised.

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use weir_wire::message::{encode_response, MessageError};

/// Kafka's UNSUPPORTED_VERSION error code.
pub const UNSUPPORTED_VERSION: i16 = 35;

/// Requests only brokers and controllers send each other, though brokers advertise them on
/// every listener: a client of the sidecar has no use for them.
const BROKER_ONLY: [ApiKey; 1] = [ApiKey::WriteTxnMarkers];

/// Narrows the broker's advertised versions to those the sidecar handles.
pub fn intersect(resp: &mut ApiVersionsResponse) {
    resp.api_keys.retain_mut(|entry| {
        let Ok(key) = ApiKey::try_from(entry.api_key) else { return false };
        if BROKER_ONLY.contains(&key) {
            return false;
        }
        let known = weir_wire::header::codec_versions(key);
        let mut min = entry.min_version.max(known.min);
        let max = entry.max_version.min(known.max);
        if key == ApiKey::SaslHandshake {
            // v0 switches the connection to unframed SASL tokens, which the sidecar does not
            // relay; v1 (Kafka >= 1.0) frames them in SaslAuthenticate requests.
            min = min.max(1);
        }
        entry.min_version = min;
        entry.max_version = max;
        min <= max
    });
}

/// The cluster's (already narrowed) ApiVersions, answered by the sidecar at the client's
/// version. Fields newer than that version (features, v3+) are left out when they do not fit.
pub fn cached_response(cached: &ApiVersionsResponse, correlation_id: i32, version: i16) -> Result<Bytes, MessageError> {
    encode_response(correlation_id, ApiKey::ApiVersions, version, cached).or_else(|_| {
        let plain = ApiVersionsResponse::default().with_api_keys(cached.api_keys.clone());
        encode_response(correlation_id, ApiKey::ApiVersions, version, &plain)
    })
}

/// KIP-511: the answer to an ApiVersions request newer than the sidecar knows is a v0 response
/// with UNSUPPORTED_VERSION and the ApiVersions range, so the client retries with a version
/// both sides speak.
pub fn unsupported_version_response(correlation_id: i32) -> Result<Bytes, MessageError> {
    let range = ApiKey::ApiVersions.valid_versions();
    let body =
        ApiVersionsResponse::default().with_error_code(UNSUPPORTED_VERSION).with_api_keys(vec![ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(range.min)
            .with_max_version(range.max)]);
    encode_response(correlation_id, ApiKey::ApiVersions, 0, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: i16, min: i16, max: i16) -> ApiVersion {
        ApiVersion::default().with_api_key(key).with_min_version(min).with_max_version(max)
    }

    #[test]
    fn keeps_common_ranges_and_drops_the_unknown() {
        let known_fetch = ApiKey::Fetch.valid_versions();
        let mut resp = ApiVersionsResponse::default().with_api_keys(vec![
            entry(ApiKey::Fetch as i16, 0, known_fetch.max + 5),
            entry(ApiKey::SaslHandshake as i16, 0, 1),
            entry(ApiKey::Metadata as i16, 0, 3),
            entry(ApiKey::OffsetCommit as i16, 2, 10),
            entry(ApiKey::WriteTxnMarkers as i16, 0, 1),
            entry(31000, 0, 2),
        ]);
        intersect(&mut resp);
        let got: Vec<_> = resp.api_keys.iter().map(|e| (e.api_key, e.min_version, e.max_version)).collect();
        assert_eq!(
            got,
            vec![
                (ApiKey::Fetch as i16, known_fetch.min, known_fetch.max),
                (ApiKey::SaslHandshake as i16, 1, 1),
                (ApiKey::Metadata as i16, 0, 3),
                // v10 is named by the codec, but its request type cannot read it.
                (ApiKey::OffsetCommit as i16, 2, 9),
            ]
        );
    }

    #[test]
    fn kip_511_answer_is_v0_with_error_and_range() {
        let frame = unsupported_version_response(9).unwrap();
        let (header, body): (_, ApiVersionsResponse) =
            weir_wire::message::decode_response(&frame, ApiKey::ApiVersions, 0).unwrap();
        assert_eq!(header.correlation_id, 9);
        assert_eq!(body.error_code, UNSUPPORTED_VERSION);
        assert_eq!(body.api_keys[0].api_key, ApiKey::ApiVersions as i16);
        // v0 header: length, correlation id, then the error code straight away.
        assert_eq!(&frame[8..10], &UNSUPPORTED_VERSION.to_be_bytes());
    }
}
