//! A client's subscriptions, fed from Kafka.
//!
//! A subscription to a filter reaches the Kafka topics of every mapping rule the filter
//! overlaps; the principal needs `read` on each of them (one denied refuses the filter, as a
//! Kafka consumer is refused a topic). The connection then joins those topics' live tail: it
//! receives what is written from the moment it subscribed. Each record's MQTT topic name (its
//! header, or rebuilt from its key: see `mapping`) is matched here against the client's
//! filters — filtering is the gateway's, so a client receives only what it subscribed to.
//!
//! Deliveries go at the QoS granted, at most 1: QoS 1 deliveries wait for the client's PUBACK,
//! at most `max_inflight_deliveries` (or the client's Receive Maximum) at once. Messages
//! queue at the gateway up to `max_queued_deliveries`; a subscriber that falls further
//! behind is disconnected, not allowed to hold the others back.
//!
//! A persistent session (see `sessions`) also tracks, per Kafka partition, where its delivery
//! would resume: the oldest offset queued or unacknowledged, else past the last one offered.
//! Resumed, it first replays what was written while it was away — from its saved positions
//! up to where the live tail took it back — and only then takes live deliveries, so each
//! partition's messages arrive in order.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;
use weir_gateway::authz::allowed;
use weir_gateway::{Membership, Record, Subscriber};
use weir_mqtt::packet::{publish, reason, suback, unsuback, Subscribe, Unsubscribe, Version};
use weir_mqtt::topic::matches;
use weir_mqtt::FixedHeader;
use weir_mqtt_proxy::metrics::TopicCounters;

use weir_gateway::replay::{replay, Range};

use crate::mapping::{Mappings, TOPIC_HEADER};
use crate::session::{malformed, write, Client, SessionError, Shared};
use crate::sessions::StoredSession;

/// A record for this client: its MQTT topic name and the QoS it goes at.
pub(crate) struct Delivery {
    record: Arc<Record>,
    name: Arc<str>,
    qos: u8,
    /// A retained message sent to a new subscription (not from a partition's tail).
    retained: bool,
}

/// The partition number of a retained message's record: it comes from no partition.
const NO_PARTITION: i32 = -1;

/// A record's place: Kafka topic and partition.
type Partition = (Arc<str>, i32);

/// Where a persistent session's delivery would resume, per partition.
#[derive(Default)]
struct Positions {
    /// The last offset offered (taken or not).
    offered: HashMap<Partition, i64>,
    /// Offsets taken and not yet delivered (QoS 0) or acknowledged (QoS 1).
    outstanding: HashMap<Partition, BTreeSet<i64>>,
}

impl Positions {
    fn offered(&mut self, at: &Partition, offset: i64, taken: bool) {
        let last = self.offered.entry(at.clone()).or_insert(offset);
        *last = (*last).max(offset);
        if taken {
            self.outstanding.entry(at.clone()).or_default().insert(offset);
        }
    }

    fn done(&mut self, at: &Partition, offset: i64) {
        if let Some(outstanding) = self.outstanding.get_mut(at) {
            outstanding.remove(&offset);
        }
    }

    /// Delivery on `at` resumes at `next` unless it has got further.
    fn start(&mut self, at: Partition, next: i64) {
        self.offered.entry(at).or_insert(next - 1);
    }

    fn resume_at(&self) -> Vec<(String, i32, i64)> {
        let mut positions: Vec<(String, i32, i64)> = self
            .offered
            .iter()
            .map(|(at, last)| {
                let first_open = self.outstanding.get(at).and_then(|o| o.first().copied());
                (at.0.to_string(), at.1, first_open.unwrap_or(last + 1))
            })
            .collect();
        positions.sort();
        positions
    }
}

/// The client's filters as the tail (and a replay) sees them: what it is offered, it takes if
/// a filter matches.
struct Filters {
    filters: RwLock<Vec<(String, u8)>>,
    mappings: Arc<Mappings>,
    queue: mpsc::Sender<Delivery>,
    overflowed: CancellationToken,
    /// Kept for persistent sessions only.
    positions: Option<Mutex<Positions>>,
}

impl Filters {
    /// The delivery `record` makes, if a filter matches its MQTT topic.
    fn take(&self, record: &Arc<Record>) -> Option<Delivery> {
        let name = record.derived.get_or_init(|| {
            let header = record.header(TOPIC_HEADER).map(|h| &h[..]);
            self.mappings.reverse(&record.topic, header, record.key.as_deref()).map(Arc::from)
        });
        let qos = name.as_ref().and_then(|name| {
            let filters = self.filters.read().unwrap_or_else(|p| p.into_inner());
            filters.iter().filter(|(filter, _)| matches(filter, name)).map(|(_, qos)| *qos).max()
        });
        if let Some(positions) = &self.positions {
            let at = (record.topic.clone(), record.partition);
            positions.lock().unwrap_or_else(|p| p.into_inner()).offered(&at, record.offset, qos.is_some());
        }
        Some(Delivery { record: record.clone(), name: name.clone()?, qos: qos?, retained: false })
    }

