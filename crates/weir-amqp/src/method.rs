//! Method frames: `class-id (2) method-id (2) arguments`. The methods a sidecar judges or
//! learns from are read in place ([`Method::read`]); the rest are only named.

use crate::frame::{frame, FrameType};
use crate::table;
use crate::AmqpError;

/// A method's class and id, e.g. `(60, 40)` for basic.publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MethodId {
    pub class: u16,
    pub method: u16,
}

impl MethodId {
    pub const fn new(class: u16, method: u16) -> Self {
        MethodId { class, method }
    }

    /// `class.method` as AMQP names it (`basic.publish`), or the numbers.
    pub fn name(self) -> &'static str {
        NAMES.iter().find(|(id, _)| *id == self).map_or("an unknown method", |(_, name)| name)
    }
}

pub mod ids {
    use super::MethodId;
    pub const CONNECTION_START: MethodId = MethodId::new(10, 10);
    pub const CONNECTION_START_OK: MethodId = MethodId::new(10, 11);
    pub const CONNECTION_SECURE: MethodId = MethodId::new(10, 20);
    pub const CONNECTION_TUNE: MethodId = MethodId::new(10, 30);
    pub const CONNECTION_TUNE_OK: MethodId = MethodId::new(10, 31);
    pub const CONNECTION_OPEN: MethodId = MethodId::new(10, 40);
    pub const CONNECTION_CLOSE: MethodId = MethodId::new(10, 50);
    pub const CONNECTION_CLOSE_OK: MethodId = MethodId::new(10, 51);
    pub const CHANNEL_OPEN: MethodId = MethodId::new(20, 10);
    pub const CHANNEL_CLOSE: MethodId = MethodId::new(20, 40);
    pub const CHANNEL_CLOSE_OK: MethodId = MethodId::new(20, 41);
    pub const EXCHANGE_DECLARE: MethodId = MethodId::new(40, 10);
    pub const EXCHANGE_DELETE: MethodId = MethodId::new(40, 20);
    pub const EXCHANGE_BIND: MethodId = MethodId::new(40, 30);
    pub const EXCHANGE_UNBIND: MethodId = MethodId::new(40, 40);
    pub const QUEUE_DECLARE: MethodId = MethodId::new(50, 10);
    pub const QUEUE_DECLARE_OK: MethodId = MethodId::new(50, 11);
    pub const QUEUE_BIND: MethodId = MethodId::new(50, 20);
    pub const QUEUE_PURGE: MethodId = MethodId::new(50, 30);
    pub const QUEUE_DELETE: MethodId = MethodId::new(50, 40);
    pub const QUEUE_UNBIND: MethodId = MethodId::new(50, 50);
    pub const BASIC_CONSUME: MethodId = MethodId::new(60, 20);
    pub const BASIC_CONSUME_OK: MethodId = MethodId::new(60, 21);
    pub const BASIC_CANCEL: MethodId = MethodId::new(60, 30);
    pub const BASIC_CANCEL_OK: MethodId = MethodId::new(60, 31);
    pub const BASIC_PUBLISH: MethodId = MethodId::new(60, 40);
    pub const BASIC_DELIVER: MethodId = MethodId::new(60, 60);
    pub const BASIC_GET: MethodId = MethodId::new(60, 70);
    pub const BASIC_GET_OK: MethodId = MethodId::new(60, 71);
    pub const BASIC_GET_EMPTY: MethodId = MethodId::new(60, 72);
}

