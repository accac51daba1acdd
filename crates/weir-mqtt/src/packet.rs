//! The packets an MQTT policy reads, viewed in place over a packet's bytes (fixed header
//! included), each field checked against the bytes that are there; and the answers a sidecar
//! writes in a broker's stead.

use crate::frame::{write_varint, FixedHeader, PacketType};
use crate::MqttError;

/// Which MQTT a connection speaks, from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// 3.1 (protocol name `MQIsdp`, level 3).
    V31,
    /// 3.1.1 (level 4).
    V311,
    /// 5.0 (level 5).
    V5,
}

/// The MQTT 5 property Topic Alias (a two-byte integer).
const TOPIC_ALIAS: u8 = 0x23;

/// Reads a packet's fields in order, every length checked.
struct Reader<'a> {
    packet: &'static str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn fault(&self, what: &'static str) -> MqttError {
        MqttError::Malformed { packet: self.packet, what, at: self.at }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MqttError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or_else(|| self.fault(what))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, MqttError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, MqttError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn binary(&mut self, what: &'static str) -> Result<&'a [u8], MqttError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// A UTF-8 string as MQTT defines it: well-formed, no U+0000.
    fn string(&mut self, what: &'static str) -> Result<&'a str, MqttError> {
        let start = self.at;
        let bytes = self.binary(what)?;
        let text = std::str::from_utf8(bytes).map_err(|_| MqttError::Malformed {
            packet: self.packet,
            what: "a string that is not UTF-8",
            at: start,
        })?;
        if text.contains('\0') {
            return Err(MqttError::Malformed { packet: self.packet, what: "a string holding U+0000", at: start });
        }
        Ok(text)
    }

    fn varint(&mut self, what: &'static str) -> Result<usize, MqttError> {
        match crate::frame::read_varint(&self.bytes[self.at..]) {
            Ok(Some((value, len))) => {
                self.at += len;
                Ok(value)
            }
            _ => Err(self.fault(what)),
        }
    }

    /// An MQTT 5 property block: its bytes.
    fn properties(&mut self) -> Result<&'a [u8], MqttError> {
        let len = self.varint("a malformed property length")?;
        self.take(len, "properties longer than the packet")
    }

    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }
}

/// One MQTT 5 property's value, by the type the spec gives its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyValue<'a> {
    Byte(u8),
    TwoByte(u16),
    FourByte(u32),
    VarInt(usize),
    /// A UTF-8 string or binary data (not checked for UTF-8 here).
    Bytes(&'a [u8]),
    Pair(&'a [u8], &'a [u8]),
}

/// Calls `each` with every property of an MQTT 5 property block, in order. An unknown id is an
/// error (the spec makes it a malformed packet).
pub fn each_property<'a>(
    block: &'a [u8],
    packet: &'static str,
    mut each: impl FnMut(u8, PropertyValue<'a>),
) -> Result<(), MqttError> {
    let mut r = Reader { packet, bytes: block, at: 0 };
    while !r.rest().is_empty() {
        let property = r.varint("a malformed property id")?;
        let property = u8::try_from(property).map_err(|_| r.fault("an unknown property"))?;
        let value = match property {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2a => PropertyValue::Byte(r.u8("a cut property")?),
            0x13 | 0x21 | 0x22 | 0x23 => PropertyValue::TwoByte(r.u16("a cut property")?),
            0x02 | 0x11 | 0x18 | 0x27 => {
                let b = r.take(4, "a cut property")?;
                PropertyValue::FourByte(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            0x0b => PropertyValue::VarInt(r.varint("a cut property")?),
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1a | 0x1c | 0x1f => {
                PropertyValue::Bytes(r.binary("a cut property")?)
            }
            0x26 => PropertyValue::Pair(r.binary("a cut property")?, r.binary("a cut property")?),
            _ => return Err(r.fault("an unknown property")),
        };
        each(property, value);
    }
    Ok(())
}

/// The value of a two-byte-integer property `id` in an MQTT 5 property block, if there.
fn two_byte_property(block: &[u8], id: u8, packet: &'static str) -> Result<Option<u16>, MqttError> {
    let mut found = None;
    each_property(block, packet, |property, value| {
        if let (true, PropertyValue::TwoByte(value)) = (property == id, value) {
            found = Some(value);
        }
    })?;
    Ok(found)
}

/// MQTT 5 property ids a gateway reads or states.
pub mod property {
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIERS_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2a;
    pub const REASON_STRING: u8 = 0x1f;
}

/// A will message: published by the broker when the client goes without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will<'a> {
    pub topic: &'a str,
    pub qos: u8,
    pub retain: bool,
    pub payload: &'a [u8],
}

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    pub version: Version,
    /// Clean session (3.1.1) or clean start (5).
    pub clean_start: bool,
    pub keep_alive: u16,
    pub client_id: &'a str,
    pub will: Option<Will<'a>>,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// Where in the packet the username (or, without one, the password; or the end) starts:
    /// what a sidecar replacing the credentials keeps before it.
    pub credentials_at: usize,
    /// Where the connect flags byte is.
    pub flags_at: usize,
    /// MQTT 5's Session Expiry Interval in seconds (0: the session ends with the connection;
    /// always 0 before 5, where `clean_start` alone says).
    pub session_expiry: u32,
    /// MQTT 5's Receive Maximum: how many QoS 1 and 2 publishes the client takes unacknowledged
    /// (65,535 when not said).
    pub receive_maximum: u16,
    /// MQTT 5's Maximum Packet Size the client accepts.
    pub maximum_packet_size: Option<u32>,
}

