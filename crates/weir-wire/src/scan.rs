//! In-place reading of the few messages the proxy reads on every request (Produce requests,
//! Fetch responses): no allocation, and no trust in declared lengths. A general decoder that
//! pre-allocates `Vec::with_capacity(declared_len)` lets one hostile frame request gigabytes;
//! here an array may never declare more elements than there are bytes left.

/// How a data-path message names a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRef<'a> {
    Name(&'a str),
    Id([u8; 16]),
}

/// A message that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed {message} v{version} at byte {offset} of the body: {what}")]
pub struct ScanError {
    pub message: &'static str,
    pub version: i16,
    pub offset: usize,
    pub what: &'static str,
}

/// Reads Kafka primitive types from a message body, every length checked against the bytes
/// left.
/// A tagged field's position in a message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedFieldAt {
    /// Offset of the (one-byte) tag number.
    pub tag_offset: usize,
    /// The field's value bytes.
    pub value: std::ops::Range<usize>,
}

/// The top-level tagged field of Produce (v10+) and Fetch (v16+) responses that holds
/// `NodeEndpoints` (KIP-951 leader hints: broker addresses).
const NODE_ENDPOINTS_TAG: u32 = 0;

/// Reads a response's top-level tagged fields (the end of a flexible body); where its
/// `NodeEndpoints` sits, when the version has one (`has_hints`) and it is not empty.
pub(crate) fn node_endpoints(c: &mut Cursor<'_>, has_hints: bool) -> Result<Option<TaggedFieldAt>, ScanError> {
    let mut found = None;
    let count = c.uvarint()?;
    for _ in 0..count {
        let tag_offset = c.pos();
        let tag = c.uvarint()?;
        let size = c.uvarint()? as usize;
        let start = c.pos();
        let value = c.take(size)?;
        // An empty NodeEndpoints array is one byte (compact length 1 = zero entries).
        if has_hints && tag == NODE_ENDPOINTS_TAG && value != [1] {
            found = Some(TaggedFieldAt { tag_offset, value: start..start + size });
        }
    }
    Ok(found)
}

/// What a [`ScanError`] says when the bytes ran out.
pub(crate) const TRUNCATED: &str = "truncated";

pub(crate) struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    message: &'static str,
    version: i16,
    /// Bytes of the message beyond `b` (still to arrive, when it streams).
    more: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(b: &'a [u8], message: &'static str, version: i16) -> Self {
        Self { b, pos: 0, message, version, more: 0 }
    }

    /// A cursor over the part of a message that has arrived, `more` bytes of it still to come:
    /// array lengths are checked against the whole message.
    pub(crate) fn streaming(b: &'a [u8], message: &'static str, version: i16, more: usize) -> Self {
        Self { more, ..Self::new(b, message, version) }
    }

    /// The bytes read since position `start`.
    pub(crate) fn since(&self, start: usize) -> &'a [u8] {
        self.b.get(start..self.pos).unwrap_or_default()
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes of the message after the cursor, arrived or not.
    pub(crate) fn remaining(&self) -> usize {
        self.b.len() - self.pos + self.more
    }

    pub(crate) fn err(&self, what: &'static str) -> ScanError {
        ScanError { message: self.message, version: self.version, offset: self.pos, what }
    }

    pub(crate) fn i64(&mut self) -> Result<i64, ScanError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().map_err(|_| self.err("i64"))?))
    }

    /// A topic as data-path messages name it: by id from the version that introduced topic
    /// ids, by name before.
    pub(crate) fn topic_ref(&mut self, flexible: bool, by_id: bool) -> Result<TopicRef<'a>, ScanError> {
        if by_id {
            Ok(TopicRef::Id(self.uuid()?))
        } else {
            Ok(TopicRef::Name(self.string(flexible)?))
        }
    }

    pub(crate) fn uuid(&mut self) -> Result<[u8; 16], ScanError> {
        self.take(16)?.try_into().map_err(|_| self.err("uuid"))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ScanError> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.b.len()).ok_or_else(|| self.err(TRUNCATED))?;
        let out = &self.b[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, ScanError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().map_err(|_| self.err("i16"))?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, ScanError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().map_err(|_| self.err("i32"))?))
    }

    pub(crate) fn uvarint(&mut self) -> Result<u32, ScanError> {
        let mut value = 0u32;
        for i in 0..5 {
            let byte = self.take(1)?[0];
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.err("varint longer than 5 bytes"))
    }

    /// A length that may be null: classic i32/i16 with -1, or compact unsigned varint + 1.
    pub(crate) fn length(&mut self, flexible: bool, classic_i16: bool) -> Result<Option<usize>, ScanError> {
        if flexible {
            let n = self.uvarint()?;
            return Ok(n.checked_sub(1).map(|n| n as usize));
        }
        let n = if classic_i16 { i32::from(self.i16()?) } else { self.i32()? };
        match n {
            -1 => Ok(None),
            n if n >= 0 => Ok(Some(n as usize)),
            _ => Err(self.err("negative length")),
        }
    }

    pub(crate) fn nullable_string(&mut self, flexible: bool) -> Result<Option<&'a str>, ScanError> {
        match self.length(flexible, true)? {
            None => Ok(None),
            Some(n) => std::str::from_utf8(self.take(n)?).map(Some).map_err(|_| self.err("string is not UTF-8")),
        }
    }

    pub(crate) fn string(&mut self, flexible: bool) -> Result<&'a str, ScanError> {
        self.nullable_string(flexible)?.ok_or_else(|| self.err("null topic name"))
    }

    pub(crate) fn nullable_bytes(&mut self, flexible: bool) -> Result<Option<&'a [u8]>, ScanError> {
        match self.length(flexible, false)? {
            None => Ok(None),
            Some(n) => self.take(n).map(Some),
        }
    }

    /// An array's element count, checked against the bytes left (every element takes at
    /// least one byte), so a declared length can never outrun the frame.
    pub(crate) fn array_len(&mut self, flexible: bool) -> Result<usize, ScanError> {
        let n = self.length(flexible, false)?.unwrap_or(0);
        if n > self.remaining() {
            return Err(self.err("array longer than the message"));
        }
        Ok(n)
    }

    pub(crate) fn skip_tagged_fields(&mut self) -> Result<(), ScanError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?; // tag
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}
