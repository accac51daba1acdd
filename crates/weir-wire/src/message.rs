//! Decoding and encoding whole messages, for the few frames the proxy must understand.
//!
//! Bodies are decoded from a `Bytes` slice of the frame, so record batches inside them stay
//! references into the frame that was read; nothing here ever parses a record batch.

use std::any::Any;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::fetch::{count_fetch_response, response_session, FetchDigest, FetchSummary, PartitionCount};
use crate::frame::LENGTH_PREFIX;
use crate::header::RequestHeaderPeek;

/// A message that could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {api_key:?} v{version}: {reason}")]
pub struct MessageError {
    pub action: &'static str,
    pub api_key: ApiKey,
    pub version: i16,
    pub reason: String,
}

impl MessageError {
    fn new(action: &'static str, api_key: ApiKey, version: i16, reason: impl ToString) -> Self {
        Self { action, api_key, version, reason: reason.to_string() }
    }
}

/// Decodes the body of a request frame whose header was peeked.
pub fn decode_request<T: Decodable>(frame: &Bytes, peek: &RequestHeaderPeek) -> Result<T, MessageError> {
    let mut body = frame.slice(peek.body_offset..);
    T::decode(&mut body, peek.api_version)
        .map_err(|e| MessageError::new("decode request", peek.api_key, peek.api_version, e))
}

/// Re-encodes a request with a changed body, keeping the client's header bytes as they were.
pub fn encode_request_keeping_header<T: Encodable>(
    frame: &Bytes,
    peek: &RequestHeaderPeek,
    body: &T,
) -> Result<Bytes, MessageError> {
    let err = |e| MessageError::new("encode request", peek.api_key, peek.api_version, e);
    let header = frame.get(LENGTH_PREFIX..peek.body_offset).unwrap_or_default();
    let size = header.len() + body.compute_size(peek.api_version).map_err(err)?;
    let mut out = BytesMut::with_capacity(LENGTH_PREFIX + size);
    out.extend_from_slice(&(size as i32).to_be_bytes());
    out.extend_from_slice(header);
    body.encode(&mut out, peek.api_version).map_err(err)?;
    Ok(out.freeze())
}

/// A response frame, with where its body starts.
pub struct ResponseFrame {
    pub header: ResponseHeader,
    body: Bytes,
}

impl ResponseFrame {
    /// Splits a response frame (length prefix included) into header and body.
    pub fn parse(frame: &Bytes, api_key: ApiKey, version: i16) -> Result<Self, MessageError> {
        let mut rest = frame.slice(LENGTH_PREFIX.min(frame.len())..);
        let header = ResponseHeader::decode(&mut rest, api_key.response_header_version(version))
            .map_err(|e| MessageError::new("decode response header of", api_key, version, e))?;
        Ok(Self { header, body: rest })
    }

    /// The body bytes (a cheap clone of a slice of the frame).
    pub fn body(&self) -> Bytes {
        self.body.clone()
    }

    /// Decodes the body as `T`, after walking it with every declared length checked (the
    /// decoder would pre-allocate whatever a broker declares; see [`crate::response_bounds`]).
    /// The few responses the walker does not know (SASL exchanges) are decoded directly.
    pub fn decode<T: Decodable>(&self, api_key: ApiKey, version: i16) -> Result<T, MessageError> {
        crate::response_bounds::check_response_body(&self.body, api_key, version)
            .map_err(|e| MessageError::new("check response", api_key, version, e))?;
        T::decode(&mut self.body.clone(), version)
            .map_err(|e| MessageError::new("decode response", api_key, version, e))
    }
}

/// Decodes a response frame's body in one step.
pub fn decode_response<T: Decodable>(
    frame: &Bytes,
    api_key: ApiKey,
    version: i16,
) -> Result<(ResponseHeader, T), MessageError> {
    let parsed = ResponseFrame::parse(frame, api_key, version)?;
    let body = parsed.decode(api_key, version)?;
    Ok((parsed.header, body))
}

/// Encodes a response (header and body) into a frame with its length prefix.
pub fn encode_response<T: Encodable>(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &T,
) -> Result<Bytes, MessageError> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    encode_response_with_header(&header, api_key, version, body)
}