impl<'a> Connect<'a> {
    /// Reads a whole CONNECT packet.
    pub fn read(packet: &'a [u8], header: &FixedHeader) -> Result<Self, MqttError> {
        debug_assert_eq!(header.kind, PacketType::Connect);
        let mut r = Reader { packet: "CONNECT", bytes: &packet[..header.packet_len()], at: header.header_len };
        let name = r.string("a cut protocol name")?;
        let level = r.u8("no protocol level")?;
        let version = match (name, level) {
            ("MQIsdp", 3) => Version::V31,
            ("MQTT", 4) => Version::V311,
            ("MQTT", 5) => Version::V5,
            _ => return Err(MqttError::UnknownProtocol { name: name.to_owned(), level }),
        };
        let flags_at = r.at;
        let flags = r.u8("no connect flags")?;
        let bad_flags = |what| MqttError::Malformed { packet: "CONNECT", what, at: flags_at };
        if flags & 0x01 != 0 {
            return Err(bad_flags("the reserved connect flag is set"));
        }
        let has_will = flags & 0x04 != 0;
        let will_qos = (flags >> 3) & 0x03;
        let will_retain = flags & 0x20 != 0;
        if will_qos == 3 || (!has_will && (will_qos != 0 || will_retain)) {
            return Err(bad_flags("will QoS or retain set wrongly"));
        }
        let (has_password, has_username) = (flags & 0x40 != 0, flags & 0x80 != 0);
        if version < Version::V5 && has_password && !has_username {
            return Err(bad_flags("a password without a username"));
        }
        let keep_alive = r.u16("no keep alive")?;
        let (mut session_expiry, mut receive_maximum, mut maximum_packet_size) = (0, u16::MAX, None);
        if version == Version::V5 {
            let block = r.properties()?;
            each_property(block, "CONNECT", |id, value| match (id, value) {
                (property::SESSION_EXPIRY_INTERVAL, PropertyValue::FourByte(v)) => session_expiry = v,
                (property::RECEIVE_MAXIMUM, PropertyValue::TwoByte(v)) => receive_maximum = v,
                (property::MAXIMUM_PACKET_SIZE, PropertyValue::FourByte(v)) => maximum_packet_size = Some(v),
                _ => {}
            })?;
            if receive_maximum == 0 || maximum_packet_size == Some(0) {
                return Err(r.fault("a receive maximum or maximum packet size of 0"));
            }
        }
        let client_id = r.string("a cut client id")?;
        let will = if has_will {
            if version == Version::V5 {
                r.properties()?;
            }
            let topic = r.string("a cut will topic")?;
            let payload = r.binary("a cut will payload")?;
            Some(Will { topic, qos: will_qos, retain: will_retain, payload })
        } else {
            None
        };
        let credentials_at = r.at;
        let username = has_username.then(|| r.string("a cut username")).transpose()?;
        let password = has_password.then(|| r.binary("a cut password")).transpose()?;
        if !r.rest().is_empty() {
            return Err(r.fault("bytes after the last field"));
        }
        let clean_start = flags & 0x02 != 0;
        Ok(Connect {
            version,
            clean_start,
            keep_alive,
            client_id,
            will,
            username,
            password,
            credentials_at,
            flags_at,
            session_expiry,
            receive_maximum,
            maximum_packet_size,
        })
    }

    /// `packet` (this CONNECT) with the client's credentials replaced by `username` and
    /// `password`: what a sidecar that holds the broker's credentials sends on. Everything
    /// else (version, flags, keep alive, properties, client id, will) is kept.
    pub fn with_credentials(&self, packet: &[u8], header: &FixedHeader, username: &str, password: &[u8]) -> Vec<u8> {
        let mut body = packet[header.header_len..self.credentials_at].to_vec();
        body[self.flags_at - header.header_len] |= 0xc0; // username and password present
        for field in [username.as_bytes(), password] {
            let len = u16::try_from(field.len()).unwrap_or(u16::MAX);
            body.extend_from_slice(&len.to_be_bytes());
            body.extend_from_slice(&field[..usize::from(len)]);
        }
        let mut out = Vec::with_capacity(5 + body.len());
        out.push(packet[0]);
        write_varint(&mut out, body.len());
        out.extend_from_slice(&body);
        out
    }
}

