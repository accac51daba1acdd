//! Topic names changed in a request or response body of any api: what a topic alias does (a
//! client's `orders` is the cluster's `orders-v2`, and back).
//!
//! The schema walk finds every string field that names a topic ([`Entity::TopicName`]); a
//! body in which none is renamed is left alone (no copy). Otherwise the body is copied with
//! those fields written again, their length prefixes included; everything else keeps its
//! bytes. A topic name inside a tagged field is refused: the tag's declared size would change
//! with it (no Kafka message has one today).

use bytes::{BufMut, BytesMut};

use crate::scan::ScanError;
use crate::schema::{self, Entity, MessageSpec, Visitor};

/// Why a body could not be renamed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenameError {
    #[error(transparent)]
    Malformed(#[from] ScanError),
    #[error("{message} v{version}: a topic name to rename sits in a tagged field")]
    InTaggedField { message: &'static str, version: i16 },
}

/// One field to write again: its place in the body and its new value.
struct Edit {
    start: usize,
    end: usize,
    name: String,
}

struct Renames<'r, F> {
    start: usize,
    rename: &'r F,
    edits: Vec<Edit>,
    tag_depth: u32,
    in_tag: bool,
}

impl<'a, F: Fn(&str) -> Option<String>> Visitor<'a> for Renames<'_, F> {
    fn string_field(&mut self, entity: Entity, value: Option<&'a str>, raw: &'a [u8]) {
        let Some(name) = value.filter(|_| entity == Entity::TopicName).and_then(self.rename) else { return };
        if self.tag_depth > 0 {
            self.in_tag = true;
            return;
        }
        // The field's bytes are a slice of the body: its offset is their distance.
        let start = raw.as_ptr() as usize - self.start;
        self.edits.push(Edit { start, end: start + raw.len(), name });
    }

    fn tagged_field(&mut self, inside: bool) {
        if inside {
            self.tag_depth += 1;
        } else {
            self.tag_depth -= 1;
        }
    }
}

/// The body of a `spec` message at `version` with every topic `rename` gives a new name for
/// renamed; None when it names no such topic (or the specs do not define it).
pub fn rename_topics(
    body: &[u8],
    spec: Option<&'static MessageSpec>,
    version: i16,
    rename: &impl Fn(&str) -> Option<String>,
) -> Result<Option<BytesMut>, RenameError> {
    let Some(spec) = spec else { return Ok(None) };
    let mut found = Renames { start: body.as_ptr() as usize, rename, edits: Vec::new(), tag_depth: 0, in_tag: false };
    schema::walk_body(body, spec, version, &mut found)?;
    if found.in_tag {
        return Err(RenameError::InTaggedField { message: spec.label, version });
    }
    if found.edits.is_empty() {
        return Ok(None);
    }
    let flexible = spec.flexible.contains(version);
    let grown: usize = found.edits.iter().map(|e| e.name.len() + 5).sum();
    let mut out = BytesMut::with_capacity(body.len() + grown);
    let mut at = 0;
    for edit in &found.edits {
        out.put_slice(&body[at..edit.start]);
        put_string(&mut out, &edit.name, flexible);
        at = edit.end;
    }
    out.put_slice(&body[at..]);
    Ok(Some(out))
}

/// A request frame (length prefix and header included) with its body's topics renamed, the
/// header kept; None when it names none to rename.
pub fn rename_request_topics(
    frame: &[u8],
    peek: &crate::RequestHeaderPeek,
    rename: &impl Fn(&str) -> Option<String>,
) -> Result<Option<bytes::Bytes>, RenameError> {
    let body = frame.get(peek.body_offset..).unwrap_or_default();
    let spec = schema::request(peek.api_key as i16);
    let Some(body) = rename_topics(body, spec, peek.api_version, rename)? else { return Ok(None) };
    Ok(Some(with_header(&frame[..peek.body_offset], &body)))
}

/// A frame of `head` (length prefix and header, the prefix rewritten) and `body`.
pub(crate) fn with_header(head: &[u8], body: &[u8]) -> bytes::Bytes {
    let mut out = BytesMut::with_capacity(head.len() + body.len());
    out.put_i32((head.len() - 4 + body.len()) as i32);
    out.put_slice(&head[4..]);
    out.put_slice(body);
    out.freeze()
}