/// Encodes a response keeping the given header (its tagged fields included).
pub fn encode_response_with_header<T: Encodable>(
    header: &ResponseHeader,
    api_key: ApiKey,
    version: i16,
    body: &T,
) -> Result<Bytes, MessageError> {
    let header_version = api_key.response_header_version(version);
    let err = |e| MessageError::new("encode response", api_key, version, e);
    let size = header.compute_size(header_version).map_err(err)? + body.compute_size(version).map_err(err)?;
    let mut out = BytesMut::with_capacity(LENGTH_PREFIX + size);
    out.extend_from_slice(&(size as i32).to_be_bytes());
    header.encode(&mut out, header_version).map_err(err)?;
    body.encode(&mut out, version).map_err(err)?;
    Ok(out.freeze())
}

/// A broker's response on its way back through the filters: the broker's bytes until a
/// filter asks for the decoded message, decoded at most once however many filters ask, and
/// encoded again only if one of them changed it.
pub struct ResponseMessage {
    api_key: ApiKey,
    version: i16,
    /// The broker's frame, or the last encoding of the changed message.
    frame: Bytes,
    /// Its header and body, once split.
    parsed: Option<ResponseFrame>,
    /// The decoded body, once a filter asked for it.
    decoded: Option<Box<dyn DecodedBody>>,
    /// The decoded body was handed out for change: `frame` is stale until re-encoded.
    changed: bool,
    /// A Fetch response that went to the client as it arrived: only what its scan kept is
    /// left, read-only.
    streamed: Option<Box<FetchDigest>>,
}