/// A PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish<'a> {
    /// Empty when an MQTT 5 client names the topic by its alias only.
    pub topic: &'a str,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub packet_id: Option<u16>,
    /// MQTT 5's Topic Alias property.
    pub topic_alias: Option<u16>,
    pub payload: &'a [u8],
}

impl<'a> Publish<'a> {
    pub fn read(packet: &'a [u8], header: &FixedHeader, version: Version) -> Result<Self, MqttError> {
        debug_assert_eq!(header.kind, PacketType::Publish);
        let mut r = Reader { packet: "PUBLISH", bytes: &packet[..header.packet_len()], at: header.header_len };
        let (qos, retain, dup) = ((header.flags >> 1) & 0x03, header.flags & 0x01 != 0, header.flags & 0x08 != 0);
        if qos == 0 && dup {
            return Err(MqttError::BadFlags { packet: "PUBLISH", flags: header.flags });
        }
        let topic_at = r.at;
        let topic = r.string("a cut topic name")?;
        if topic.contains(['+', '#']) {
            return Err(MqttError::Malformed { packet: "PUBLISH", what: "a wildcard in a topic name", at: topic_at });
        }
        let packet_id = if qos > 0 {
            let id = r.u16("no packet identifier")?;
            if id == 0 {
                return Err(r.fault("packet identifier 0"));
            }
            Some(id)
        } else {
            None
        };
        let topic_alias =
            if version == Version::V5 { two_byte_property(r.properties()?, TOPIC_ALIAS, "PUBLISH")? } else { None };
        if topic.is_empty() && topic_alias.is_none() {
            return Err(MqttError::Malformed {
                packet: "PUBLISH",
                what: "no topic name and no topic alias",
                at: topic_at,
            });
        }
        Ok(Publish { topic, qos, retain, dup, packet_id, topic_alias, payload: r.rest() })
    }
}

/// One topic filter of a SUBSCRIBE, and its options byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription<'a> {
    pub filter: &'a str,
    /// The maximum QoS asked for.
    pub qos: u8,
    pub options: u8,
    /// The filter and its options as they are in the packet (what a SUBSCRIBE cut to some of
    /// its filters keeps of each).
    pub bytes: &'a [u8],
}

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe<'a> {
    pub packet_id: u16,
    pub subscriptions: Vec<Subscription<'a>>,
    /// The packet identifier and (MQTT 5) properties, as they are in the packet.
    pub head: &'a [u8],
}

/// The most filters one SUBSCRIBE may carry here (each is 3 bytes at least, so a packet of
/// the default 1 MiB limit could carry ~350,000): beyond, it is refused as malformed.
pub const MAX_SUBSCRIPTIONS: usize = 1024;

impl<'a> Subscribe<'a> {
    pub fn read(packet: &'a [u8], header: &FixedHeader, version: Version) -> Result<Self, MqttError> {
        debug_assert_eq!(header.kind, PacketType::Subscribe);
        let mut r = Reader { packet: "SUBSCRIBE", bytes: &packet[..header.packet_len()], at: header.header_len };
        let head_at = r.at;
        let packet_id = r.u16("no packet identifier")?;
        if packet_id == 0 {
            return Err(r.fault("packet identifier 0"));
        }
        if version == Version::V5 {
            r.properties()?;
        }
        let head = &r.bytes[head_at..r.at];
        let mut subscriptions = Vec::new();
        while !r.rest().is_empty() {
            if subscriptions.len() == MAX_SUBSCRIPTIONS {
                return Err(r.fault("more than 1024 topic filters"));
            }
            let at = r.at;
            let filter = r.string("a cut topic filter")?;
            crate::topic::check_filter(filter).map_err(|what| MqttError::Malformed {
                packet: "SUBSCRIBE",
                what,
                at,
            })?;
            let options = r.u8("no subscription options")?;
            let reserved = if version == Version::V5 { 0xc0 } else { 0xfc };
            if options & reserved != 0 || options & 0x03 == 3 || (version == Version::V5 && options & 0x30 == 0x30) {
                return Err(MqttError::Malformed {
                    packet: "SUBSCRIBE",
                    what: "bad subscription options",
                    at: r.at - 1,
                });
            }
            subscriptions.push(Subscription { filter, qos: options & 0x03, options, bytes: &r.bytes[at..r.at] });
        }
        if subscriptions.is_empty() {
            return Err(r.fault("no topic filter"));
        }
        Ok(Subscribe { packet_id, subscriptions, head })
    }

    /// This SUBSCRIBE with only the filters `keep` says yes to (same packet identifier,
    /// properties and options): what goes to the broker when a policy refuses the others.
    pub fn keeping(&self, keep: impl Fn(&Subscription<'_>) -> bool) -> Vec<u8> {
        let kept: Vec<&[u8]> = self.subscriptions.iter().filter(|s| keep(s)).map(|s| s.bytes).collect();
        let remaining = self.head.len() + kept.iter().map(|b| b.len()).sum::<usize>();
        let mut out = Vec::with_capacity(5 + remaining);
        out.push((PacketType::Subscribe as u8) << 4 | 0x02);
        write_varint(&mut out, remaining);
        out.extend_from_slice(self.head);
        for bytes in kept {
            out.extend_from_slice(bytes);
        }
        out
    }
}

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe<'a> {
    pub packet_id: u16,
    pub filters: Vec<&'a str>,
}

