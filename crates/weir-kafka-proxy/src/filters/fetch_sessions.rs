//! Fetch sessions (KIP-227) bound to the principal that created them.
//!
//! A broker keeps a fetch session per consumer connection and serves an incremental Fetch to
//! whoever names the session's id and next epoch: an empty incremental request returns every
//! partition already in the session, topics the request does not list. The broker cannot tell
//! the sidecar's clients apart (they all arrive as the sidecar), so the sidecar remembers who
//! opened each session (it sees every Fetch response's session id) and lets only that
//! principal use it:
//!
//! - an incremental Fetch on a session someone else opened, or one the sidecar never saw, is
//!   answered here with FETCH_SESSION_ID_NOT_FOUND, the same answer for every id, so guessing
//!   ids tells the guesser nothing (a broker would say 71 for a live id and a wrong epoch);
//! - a full Fetch that names such a session (to close it and start anew, as the Java client
//!   does after a reconnect) goes upstream with the session id cleared: it opens a new session
//!   and leaves the other principal's alone.
//!
//! Ids are per broker but drawn at random from 2^31, so they are kept per sidecar; a collision
//! only makes its loser start a new session.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, FetchResponse};
use weir_wire::fetch::request_session;
use weir_wire::message::{encode_response, MessageError};
use weir_wire::RequestHeaderPeek;

use crate::filter::{ready, ConnectionInfo, Filter, FilterError, Hook, RequestAction, RequestContext, ResponseContext};

/// Sessions remembered; the oldest are forgotten first (their owners then start new ones).
const CAPACITY: usize = 65_536;

const FETCH_SESSION_ID_NOT_FOUND: i16 = ResponseError::FetchSessionIdNotFound.code();

/// Who opened each fetch session seen in a broker's answer.
#[derive(Default)]
pub struct FetchSessionOwners {
    owners: Mutex<Owners>,
}

#[derive(Default)]
struct Owners {
    by_id: HashMap<i32, Arc<str>>,
    /// Insertion order, for forgetting the oldest.
    order: VecDeque<i32>,
}

/// What to do with a Fetch request, as far as its session goes.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionUse {
    /// No session, or the principal's own: forward as it is.
    Own,
    /// A full request naming a session not the principal's: forward this instead (session id 0).
    Cleared(Bytes),
    /// An incremental request on a session not the principal's: answer this.
    Refused(Bytes),
}

impl FetchSessionOwners {
    /// Remembers that `principal` opened (or still uses) `session_id`.
    pub fn record(&self, session_id: i32, principal: &str) {
        if session_id == 0 {
            return;
        }
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        if owners.by_id.get(&session_id).is_some_and(|owner| &**owner == principal) {
            return;
        }
        if owners.by_id.insert(session_id, principal.into()).is_none() {
            owners.order.push_back(session_id);
        }
        while owners.order.len() > CAPACITY {
            if let Some(oldest) = owners.order.pop_front() {
                owners.by_id.remove(&oldest);
            }
        }
    }

    fn owned_by(&self, session_id: i32, principal: &str) -> bool {
        let owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        owners.by_id.get(&session_id).is_some_and(|owner| &**owner == principal)
    }

    /// Decides on a Fetch request by `principal` (empty: an unidentified client).
    pub fn check(&self, frame: &Bytes, peek: &RequestHeaderPeek, principal: &str) -> Result<SessionUse, MessageError> {
        let body = frame.get(peek.body_offset..).unwrap_or_default();
        let Some(session) = request_session(body, peek.api_version) else { return Ok(SessionUse::Own) };
        if session.session_id == 0 || self.owned_by(session.session_id, principal) {
            return Ok(SessionUse::Own);
        }
        tracing::debug!(
            session_id = session.session_id,
            epoch = session.epoch,
            "Fetch names a fetch session this principal did not open"
        );
        if session.epoch > 0 {
            let answer = FetchResponse::default().with_error_code(FETCH_SESSION_ID_NOT_FOUND).with_session_id(0);
            return encode_response(peek.correlation_id, ApiKey::Fetch, peek.api_version, &answer)
                .map(SessionUse::Refused);
        }
        let mut cleared = BytesMut::from(&frame[..]);
        let at = peek.body_offset + session.offset;
        cleared[at..at + 4].copy_from_slice(&0i32.to_be_bytes());
        Ok(SessionUse::Cleared(cleared.freeze()))
    }
}

/// The filter that keeps fetch sessions to the principal that opened them.
pub(crate) struct FetchSessionFilter {
    owners: Arc<FetchSessionOwners>,
}

