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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;
use weir_gateway::authz::allowed;
use weir_gateway::{Membership, Record, Subscriber};
use weir_mqtt::packet::{publish, reason, suback, unsuback, Subscribe, Unsubscribe, Version};
use weir_mqtt::topic::matches;
use weir_mqtt::FixedHeader;
use weir_mqtt_proxy::metrics::TopicCounters;

use crate::mapping::{Mappings, TOPIC_HEADER};
use crate::session::{malformed, write, Client, PacketIds, SessionError, Shared};

/// A record for this client: its MQTT topic name and the QoS it goes at.
pub(crate) struct Delivery {
    record: Arc<Record>,
    name: Arc<str>,
    qos: u8,
}

/// The client's filters as the tail sees them: what it is offered, it takes if a filter
/// matches.
struct Filters {
    filters: RwLock<Vec<(String, u8)>>,
    mappings: Arc<Mappings>,
    queue: mpsc::Sender<Delivery>,
    overflowed: CancellationToken,
}

impl Subscriber for Filters {
    fn offer(&self, record: &Arc<Record>) -> bool {
        let name = record.derived.get_or_init(|| {
            let header = record.header(TOPIC_HEADER).map(|h| &h[..]);
            self.mappings.reverse(&record.topic, header, record.key.as_deref()).map(Arc::from)
        });
        let Some(name) = name else { return true };
        let filters = self.filters.read().unwrap_or_else(|p| p.into_inner());
        let Some(qos) = filters.iter().filter(|(filter, _)| matches(filter, name)).map(|(_, qos)| *qos).max() else {
            return true;
        };
        drop(filters);
        match self.queue.try_send(Delivery { record: record.clone(), name: name.clone(), qos }) {
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
    /// The topics' tails the connection is on.
    memberships: HashMap<Arc<str>, Membership>,
    /// QoS 1 deliveries the client has not acknowledged.
    inflight: PacketIds,
    next_id: u16,
    max_inflight: usize,
    /// MQTT 5's Maximum Packet Size of the client: larger messages are not sent to it.
    max_to_client: Option<usize>,
    counted: Option<TopicCounters>,
}

impl Subscriptions {
    pub fn new(shared: &Shared, max_inflight: usize, max_to_client: Option<usize>) -> Self {
        let (queue, deliveries) = mpsc::channel(shared.config.limits.max_queued_deliveries);
        let filters = Arc::new(Filters {
            filters: RwLock::default(),
            mappings: shared.mappings.clone(),
            queue,
            overflowed: CancellationToken::new(),
        });
        Subscriptions {
            filters,
            deliveries,
            memberships: HashMap::new(),
            inflight: HashSet::new(),
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

    pub async fn next_delivery(&mut self) -> Option<Delivery> {
        self.deliveries.recv().await
    }

    /// Whether another delivery may go now (QoS 1 ones in flight are under the limit).
    pub fn may_deliver(&self) -> bool {
        self.inflight.len() < self.max_inflight
    }

    pub async fn deliver(&mut self, client: &Client<'_>, delivery: Delivery) -> Result<(), SessionError> {
        let Delivery { record, name, qos } = delivery;
        let id = (qos > 0).then(|| self.free_id());
        let bytes = publish(client.version, &name, &record.value, qos, id, false);
        if self.max_to_client.is_some_and(|max| bytes.len() > max) {
            // MQTT 5: a message larger than the client takes is dropped as if delivered.
            tracing::debug!(
                topic = &*name,
                size = bytes.len(),
                "a message larger than the client's Maximum Packet Size"
            );
            return Ok(());
        }
        if let Some(id) = id {
            self.inflight.insert(id);
        }
        write(&client.writer, &bytes).await?;
        client.shared.metrics.count(&mut self.counted, "deliver", &record.topic, &client.who, record.value.len());
        Ok(())
    }

    /// A packet id no QoS 1 delivery in flight uses.
    fn free_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.inflight.contains(&self.next_id) {
                return self.next_id;
            }
        }
    }

    /// PUBACK from the client.
    pub fn acknowledged(&mut self, id: u16) {
        self.inflight.remove(&id);
    }

    pub async fn subscribe(
        &mut self,
        client: &Client<'_>,
        packet: &[u8],
        header: &FixedHeader,
    ) -> Result<(), SessionError> {
        let subscribe = Subscribe::read(packet, header, client.version).map_err(malformed)?;
        let mut codes = Vec::with_capacity(subscribe.subscriptions.len());
        for subscription in &subscribe.subscriptions {
            codes.push(self.add(client, subscription.filter, subscription.qos).await);
        }
        write(&client.writer, &suback(subscribe.packet_id, &codes, client.version)).await
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
