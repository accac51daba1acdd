//! A client's publishes, written to Kafka.
//!
//! - QoS 0: handed to the producer; nothing is answered.
//! - QoS 1: PUBACK once Kafka has the record on every in-sync replica (`acks=all`).
//! - QoS 2: PUBREC at that same moment; a PUBLISH sent again with the same packet identifier
//!   before the PUBREL is not written twice; PUBREL is answered with PUBCOMP.
//!
//! A retained publish is written to its Kafka topic like any other and kept, by its MQTT topic
//! name, in the gateway's retained topic (compacted; an empty payload removes it), from which
//! new subscriptions get it.
//!
//! Answers go back in the order the publishes came (MQTT requires it) while Kafka writes many
//! at once. A publish the gateway will not write — its topic matches no mapping, the policy
//! denies the principal `write` on the Kafka topic, Kafka refuses it — is answered in MQTT 5
//! with the reason (Topic Name invalid, Not authorized, Packet too large, Quota exceeded,
//! Unspecified error); MQTT 3.1.1 has no way to say no, so the connection is closed rather
//! than acknowledge what was not written (the client sends it again when it reconnects).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use weir_gateway::authz::allowed;
use weir_gateway::producer::{Outgoing, ProduceFailure, Written};
use weir_gateway::ProduceError;
use weir_mqtt::packet::{ack, reason, Publish, Version, Will};
use weir_mqtt::{FixedHeader, PacketType};
use weir_mqtt_proxy::metrics::TopicCounters;

use crate::mapping::TOPIC_HEADER;
use crate::session::{malformed, write, Client, OwnedWill, SessionError};

/// Why a publish was not written.
#[derive(Debug)]
pub(crate) enum Unwritten {
    /// By the gateway (logged then): no mapping, or the policy; the MQTT 5 reason code.
    Refused(u8),
    Kafka(ProduceError),
}

/// A publish's outcome, in the order publishes came.
pub(crate) struct Published {
    qos: u8,
    packet_id: Option<u16>,
    topic: Arc<str>,
    payload: usize,
    result: Result<Written, Unwritten>,
}

/// How long a closed connection waits for Kafka's answers to its last publishes.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

type PendingPublish = Pin<Box<dyn Future<Output = Published> + Send>>;

pub(crate) struct Publishing {
    /// Publishes not yet answered, oldest first.
    pub pending: FuturesOrdered<PendingPublish>,
    max_pending: usize,
    /// QoS 2 publishes by packet id until their PUBREL: true once written and answered.
    qos2: HashMap<u16, bool>,
    counted: Option<TopicCounters>,
}

impl Publishing {
    pub fn new(max_pending: usize) -> Self {
        Publishing { pending: FuturesOrdered::new(), max_pending, qos2: HashMap::new(), counted: None }
    }

    /// Whether another publish may be read now (else the client waits for Kafka).
    pub fn may_take(&self) -> bool {
        self.pending.len() < self.max_pending
    }

    pub async fn publish(
        &mut self,
        client: &Client<'_>,
        packet: &[u8],
        header: &FixedHeader,
    ) -> Result<(), SessionError> {
        let publish = Publish::read(packet, header, client.version).map_err(malformed)?;
        if publish.topic_alias.is_some() {
            return Err(SessionError::protocol(
                "a topic alias, which this gateway does not take (its Topic Alias Maximum is 0)",
                reason::TOPIC_ALIAS_INVALID,
            ));
        }
        if let (2, Some(id)) = (publish.qos, publish.packet_id) {
            if let Some(&answered) = self.qos2.get(&id) {
                // Sent again before its PUBREL: written once already.
                if answered {
                    write(&client.writer, &ack(PacketType::Pubrec, id, client.version, 0)).await?;
                }
                return Ok(());
            }
        }
        let Some(target) = client.shared.mappings.forward(publish.topic) else {
            let why = format!("no mapping rule matches topic `{}`", publish.topic);
            return self.refuse(client, &publish, why, reason::TOPIC_NAME_INVALID);
        };
        if !allowed(client.authz.as_ref(), target.topic, true) {
            client.denied("publish", "write", target.topic);
            let why = format!("{} may not write to Kafka topic {}", client.who.principal, target.topic);
            return self.refuse(client, &publish, why, reason::NOT_AUTHORIZED);
        }
        let record = Outgoing {
            topic: target.topic,
            partition: None,
            key: target.key.as_deref().map(str::as_bytes),
            value: Some(publish.payload),
            headers: &[(TOPIC_HEADER, publish.topic.as_bytes())],
        };
        let sent = client.shared.producer.send(record).await;
        let (qos, packet_id, topic, payload) =
            (publish.qos, publish.packet_id, target.topic.clone(), publish.payload.len());
        if let (2, Some(id)) = (qos, packet_id) {
            self.qos2.insert(id, false);
        }
        // A retained message is also kept by topic name (an empty one removes it); the publish
        // is answered once both are written.
        let retain = publish.retain.then(|| {
            let value = (!publish.payload.is_empty()).then(|| publish.payload.to_vec());
            (client.shared.retained.clone(), publish.topic.to_owned(), value)
        });
        self.pending.push_back(match sent {
            Ok(pending) => Box::pin(async move {
                let mut result = pending.written().await.map_err(Unwritten::Kafka);
                if let (Ok(_), Some((store, name, value))) = (&result, retain) {
                    if let Err(error) = store.put(&name, value.as_deref()).await {
                        result = Err(Unwritten::Kafka(error));
                    }
                }
                Published { qos, packet_id, topic, payload, result }
            }),
            Err(error) => {
                let published = Published { qos, packet_id, topic, payload, result: Err(Unwritten::Kafka(error)) };
                Box::pin(std::future::ready(published))
            }
        });
        Ok(())
    }

