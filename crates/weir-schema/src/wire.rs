//! The schema registry wire format, as Confluent's serializers write it (and Apicurio's in
//! Confluent-compatible mode): a magic byte 0, the schema id as a big-endian 32-bit integer,
//! then the payload. A Protobuf payload is preceded by the path of its message type in the
//! schema: a zigzag-varint count, then that many zigzag-varint indexes, a lone 0 meaning the
//! first message, `[0]`.

/// What the wire format's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    pub schema_id: u32,
    /// The bytes after the header (for Protobuf, after the message indexes: see
    /// [`message_indexes`]).
    pub payload: &'a [u8],
}

/// Bytes that are not in the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{0} bytes, fewer than the wire format's 5-byte header (magic byte 0, schema id)")]
    Short(usize),
    #[error("magic byte {0:#04x}, not the wire format's 0")]
    Magic(u8),
    #[error("a schema id of {0}, below 1")]
    BadId(i32),
    #[error("the Protobuf message indexes are malformed: {0}")]
    Indexes(&'static str),
}

/// The header of `bytes`.
pub fn framed(bytes: &[u8]) -> Result<Framed<'_>, WireError> {
    let header = bytes.get(..5).ok_or(WireError::Short(bytes.len()))?;
    if header[0] != 0 {
        return Err(WireError::Magic(header[0]));
    }
    let id = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let schema_id = u32::try_from(id).ok().filter(|id| *id > 0).ok_or(WireError::BadId(id))?;
    Ok(Framed { schema_id, payload: &bytes[5..] })
}

/// The most message indexes a path may hold: a message nested deeper than this is not one a
/// schema defines.
pub const MAX_MESSAGE_DEPTH: usize = 64;

/// The Protobuf message indexes at the start of `payload` (`[0]` for the lone-0 shorthand),
/// and the message bytes after them.
pub fn message_indexes(payload: &[u8]) -> Result<(Vec<usize>, &[u8]), WireError> {
    let mut pos = 0;
    let count = zigzag(payload, &mut pos)?;
    if count == 0 {
        return Ok((vec![0], &payload[pos..]));
    }
    let count = usize::try_from(count).map_err(|_| WireError::Indexes("a negative count"))?;
    if count > MAX_MESSAGE_DEPTH {
        return Err(WireError::Indexes("more indexes than any schema nests messages"));
    }
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        let index = zigzag(payload, &mut pos)?;
        indexes.push(usize::try_from(index).map_err(|_| WireError::Indexes("a negative index"))?);
    }
    Ok((indexes, &payload[pos..]))
}

/// A zigzag varint of at most 32 bits.
fn zigzag(bytes: &[u8], pos: &mut usize) -> Result<i32, WireError> {
    let mut raw = 0u32;
    for i in 0..5 {
        let byte = *bytes.get(*pos).ok_or(WireError::Indexes("a varint runs past the bytes"))?;
        *pos += 1;
        raw |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i32 ^ -((raw & 1) as i32));
        }
    }
    Err(WireError::Indexes("a varint longer than 32 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_read_and_anything_else_named() {
        let bytes = [0, 0, 0, 1, 0x2c, b'{', b'}'];
        assert_eq!(framed(&bytes), Ok(Framed { schema_id: 300, payload: b"{}" }));
        assert_eq!(framed(b"{\"a\":1}"), Err(WireError::Magic(b'{')));
        assert_eq!(framed(&[0, 0, 0]), Err(WireError::Short(3)));
        assert_eq!(framed(&[0, 0xff, 0xff, 0xff, 0xff]), Err(WireError::BadId(-1)));
        assert_eq!(framed(&[0, 0, 0, 0, 0]), Err(WireError::BadId(0)));
        assert_eq!(WireError::Magic(b'{').to_string(), "magic byte 0x7b, not the wire format's 0");
    }

    #[test]
    fn message_indexes_as_confluent_writes_them() {
        assert_eq!(message_indexes(&[0, 8, 1]), Ok((vec![0], &[8u8, 1][..])));
        // [1, 2]: count 2 (zigzag 4), 1 (2), 2 (4).
        assert_eq!(message_indexes(&[4, 2, 4, 8]), Ok((vec![1, 2], &[8u8][..])));
        assert_eq!(message_indexes(&[]), Err(WireError::Indexes("a varint runs past the bytes")));
        assert_eq!(message_indexes(&[1]), Err(WireError::Indexes("a negative count")));
        assert!(message_indexes(&[0xfe, 0x01]).is_err(), "127 indexes claimed in two bytes");
        assert_eq!(message_indexes(&[0xff; 6]), Err(WireError::Indexes("a varint longer than 32 bits")));
    }
}