/// A decoded body of any response type, able to encode itself again.
trait DecodedBody: Any + Send + Sync {
    fn encode_with(&self, header: &ResponseHeader, api_key: ApiKey, version: i16) -> Result<Bytes, MessageError>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Encodable + Any + Send + Sync> DecodedBody for T {
    fn encode_with(&self, header: &ResponseHeader, api_key: ApiKey, version: i16) -> Result<Bytes, MessageError> {
        encode_response_with_header(header, api_key, version, self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// What every response body type a filter may ask for is.
pub trait ResponseBody: Decodable + Encodable + Any + Send + Sync {}
impl<T: Decodable + Encodable + Any + Send + Sync> ResponseBody for T {}

impl ResponseMessage {
    /// A response to a request of `api_key` at `version`. KIP-511: a broker that does not
    /// know the requested ApiVersions version answers in v0, so such an answer is read as v0.
    pub fn new(frame: Bytes, api_key: ApiKey, version: i16) -> Self {
        let version = match api_key {
            ApiKey::ApiVersions if crate::header::api_versions_unsupported(&frame) => 0,
            _ => version,
        };
        Self { api_key, version, frame, parsed: None, decoded: None, changed: false, streamed: None }
    }

    /// A Fetch response already forwarded to the client as it arrived, of which only its
    /// digest was kept: filters read it through [`ResponseMessage::fetch_counts`] and
    /// [`ResponseMessage::fetch_session`], and can neither see its bytes nor change it.
    pub fn streamed_fetch(digest: FetchDigest, version: i16) -> Self {
        Self { streamed: Some(Box::new(digest)), ..Self::new(Bytes::new(), ApiKey::Fetch, version) }
    }

    pub fn api_key(&self) -> ApiKey {
        self.api_key
    }

    pub fn version(&self) -> i16 {
        self.version
    }

    /// Whether the bytes already went to the client.
    pub fn is_sent(&self) -> bool {
        self.streamed.is_some()
    }

    fn parsed(&mut self) -> Result<&ResponseFrame, MessageError> {
        if self.streamed.is_some() {
            return Err(self.error("read", "it was streamed to the client; only its digest was kept"));
        }
        if self.parsed.is_none() {
            self.parsed = Some(ResponseFrame::parse(&self.frame, self.api_key, self.version)?);
        }
        Ok(self.parsed.as_ref().expect("set above"))
    }

    /// The body as it stands (re-encoded first if a filter changed it), for walks in place.
    pub fn body(&mut self) -> Result<Bytes, MessageError> {
        self.encode_if_changed()?;
        Ok(self.parsed()?.body())
    }

    /// The decoded body, to read.
    pub fn decoded<T: ResponseBody>(&mut self) -> Result<&T, MessageError> {
        self.decode::<T>()?;
        let decoded = self.decoded.as_deref().expect("decoded above");
        decoded.as_any().downcast_ref::<T>().ok_or_else(|| self.wrong_type::<T>())
    }

    /// The decoded body, to change: it is encoded again before it leaves.
    pub fn decoded_mut<T: ResponseBody>(&mut self) -> Result<&mut T, MessageError> {
        if self.is_sent() {
            return Err(self.error("change", "it was already sent to the client"));
        }
        self.decode::<T>()?;
        let error = self.wrong_type::<T>();
        self.changed = true;
        let decoded = self.decoded.as_deref_mut().expect("decoded above");
        decoded.as_any_mut().downcast_mut::<T>().ok_or(error)
    }

    fn decode<T: ResponseBody>(&mut self) -> Result<(), MessageError> {
        if self.decoded.is_none() {
            let (api_key, version) = (self.api_key, self.version);
            let body: T = self.parsed()?.decode(api_key, version)?;
            self.decoded = Some(Box::new(body));
        }
        Ok(())
    }

    fn wrong_type<T>(&self) -> MessageError {
        self.error("decode", format!("not as {}", std::any::type_name::<T>()))
    }

    fn error(&self, action: &'static str, reason: impl ToString) -> MessageError {
        MessageError::new(action, self.api_key, self.version, reason)
    }

    fn encode_if_changed(&mut self) -> Result<(), MessageError> {
        if !std::mem::take(&mut self.changed) {
            return Ok(());
        }
        let (api_key, version) = (self.api_key, self.version);
        let header = &self.parsed()?.header.clone();
        let decoded = self.decoded.as_deref().expect("changed implies decoded");
        self.frame = decoded.encode_with(header, api_key, version)?;
        self.parsed = None;
        Ok(())
    }

    /// Each partition of a Fetch response with its records counted, whether the response is
    /// whole or was streamed; returns what it says as a whole.
    pub fn fetch_counts(&mut self, mut visit: impl FnMut(PartitionCount<'_>)) -> Result<FetchSummary, MessageError> {
        if let Some(digest) = &self.streamed {
            digest.partitions().for_each(visit);
            return Ok(digest.summary.clone());
        }
        let body = self.body()?;
        count_fetch_response(&body, self.version, &mut visit).map_err(|e| self.error("read", e))
    }

    /// The top-level error code and fetch session id of a Fetch response (v7+), whole or
    /// streamed.
    pub fn fetch_session(&mut self) -> Result<Option<(i16, i32)>, MessageError> {
        if let Some(digest) = &self.streamed {
            return Ok((self.version >= 7).then_some((digest.summary.error_code, digest.summary.session_id)));
        }
        Ok(response_session(&self.body()?, self.version))
    }

    /// Raises the response's `throttle_time_ms` to at least `ms` (a quota at the sidecar), in
    /// place (see [`crate::throttle`]). Returns whether the response could say it (v0 of most
    /// apis has no such field); the frame is copied only when the value rises.
    pub fn raise_throttle_time_ms(&mut self, ms: i32) -> Result<bool, MessageError> {
        if self.is_sent() {
            return Err(self.error("change", "it was already sent to the client"));
        }
        let body = self.body()?;
        let at = crate::throttle::throttle_time_at(&body, self.api_key, self.version);
        let Some(at) = at.map_err(|e| self.error("read", e))? else { return Ok(false) };
        let current = i32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        if current >= ms {
            return Ok(true);
        }
        let at = self.frame.len() - body.len() + at;
        let mut frame = BytesMut::from(&self.frame[..]);
        crate::throttle::raise_at(&mut frame[at..at + 4], ms);
        self.frame = frame.freeze();
        self.parsed = None;
        self.decoded = None;
        Ok(true)
    }

    /// Sets the response's error codes to `code`, in place (see [`crate::errors`]). Returns
    /// how many it set; zero when the response has no error code.
    pub fn set_error_codes(&mut self, code: i16) -> Result<usize, MessageError> {
        if self.is_sent() {
            return Err(self.error("change", "it was already sent to the client"));
        }
        let body_len = self.body()?.len();
        let start = self.frame.len() - body_len;
        let mut frame = bytes::BytesMut::from(&self.frame[..]);
        let set = crate::errors::set_error_codes(&mut frame[start..], self.api_key, self.version, code)
            .map_err(|e| self.error("change", e))?;
        self.frame = frame.freeze();
        self.parsed = None;
        self.decoded = None;
        Ok(set)
    }

    /// Renames the topics the body names (see [`crate::rename`]); returns whether it named
    /// any to rename. The body is copied only then.
    pub fn rename_topics(&mut self, rename: &impl Fn(&str) -> Option<String>) -> Result<bool, MessageError> {
        if self.is_sent() {
            return Err(self.error("change", "it was already sent to the client"));
        }
        let body = self.body()?;
        let spec = crate::schema::response(self.api_key as i16);
        let renamed = crate::rename::rename_topics(&body, spec, self.version, rename);
        let Some(renamed) = renamed.map_err(|e| self.error("rename", e))? else { return Ok(false) };
        self.frame = crate::rename::with_header(&self.frame[..self.frame.len() - body.len()], &renamed);
        self.parsed = None;
        self.decoded = None;
        Ok(true)
    }

    /// The frame to send: the broker's very bytes unless a filter changed the message.
    pub fn into_frame(mut self) -> Result<Bytes, MessageError> {
        self.encode_if_changed()?;
        Ok(self.frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::MetadataResponse;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn a_renamed_response_keeps_its_header_and_the_rest_of_its_body() {
        use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
        use kafka_protocol::messages::{ProduceResponse, TopicName};
        let produce = |name: &'static str| {
            ProduceResponse::default().with_throttle_time_ms(3).with_responses(vec![TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_static_str(name)))
                .with_partition_responses(vec![PartitionProduceResponse::default().with_base_offset(41)])])
        };
        let back = |n: &str| (n == "orders-v2").then(|| "orders".to_owned());
        for version in [3, 9, 11] {
            let frame = encode_response(9, ApiKey::Produce, version, &produce("orders-v2")).unwrap();
            let mut message = ResponseMessage::new(frame.clone(), ApiKey::Produce, version);
            assert!(message.rename_topics(&back).unwrap(), "v{version}");
            let (header, decoded): (_, ProduceResponse) =
                decode_response(&message.into_frame().unwrap(), ApiKey::Produce, version).unwrap();
            assert_eq!((header.correlation_id, decoded), (9, produce("orders")), "v{version}");
            let mut untouched = ResponseMessage::new(frame.clone(), ApiKey::Produce, version);
            assert!(!untouched.rename_topics(&|_: &str| None).unwrap());
            assert_eq!(untouched.into_frame().unwrap(), frame, "the broker's very bytes");
        }
    }

    #[test]
    fn response_round_trip_keeps_correlation_and_body() {
        for version in [1, 9, 12] {
            let body = MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(3.into())
                .with_host(StrBytes::from_static_str("broker-3"))
                .with_port(9092)]);
            let frame = encode_response(7, ApiKey::Metadata, version, &body).unwrap();
            assert_eq!(i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize, frame.len() - 4);
            assert_eq!(crate::header::response_correlation_id(&frame), Some(7));
            let (header, decoded): (_, MetadataResponse) = decode_response(&frame, ApiKey::Metadata, version).unwrap();
            assert_eq!(header.correlation_id, 7);
            assert_eq!(decoded, body);
        }
    }

    #[test]
    fn a_throttle_is_raised_never_lowered_and_v0_cannot_say_it() {
        use kafka_protocol::messages::{FetchResponse, ProduceResponse};
        for (version, api) in [(3, ApiKey::Produce), (11, ApiKey::Produce), (4, ApiKey::Fetch), (17, ApiKey::Fetch)] {
            let frame = match api {
                ApiKey::Produce => {
                    encode_response(5, api, version, &ProduceResponse::default().with_throttle_time_ms(20))
                }
                _ => encode_response(5, api, version, &FetchResponse::default().with_throttle_time_ms(20)),
            }
            .unwrap();
            let mut message = ResponseMessage::new(frame.clone(), api, version);
            assert!(message.raise_throttle_time_ms(10).unwrap());
            assert_eq!(message.into_frame().unwrap(), frame, "a lower throttle leaves the broker's bytes");
            let mut message = ResponseMessage::new(frame, api, version);
            assert!(message.raise_throttle_time_ms(1500).unwrap());
            let out = message.into_frame().unwrap();
            let said = match api {
                ApiKey::Produce => decode_response::<ProduceResponse>(&out, api, version).unwrap().1.throttle_time_ms,
                _ => decode_response::<FetchResponse>(&out, api, version).unwrap().1.throttle_time_ms,
            };
            assert_eq!((said, crate::header::response_correlation_id(&out)), (1500, Some(5)), "{api:?} v{version}");
        }
        let (_, mut metadata) = metadata_message();
        assert!(metadata.raise_throttle_time_ms(100).unwrap(), "request quotas throttle any api");
        let out = metadata.into_frame().unwrap();
        assert_eq!(decode_response::<MetadataResponse>(&out, ApiKey::Metadata, 12).unwrap().1.throttle_time_ms, 100);
        let v0 = encode_response(7, ApiKey::Metadata, 0, &MetadataResponse::default()).unwrap();
        assert!(!ResponseMessage::new(v0, ApiKey::Metadata, 0).raise_throttle_time_ms(100).unwrap());
    }

    #[test]
    fn truncated_body_is_an_error_not_a_panic() {
        let body = MetadataResponse::default();
        let frame = encode_response(7, ApiKey::Metadata, 12, &body).unwrap();
        let cut = frame.slice(..frame.len() - 2);
        let err = decode_response::<MetadataResponse>(&cut, ApiKey::Metadata, 12).unwrap_err();
        assert!(err.to_string().contains("Metadata v12"), "{err}");
    }

    fn metadata_message() -> (Bytes, ResponseMessage) {
        let body = MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(1.into())
            .with_host(StrBytes::from_static_str("broker-1"))
            .with_port(9092)]);
        let frame = encode_response(7, ApiKey::Metadata, 12, &body).unwrap();
        (frame.clone(), ResponseMessage::new(frame, ApiKey::Metadata, 12))
    }