impl<'a> Unsubscribe<'a> {
    pub fn read(packet: &'a [u8], header: &FixedHeader, version: Version) -> Result<Self, MqttError> {
        debug_assert_eq!(header.kind, PacketType::Unsubscribe);
        let mut r = Reader { packet: "UNSUBSCRIBE", bytes: &packet[..header.packet_len()], at: header.header_len };
        let packet_id = r.u16("no packet identifier")?;
        if packet_id == 0 {
            return Err(r.fault("packet identifier 0"));
        }
        if version == Version::V5 {
            r.properties()?;
        }
        let mut filters = Vec::new();
        while !r.rest().is_empty() {
            if filters.len() == MAX_SUBSCRIPTIONS {
                return Err(r.fault("more than 1024 topic filters"));
            }
            let at = r.at;
            let filter = r.string("a cut topic filter")?;
            crate::topic::check_filter(filter).map_err(|what| MqttError::Malformed {
                packet: "UNSUBSCRIBE",
                what,
                at,
            })?;
            filters.push(filter);
        }
        if filters.is_empty() {
            return Err(r.fault("no topic filter"));
        }
        Ok(Unsubscribe { packet_id, filters })
    }
}

/// The packet identifier right after the fixed header (PUBACK, PUBREC, PUBREL, PUBCOMP,
/// SUBACK).
pub fn packet_id(packet: &[u8], header: &FixedHeader) -> Result<u16, MqttError> {
    let at = header.header_len;
    match packet.get(at..at + 2) {
        Some(&[high, low]) if header.remaining >= 2 => Ok(u16::from_be_bytes([high, low])),
        _ => Err(MqttError::Malformed { packet: header.kind.name(), what: "no packet identifier", at }),
    }
}

/// An MQTT 5 property a server states, by its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property<'a> {
    Byte(u8, u8),
    TwoByte(u8, u16),
    FourByte(u8, u32),
    String(u8, &'a str),
}

