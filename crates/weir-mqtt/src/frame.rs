//! The fixed header every MQTT packet starts with: its type and flags in one byte, then the
//! remaining length as a variable byte integer (one to four bytes, seven bits each, least
//! significant first; at most 268,435,455).

use crate::MqttError;

/// The largest remaining length MQTT can express.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// A packet's type (the fixed header's high four bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect = 1,
    Connack = 2,
    Publish = 3,
    Puback = 4,
    Pubrec = 5,
    Pubrel = 6,
    Pubcomp = 7,
    Subscribe = 8,
    Suback = 9,
    Unsubscribe = 10,
    Unsuback = 11,
    Pingreq = 12,
    Pingresp = 13,
    Disconnect = 14,
    /// MQTT 5 only.
    Auth = 15,
}

impl PacketType {
    fn of(nibble: u8) -> Result<Self, MqttError> {
        use PacketType::*;
        Ok(match nibble {
            1 => Connect,
            2 => Connack,
            3 => Publish,
            4 => Puback,
            5 => Pubrec,
            6 => Pubrel,
            7 => Pubcomp,
            8 => Subscribe,
            9 => Suback,
            10 => Unsubscribe,
            11 => Unsuback,
            12 => Pingreq,
            13 => Pingresp,
            14 => Disconnect,
            15 => Auth,
            other => return Err(MqttError::ReservedType(other)),
        })
    }

    pub fn name(self) -> &'static str {
        use PacketType::*;
        match self {
            Connect => "CONNECT",
            Connack => "CONNACK",
            Publish => "PUBLISH",
            Puback => "PUBACK",
            Pubrec => "PUBREC",
            Pubrel => "PUBREL",
            Pubcomp => "PUBCOMP",
            Subscribe => "SUBSCRIBE",
            Suback => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            Unsuback => "UNSUBACK",
            Pingreq => "PINGREQ",
            Pingresp => "PINGRESP",
            Disconnect => "DISCONNECT",
            Auth => "AUTH",
        }
    }
}

/// A packet's fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    pub kind: PacketType,
    /// The low four bits: PUBLISH's DUP, QoS and RETAIN; fixed values for the others.
    pub flags: u8,
    /// The fixed header's own length (2 to 5 bytes).
    pub header_len: usize,
    /// The bytes after it.
    pub remaining: usize,
}

impl FixedHeader {
    /// The whole packet's length.
    pub fn packet_len(&self) -> usize {
        self.header_len + self.remaining
    }

    /// Reads the fixed header at the start of `bytes`: None while more bytes are needed to
    /// know it. A packet longer than `limit` is an error as soon as its length is known, so a
    /// reader never buffers it. Flags MQTT fixes (1 on PUBREL, SUBSCRIBE and UNSUBSCRIBE's
    /// `0010`, 0 elsewhere) are checked; PUBLISH's QoS 3 is refused.
    pub fn read(bytes: &[u8], limit: usize) -> Result<Option<FixedHeader>, MqttError> {
        let Some(&first) = bytes.first() else { return Ok(None) };
        let kind = PacketType::of(first >> 4)?;
        let flags = first & 0x0f;
        let expected = match kind {
            PacketType::Publish => {
                if flags & 0x06 == 0x06 {
                    return Err(MqttError::BadFlags { packet: "PUBLISH", flags });
                }
                None
            }
            PacketType::Pubrel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0x02),
            _ => Some(0),
        };
        if expected.is_some_and(|e| e != flags) {
            return Err(MqttError::BadFlags { packet: kind.name(), flags });
        }
        let Some((remaining, len)) = read_varint(&bytes[1..])? else { return Ok(None) };
        let header = FixedHeader { kind, flags, header_len: 1 + len, remaining };
        if header.packet_len() > limit {
            return Err(MqttError::TooLarge { size: header.packet_len(), limit });
        }
        Ok(Some(header))
    }
}

/// Where the MQTT packet at the start of `buf` ends, once its fixed header is there: how a
/// reader of a stream cuts it into packets (a packet longer than `limit` is an error).
pub fn packet_len(buf: &[u8], limit: usize) -> Result<Option<usize>, MqttError> {
    Ok(FixedHeader::read(buf, limit)?.map(|header| header.packet_len()))
}

/// The fixed header of a whole packet, one [`packet_len`] already cut.
pub fn header_of(packet: &[u8]) -> FixedHeader {
    match FixedHeader::read(packet, usize::MAX) {
        Ok(Some(header)) => header,
        _ => unreachable!("a whole packet has a fixed header"),
    }
}

/// A variable byte integer at the start of `bytes`, and its length: None while incomplete.
pub fn read_varint(bytes: &[u8]) -> Result<Option<(usize, usize)>, MqttError> {
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().enumerate().take(4) {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(MqttError::RemainingLength("not in its shortest form"));
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        return Err(MqttError::RemainingLength("more than four bytes"));
    }
    Ok(None)
}

/// Appends `value` (at most [`MAX_REMAINING_LENGTH`]) as a variable byte integer.
pub fn write_varint(out: &mut Vec<u8>, mut value: usize) {
    debug_assert!(value <= MAX_REMAINING_LENGTH);
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip_at_every_width_and_bad_ones_are_named() {
        for value in [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, MAX_REMAINING_LENGTH] {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            assert_eq!(read_varint(&out).unwrap(), Some((value, out.len())), "{value}");
            assert_eq!(read_varint(&out[..out.len() - 1]).unwrap(), None, "{value}: incomplete");
        }
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(MqttError::RemainingLength("more than four bytes"))
        );
        assert_eq!(read_varint(&[0x80, 0x00]), Err(MqttError::RemainingLength("not in its shortest form")));
    }

    #[test]
    fn fixed_headers_check_type_flags_and_the_limit() {
        let header = FixedHeader::read(&[0x32, 0x80, 0x01], 1 << 20).unwrap().unwrap();
        assert_eq!((header.kind, header.flags, header.header_len, header.remaining), (PacketType::Publish, 2, 3, 128));
        assert_eq!(FixedHeader::read(&[0x10], 100).unwrap(), None);
        assert_eq!(FixedHeader::read(&[0x00, 0x00], 100), Err(MqttError::ReservedType(0)));
        assert_eq!(FixedHeader::read(&[0x80, 0x00], 100), Err(MqttError::BadFlags { packet: "SUBSCRIBE", flags: 0 }));
        assert_eq!(FixedHeader::read(&[0x36, 0x00], 100), Err(MqttError::BadFlags { packet: "PUBLISH", flags: 6 }));
        assert_eq!(FixedHeader::read(&[0xc1, 0x00], 100), Err(MqttError::BadFlags { packet: "PINGREQ", flags: 1 }));
        // Known too large from its header alone: never buffered.
        assert_eq!(
            FixedHeader::read(&[0x30, 0xff, 0x7f], 1000),
            Err(MqttError::TooLarge { size: 16_386, limit: 1000 })
        );
    }
}