const NAMES: &[(MethodId, &str)] = &[
    (ids::CONNECTION_START, "connection.start"),
    (ids::CONNECTION_START_OK, "connection.start-ok"),
    (ids::CONNECTION_SECURE, "connection.secure"),
    (MethodId::new(10, 21), "connection.secure-ok"),
    (ids::CONNECTION_TUNE, "connection.tune"),
    (ids::CONNECTION_TUNE_OK, "connection.tune-ok"),
    (ids::CONNECTION_OPEN, "connection.open"),
    (MethodId::new(10, 41), "connection.open-ok"),
    (ids::CONNECTION_CLOSE, "connection.close"),
    (ids::CONNECTION_CLOSE_OK, "connection.close-ok"),
    (MethodId::new(10, 60), "connection.blocked"),
    (MethodId::new(10, 61), "connection.unblocked"),
    (ids::CHANNEL_OPEN, "channel.open"),
    (MethodId::new(20, 11), "channel.open-ok"),
    (MethodId::new(20, 20), "channel.flow"),
    (MethodId::new(20, 21), "channel.flow-ok"),
    (ids::CHANNEL_CLOSE, "channel.close"),
    (ids::CHANNEL_CLOSE_OK, "channel.close-ok"),
    (ids::EXCHANGE_DECLARE, "exchange.declare"),
    (ids::EXCHANGE_DELETE, "exchange.delete"),
    (ids::EXCHANGE_BIND, "exchange.bind"),
    (ids::EXCHANGE_UNBIND, "exchange.unbind"),
    (ids::QUEUE_DECLARE, "queue.declare"),
    (ids::QUEUE_DECLARE_OK, "queue.declare-ok"),
    (ids::QUEUE_BIND, "queue.bind"),
    (ids::QUEUE_PURGE, "queue.purge"),
    (ids::QUEUE_DELETE, "queue.delete"),
    (ids::QUEUE_UNBIND, "queue.unbind"),
    (MethodId::new(60, 10), "basic.qos"),
    (ids::BASIC_CONSUME, "basic.consume"),
    (ids::BASIC_CONSUME_OK, "basic.consume-ok"),
    (ids::BASIC_CANCEL, "basic.cancel"),
    (ids::BASIC_CANCEL_OK, "basic.cancel-ok"),
    (ids::BASIC_PUBLISH, "basic.publish"),
    (MethodId::new(60, 50), "basic.return"),
    (ids::BASIC_DELIVER, "basic.deliver"),
    (ids::BASIC_GET, "basic.get"),
    (ids::BASIC_GET_OK, "basic.get-ok"),
    (ids::BASIC_GET_EMPTY, "basic.get-empty"),
    (MethodId::new(60, 80), "basic.ack"),
    (MethodId::new(60, 90), "basic.reject"),
    (MethodId::new(60, 120), "basic.nack"),
    (MethodId::new(85, 10), "confirm.select"),
    (MethodId::new(85, 11), "confirm.select-ok"),
];

/// AMQP's reply codes the sidecar answers with.
pub mod reply {
    pub const SUCCESS: u16 = 200;
    pub const ACCESS_REFUSED: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const FRAME_ERROR: u16 = 501;
    pub const SYNTAX_ERROR: u16 = 502;
    pub const COMMAND_INVALID: u16 = 503;
    pub const CHANNEL_ERROR: u16 = 504;
    pub const UNEXPECTED_FRAME: u16 = 505;
}

/// The methods whose arguments a sidecar reads; the others are [`Method::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method<'a> {
    StartOk(StartOk<'a>),
    Close {
        code: u16,
        text: &'a str,
        failing: MethodId,
    },
    ExchangeDeclare {
        exchange: &'a str,
        passive: bool,
        no_wait: bool,
    },
    ExchangeDelete {
        exchange: &'a str,
    },
    /// exchange.bind or exchange.unbind.
    ExchangeBind {
        destination: &'a str,
        source: &'a str,
        routing_key: &'a str,
    },
    QueueDeclare {
        queue: &'a str,
        passive: bool,
        no_wait: bool,
    },
    QueueDeclareOk {
        queue: &'a str,
    },
    /// queue.bind or queue.unbind.
    QueueBind {
        queue: &'a str,
        exchange: &'a str,
        routing_key: &'a str,
    },
    /// queue.purge or queue.delete.
    QueueRemove {
        queue: &'a str,
    },
    Publish {
        exchange: &'a str,
        routing_key: &'a str,
    },
    Consume {
        queue: &'a str,
        consumer_tag: &'a str,
        no_wait: bool,
    },
    ConsumeOk {
        consumer_tag: &'a str,
    },
    /// basic.cancel (either way) or basic.cancel-ok.
    Cancel {
        consumer_tag: &'a str,
    },
    Get {
        queue: &'a str,
    },
    Deliver {
        consumer_tag: &'a str,
        exchange: &'a str,
    },
    GetOk {
        exchange: &'a str,
    },
    Other,
}