    #[test]
    fn a_message_only_read_leaves_as_the_same_bytes() {
        let (frame, mut message) = metadata_message();
        assert_eq!(message.decoded::<MetadataResponse>().unwrap().brokers[0].port, 9092);
        let body = message.body().unwrap();
        assert_eq!(&frame[frame.len() - body.len()..], &body[..]);
        let out = message.into_frame().unwrap();
        assert_eq!(out.as_ptr(), frame.as_ptr(), "not a copy: the broker's very bytes");
    }

    #[test]
    fn a_changed_message_is_encoded_again_and_walks_see_the_change() {
        let (frame, mut message) = metadata_message();
        message.decoded_mut::<MetadataResponse>().unwrap().brokers[0].port = 29092;
        let body = message.body().unwrap();
        assert_ne!(&frame[frame.len() - body.len()..], &body[..], "body() re-encodes the change first");
        let out = message.into_frame().unwrap();
        let (header, decoded): (_, MetadataResponse) = decode_response(&out, ApiKey::Metadata, 12).unwrap();
        assert_eq!((header.correlation_id, decoded.brokers[0].port), (7, 29092));
    }

    #[test]
    fn a_streamed_fetch_is_read_from_its_digest_and_cannot_be_changed() {
        use kafka_protocol::messages::FetchResponse;
        let body = FetchResponse::default().with_session_id(44);
        let frame = encode_response(3, ApiKey::Fetch, 12, &body).unwrap();
        let mut scan = crate::fetch::FetchStream::new(12, frame.len());
        assert_eq!(scan.feed(&frame).unwrap(), frame.len());
        let mut sent = ResponseMessage::streamed_fetch(scan.finish().unwrap(), 12);
        assert_eq!(sent.fetch_session().unwrap(), Some((0, 44)));
        assert_eq!(sent.fetch_counts(|_| panic!("no partitions")).unwrap().session_id, 44);
        let err = sent.body().unwrap_err();
        assert!(err.to_string().contains("only its digest"), "{err}");
        let err = sent.decoded_mut::<FetchResponse>().unwrap_err();
        assert!(err.to_string().contains("already sent"), "{err}");
    }

    #[test]
    fn a_wrong_type_is_an_error() {
        let (frame, _) = metadata_message();
        let mut message = ResponseMessage::new(frame, ApiKey::Metadata, 12);
        message.decoded::<MetadataResponse>().unwrap();
        let err = message.decoded::<kafka_protocol::messages::FetchResponse>().map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("FetchResponse"), "{err}");
    }

    #[test]
    fn an_unsupported_version_answer_to_api_versions_is_read_as_v0() {
        use kafka_protocol::messages::ApiVersionsResponse;
        let body = ApiVersionsResponse::default().with_error_code(35);
        let frame = encode_response(3, ApiKey::ApiVersions, 0, &body).unwrap();
        let mut message = ResponseMessage::new(frame, ApiKey::ApiVersions, 4);
        assert_eq!(message.version(), 0);
        assert_eq!(message.decoded::<ApiVersionsResponse>().unwrap().error_code, 35);
    }
}
