//! Peeking at request and response headers without decoding bodies.
//!
//! The fixed part of a request header (api key, version, correlation id) sits at the same
//! offsets in every header version, and the client id is a classic nullable string even in the
//! flexible v2 header; only the tagged fields after it depend on the version. So a peek costs a
//! few bounds checks, never an allocation.

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;

use crate::frame::LENGTH_PREFIX;

/// Why a request header could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("client id has invalid length {0}")]
    BadClientId(i16),
    #[error("malformed tagged fields in the request header")]
    BadTaggedFields,
}

/// What the proxy needs to know about a request before deciding whether to decode it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaderPeek {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    /// Raw client id bytes, sliced from the frame (no copy).
    pub client_id: Option<Bytes>,
    /// Offset of the request body within the frame (length prefix included).
    pub body_offset: usize,
}

impl RequestHeaderPeek {
    /// Reads the header of a whole frame (as returned by [`crate::FrameReader`]).
    pub fn parse(frame: &Bytes) -> Result<Self, HeaderError> {
        let b = &frame[..];
        if b.len() < LENGTH_PREFIX + 8 {
            return Err(HeaderError::TooShort(b.len()));
        }
        let raw_key = i16::from_be_bytes([b[4], b[5]]);
        let api_version = i16::from_be_bytes([b[6], b[7]]);
        let correlation_id = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let api_key = ApiKey::try_from(raw_key).map_err(|_| HeaderError::UnknownApiKey(raw_key))?;
        // KIP-511: a request newer than we know is read with the newest header we know.
        let known = api_key.valid_versions();
        let header_version = api_key.request_header_version(api_version.clamp(known.min, known.max));
        let mut pos = LENGTH_PREFIX + 8;
        let mut client_id = None;
        if header_version >= 1 {
            let len_bytes = b.get(pos..pos + 2).ok_or(HeaderError::TooShort(b.len()))?;
            let len = i16::from_be_bytes([len_bytes[0], len_bytes[1]]);
            pos += 2;
            if len >= 0 {
                let end = pos + len as usize;
                if end > b.len() {
                    return Err(HeaderError::BadClientId(len));
                }
                client_id = Some(frame.slice(pos..end));
                pos = end;
            } else if len != -1 {
                return Err(HeaderError::BadClientId(len));
            }
        }
        if header_version >= 2 {
            pos = skip_tagged_fields(b, pos).ok_or(HeaderError::BadTaggedFields)?;
        }
        Ok(Self { api_key, api_version, correlation_id, client_id, body_offset: pos })
    }

    /// The consumer group a group-membership request names: OffsetCommit, JoinGroup,
    /// Heartbeat, LeaveGroup and SyncGroup all begin their body with `group_id` at every
    /// version. `None` for other requests, or when the field does not read.
    pub fn group_id<'a>(&self, frame: &'a [u8]) -> Option<&'a [u8]> {
        use ApiKey::*;
        if !matches!(self.api_key, OffsetCommit | JoinGroup | Heartbeat | LeaveGroup | SyncGroup) {
            return None;
        }
        let body = frame.get(self.body_offset..)?;
        let known = self.api_key.valid_versions();
        let flexible = self.api_key.request_header_version(self.api_version.clamp(known.min, known.max)) >= 2;
        let (len, at) = if flexible {
            let (len_plus_one, n) = read_uvarint(body)?;
            (usize::try_from(len_plus_one.checked_sub(1)?).ok()?, n)
        } else {
            (usize::try_from(i16::from_be_bytes([*body.first()?, *body.get(1)?])).ok()?, 2)
        };
        body.get(at..at.checked_add(len)?)
    }

    /// The client id as text, or `""` when absent or not UTF-8.
    pub fn client_id_str(&self) -> &str {
        self.client_id.as_deref().and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
    }

    /// Versions of this api key the codec can decode.
    pub fn known_versions(&self) -> VersionRange {
        codec_versions(self.api_key)
    }

    /// Whether the codec knows this version of this api key.
    pub fn version_is_known(&self) -> bool {
        let v = self.known_versions();
        (v.min..=v.max).contains(&self.api_version)
    }
}

/// The versions of `key` the codec can read both ways: those kafka-protocol decodes and the
/// schema tables walk ([`crate::schema`]). `ApiKey::valid_versions` (kafka-protocol 0.18) names
/// three versions whose request types it cannot decode; those are left out, so the sidecar never
/// lets through a request it cannot read. An empty range (min > max) when nothing is common.
pub fn codec_versions(key: ApiKey) -> VersionRange {
    use kafka_protocol::messages::{InitProducerIdRequest, OffsetCommitRequest, OffsetFetchRequest};
    use kafka_protocol::protocol::Message;
    let valid = key.valid_versions();
    let decodable_max = match key {
        ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS.max,
        ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS.max,
        ApiKey::InitProducerId => InitProducerIdRequest::VERSIONS.max,
        _ => valid.max,
    };
    let mut range = VersionRange { min: valid.min, max: valid.max.min(decodable_max) };
    for spec in [crate::schema::request(key as i16), crate::schema::response(key as i16)] {
        let walked = spec.map_or(crate::schema::Versions::NONE, |s| s.versions);
        range = VersionRange { min: range.min.max(walked.lo), max: range.max.min(walked.hi) };
    }
    range
}