fn write_properties(out: &mut Vec<u8>, properties: &[Property<'_>]) {
    let mut block = Vec::new();
    for property in properties {
        match *property {
            Property::Byte(id, v) => block.extend([id, v]),
            Property::TwoByte(id, v) => {
                block.push(id);
                block.extend(v.to_be_bytes());
            }
            Property::FourByte(id, v) => {
                block.push(id);
                block.extend(v.to_be_bytes());
            }
            Property::String(id, text) => {
                let len = text.len().min(usize::from(u16::MAX));
                block.push(id);
                block.extend((len as u16).to_be_bytes());
                block.extend_from_slice(&text.as_bytes()[..len]);
            }
        }
    }
    write_varint(out, block.len());
    out.extend(block);
}

/// Wraps `body` in a fixed header of `first` (type and flags).
fn whole(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(first);
    write_varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// The CONNACK that accepts a connection; in MQTT 5 with `properties` (what the server
/// supports and what it does not).
pub fn connack_accepted(version: Version, session_present: bool, properties: &[Property<'_>]) -> Vec<u8> {
    let mut body = vec![u8::from(session_present), 0];
    if version == Version::V5 {
        write_properties(&mut body, properties);
    }
    whole((PacketType::Connack as u8) << 4, &body)
}

/// A PUBLISH a server delivers: `packet_id` for QoS 1 and 2, none for 0.
pub fn publish(
    version: Version,
    topic: &str,
    payload: &[u8],
    qos: u8,
    packet_id: Option<u16>,
    retain: bool,
) -> Vec<u8> {
    let topic_len = topic.len().min(usize::from(u16::MAX));
    let remaining = 2 + topic_len + packet_id.map_or(0, |_| 2) + usize::from(version == Version::V5) + payload.len();
    let mut out = Vec::with_capacity(5 + remaining);
    out.push((PacketType::Publish as u8) << 4 | (qos & 0x03) << 1 | u8::from(retain));
    write_varint(&mut out, remaining);
    out.extend((topic_len as u16).to_be_bytes());
    out.extend_from_slice(&topic.as_bytes()[..topic_len]);
    if let Some(id) = packet_id {
        out.extend(id.to_be_bytes());
    }
    if version == Version::V5 {
        out.push(0); // no properties
    }
    out.extend_from_slice(payload);
    out
}

/// An UNSUBACK for `packet_id`; MQTT 5 says Success (0) for each of `filters` filters.
pub fn unsuback(packet_id: u16, filters: usize, version: Version) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if version == Version::V5 {
        body.push(0);
        body.resize(body.len() + filters, 0);
    }
    whole((PacketType::Unsuback as u8) << 4, &body)
}

/// The answer to a PINGREQ.
pub const PINGRESP: [u8; 2] = [(PacketType::Pingresp as u8) << 4, 0];

/// The DISCONNECT a server sends before it closes, with `reason` and a reason string: only
/// MQTT 5 has one.
pub fn disconnect(version: Version, reason: u8, why: &str) -> Option<Vec<u8>> {
    if version != Version::V5 {
        return None;
    }
    let mut body = vec![reason];
    write_properties(&mut body, &[Property::String(property::REASON_STRING, why)]);
    Some(whole((PacketType::Disconnect as u8) << 4, &body))
}

/// Reason codes a sidecar or gateway answers with.
pub mod reason {
    /// MQTT 3.1.1's only failure code (0x80), and MQTT 5's Unspecified error.
    pub const FAILURE: u8 = 0x80;
    /// MQTT 5's Not authorized.
    pub const NOT_AUTHORIZED: u8 = 0x87;
    // MQTT 5's other reason codes a gateway gives (PUBACK, SUBACK, DISCONNECT).
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8d;
    pub const SESSION_TAKEN_OVER: u8 = 0x8e;
    pub const TOPIC_FILTER_INVALID: u8 = 0x8f;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const RETAIN_NOT_SUPPORTED: u8 = 0x9a;
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9e;
}

/// The broker's SUBACK to a SUBSCRIBE cut to some of its filters ([`Subscribe::keeping`]),
/// made whole again for the client: `refused` has one entry per filter the client asked
/// for, `Some(code)` where the sidecar refused it, `None` where the broker's next code goes.
/// The broker's packet identifier and properties are kept.
pub fn suback_merged(
    broker: &[u8],
    header: &FixedHeader,
    version: Version,
    refused: &[Option<u8>],
) -> Result<Vec<u8>, MqttError> {
    debug_assert_eq!(header.kind, PacketType::Suback);
    let mut r = Reader { packet: "SUBACK", bytes: &broker[..header.packet_len()], at: header.header_len };
    r.u16("no packet identifier")?;
    if version == Version::V5 {
        r.properties()?;
    }
    let head = &r.bytes[header.header_len..r.at];
    let mut theirs = r.rest().iter();
    let mut codes = Vec::with_capacity(refused.len());
    for entry in refused {
        codes.push(match entry {
            Some(code) => *code,
            None => *theirs.next().ok_or_else(|| r.fault("fewer return codes than filters forwarded"))?,
        });
    }
    if theirs.next().is_some() {
        return Err(r.fault("more return codes than filters forwarded"));
    }
    let mut out = Vec::with_capacity(5 + head.len() + codes.len());
    out.push((PacketType::Suback as u8) << 4);
    write_varint(&mut out, head.len() + codes.len());
    out.extend_from_slice(head);
    out.extend_from_slice(&codes);
    Ok(out)
}

/// Why a sidecar refuses a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The username or password is wrong (3.1.1: 4; 5: 0x86).
    BadCredentials,
    /// The client may not connect, or not with its will (3.1.1: 5; 5: 0x87).
    NotAuthorized,
    /// The client identifier is not one the server takes (3.1.1: 2; 5: 0x85).
    IdentifierRejected,
}

/// The CONNACK that refuses a connection, in the client's version.
pub fn connack_refused(version: Version, why: Refusal) -> Vec<u8> {
    match (version, why) {
        (Version::V5, Refusal::BadCredentials) => vec![0x20, 3, 0, 0x86, 0],
        (Version::V5, Refusal::NotAuthorized) => vec![0x20, 3, 0, reason::NOT_AUTHORIZED, 0],
        (_, Refusal::BadCredentials) => vec![0x20, 2, 0, 4],
        (_, Refusal::NotAuthorized) => vec![0x20, 2, 0, 5],
        (Version::V5, Refusal::IdentifierRejected) => vec![0x20, 3, 0, 0x85, 0],
        (_, Refusal::IdentifierRejected) => vec![0x20, 2, 0, 2],
    }
}

/// A PUBACK, PUBREC or PUBCOMP for `packet_id` that a sidecar sends in the broker's stead:
/// in MQTT 5 with `reason` (Not authorized, say), in 3.1.1 plain (it has no way to say no).
pub fn ack(kind: PacketType, packet_id: u16, version: Version, reason: u8) -> Vec<u8> {
    debug_assert!(matches!(kind, PacketType::Puback | PacketType::Pubrec | PacketType::Pubcomp));
    let id = packet_id.to_be_bytes();
    if version == Version::V5 && reason != 0 {
        // Without properties the property length may be left out (remaining length 3).
        vec![(kind as u8) << 4, 3, id[0], id[1], reason]
    } else {
        vec![(kind as u8) << 4, 2, id[0], id[1]]
    }
}

/// A SUBACK for `packet_id` with one return code per filter (granted QoS, or a failure).
pub fn suback(packet_id: u16, codes: &[u8], version: Version) -> Vec<u8> {
    let v5 = version == Version::V5;
    let remaining = 2 + usize::from(v5) + codes.len();
    let mut out = Vec::with_capacity(5 + remaining);
    out.push((PacketType::Suback as u8) << 4);
    write_varint(&mut out, remaining);
    out.extend_from_slice(&packet_id.to_be_bytes());
    if v5 {
        out.push(0); // no properties
    }
    out.extend_from_slice(codes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet of `kind` with `flags` and `body`.
    fn packet(kind: PacketType, flags: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![(kind as u8) << 4 | flags];
        write_varint(&mut out, body.len());
        out.extend_from_slice(body);
        out
    }

    fn string(s: &str) -> Vec<u8> {
        let mut out = (s.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(s.as_bytes());
        out
    }

    fn header(bytes: &[u8]) -> FixedHeader {
        FixedHeader::read(bytes, 1 << 20).unwrap().unwrap()
    }

    #[test]
    fn connect_packets_of_each_version_are_read_with_their_credentials() {
        // 3.1.1, clean, will QoS 1 retained, username and password.
        let mut body = string("MQTT");
        body.extend([4, 0b1110_1110, 0, 60]);
        body.extend(string("client-1"));
        body.extend(string("will/topic"));
        body.extend(string("bye"));
        let credentials = body.len() + 2;
        body.extend(string("ann"));
        body.extend(string("secret"));
        let bytes = packet(PacketType::Connect, 0, &body);
        let connect = Connect::read(&bytes, &header(&bytes)).unwrap();
        assert_eq!(connect.version, Version::V311);
        assert!(connect.clean_start);
        assert_eq!((connect.keep_alive, connect.client_id), (60, "client-1"));
        assert_eq!(connect.will, Some(Will { topic: "will/topic", qos: 1, retain: true, payload: b"bye" }));
        assert_eq!((connect.username, connect.password), (Some("ann"), Some(&b"secret"[..])));
        assert_eq!(connect.credentials_at, credentials);

        // 5.0 with properties, a password and no username (allowed in 5 only).
        let mut body = string("MQTT");
        body.extend([5, 0b0100_0000, 0, 10, 5, 0x11, 0, 0, 0, 30]);
        body.extend(string(""));
        body.extend(string("token"));
        let bytes = packet(PacketType::Connect, 0, &body);
        let connect = Connect::read(&bytes, &header(&bytes)).unwrap();
        assert_eq!((connect.version, connect.client_id, connect.username), (Version::V5, "", None));
        assert_eq!(connect.password, Some(&b"token"[..]));
    }

    #[test]
    fn a_connect_gets_the_sidecars_credentials_and_keeps_everything_else() {
        for (version, level, name) in [(Version::V311, 4u8, "MQTT"), (Version::V5, 5, "MQTT")] {
            let mut body = string(name);
            // Will (QoS 1), clean, no credentials.
            body.extend([level, 0b0000_1110, 0, 30]);
            if version == Version::V5 {
                body.extend([0]);
            }
            body.extend(string("client-9"));
            if version == Version::V5 {
                body.extend([0]);
            }
            body.extend(string("will/t"));
            body.extend(string("bye"));
            let bytes = packet(PacketType::Connect, 0, &body);
            let connect = Connect::read(&bytes, &header(&bytes)).unwrap();
            assert_eq!((connect.username, connect.password), (None, None));
            let replaced = connect.with_credentials(&bytes, &header(&bytes), "broker-user", b"s3cret");
            let again = Connect::read(&replaced, &header(&replaced)).unwrap();
            assert_eq!((again.username, again.password), (Some("broker-user"), Some(&b"s3cret"[..])));
            assert_eq!(
                (again.version, again.client_id, again.keep_alive, again.clean_start),
                (version, "client-9", 30, true)
            );
            assert_eq!(again.will, connect.will);
        }
    }

    #[test]
    fn bad_connects_say_what_is_wrong() {
        let connect = |level: u8, flags: u8, rest: &[u8]| {
            let mut body = string("MQTT");
            body.extend([level, flags, 0, 0]);
            body.extend_from_slice(rest);
            let bytes = packet(PacketType::Connect, 0, &body);
            Connect::read(&bytes, &header(&bytes)).unwrap_err().to_string()
        };
        let id = string("c");
        assert!(connect(6, 0, &id).contains("level 6 is not MQTT"));
        assert!(connect(4, 1, &id).contains("the reserved connect flag is set at byte 9"));
        assert!(connect(4, 0b0001_0000, &id).contains("will QoS or retain set wrongly"));
        assert!(connect(4, 0b0100_0000, &id).contains("a password without a username"));
        assert!(connect(4, 0, &[0, 5, b'a']).contains("a cut client id"));
        assert!(connect(4, 0, &[0, 1, 0]).contains("U+0000"));
        assert!(connect(4, 0, &[0, 1, 0xff]).contains("not UTF-8"));
        assert!(connect(4, 0, &[0, 1, b'a', 9]).contains("bytes after the last field"));
    }

    #[test]
    fn publish_packets_give_topic_ids_and_aliases() {
        let mut body = string("sensors/1/temp");
        body.extend([0, 7]);
        body.extend(b"21.5");
        let bytes = packet(PacketType::Publish, 0b0011, &body);
        let publish = Publish::read(&bytes, &header(&bytes), Version::V311).unwrap();
        assert_eq!(
            (publish.topic, publish.qos, publish.retain, publish.packet_id),
            ("sensors/1/temp", 1, true, Some(7))
        );
        assert_eq!(publish.payload, b"21.5");

        // 5.0: an alias only, after a user property and a content type.
        let mut body = string("");
        let props = [&[0x26][..], &string("k"), &string("v"), &[0x03], &string("text/plain"), &[0x23, 0, 9]].concat();
        body.push(props.len() as u8);
        body.extend(props);
        body.extend(b"x");
        let bytes = packet(PacketType::Publish, 0, &body);
        let publish = Publish::read(&bytes, &header(&bytes), Version::V5).unwrap();
        assert_eq!((publish.topic, publish.topic_alias, publish.payload), ("", Some(9), &b"x"[..]));

        let bad = |flags: u8, body: &[u8], version| {
            let bytes = packet(PacketType::Publish, flags, body);
            Publish::read(&bytes, &header(&bytes), version).unwrap_err().to_string()
        };
        assert!(bad(0, &string("a/+"), Version::V311).contains("a wildcard in a topic name"));
        assert!(bad(2, &[&string("a")[..], &[0, 0]].concat(), Version::V311).contains("packet identifier 0"));
        assert!(bad(0, &[&string("")[..], &[0]].concat(), Version::V5).contains("no topic name and no topic alias"));
        assert!(bad(0, &[&string("a")[..], &[2, 0x7f, 0]].concat(), Version::V5).contains("an unknown property"));
        assert!(
            bad(0, &[&string("a")[..], &[9, 0x23]].concat(), Version::V5).contains("properties longer than the packet")
        );
        assert!(bad(0b1000, &string("a"), Version::V311).contains("flags"));
    }

    #[test]
    fn subscribe_packets_list_filters_and_a_suback_answers_each() {
        let mut body = vec![0, 42];
        body.extend(string("sensors/+/temp"));
        body.push(1);
        body.extend(string("#"));
        body.push(0);
        let bytes = packet(PacketType::Subscribe, 2, &body);
        let subscribe = Subscribe::read(&bytes, &header(&bytes), Version::V311).unwrap();
        assert_eq!(subscribe.packet_id, 42);
        let filters: Vec<(&str, u8)> = subscribe.subscriptions.iter().map(|s| (s.filter, s.qos)).collect();
        assert_eq!(filters, [("sensors/+/temp", 1), ("#", 0)]);
        assert_eq!(suback(42, &[1, reason::FAILURE], Version::V311), [0x90, 4, 0, 42, 1, 0x80]);
        assert_eq!(suback(42, &[reason::NOT_AUTHORIZED], Version::V5), [0x90, 4, 0, 42, 0, 0x87]);

        let bad = |body: &[u8], version| {
            let bytes = packet(PacketType::Subscribe, 2, body);
            Subscribe::read(&bytes, &header(&bytes), version).unwrap_err().to_string()
        };
        assert!(bad(&[0, 1], Version::V311).contains("no topic filter"));
        assert!(bad(&[&[0, 1][..], &string("a/#/b"), &[0]].concat(), Version::V311).contains("`#` not last"));
        assert!(bad(&[&[0, 1][..], &string("a"), &[4]].concat(), Version::V311).contains("bad subscription options"));
        assert!(
            bad(&[&[0, 1][..], &[0], &string("a"), &[0x34]].concat(), Version::V5).contains("bad subscription options")
        );
        assert!(bad(&[&[0, 1][..], &string("a")].concat(), Version::V311).contains("no subscription options"));
        let many: Vec<u8> = [&[0, 1][..], &[&string("a")[..], &[0]].concat().repeat(1025)].concat();
        assert!(bad(&many, Version::V311).contains("more than 1024"));
    }

    #[test]
    fn a_subscribe_cut_to_its_allowed_filters_and_its_suback_made_whole_again() {
        for version in [Version::V311, Version::V5] {
            // Packet id 7, (v5: a subscription identifier property), three filters.
            let mut body = vec![0, 7];
            if version == Version::V5 {
                body.extend([2, 0x0b, 5]);
            }
            for (filter, options) in [("a/+", 1u8), ("secret/#", 2), ("b", 0)] {
                body.extend(string(filter));
                body.push(options);
            }
            let bytes = packet(PacketType::Subscribe, 2, &body);
            let subscribe = Subscribe::read(&bytes, &header(&bytes), version).unwrap();
            let cut = subscribe.keeping(|s| !s.filter.starts_with("secret"));
            let read = Subscribe::read(&cut, &header(&cut), version).unwrap();
            assert_eq!(read.packet_id, 7);
            assert_eq!(read.head, subscribe.head, "properties kept");
            let kept: Vec<(&str, u8)> = read.subscriptions.iter().map(|s| (s.filter, s.options)).collect();
            assert_eq!(kept, [("a/+", 1), ("b", 0)]);

            // The broker grants QoS 1 and 0 to the two it saw.
            let broker = suback(7, &[1, 0], version);
            let merged = suback_merged(&broker, &header(&broker), version, &[None, Some(0x87), None]).unwrap();
            assert_eq!(merged, suback(7, &[1, 0x87, 0], version));
            let short = suback(7, &[1], version);
            assert!(suback_merged(&short, &header(&short), version, &[None, Some(0x87), None]).is_err());
        }
    }

    #[test]
    fn refusals_and_acks_are_written_in_each_version() {
        assert_eq!(connack_refused(Version::V311, Refusal::BadCredentials), [0x20, 2, 0, 4]);
        assert_eq!(connack_refused(Version::V31, Refusal::NotAuthorized), [0x20, 2, 0, 5]);
        assert_eq!(connack_refused(Version::V5, Refusal::NotAuthorized), [0x20, 3, 0, 0x87, 0]);
        assert_eq!(ack(PacketType::Puback, 258, Version::V311, reason::NOT_AUTHORIZED), [0x40, 2, 1, 2]);
        assert_eq!(ack(PacketType::Puback, 258, Version::V5, reason::NOT_AUTHORIZED), [0x40, 3, 1, 2, 0x87]);
        assert_eq!(ack(PacketType::Pubcomp, 9, Version::V5, 0), [0x70, 2, 0, 9]);
        for bytes in
            [ack(PacketType::Pubrec, 9, Version::V5, 0x87), connack_refused(Version::V5, Refusal::BadCredentials)]
        {
            let h = header(&bytes);
            assert_eq!(h.packet_len(), bytes.len(), "the length says what follows");
        }
    }

    #[test]
    fn what_a_gateway_writes_reads_back() {
        for version in [Version::V311, Version::V5] {
            let bytes = publish(version, "sensors/7/temp", b"21.5", 1, Some(9), true);
            let read = Publish::read(&bytes, &header(&bytes), version).unwrap();
            assert_eq!((read.topic, read.qos, read.retain, read.packet_id), ("sensors/7/temp", 1, true, Some(9)));
            assert_eq!(read.payload, b"21.5");
            let bytes = publish(version, "a", b"", 0, None, false);
            assert_eq!(Publish::read(&bytes, &header(&bytes), version).unwrap().packet_id, None);
        }
        assert_eq!(connack_accepted(Version::V311, true, &[Property::Byte(property::MAXIMUM_QOS, 1)]), [0x20, 2, 1, 0]);
        assert_eq!(
            connack_accepted(Version::V5, false, &[Property::Byte(property::RETAIN_AVAILABLE, 0)]),
            [0x20, 5, 0, 0, 2, 0x25, 0]
        );
        assert_eq!(unsuback(3, 2, Version::V311), [0xb0, 2, 0, 3]);
        assert_eq!(unsuback(3, 2, Version::V5), [0xb0, 5, 0, 3, 0, 0, 0]);
        assert_eq!(disconnect(Version::V311, 0x87, "no"), None);
        assert_eq!(disconnect(Version::V5, 0x87, "no").unwrap(), [0xe0, 7, 0x87, 5, 0x1f, 0, 2, b'n', b'o']);
    }

    #[test]
    fn unsubscribes_list_their_filters_and_connect_properties_are_read() {
        for version in [Version::V311, Version::V5] {
            let mut body = vec![0, 5];
            if version == Version::V5 {
                body.push(0);
            }
            body.extend(string("a/+"));
            body.extend(string("b/#"));
            let bytes = packet(PacketType::Unsubscribe, 2, &body);
            let read = Unsubscribe::read(&bytes, &header(&bytes), version).unwrap();
            assert_eq!((read.packet_id, read.filters), (5, vec!["a/+", "b/#"]));
            let bad = packet(PacketType::Unsubscribe, 2, &[&[0, 5][..], &string("a/#/b")].concat());
            assert!(Unsubscribe::read(&bad, &header(&bad), Version::V311).is_err());
        }
        let mut body = string("MQTT");
        body.extend([5, 0, 0, 10, 8, 0x11, 0, 0, 0x0e, 0x10, 0x21, 0, 20]);
        body.extend(string("c"));
        let bytes = packet(PacketType::Connect, 0, &body);
        let connect = Connect::read(&bytes, &header(&bytes)).unwrap();
        assert_eq!((connect.session_expiry, connect.receive_maximum, connect.maximum_packet_size), (3600, 20, None));
        let ack = [0x40, 2, 1, 2];
        assert_eq!(packet_id(&ack, &header(&ack)), Ok(258));
        let short = [0x40, 0];
        assert!(packet_id(&short, &header(&short)).is_err());
    }
}