/// connection.start-ok: who the client says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOk<'a> {
    /// The client-properties table, its length included, as sent.
    pub client_properties: &'a [u8],
    pub mechanism: &'a str,
    pub response: &'a [u8],
    pub locale: &'a str,
}

impl StartOk<'_> {
    /// The username and password of a PLAIN (`authzid NUL user NUL password`) or AMQPLAIN
    /// (a table's fields LOGIN and PASSWORD) response; None for other mechanisms or a
    /// response without both.
    pub fn credentials(&self) -> Result<Option<(&str, &str)>, AmqpError> {
        let bad = |what| AmqpError::Malformed { method: "connection.start-ok", what, at: 0 };
        let (user, password) = match self.mechanism {
            "PLAIN" => {
                let mut parts = self.response.splitn(3, |b| *b == 0);
                let (_authzid, user, password) = (parts.next(), parts.next(), parts.next());
                match (user, password) {
                    (Some(user), Some(password)) => (user, password),
                    _ => return Ok(None),
                }
            }
            "AMQPLAIN" => {
                let user = table::string_field(self.response, "LOGIN")?;
                let password = table::string_field(self.response, "PASSWORD")?;
                match (user, password) {
                    (Some(user), Some(password)) => (user, password),
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        let user = std::str::from_utf8(user).map_err(|_| bad("a username that is not UTF-8"))?;
        let password = std::str::from_utf8(password).map_err(|_| bad("a password that is not UTF-8"))?;
        Ok(Some((user, password)))
    }
}

/// Arguments read front to back, every length checked.
struct Args<'a> {
    bytes: &'a [u8],
    at: usize,
    method: &'static str,
}

impl<'a> Args<'a> {
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], AmqpError> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or(AmqpError::Malformed { method: self.method, what, at: self.at })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn short(&mut self, what: &'static str) -> Result<u16, AmqpError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn octet(&mut self, what: &'static str) -> Result<u8, AmqpError> {
        Ok(self.take(1, what)?[0])
    }

    fn shortstr(&mut self, what: &'static str) -> Result<&'a str, AmqpError> {
        let len = self.octet(what)? as usize;
        let at = self.at;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| AmqpError::Malformed {
            method: self.method,
            what: "a name that is not UTF-8",
            at,
        })
    }

    fn longstr(&mut self, what: &'static str) -> Result<&'a [u8], AmqpError> {
        let b = self.take(4, what)?;
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        self.take(len, what)
    }

    /// A whole table, its four-byte length included.
    fn table(&mut self, what: &'static str) -> Result<&'a [u8], AmqpError> {
        let start = self.at;
        self.longstr(what)?;
        Ok(&self.bytes[start..self.at])
    }
}

impl<'a> Method<'a> {
    /// A method frame's payload: its id and, for the methods a sidecar reads, its arguments.
    pub fn read(payload: &'a [u8]) -> Result<(MethodId, Method<'a>), AmqpError> {
        let Some(head) = payload.get(..4) else {
            return Err(AmqpError::Malformed { method: "a method frame", what: "no class and method id", at: 0 });
        };
        let id = MethodId::new(u16::from_be_bytes([head[0], head[1]]), u16::from_be_bytes([head[2], head[3]]));
        let mut args = Args { bytes: &payload[4..], at: 0, method: id.name() };
        let a = &mut args;
        use ids::*;
        let method = match id {
            CONNECTION_START_OK => Method::StartOk(StartOk {
                client_properties: a.table("client-properties")?,
                mechanism: a.shortstr("mechanism")?,
                response: a.longstr("response")?,
                locale: a.shortstr("locale")?,
            }),
            CONNECTION_CLOSE | CHANNEL_CLOSE => Method::Close {
                code: a.short("reply-code")?,
                text: a.shortstr("reply-text")?,
                failing: MethodId::new(a.short("class-id")?, a.short("method-id")?),
            },
            EXCHANGE_DECLARE => {
                a.short("reserved-1")?;
                let exchange = a.shortstr("exchange")?;
                a.shortstr("type")?;
                let bits = a.octet("flags")?;
                Method::ExchangeDeclare { exchange, passive: bits & 1 != 0, no_wait: bits & 0x10 != 0 }
            }
            EXCHANGE_DELETE => {
                a.short("reserved-1")?;
                Method::ExchangeDelete { exchange: a.shortstr("exchange")? }
            }
            EXCHANGE_BIND | EXCHANGE_UNBIND => {
                a.short("reserved-1")?;
                Method::ExchangeBind {
                    destination: a.shortstr("destination")?,
                    source: a.shortstr("source")?,
                    routing_key: a.shortstr("routing-key")?,
                }
            }
            QUEUE_DECLARE => {
                a.short("reserved-1")?;
                let queue = a.shortstr("queue")?;
                let bits = a.octet("flags")?;
                Method::QueueDeclare { queue, passive: bits & 1 != 0, no_wait: bits & 0x10 != 0 }
            }
            QUEUE_DECLARE_OK => Method::QueueDeclareOk { queue: a.shortstr("queue")? },
            QUEUE_BIND | QUEUE_UNBIND => {
                a.short("reserved-1")?;
                Method::QueueBind {
                    queue: a.shortstr("queue")?,
                    exchange: a.shortstr("exchange")?,
                    routing_key: a.shortstr("routing-key")?,
                }
            }
            QUEUE_PURGE | QUEUE_DELETE => {
                a.short("reserved-1")?;
                Method::QueueRemove { queue: a.shortstr("queue")? }
            }
            BASIC_PUBLISH => {
                a.short("reserved-1")?;
                Method::Publish { exchange: a.shortstr("exchange")?, routing_key: a.shortstr("routing-key")? }
            }
            BASIC_CONSUME => {
                a.short("reserved-1")?;
                let queue = a.shortstr("queue")?;
                let consumer_tag = a.shortstr("consumer-tag")?;
                let bits = a.octet("flags")?;
                Method::Consume { queue, consumer_tag, no_wait: bits & 0x08 != 0 }
            }
            BASIC_CONSUME_OK => Method::ConsumeOk { consumer_tag: a.shortstr("consumer-tag")? },
            BASIC_CANCEL | BASIC_CANCEL_OK => Method::Cancel { consumer_tag: a.shortstr("consumer-tag")? },
            BASIC_GET => {
                a.short("reserved-1")?;
                Method::Get { queue: a.shortstr("queue")? }
            }
            BASIC_DELIVER => {
                let consumer_tag = a.shortstr("consumer-tag")?;
                a.take(9, "delivery-tag and redelivered")?;
                Method::Deliver { consumer_tag, exchange: a.shortstr("exchange")? }
            }
            BASIC_GET_OK => {
                a.take(9, "delivery-tag and redelivered")?;
                Method::GetOk { exchange: a.shortstr("exchange")? }
            }
            _ => Method::Other,
        };
        Ok((id, method))
    }
}

/// The body size a content header announces (`class (2) weight (2) body-size (8) ...`).
pub fn body_size(header_payload: &[u8]) -> Result<u64, AmqpError> {
    match header_payload.get(4..12) {
        Some(size) => Ok(u64::from_be_bytes(size.try_into().unwrap_or_default())),
        None => Err(AmqpError::Malformed { method: "a content header", what: "no body size", at: 4 }),
    }
}

fn push_shortstr(out: &mut Vec<u8>, text: &str) {
    // Short strings hold 255 bytes: a longer text is cut at a character boundary.
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.push(end as u8);
    out.extend_from_slice(&text.as_bytes()[..end]);
}

/// A method frame of `id` with `args`.
pub fn method_frame(channel: u16, id: MethodId, args: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + args.len());
    payload.extend_from_slice(&id.class.to_be_bytes());
    payload.extend_from_slice(&id.method.to_be_bytes());
    payload.extend_from_slice(args);
    frame(FrameType::Method, channel, &payload)
}

/// channel.close (on a channel) or connection.close (on channel 0) with `code` and `text`,
/// naming the method that caused it.
pub fn close(channel: u16, code: u16, text: &str, failing: MethodId) -> Vec<u8> {
    let mut args = Vec::with_capacity(8 + text.len());
    args.extend_from_slice(&code.to_be_bytes());
    push_shortstr(&mut args, text);
    args.extend_from_slice(&failing.class.to_be_bytes());
    args.extend_from_slice(&failing.method.to_be_bytes());
    let id = if channel == 0 { ids::CONNECTION_CLOSE } else { ids::CHANNEL_CLOSE };
    method_frame(channel, id, &args)
}

/// The answer to a close on `channel` (connection.close-ok on channel 0).
pub fn close_ok(channel: u16) -> Vec<u8> {
    method_frame(channel, if channel == 0 { ids::CONNECTION_CLOSE_OK } else { ids::CHANNEL_CLOSE_OK }, &[])
}

/// A connection.start-ok like `start_ok` but logging in as `user` with `password` (PLAIN):
/// the client's properties and locale kept.
pub fn start_ok_as(start_ok: &StartOk<'_>, user: &str, password: &str) -> Vec<u8> {
    let mut args = Vec::with_capacity(start_ok.client_properties.len() + 32 + user.len() + password.len());
    args.extend_from_slice(start_ok.client_properties);
    push_shortstr(&mut args, "PLAIN");
    let response_len = 2 + user.len() + password.len();
    args.extend_from_slice(&(response_len as u32).to_be_bytes());
    args.push(0);
    args.extend_from_slice(user.as_bytes());
    args.push(0);
    args.extend_from_slice(password.as_bytes());
    push_shortstr(&mut args, start_ok.locale);
    method_frame(0, ids::CONNECTION_START_OK, &args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameHeader;

    fn payload(frame: &[u8]) -> &[u8] {
        let header = FrameHeader::read(frame, 1 << 20).unwrap().unwrap();
        header.payload(frame).unwrap()
    }

    fn start_ok(mechanism: &str, response: &[u8]) -> Vec<u8> {
        // client-properties: {product: "x"}
        let properties = table::encode_strings(&[("product", b"x")]);
        let mut args = (properties.len() as u32).to_be_bytes().to_vec();
        args.extend_from_slice(&properties);
        push_shortstr(&mut args, mechanism);
        args.extend_from_slice(&(response.len() as u32).to_be_bytes());
        args.extend_from_slice(response);
        push_shortstr(&mut args, "en_US");
        method_frame(0, ids::CONNECTION_START_OK, &args)
    }

    #[test]
    fn plain_and_amqplain_logins_are_read() {
        let frame = start_ok("PLAIN", b"\0alice\0s3cret");
        let (id, Method::StartOk(login)) = Method::read(payload(&frame)).unwrap() else { panic!() };
        assert_eq!(id, ids::CONNECTION_START_OK);
        assert_eq!(login.credentials(), Ok(Some(("alice", "s3cret"))));
        assert_eq!(login.locale, "en_US");

        let response = table::encode_strings(&[("LOGIN", b"bob"), ("PASSWORD", b"pw")]);
        let frame = start_ok("AMQPLAIN", &response);
        let (_, Method::StartOk(login)) = Method::read(payload(&frame)).unwrap() else { panic!() };
        assert_eq!(login.credentials(), Ok(Some(("bob", "pw"))));

        let frame = start_ok("PLAIN", b"alice-without-password");
        let (_, Method::StartOk(login)) = Method::read(payload(&frame)).unwrap() else { panic!() };
        assert_eq!(login.credentials(), Ok(None));
        let frame = start_ok("EXTERNAL", b"");
        let (_, Method::StartOk(login)) = Method::read(payload(&frame)).unwrap() else { panic!() };
        assert_eq!(login.credentials(), Ok(None));
    }

    #[test]
    fn a_login_rewritten_keeps_the_clients_properties() {
        let frame = start_ok("AMQPLAIN", &table::encode_strings(&[("LOGIN", b"bob"), ("PASSWORD", b"pw")]));
        let (_, Method::StartOk(login)) = Method::read(payload(&frame)).unwrap() else { panic!() };
        let rewritten = start_ok_as(&login, "sidecar", "its-secret");
        let (_, Method::StartOk(again)) = Method::read(payload(&rewritten)).unwrap() else { panic!() };
        assert_eq!(again.credentials(), Ok(Some(("sidecar", "its-secret"))));
        assert_eq!(again.client_properties, login.client_properties);
        assert_eq!((again.mechanism, again.locale), ("PLAIN", "en_US"));
        assert_eq!(rewritten, start_ok("PLAIN", b"\0sidecar\0its-secret"));
    }

    #[test]
    fn publish_consume_and_binds_are_read() {
        let mut args = vec![0, 0];
        push_shortstr(&mut args, "orders");
        push_shortstr(&mut args, "eu.created");
        args.push(0);
        let frame = method_frame(1, ids::BASIC_PUBLISH, &args);
        assert_eq!(
            Method::read(payload(&frame)).unwrap(),
            (ids::BASIC_PUBLISH, Method::Publish { exchange: "orders", routing_key: "eu.created" })
        );
        let mut args = vec![0, 0];
        push_shortstr(&mut args, "q");
        push_shortstr(&mut args, "");
        args.push(0x08);
        args.extend_from_slice(&[0, 0, 0, 0]);
        let frame = method_frame(1, ids::BASIC_CONSUME, &args);
        assert_eq!(
            Method::read(payload(&frame)).unwrap().1,
            Method::Consume { queue: "q", consumer_tag: "", no_wait: true }
        );
        // Every shorter cut of it is an error naming the method, never a panic.
        let whole = payload(&frame).to_vec();
        for cut in 0..whole.len() - 4 {
            let err = Method::read(&whole[..cut]).unwrap_err().to_string();
            assert!(cut < 4 || err.starts_with("basic.consume"), "{err}");
        }
    }

    #[test]
    fn closes_name_their_reason_and_the_failing_method() {
        let frame = close(3, reply::ACCESS_REFUSED, "ACCESS_REFUSED - no", ids::BASIC_PUBLISH);
        assert_eq!(frame[1..3], [0, 3]);
        assert_eq!(
            Method::read(payload(&frame)).unwrap(),
            (ids::CHANNEL_CLOSE, Method::Close { code: 403, text: "ACCESS_REFUSED - no", failing: ids::BASIC_PUBLISH })
        );
        let long = "é".repeat(200);
        let frame = close(0, reply::FRAME_ERROR, &long, MethodId::new(0, 0));
        let (id, Method::Close { text, .. }) = Method::read(payload(&frame)).unwrap() else { panic!() };
        assert_eq!((id, text.len()), (ids::CONNECTION_CLOSE, 254));
        assert_eq!(Method::read(payload(&close_ok(2))).unwrap(), (ids::CHANNEL_CLOSE_OK, Method::Other));
    }
}