/// The correlation id of a response frame (the first field after the length prefix).
pub fn response_correlation_id(frame: &[u8]) -> Option<i32> {
    let b = frame.get(LENGTH_PREFIX..LENGTH_PREFIX + 4)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Skips a tagged-field section starting at `pos`; returns the offset after it.
/// Whether an ApiVersions response frame says UNSUPPORTED_VERSION (35). Its header is always
/// v0 and its error code comes first, so this needs no decoding; KIP-511 has the broker answer
/// such a request in v0 whatever version was asked.
pub fn api_versions_unsupported(frame: &[u8]) -> bool {
    frame.get(8..10).is_some_and(|b| i16::from_be_bytes([b[0], b[1]]) == 35)
}

pub(crate) fn skip_tagged_fields(b: &[u8], mut pos: usize) -> Option<usize> {
    let (count, n) = read_uvarint(b.get(pos..)?)?;
    pos += n;
    for _ in 0..count {
        let (_tag, n) = read_uvarint(b.get(pos..)?)?;
        pos += n;
        let (size, n) = read_uvarint(b.get(pos..)?)?;
        pos = pos.checked_add(n)?.checked_add(size as usize)?;
        if pos > b.len() {
            return None;
        }
    }
    Some(pos)
}

fn read_uvarint(b: &[u8]) -> Option<(u32, usize)> {
    let mut value = 0u32;
    for (i, byte) in b.iter().take(5).enumerate() {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{MetadataRequest, RequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn request_frame(key: ApiKey, version: i16, client: Option<&str>) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(client.map(|c| StrBytes::from_string(c.to_owned())));
        let mut body = BytesMut::new();
        header.encode(&mut body, key.request_header_version(version)).unwrap();
        MetadataRequest::default().encode(&mut body, version).unwrap();
        crate::frame::with_length_prefix(&body)
    }

    #[test]
    fn reads_the_group_of_group_requests_classic_and_flexible() {
        use kafka_protocol::messages::{HeartbeatRequest, OffsetCommitRequest};
        fn frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
            let header = RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(version)
                .with_client_id(Some(StrBytes::from_static_str("c")));
            let mut buf = BytesMut::new();
            header.encode(&mut buf, key.request_header_version(version)).unwrap();
            body.encode(&mut buf, version).unwrap();
            crate::frame::with_length_prefix(&buf)
        }
        let group = kafka_protocol::messages::GroupId(StrBytes::from_static_str("billing"));
        for version in [0, 3, 4] {
            let f = frame(ApiKey::Heartbeat, version, &HeartbeatRequest::default().with_group_id(group.clone()));
            let peek = RequestHeaderPeek::parse(&f).unwrap();
            assert_eq!(peek.group_id(&f), Some(&b"billing"[..]), "Heartbeat v{version}");
        }
        for version in [2, 8, 9] {
            let f = frame(ApiKey::OffsetCommit, version, &OffsetCommitRequest::default().with_group_id(group.clone()));
            let peek = RequestHeaderPeek::parse(&f).unwrap();
            assert_eq!(peek.group_id(&f), Some(&b"billing"[..]), "OffsetCommit v{version}");
        }
        let metadata = frame(ApiKey::Metadata, 12, &kafka_protocol::messages::MetadataRequest::default());
        assert_eq!(RequestHeaderPeek::parse(&metadata).unwrap().group_id(&metadata), None);
        let cut = frame(ApiKey::Heartbeat, 4, &HeartbeatRequest::default().with_group_id(group)).slice(..20);
        let peek = RequestHeaderPeek::parse(&cut).unwrap();
        assert_eq!(peek.group_id(&cut), None, "a body that stops short is no group");
    }

    #[test]
    fn peeks_flexible_and_classic_headers() {
        for version in [1, 9, 12] {
            let frame = request_frame(ApiKey::Metadata, version, Some("app-1"));
            let peek = RequestHeaderPeek::parse(&frame).unwrap();
            assert_eq!(peek.api_key, ApiKey::Metadata);
            assert_eq!(peek.api_version, version);
            assert_eq!(peek.correlation_id, 42);
            assert_eq!(peek.client_id_str(), "app-1");
            let header_len = if version >= 9 { 4 + 8 + 2 + 5 + 1 } else { 4 + 8 + 2 + 5 };
            assert_eq!(peek.body_offset, header_len);
        }
    }

    #[test]
    fn null_client_id() {
        let frame = request_frame(ApiKey::Metadata, 4, None);
        let peek = RequestHeaderPeek::parse(&frame).unwrap();
        assert_eq!(peek.client_id, None);
        assert_eq!(peek.client_id_str(), "");
    }

    #[test]
    fn rejects_unknown_key_short_frames_and_bad_client_ids() {
        let mut frame = request_frame(ApiKey::Metadata, 4, Some("x")).to_vec();
        frame[4..6].copy_from_slice(&999i16.to_be_bytes());
        assert_eq!(RequestHeaderPeek::parse(&Bytes::from(frame)), Err(HeaderError::UnknownApiKey(999)));
        assert_eq!(RequestHeaderPeek::parse(&Bytes::from_static(&[0, 0, 0, 2, 0, 3])), Err(HeaderError::TooShort(6)));
        let mut frame = request_frame(ApiKey::Metadata, 4, Some("x")).to_vec();
        frame[12..14].copy_from_slice(&500i16.to_be_bytes());
        assert_eq!(RequestHeaderPeek::parse(&Bytes::from(frame)), Err(HeaderError::BadClientId(500)));
    }

    #[test]
    fn newer_version_than_known_still_peeks() {
        let frame = request_frame(ApiKey::ApiVersions, 3, Some("c"));
        let mut raw = frame.to_vec();
        raw[6..8].copy_from_slice(&99i16.to_be_bytes());
        let peek = RequestHeaderPeek::parse(&Bytes::from(raw)).unwrap();
        assert_eq!(peek.api_version, 99);
        assert!(!peek.version_is_known());
    }
}