/// A (non-null) string as Kafka encodes it: a compact length (unsigned varint of length + 1)
/// in flexible versions, an i16 length before.
fn put_string(out: &mut BytesMut, s: &str, flexible: bool) {
    if flexible {
        let mut n = s.len() as u64 + 1;
        while n >= 0x80 {
            out.put_u8((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.put_u8(n as u8);
    } else {
        out.put_i16(s.len() as i16);
    }
    out.put_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::{ApiKey, FetchRequest, GroupId, MetadataRequest, OffsetCommitRequest, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

    use super::*;

    fn to_v2(name: &str) -> Option<String> {
        (name == "orders").then(|| "orders-v2".to_owned())
    }

    fn encoded<T: Encodable>(message: &T, version: i16) -> BytesMut {
        let mut out = BytesMut::new();
        message.encode(&mut out, version).unwrap();
        out
    }

    fn topic(name: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(name))
    }

    /// Renamed by the walk, the body decodes as the same message renamed by hand.
    fn same_as_by_hand<T: Encodable + Decodable + Message + PartialEq + std::fmt::Debug>(
        key: ApiKey,
        message: &T,
        by_hand: &T,
    ) {
        for version in T::VERSIONS.min..=T::VERSIONS.max {
            let body = encoded(message, version);
            let renamed = rename_topics(&body, schema::request(key as i16), version, &to_v2).unwrap();
            let renamed = renamed.unwrap_or_else(|| panic!("{key:?} v{version}: nothing renamed"));
            let decoded = T::decode(&mut Bytes::from(renamed.to_vec()), version).unwrap();
            assert_eq!(&decoded, by_hand, "{key:?} v{version}");
            let back = rename_topics(&renamed, schema::request(key as i16), version, &|n: &str| {
                (n == "orders-v2").then(|| "orders".to_owned())
            });
            assert_eq!(back.unwrap().unwrap(), body, "{key:?} v{version}: renamed back, the very bytes");
        }
    }

    #[test]
    fn metadata_offset_commit_and_fetch_by_name_are_renamed_at_every_version() {
        let metadata = |name| {
            MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic(name))),
                MetadataRequestTopic::default().with_name(Some(topic("other"))),
            ]))
        };
        same_as_by_hand(ApiKey::Metadata, &metadata("orders"), &metadata("orders-v2"));

        let commit = |name| {
            OffsetCommitRequest::default().with_group_id(GroupId(StrBytes::from_static_str("orders"))).with_topics(
                vec![OffsetCommitRequestTopic::default()
                    .with_name(topic(name))
                    .with_partitions(vec![OffsetCommitRequestPartition::default().with_committed_offset(7)])],
            )
        };
        // The group is named `orders` too: only the topic is renamed.
        same_as_by_hand(ApiKey::OffsetCommit, &commit("orders"), &commit("orders-v2"));

        let fetch = |name| {
            FetchRequest::default().with_topics(vec![FetchTopic::default()
                .with_topic(topic(name))
                .with_partitions(vec![FetchPartition::default().with_partition(2).with_fetch_offset(40)])])
        };
        for version in 4..=12 {
            let body = encoded(&fetch("orders"), version);
            let renamed =
                rename_topics(&body, schema::request(ApiKey::Fetch as i16), version, &to_v2).unwrap().unwrap();
            let decoded = FetchRequest::decode(&mut Bytes::from(renamed.to_vec()), version).unwrap();
            assert_eq!(decoded, fetch("orders-v2"), "v{version}");
        }
    }

    #[test]
    fn a_body_naming_no_renamed_topic_is_left_alone() {
        let other = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic("payments")))]));
        for version in [1, 9, 12] {
            let body = encoded(&other, version);
            assert_eq!(rename_topics(&body, schema::request(ApiKey::Metadata as i16), version, &to_v2), Ok(None));
        }
        assert_eq!(rename_topics(b"", None, 0, &to_v2), Ok(None));
    }

    #[test]
    fn a_long_name_takes_a_longer_compact_length() {
        let long = "x".repeat(200);
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic("orders")))]));
        let body = encoded(&request, 12);
        let renamed = rename_topics(&body, schema::request(ApiKey::Metadata as i16), 12, &|n: &str| {
            (n == "orders").then(|| long.clone())
        })
        .unwrap()
        .unwrap();
        let decoded = MetadataRequest::decode(&mut Bytes::from(renamed.to_vec()), 12).unwrap();
        let names: Vec<String> = decoded.topics.unwrap().iter().map(|t| t.name.as_ref().unwrap().to_string()).collect();
        assert_eq!(names, vec![long]);
    }

    /// What the module doc claims: were a topic name ever in a tagged field, renaming it
    /// would be refused, and this test says where.
    #[test]
    fn no_message_names_a_topic_in_a_tagged_field() {
        use crate::schema::{Op, Program};
        fn names_topic(op: &Op) -> bool {
            match op {
                Op::String { entity, .. } => *entity == Entity::TopicName,
                Op::Struct { program, .. } => in_program(program),
                Op::Array { element, .. } => names_topic(element),
                _ => false,
            }
        }
        fn in_program(program: &Program) -> bool {
            program.ops.iter().any(names_topic) || program.tags.iter().any(|t| t.op.as_ref().is_some_and(names_topic))
        }
        fn in_tags(program: &Program) -> bool {
            let nested = |op: &Op| match op {
                Op::Struct { program, .. } | Op::Array { element: Op::Struct { program, .. }, .. } => in_tags(program),
                _ => false,
            };
            program.tags.iter().any(|t| t.op.as_ref().is_some_and(names_topic)) || program.ops.iter().any(nested)
        }
        for spec in schema::all() {
            for (i, program) in spec.programs.iter().enumerate() {
                assert!(!in_tags(program), "{} v{}", spec.name, spec.versions.lo + i as i16);
            }
        }
    }

    #[test]
    fn a_truncated_body_is_an_error() {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic("orders")))]));
        let body = encoded(&request, 9);
        let spec = schema::request(ApiKey::Metadata as i16);
        assert!(matches!(rename_topics(&body[..body.len() - 3], spec, 9, &to_v2), Err(RenameError::Malformed(_))));
    }
}
