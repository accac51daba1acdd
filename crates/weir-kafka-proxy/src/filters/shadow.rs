//! Traffic shadowing (see [`crate::shadow`]): the records of every produce to a shadowed topic
//! that the broker accepted are handed to the rule's writer, which copies them to the shadow
//! topic on its own time. Nothing here waits, and the client's request and the broker's
//! answer pass unchanged.
//!
//! Copies are taken from the answer, not the request: a batch the broker refused (a retriable
//! error the client will retry, a denied or invalid write) is not copied, so a retried batch
//! is copied once. An `acks=0` produce has no answer: its records are copied as sent.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use weir_wire::scan::TopicRef;

use crate::filter::ResponseContext;
use crate::filter::{ready, ConnectionInfo, Filter, FilterError, Hook, RequestAction, RequestContext};
use crate::quota::{covers, ANONYMOUS};
use crate::shadow::{ShadowWriter, ShadowWriters};
use crate::snapshot::Snapshot;

pub(crate) struct ShadowFilter {
    writers: Arc<ShadowWriters>,
    /// Every rule's writer, and those whose principals cover this connection's.
    all: Vec<Arc<ShadowWriter>>,
    mine: Vec<Arc<ShadowWriter>>,
    principal: String,
}

/// Records waiting for the broker's answer: copied if it accepted them.
struct Copies(Vec<Waiting>);

struct Waiting {
    writer: Arc<ShadowWriter>,
    topic: Topic,
    partition: i32,
    records: Bytes,
}

/// A topic as the request named it (the answer names it the same way).
#[derive(PartialEq, Eq)]
enum Topic {
    Name(String),
    Id([u8; 16]),
}

impl Topic {
    fn is(&self, other: &TopicRef<'_>) -> bool {
        match (self, other) {
            (Topic::Name(a), TopicRef::Name(b)) => a == b,
            (Topic::Id(a), TopicRef::Id(b)) => a == b,
            _ => false,
        }
    }
}

impl ShadowFilter {
    pub(crate) fn new(snapshot: &Snapshot, writers: Arc<ShadowWriters>, connection: &ConnectionInfo) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        let all = writers.for_rules(&snapshot.shadows);
        let mut filter = Self { writers, all, mine: Vec::new(), principal };
        filter.choose();
        filter
    }

    fn choose(&mut self) {
        let principal = &self.principal;
        self.mine = self.all.iter().filter(|w| covers(&w.rule.principals, principal)).cloned().collect();
    }
}

/// The part of `frame` that `records` is, without a copy when it is most of the frame. A small
/// part is copied: a queued copy would otherwise keep the whole request alive, uncounted by
/// the queue's bound.
fn keep(frame: &Bytes, records: &[u8]) -> Bytes {
    if records.len() * 2 >= frame.len() {
        frame.slice_ref(records)
    } else {
        Bytes::copy_from_slice(records)
    }
}

impl Filter for ShadowFilter {
    fn name(&self) -> &'static str {
        "shadow"
    }

    fn wants_request(&self, api: ApiKey, _version: i16) -> bool {
        api == ApiKey::Produce && !self.mine.is_empty()
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        let frame = cx.frame().clone();
        let mut copies = Vec::new();
        let ids = cx.services.topic_ids();
        let scanned = weir_wire::produce::scan_produce(&frame, cx.header, |topic, partition, records| {
            let name = match topic {
                TopicRef::Name(name) => Some(name.to_owned()),
                TopicRef::Id(id) => ids.name(&uuid::Uuid::from_bytes(id)).map(|n| n.to_string()),
            };
            let Some(name) = name else { return };
            for writer in self.mine.iter().filter(|w| w.rule.topic == name) {
                let topic = match topic {
                    TopicRef::Name(name) => Topic::Name(name.to_owned()),
                    TopicRef::Id(id) => Topic::Id(id),
                };
                copies.push(Waiting { writer: writer.clone(), topic, partition, records: keep(&frame, records) });
            }
        });
        let acks = match scanned {
            Ok(acks) => acks,
            Err(err) => return ready(Err(FilterError::BadRequestBody(err))),
        };
        if acks == 0 {
            copies.into_iter().for_each(|c| c.writer.offer(c.partition, c.records));
        } else if !copies.is_empty() {
            cx.remember(Copies(copies));
        }
        ready(Ok(RequestAction::Continue))
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        let Some(Copies(mut copies)) = cx.take_note::<Copies>() else { return ready(Ok(())) };
        let body = match cx.message.body() {
            Ok(body) => body,
            Err(err) => return ready(Err(FilterError::BadResponse(err))),
        };
        let version = cx.message.version();
        let scanned = weir_wire::produce::scan_produce_response(&body, version, |topic, partition, error_code| {
            if error_code != 0 {
                return;
            }
            copies.retain(|c| {
                let accepted = c.partition == partition && c.topic.is(&topic);
                if accepted {
                    c.writer.offer(c.partition, c.records.clone());
                }
                !accepted
            });
        });
        ready(scanned.map(|_| ()).map_err(FilterError::BadResponseBody))
    }

    fn on_authenticated(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
        self.choose();
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) {
        self.all = self.writers.for_rules(&snapshot.shadows);
        self.choose();
    }
}
