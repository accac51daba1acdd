//! Whatever bytes an MQTT client or broker sends, framing and reading CONNECT, PUBLISH and
//! SUBSCRIBE (3.1, 3.1.1 and 5.0) return errors and never panic; and what the sidecar writes
//! from a packet it read (a CONNECT with its credentials replaced, a SUBSCRIBE cut to some of
//! its filters, the broker's SUBACK made whole again) reads back as what it claims to be.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_mqtt::packet::{self, reason, Connect, Publish, Subscribe, Subscription, Version};
use weir_mqtt::{FixedHeader, PacketType};

const VERSIONS: [Version; 4] = [Version::V31, Version::V311, Version::V5, Version::V5];

fuzz_target!(|data: &[u8]| {
    // A version until a CONNECT says which, a packet limit, and which filters a policy keeps.
    let [selector, mask, rest @ ..] = data else { return };
    let mut rest = rest;
    let mut version = VERSIONS[usize::from(selector & 3)];
    let limit = if selector & 0x80 != 0 { 256 } else { 1 << 20 };
    while let Ok(Some(header)) = FixedHeader::read(rest, limit) {
        assert!((2..=5).contains(&header.header_len) && header.packet_len() <= limit);
        let Some(bytes) = rest.get(..header.packet_len()) else { return };
        rest = &rest[bytes.len()..];
        match header.kind {
            PacketType::Connect => {
                if let Ok(connect) = Connect::read(bytes, &header) {
                    version = connect.version;
                    check_connect(bytes, &header, &connect);
                }
            }
            PacketType::Publish => {
                if let Ok(publish) = Publish::read(bytes, &header, version) {
                    assert!(publish.qos <= 2 && publish.packet_id.is_some() == (publish.qos > 0));
                    assert!(version == Version::V5 || publish.topic_alias.is_none());
                    assert!(bytes.ends_with(publish.payload));
                }
            }
            PacketType::Subscribe => {
                if let Ok(subscribe) = Subscribe::read(bytes, &header, version) {
                    check_subscribe(&subscribe, version, *mask);
                }
            }
            PacketType::Suback => check_suback(bytes, &header, version, *mask),
            _ => {}
        }
    }
});

/// The header of a packet the sidecar wrote: the whole of `bytes`.
fn written(bytes: &[u8], kind: PacketType) -> FixedHeader {
    let header = FixedHeader::read(bytes, usize::MAX).expect("a written header reads").expect("and is whole");
    assert_eq!((header.kind, header.packet_len()), (kind, bytes.len()), "the length says what follows");
    header
}

fn check_connect(bytes: &[u8], header: &FixedHeader, connect: &Connect<'_>) {
    // The broker's credentials, and any MQTT string and binary (here the client's own).
    let will_payload = connect.will.as_ref().map_or(&b""[..], |will| will.payload);
    for (username, password) in [("broker-user", &b"s3cret"[..]), (connect.client_id, will_payload), ("", &[][..])] {
        let out = connect.with_credentials(bytes, header, username, password);
        let out_header = written(&out, PacketType::Connect);
        let again = Connect::read(&out, &out_header).expect("a CONNECT with credentials replaced reads back");
        assert_eq!((again.username, again.password), (Some(username), Some(password)));
        assert_eq!(
            (again.version, again.clean_start, again.keep_alive, again.client_id, &again.will),
            (connect.version, connect.clean_start, connect.keep_alive, connect.client_id, &connect.will)
        );
        // Everything before the credentials is kept, the flags byte but for its two bits.
        let (before, kept) =
            (&bytes[header.header_len..connect.credentials_at], &out[out_header.header_len..again.credentials_at]);
        let flags = connect.flags_at - header.header_len;
        assert_eq!((before.len(), again.flags_at - out_header.header_len), (kept.len(), flags));
        assert_eq!((&before[..flags], &before[flags + 1..]), (&kept[..flags], &kept[flags + 1..]));
        assert_eq!(before[flags] | 0xc0, kept[flags]);
    }
}

fn check_subscribe(subscribe: &Subscribe<'_>, version: Version, mask: u8) {
    let allowed = |s: &Subscription<'_>| mask >> ((s.filter.len() + usize::from(s.options)) % 8) & 1 != 0;
    let kept: Vec<Subscription<'_>> = subscribe.subscriptions.iter().copied().filter(allowed).collect();
    let cut = subscribe.keeping(allowed);
    if kept.is_empty() {
        return; // nothing goes to the broker: the sidecar answers alone
    }
    let again = Subscribe::read(&cut, &written(&cut, PacketType::Subscribe), version)
        .expect("a SUBSCRIBE cut to some of its filters reads back");
    assert_eq!((again.packet_id, again.head), (subscribe.packet_id, subscribe.head));
    assert_eq!(again.subscriptions, kept);

    // The broker grants what was asked of it; the client hears of every filter, in order.
    let granted: Vec<u8> = kept.iter().map(|s| s.qos).collect();
    let broker = packet::suback(subscribe.packet_id, &granted, version);
    let refused: Vec<Option<u8>> =
        subscribe.subscriptions.iter().map(|s| (!allowed(s)).then_some(reason::NOT_AUTHORIZED)).collect();
    let merged = packet::suback_merged(&broker, &written(&broker, PacketType::Suback), version, &refused)
        .expect("the broker's SUBACK to the cut SUBSCRIBE merges");
    let codes: Vec<u8> = refused.iter().zip(&subscribe.subscriptions).map(|(r, s)| r.unwrap_or(s.qos)).collect();
    assert_eq!(merged, packet::suback(subscribe.packet_id, &codes, version));
}

fn check_suback(bytes: &[u8], header: &FixedHeader, version: Version, mask: u8) {
    // A broker's SUBACK, whatever is in it, against filters the sidecar refused or forwarded.
    let refused: Vec<Option<u8>> =
        (0..usize::from(mask & 0x1f)).map(|i| (mask >> 5 >> (i % 3) & 1 != 0).then_some(reason::FAILURE)).collect();
    if let Ok(merged) = packet::suback_merged(bytes, header, version, &refused) {
        let merged_header = written(&merged, PacketType::Suback);
        // What it wrote is a SUBACK with one code per filter: merging it again keeps it.
        let again = packet::suback_merged(&merged, &merged_header, version, &vec![None; refused.len()]);
        assert_eq!(again.as_ref(), Ok(&merged), "a merged SUBACK reads back with one code per filter");
    }
}
