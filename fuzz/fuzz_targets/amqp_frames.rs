//! Whatever bytes an AMQP 0.9.1 client or broker sends, framing, reading methods and content
//! headers, walking field tables and reading a login return errors and never panic; and what
//! the sidecar writes from a frame it read (a connection.start-ok logging in as someone else,
//! a close) reads back as what it claims to be.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_amqp::method::{self, ids, Method, StartOk};
use weir_amqp::{table, FrameHeader, FrameType, PROTOCOL_HEADER};

fuzz_target!(|data: &[u8]| {
    let [selector, rest @ ..] = data else { return };
    let limit = if selector & 0x80 != 0 { 64 } else { weir_amqp::frame::MIN_FRAME_MAX };
    let mut rest = rest.strip_prefix(&PROTOCOL_HEADER[..]).unwrap_or(rest);
    while let Ok(Some(header)) = FrameHeader::read(rest, limit) {
        assert!(header.frame_len() <= limit);
        let Some(frame) = rest.get(..header.frame_len()) else { return };
        rest = &rest[frame.len()..];
        let Ok(payload) = header.payload(frame) else { return };
        assert_eq!(payload.len(), header.size);
        match header.kind {
            FrameType::Method => check_method(header.channel, payload),
            FrameType::Header => {
                assert_eq!(method::body_size(payload).is_ok(), payload.len() >= 12);
            }
            FrameType::Body | FrameType::Heartbeat => {}
        }
    }
});

/// A frame the sidecar wrote: the whole of `bytes`, on `channel`; its method.
fn read_written(bytes: &[u8], channel: u16) -> (method::MethodId, Method<'_>) {
    let header = FrameHeader::read(bytes, usize::MAX).expect("a written frame's header reads").expect("whole");
    assert_eq!((header.kind, header.channel, header.frame_len()), (FrameType::Method, channel, bytes.len()));
    Method::read(header.payload(bytes).expect("a written frame ends")).expect("a written method reads back")
}

fn check_method(channel: u16, payload: &[u8]) {
    let Ok((id, read)) = Method::read(payload) else { return };
    let _ = id.name();
    match read {
        Method::StartOk(start_ok) => check_start_ok(&start_ok),
        Method::Close { code, text, failing } => {
            let closed = method::close(channel, code, text, failing);
            let expected = if channel == 0 { ids::CONNECTION_CLOSE } else { ids::CHANNEL_CLOSE };
            assert_eq!(read_written(&closed, channel), (expected, Method::Close { code, text, failing }));
        }
        _ => {}
    }
}

fn check_start_ok(start_ok: &StartOk<'_>) {
    let properties = &start_ok.client_properties[4..];
    for field in table::fields(properties) {
        let Ok(field) = field else { break };
        assert!(field.name.len() <= 255 && field.value.len() <= properties.len());
    }
    let _ = table::string_field(properties, "product");
    if start_ok.mechanism == "AMQPLAIN" {
        let _ = table::fields(start_ok.response).count();
    }
    let client = start_ok.credentials().ok().flatten();
    // The sidecar's own login, and whatever the client said (kept whole unless the user holds
    // a NUL, which PLAIN cannot carry).
    for (user, password) in [("sidecar", "its-secret"), ("", "")].into_iter().chain(client) {
        let rewritten = method::start_ok_as(start_ok, user, password);
        let (id, Method::StartOk(again)) = read_written(&rewritten, 0) else {
            panic!("start_ok_as wrote something other than a start-ok")
        };
        assert_eq!(id, ids::CONNECTION_START_OK);
        assert_eq!((again.client_properties, again.locale), (start_ok.client_properties, start_ok.locale));
        assert_eq!(again.mechanism, "PLAIN");
        if !user.contains('\0') {
            assert_eq!(again.credentials(), Ok(Some((user, password))));
        }
    }
}