    fn done(&self, record: &Record) {
        if let Some(positions) = &self.positions {
            let at = (record.topic.clone(), record.partition);
            positions.lock().unwrap_or_else(|p| p.into_inner()).done(&at, record.offset);
        }
    }
}

impl Subscriber for Filters {
    fn offer(&self, record: &Arc<Record>) -> bool {
        let Some(delivery) = self.take(record) else { return true };
        match self.queue.try_send(delivery) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.overflowed.cancel();
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

pub(crate) struct Subscriptions {
    filters: Arc<Filters>,
    deliveries: mpsc::Receiver<Delivery>,
    /// While a resumed session replays what it missed: those deliveries, before any live one.
    replayed: Option<mpsc::Receiver<Delivery>>,
    /// Stops the replay when the connection ends.
    replay_stop: CancellationToken,
    /// The positions the session resumed with, saved as they are until the replay is done.
    resumed_at: Vec<(String, i32, i64)>,
    /// The topics' tails the connection is on.
    memberships: HashMap<Arc<str>, Membership>,
    /// QoS 1 deliveries the client has not acknowledged, by packet id.
    inflight: HashMap<u16, Arc<Record>>,
    next_id: u16,
    max_inflight: usize,
    /// MQTT 5's Maximum Packet Size of the client: larger messages are not sent to it.
    max_to_client: Option<usize>,
    counted: Option<TopicCounters>,
}

impl Subscriptions {
    pub fn new(shared: &Shared, max_inflight: usize, max_to_client: Option<usize>, persistent: bool) -> Self {
        let (queue, deliveries) = mpsc::channel(shared.config.limits.max_queued_deliveries);
        let filters = Arc::new(Filters {
            filters: RwLock::default(),
            mappings: shared.mappings.clone(),
            queue,
            overflowed: CancellationToken::new(),
            positions: persistent.then(Mutex::default),
        });
        Subscriptions {
            filters,
            deliveries,
            replayed: None,
            replay_stop: CancellationToken::new(),
            resumed_at: Vec::new(),
            memberships: HashMap::new(),
            inflight: HashMap::new(),
            next_id: 0,
            max_inflight,
            max_to_client,
            counted: None,
        }
    }

    /// Cancelled when the subscriber fell too far behind.
    pub fn overflow(&self) -> CancellationToken {
        self.filters.overflowed.clone()
    }

    /// The next delivery: replayed ones first, then live ones.
    pub async fn next_delivery(&mut self) -> Option<Delivery> {
        if let Some(replayed) = &mut self.replayed {
            match replayed.recv().await {
                Some(delivery) => return Some(delivery),
                None => {
                    tracing::debug!("MQTT session replay done");
                    self.replayed = None;
                }
            }
        }
        self.deliveries.recv().await
    }

    /// Whether another delivery may go now (QoS 1 ones in flight are under the limit).
    pub fn may_deliver(&self) -> bool {
        self.inflight.len() < self.max_inflight
    }

    pub async fn deliver(&mut self, client: &Client<'_>, delivery: Delivery) -> Result<(), SessionError> {
        let Delivery { record, name, qos, retained } = delivery;
        let id = (qos > 0).then(|| self.free_id());
        let bytes = publish(client.version, &name, &record.value, qos, id, retained);
        if self.max_to_client.is_some_and(|max| bytes.len() > max) {
            // MQTT 5: a message larger than the client takes is dropped as if delivered.
            tracing::debug!(
                topic = &*name,
                size = bytes.len(),
                "a message larger than the client's Maximum Packet Size"
            );
            self.filters.done(&record);
            return Ok(());
        }
        write(&client.writer, &bytes).await?;
        match id {
            Some(id) => {
                self.inflight.insert(id, record.clone());
            }
            None => self.filters.done(&record),
        }
        client.shared.metrics.count(&mut self.counted, "deliver", &record.topic, &client.who, record.value.len());
        Ok(())
    }

    /// A packet id no QoS 1 delivery in flight uses.
    fn free_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.inflight.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }

    /// PUBACK from the client.
    pub fn acknowledged(&mut self, id: u16) {
        if let Some(record) = self.inflight.remove(&id) {
            self.filters.done(&record);
        }
    }

    /// The session to save: its subscriptions and where its delivery resumes.
    pub fn stored(&self, principal: &str, expiry_secs: u32) -> StoredSession {
        let positions = match (&self.replayed, &self.filters.positions) {
            (None, Some(positions)) => positions.lock().unwrap_or_else(|p| p.into_inner()).resume_at(),
            // Still replaying: where it resumed is still where to resume.
            _ => self.resumed_at.clone(),
        };
        let subscriptions = self.filters.filters.read().unwrap_or_else(|p| p.into_inner()).clone();
        StoredSession { principal: principal.to_owned(), subscriptions, positions, expiry_secs, saved_at_ms: 0 }
    }

    /// Takes up a stored session: its subscriptions (as the policy allows them now), joined
    /// to the live tail, and a replay of what was written since its positions.
    pub async fn resume(&mut self, client: &Client<'_>, stored: StoredSession) {
        if let Some(positions) = &self.filters.positions {
            let mut positions = positions.lock().unwrap_or_else(|p| p.into_inner());
            for (topic, partition, offset) in &stored.positions {
                positions.start((Arc::from(topic.as_str()), *partition), *offset);
            }
        }
        for (filter, qos) in &stored.subscriptions {
            let code = self.add(client, filter, *qos).await;
            if code > 1 {
                tracing::info!(
                    principal = &*client.who.principal,
                    filter,
                    code,
                    "a stored MQTT subscription was not resumed"
                );
            }
        }
        let mut ranges = Vec::new();
        for (topic, partition, offset) in &stored.positions {
            let Some(membership) = self.memberships.get(topic.as_str()) else { continue };
            if let Ok(at) = membership.from().binary_search_by_key(partition, |(p, _)| *p) {
                let end = membership.from()[at].1;
                if *offset < end {
                    ranges.push(Range {
                        topic: membership.topic().clone(),
                        partition: *partition,
                        start: *offset,
                        end,
                    });
                }
            }
        }
        self.resumed_at = stored.positions;
        if ranges.is_empty() {
            return;
        }
        let (queue, replayed) = mpsc::channel(1024);
        self.replayed = Some(replayed);
        let (filters, config, stop) =
            (self.filters.clone(), client.shared.config.kafka.clone(), self.replay_stop.clone());
        tokio::task::spawn_blocking(move || {
            let each = |record: Arc<Record>| match filters.take(&record) {
                Some(delivery) => queue.blocking_send(delivery).is_ok(),
                None => true,
            };
            if let Err(error) = replay(&config, &ranges, each, &stop) {
                tracing::warn!(%error, "replaying an MQTT session's missed messages failed");
            }
        });
    }

    pub async fn subscribe(
        &mut self,
        client: &Client<'_>,
        packet: &[u8],
        header: &FixedHeader,
    ) -> Result<(), SessionError> {
        let subscribe = Subscribe::read(packet, header, client.version).map_err(malformed)?;
        let mut codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut send_retained = Vec::new();
        for subscription in &subscribe.subscriptions {
            let existed = self
                .filters
                .filters
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|(f, _)| f == subscription.filter);
            let code = self.add(client, subscription.filter, subscription.qos).await;
            // MQTT 5's Retain Handling: 0 send, 1 send for a new subscription only, 2 do not.
            let handling = if client.version == Version::V5 { (subscription.options >> 4) & 0x03 } else { 0 };
            if code <= 1 && (handling == 0 || (handling == 1 && !existed)) {
                send_retained.push((subscription.filter.to_owned(), code));
            }
            codes.push(code);
        }
        write(&client.writer, &suback(subscribe.packet_id, &codes, client.version)).await?;
        for (filter, qos) in send_retained {
            self.send_retained(client, &filter, qos).await?;
        }
        Ok(())
    }

