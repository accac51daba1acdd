//! Persistent sessions: what a client that asked to be remembered (MQTT 3.1.1's clean session
//! 0, MQTT 5's Session Expiry Interval above 0) finds when it comes back — to this gateway
//! after a restart, or to another instance sharing the sessions topic.
//!
//! A session is its subscriptions and, per Kafka partition its subscriptions read, the offset
//! its delivery resumes from: everything before it was delivered (QoS 0) or acknowledged by
//! the client (QoS 1). Saved in a compacted Kafka topic keyed by client id when the client
//! leaves and every `save_interval_ms` while it is connected; a gateway that dies delivers at
//! most that interval's messages again, and loses none.
//!
//! A session belongs to the principal that made it: a client connecting as another principal
//! with that client id is refused (Client Identifier not valid) until the session expires or
//! its owner ends it with a clean start.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use weir_gateway::store::KeyedStore;

/// What a persistent session keeps between connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    pub principal: String,
    /// Topic filters and the QoS granted.
    pub subscriptions: Vec<(String, u8)>,
    /// Where delivery resumes: Kafka topic, partition, offset.
    pub positions: Vec<(String, i32, i64)>,
    /// How long the session outlives its connection.
    pub expiry_secs: u32,
    /// When it was saved, in ms since the epoch.
    pub saved_at_ms: u64,
}

pub struct Sessions {
    pub store: Arc<KeyedStore>,
    pub max_expiry_secs: u32,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Sessions {
    /// The session `client_id` resumes, if it has one `principal` may resume; a clean start
    /// forgets any.
    pub async fn resume(&self, client_id: &str, principal: &str, clean_start: bool) -> Option<StoredSession> {
        if clean_start {
            self.forget(client_id).await;
            return None;
        }
        self.read(client_id).filter(|session| session.principal == principal)
    }

    /// The principal whose (unexpired) session `client_id` holds, if it holds one.
    pub fn owner(&self, client_id: &str) -> Option<String> {
        self.read(client_id).map(|session| session.principal)
    }

    /// The unexpired session stored under `client_id`.
    fn read(&self, client_id: &str) -> Option<StoredSession> {
        let stored = self.store.get(client_id)?;
        let session: StoredSession = match serde_json::from_slice(&stored) {
            Ok(session) => session,
            Err(error) => {
                tracing::warn!(client_id, %error, "a stored MQTT session does not read; starting afresh");
                return None;
            }
        };
        let expires = session.saved_at_ms.saturating_add(u64::from(session.expiry_secs) * 1000);
        (now_ms() <= expires).then_some(session)
    }

    /// Saves `session` (stamped now) under `client_id`; a failure is logged (the session then
    /// resumes from its last save).
    pub async fn save(&self, client_id: &str, mut session: StoredSession) {
        session.expiry_secs = session.expiry_secs.min(self.max_expiry_secs);
        session.saved_at_ms = now_ms();
        let value = match serde_json::to_vec(&session) {
            Ok(value) => value,
            Err(error) => return tracing::warn!(client_id, %error, "cannot encode an MQTT session"),
        };
        if let Err(error) = self.store.put(client_id, Some(&value)).await {
            tracing::warn!(client_id, %error, "cannot save an MQTT session");
        }
    }

    pub async fn forget(&self, client_id: &str) {
        if self.store.get(client_id).is_none() {
            return;
        }
        if let Err(error) = self.store.put(client_id, None).await {
            tracing::warn!(client_id, %error, "cannot forget an MQTT session");
        }
    }
}