impl FetchSessionFilter {
    pub(crate) fn new(owners: Arc<FetchSessionOwners>) -> Self {
        Self { owners }
    }
}

fn owner(connection: &ConnectionInfo) -> &str {
    connection.principal.as_deref().unwrap_or("")
}

impl Filter for FetchSessionFilter {
    fn name(&self) -> &'static str {
        "fetch_sessions"
    }

    fn wants_request(&self, api: ApiKey, _version: i16) -> bool {
        api == ApiKey::Fetch
    }

    fn wants_response(&self, api: ApiKey, _version: i16) -> bool {
        api == ApiKey::Fetch
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        let decided = self.owners.check(cx.frame(), cx.header, owner(cx.connection)).map_err(FilterError::BadRequest);
        ready(decided.map(|decided| match decided {
            SessionUse::Own => RequestAction::Continue,
            SessionUse::Cleared(cleared) => {
                cx.replace_frame(cleared);
                RequestAction::Continue
            }
            SessionUse::Refused(answer) => RequestAction::Answer(answer),
        }))
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        ready(cx.message.fetch_session().map_err(FilterError::BadResponse).map(|session| {
            if let Some((0, session_id)) = session {
                self.owners.record(session_id, owner(cx.connection));
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{FetchRequest, RequestHeader};
    use kafka_protocol::protocol::Encodable;
    use weir_wire::message::decode_request;

    fn fetch(session_id: i32, epoch: i32, version: i16) -> (Bytes, RequestHeaderPeek) {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(version)
            .with_correlation_id(5);
        let mut buf = BytesMut::new();
        header.encode(&mut buf, ApiKey::Fetch.request_header_version(version)).unwrap();
        FetchRequest::default()
            .with_session_id(session_id)
            .with_session_epoch(epoch)
            .encode(&mut buf, version)
            .unwrap();
        let frame = weir_wire::frame::with_length_prefix(&buf);
        let peek = RequestHeaderPeek::parse(&frame).unwrap();
        (frame, peek)
    }

    #[test]
    fn a_session_serves_only_the_principal_that_opened_it() {
        let owners = FetchSessionOwners::default();
        owners.record(77, "alice");
        for version in [7, 12, 15, 17] {
            let (frame, peek) = fetch(77, 3, version);
            assert_eq!(owners.check(&frame, &peek, "alice").unwrap(), SessionUse::Own);
            // Another principal's incremental request, and one on an id nobody opened, get
            // the same answer.
            let SessionUse::Refused(to_bob) = owners.check(&frame, &peek, "bob").unwrap() else { panic!() };
            let (unknown, unknown_peek) = fetch(12345, 3, version);
            let SessionUse::Refused(to_guess) = owners.check(&unknown, &unknown_peek, "bob").unwrap() else { panic!() };
            assert_eq!(to_bob, to_guess, "v{version}: the answer tells live ids from dead ones");
            let (_, answer): (_, FetchResponse) =
                weir_wire::message::decode_response(&to_bob, ApiKey::Fetch, version).unwrap();
            assert_eq!((answer.error_code, answer.session_id), (FETCH_SESSION_ID_NOT_FOUND, 0));
            assert!(answer.responses.is_empty());
        }
    }

    #[test]
    fn a_full_request_naming_a_foreign_session_opens_a_new_one_instead() {
        let owners = FetchSessionOwners::default();
        owners.record(77, "alice");
        for epoch in [0, -1] {
            let (frame, peek) = fetch(77, epoch, 13);
            let SessionUse::Cleared(cleared) = owners.check(&frame, &peek, "bob").unwrap() else { panic!() };
            let request: FetchRequest = decode_request(&cleared, &peek).unwrap();
            assert_eq!((request.session_id, request.session_epoch), (0, epoch));
            assert_eq!(cleared.len(), frame.len());
        }
        let (frame, peek) = fetch(0, 0, 13);
        assert_eq!(owners.check(&frame, &peek, "bob").unwrap(), SessionUse::Own);
    }

    #[test]
    fn the_oldest_sessions_are_forgotten_first() {
        let owners = FetchSessionOwners::default();
        for id in 1..=(CAPACITY as i32 + 1) {
            owners.record(id, "alice");
        }
        assert!(!owners.owned_by(1, "alice"));
        assert!(owners.owned_by(2, "alice"));
        // A session passing to another principal (an id reused by another broker) is theirs.
        owners.record(2, "bob");
        assert!(owners.owned_by(2, "bob") && !owners.owned_by(2, "alice"));
    }
}