    /// The retained messages `filter` matches, after its SUBACK.
    async fn send_retained(&mut self, client: &Client<'_>, filter: &str, qos: u8) -> Result<(), SessionError> {
        let shared = client.shared;
        for (name, value) in shared.retained.entries(|name| matches(filter, name)) {
            // Its topic's mapping may be gone since it was retained.
            let Some(target) = shared.mappings.forward(&name) else { continue };
            let record = Arc::new(Record {
                topic: target.topic.clone(),
                partition: NO_PARTITION,
                offset: -1,
                timestamp: None,
                key: None,
                value,
                headers: Vec::new(),
                derived: Default::default(),
            });
            self.deliver(client, Delivery { record, name: name.into(), qos, retained: true }).await?;
        }
        Ok(())
    }

    /// Adds (or replaces) a subscription to `filter`; the code its SUBACK gives.
    async fn add(&mut self, client: &Client<'_>, filter: &str, qos: u8) -> u8 {
        let failure = |code| if client.version == Version::V5 { code } else { reason::FAILURE };
        let principal = &*client.who.principal;
        if filter.starts_with("$share/") {
            tracing::info!(principal, filter, "MQTT subscription refused: shared subscriptions are not offered");
            return failure(reason::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED);
        }
        let topics = client.shared.mappings.topics_for(filter);
        if topics.is_empty() {
            tracing::info!(principal, filter, "MQTT subscription refused: no mapping rule reaches it");
            return failure(reason::TOPIC_FILTER_INVALID);
        }
        if let Some(denied) = topics.iter().find(|topic| !allowed(client.authz.as_ref(), topic, false)) {
            client.denied("subscribe", "read", denied);
            tracing::info!(
                principal,
                filter,
                topic = &**denied,
                "MQTT subscription denied: no read on the Kafka topic"
            );
            return failure(reason::NOT_AUTHORIZED);
        }
        for topic in topics {
            if self.memberships.contains_key(&topic) {
                continue;
            }
            match client.shared.tail.join(&topic, self.filters.clone()).await {
                Ok(membership) => {
                    if let Some(positions) = &self.filters.positions {
                        let mut positions = positions.lock().unwrap_or_else(|p| p.into_inner());
                        for (partition, next) in membership.from() {
                            positions.start((topic.clone(), *partition), *next);
                        }
                    }
                    self.memberships.insert(topic, membership);
                }
                Err(error) => {
                    tracing::warn!(principal, filter, %error, "MQTT subscription failed");
                    self.leave_unneeded(client);
                    return reason::FAILURE;
                }
            }
        }
        let granted = qos.min(1);
        let mut filters = self.filters.filters.write().unwrap_or_else(|p| p.into_inner());
        filters.retain(|(f, _)| f != filter);
        filters.push((filter.to_owned(), granted));
        granted
    }