    /// A publish the gateway will not write: answered in its turn (MQTT 5), dropped (QoS 0),
    /// or the end of the connection (MQTT 3.1.1).
    fn refuse(
        &mut self,
        client: &Client<'_>,
        publish: &Publish<'_>,
        why: String,
        code: u8,
    ) -> Result<(), SessionError> {
        tracing::info!(principal = &*client.who.principal, topic = publish.topic, qos = publish.qos, %why, "MQTT publish refused");
        if publish.qos == 0 {
            return Ok(());
        }
        if client.version != Version::V5 {
            return Err(SessionError::Unwritten(why));
        }
        let published = Published {
            qos: publish.qos,
            packet_id: publish.packet_id,
            topic: Arc::from(""),
            payload: 0,
            result: Err(Unwritten::Refused(code)),
        };
        self.pending.push_back(Box::pin(std::future::ready(published)));
        Ok(())
    }

    /// Answers the oldest publish now that Kafka (or the gateway) has decided it.
    pub async fn acknowledge(&mut self, client: &Client<'_>, published: Published) -> Result<(), SessionError> {
        let Published { qos, packet_id, topic, payload, result } = published;
        let code = match result {
            Ok(_) => {
                client.shared.metrics.count(&mut self.counted, "publish", &topic, &client.who, payload);
                0
            }
            Err(Unwritten::Refused(code)) => code,
            Err(Unwritten::Kafka(error)) => {
                tracing::info!(principal = &*client.who.principal, %error, qos, "MQTT publish not written");
                if qos > 0 && client.version != Version::V5 {
                    return Err(SessionError::Unwritten(error.to_string()));
                }
                kafka_reason(&error)
            }
        };
        let Some(id) = packet_id else { return Ok(()) };
        let kind = if qos == 2 { PacketType::Pubrec } else { PacketType::Puback };
        if qos == 2 {
            if code == 0 {
                self.qos2.insert(id, true);
            } else {
                // A PUBREC with a failure ends the exchange: no PUBREL follows.
                self.qos2.remove(&id);
            }
        }
        write(&client.writer, &ack(kind, id, client.version, code)).await
    }

    /// After the client left: waits (a while) for Kafka's answers to what it published last, so
    /// that what was written is counted; nobody is answered.
    pub async fn drain(&mut self, client: &Client<'_>) {
        let drained = async {
            while let Some(Published { topic, payload, result, .. }) = self.pending.next().await {
                if result.is_ok() {
                    client.shared.metrics.count(&mut self.counted, "publish", &topic, &client.who, payload);
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained).await;
    }

    /// PUBREL: the QoS 2 exchange ends with PUBCOMP.
    pub async fn released(&mut self, client: &Client<'_>, id: u16) -> Result<(), SessionError> {
        let known = self.qos2.remove(&id).is_some();
        // MQTT 5: Packet Identifier not found (0x92) when there was no such publish.
        let code = if known { 0 } else { 0x92 };
        write(&client.writer, &ack(PacketType::Pubcomp, id, client.version, code)).await
    }
}

/// The MQTT 5 reason code for what Kafka said.
fn kafka_reason(error: &ProduceError) -> u8 {
    match error.failure {
        ProduceFailure::NotAuthorized => reason::NOT_AUTHORIZED,
        ProduceFailure::UnknownTopic => reason::TOPIC_NAME_INVALID,
        ProduceFailure::TooLarge => reason::PACKET_TOO_LARGE,
        ProduceFailure::Quota => reason::QUOTA_EXCEEDED,
        ProduceFailure::TimedOut | ProduceFailure::Other => reason::FAILURE,
    }
}

/// Why the client may not have `will` (its CONNECT is then refused).
pub(crate) fn will_target(client: &Client<'_>, will: &Will<'_>) -> Result<(), String> {
    let Some(target) = client.shared.mappings.forward(will.topic) else {
        return Err(format!("no mapping rule matches will topic `{}`", will.topic));
    };
    if !allowed(client.authz.as_ref(), target.topic, true) {
        return Err(format!("{} may not write its will to Kafka topic {}", client.who.principal, target.topic));
    }
    Ok(())
}

/// Writes the will of a client that left without DISCONNECT (not waited for).
pub(crate) async fn write_will(client: &Client<'_>, will: &OwnedWill) {
    let Some(target) = client.shared.mappings.forward(&will.topic) else { return };
    if !allowed(client.authz.as_ref(), target.topic, true) {
        return;
    }
    let record = Outgoing {
        topic: target.topic,
        partition: None,
        key: target.key.as_deref().map(str::as_bytes),
        value: Some(&will.payload),
        headers: &[(TOPIC_HEADER, will.topic.as_bytes())],
    };
    match client.shared.producer.send(record).await {
        Ok(_) => tracing::debug!(topic = &*will.topic, "MQTT will written"),
        Err(error) => tracing::info!(%error, "MQTT will not written"),
    }
}
