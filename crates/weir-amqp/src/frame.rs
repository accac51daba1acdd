//! AMQP's framing: after an eight-byte protocol header from the client, frames of
//! `type (1) channel (2) size (4) payload (size) 0xCE`, all numbers big-endian.

use crate::AmqpError;

/// What an AMQP 0.9.1 client sends first, and what a server answers to any other header
/// before it closes.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Bytes before a frame's payload.
pub const FRAME_HEADER_LEN: usize = 7;
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;

/// The smallest frame-max a peer may set (AMQP 0.9.1, 4.2.3).
pub const MIN_FRAME_MAX: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Method = 1,
    /// A content header: the properties and body size of the message a method carries.
    Header = 2,
    Body = 3,
    Heartbeat = 8,
}

impl FrameType {
    fn of(octet: u8) -> Result<Self, AmqpError> {
        Ok(match octet {
            1 => FrameType::Method,
            2 => FrameType::Header,
            3 => FrameType::Body,
            8 => FrameType::Heartbeat,
            other => return Err(AmqpError::FrameType(other)),
        })
    }
}

/// A frame's header, read from the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameType,
    pub channel: u16,
    /// The payload's length.
    pub size: usize,
}

impl FrameHeader {
    /// The header at the start of `buf`; None until seven bytes are there. A frame whose
    /// whole length (header, payload and end octet) exceeds `limit` is an error before any
    /// of its payload is read.
    pub fn read(buf: &[u8], limit: usize) -> Result<Option<FrameHeader>, AmqpError> {
        let Some(head) = buf.get(..FRAME_HEADER_LEN) else { return Ok(None) };
        let kind = FrameType::of(head[0])?;
        let channel = u16::from_be_bytes([head[1], head[2]]);
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        let whole = FRAME_HEADER_LEN + size + 1;
        if whole > limit {
            return Err(AmqpError::TooLarge { size: whole, limit });
        }
        Ok(Some(FrameHeader { kind, channel, size }))
    }

    /// The whole frame's length, end octet included.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.size + 1
    }

    /// The payload of this frame, which `frame` holds whole, once its end octet is checked.
    pub fn payload<'a>(&self, frame: &'a [u8]) -> Result<&'a [u8], AmqpError> {
        match frame.get(self.frame_len() - 1) {
            Some(&FRAME_END) => Ok(&frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + self.size]),
            Some(other) => Err(AmqpError::FrameEnd(*other)),
            None => Err(AmqpError::TooLarge { size: self.frame_len(), limit: frame.len() }),
        }
    }
}

/// A frame of `kind` on `channel` around `payload`.
pub fn frame(kind: FrameType, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len() + 1);
    out.push(kind as u8);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(FRAME_END);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_read_back_and_its_end_checked() {
        let bytes = frame(FrameType::Body, 3, b"hello");
        let header = FrameHeader::read(&bytes, 1024).unwrap().unwrap();
        assert_eq!(header, FrameHeader { kind: FrameType::Body, channel: 3, size: 5 });
        assert_eq!(header.frame_len(), bytes.len());
        assert_eq!(header.payload(&bytes).unwrap(), b"hello");
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() = 0;
        assert_eq!(header.payload(&bad), Err(AmqpError::FrameEnd(0)));
        assert_eq!(FrameHeader::read(&bytes[..6], 1024), Ok(None));
    }

    #[test]
    fn hostile_headers_are_refused_before_their_payload() {
        assert_eq!(FrameHeader::read(b"\x04\x00\x00\x00\x00\x00\x00", 64), Err(AmqpError::FrameType(4)));
        // A declared 4 GiB frame is refused on its seven header bytes.
        let huge = b"\x03\x00\x01\xff\xff\xff\xff";
        assert!(matches!(FrameHeader::read(huge, 1 << 20), Err(AmqpError::TooLarge { .. })));
        assert!(matches!(FrameHeader::read(b"AMQP\x00\x00\x09", 64), Err(AmqpError::FrameType(b'A'))));
    }
}