    pub async fn unsubscribe(
        &mut self,
        client: &Client<'_>,
        packet: &[u8],
        header: &FixedHeader,
    ) -> Result<(), SessionError> {
        let unsubscribe = Unsubscribe::read(packet, header, client.version).map_err(malformed)?;
        self.filters
            .filters
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(filter, _)| !unsubscribe.filters.contains(&filter.as_str()));
        self.leave_unneeded(client);
        write(&client.writer, &unsuback(unsubscribe.packet_id, unsubscribe.filters.len(), client.version)).await
    }

    /// The policy changed: subscriptions it no longer allows end (MQTT cannot tell the client).
    pub fn rejudge(&mut self, client: &Client<'_>) {
        let mappings = &client.shared.mappings;
        self.filters.filters.write().unwrap_or_else(|p| p.into_inner()).retain(|(filter, _)| {
            let denied = mappings.topics_for(filter).into_iter().find(|t| !allowed(client.authz.as_ref(), t, false));
            if let Some(topic) = &denied {
                client.denied("subscribe", "read", topic);
                tracing::info!(
                    principal = &*client.who.principal,
                    filter,
                    topic = &**topic,
                    "MQTT subscription ended: the policy no longer allows it"
                );
            }
            denied.is_none()
        });
        self.leave_unneeded(client);
    }

    /// Leaves the tails no filter needs any more.
    fn leave_unneeded(&mut self, client: &Client<'_>) {
        let filters = self.filters.filters.read().unwrap_or_else(|p| p.into_inner());
        let needed: HashSet<Arc<str>> =
            filters.iter().flat_map(|(filter, _)| client.shared.mappings.topics_for(filter)).collect();
        self.memberships.retain(|topic, _| needed.contains(topic));
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.replay_stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_resumes_at_its_oldest_unfinished_delivery_else_past_the_last_offered() {
        let mut positions = Positions::default();
        let (a, b): (Partition, Partition) = (("t".into(), 0), ("t".into(), 1));
        positions.start(a.clone(), 5);
        positions.start(b.clone(), 10);
        assert_eq!(positions.resume_at(), [("t".into(), 0, 5), ("t".into(), 1, 10)]);
        positions.offered(&a, 5, true);
        positions.offered(&a, 6, false); // filtered out
        positions.offered(&a, 7, true);
        assert_eq!(positions.resume_at()[0], ("t".into(), 0, 5), "5 is not acknowledged yet");
        positions.done(&a, 5);
        assert_eq!(positions.resume_at()[0], ("t".into(), 0, 7));
        positions.done(&a, 7);
        assert_eq!(positions.resume_at()[0], ("t".into(), 0, 8));
        // A start after deliveries does not move it back.
        positions.start(a.clone(), 3);
        assert_eq!(positions.resume_at()[0], ("t".into(), 0, 8));
    }
}
