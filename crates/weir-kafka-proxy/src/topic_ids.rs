//! Topic ids and the names they stand for.
//!
//! Newer requests name topics by id only (Fetch v13+, Produce v13+, share groups, KIP-848
//! assignments), while policies, metrics and the audit name topics. Names are learned from
//! every Metadata response that passes through; an id not learned yet (a topic created since,
//! or right after a start) is asked of the cluster by the sidecar itself before anything is
//! decided on it. What stays unknown is refused as an unknown topic id, never judged by the
//! id's text.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use kafka_protocol::messages::MetadataResponse;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

/// The cluster is asked at most this many times a second, so made-up ids cannot turn
/// requests into load on it; ids unknown meanwhile stay unknown (the client retries after its
/// own Metadata refresh, which teaches the sidecar the id on the way).
const MAX_LOOKUPS_PER_SECOND: usize = 10;
/// An id the cluster did not know is not asked again for this long.
const NOT_FOUND_FOR: Duration = Duration::from_secs(1);
/// Ids remembered as not found, before that memory starts over.
const NOT_FOUND_LIMIT: usize = 4096;

/// Every id → name the sidecar has learned.
#[derive(Default)]
pub struct TopicIds {
    names: RwLock<HashMap<Uuid, StrBytes>>,
    /// Held while the cluster is asked, so concurrent lookups wait for one answer.
    lookups: tokio::sync::Mutex<Lookups>,
}

#[derive(Default)]
struct Lookups {
    /// When the lookups of the last second started.
    recent: VecDeque<Instant>,
    /// Ids the cluster did not know, and when it said so.
    not_found: HashMap<Uuid, Instant>,
}

impl TopicIds {
    /// Learns the ids of a Metadata response.
    pub fn learn(&self, resp: &MetadataResponse) {
        let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
        for topic in &resp.topics {
            if let Some(name) = &topic.name {
                if !topic.topic_id.is_nil() && topic.error_code == 0 {
                    names.insert(topic.topic_id, name.0.clone());
                }
            }
        }
    }

    /// The name learned for an id, if any.
    pub fn name(&self, id: &Uuid) -> Option<StrBytes> {
        self.names.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// The name learned for an id, else the id itself (for metrics of traffic the broker
    /// served anyway).
    pub fn name_or_id(&self, id: &Uuid) -> StrBytes {
        self.name(id).unwrap_or_else(|| StrBytes::from_string(id.to_string()))
    }

    /// Learns the names of `ids` by asking the cluster through `ask` (a Metadata request for
    /// them), unless another lookup just did. Afterwards [`TopicIds::name`] knows every id the
    /// cluster could name.
    pub async fn resolve<F, Fut, E>(&self, ids: &[Uuid], ask: F)
    where
        F: FnOnce(Vec<Uuid>) -> Fut,
        Fut: Future<Output = Result<MetadataResponse, E>>,
        E: std::fmt::Display,
    {
        let mut lookups = self.lookups.lock().await;
        let now = Instant::now();
        let unknown: Vec<Uuid> = ids
            .iter()
            .filter(|id| self.name(id).is_none())
            .filter(|id| lookups.not_found.get(id).is_none_or(|at| now.duration_since(*at) >= NOT_FOUND_FOR))
            .copied()
            .collect();
        while lookups.recent.front().is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1)) {
            lookups.recent.pop_front();
        }
        if unknown.is_empty() || lookups.recent.len() >= MAX_LOOKUPS_PER_SECOND {
            return;
        }
        lookups.recent.push_back(now);
        match ask(unknown.clone()).await {
            Ok(resp) => {
                self.learn(&resp);
                if lookups.not_found.len() >= NOT_FOUND_LIMIT {
                    lookups.not_found.clear();
                }
                for id in unknown.iter().filter(|id| self.name(id).is_none()) {
                    tracing::debug!(%id, "a topic id the cluster does not know");
                    lookups.not_found.insert(*id, now);
                }
            }
            Err(err) => tracing::info!(%err, "cannot look up topic ids; requests naming them are refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
    use kafka_protocol::messages::TopicName;

    fn metadata(topics: &[(Uuid, &'static str)]) -> MetadataResponse {
        MetadataResponse::default().with_topics(
            topics
                .iter()
                .map(|(id, name)| {
                    MetadataResponseTopic::default()
                        .with_topic_id(*id)
                        .with_name(Some(TopicName(StrBytes::from_static_str(name))))
                })
                .collect(),
        )
    }

    #[tokio::test]
    async fn unknown_ids_are_asked_of_the_cluster_and_not_found_ones_not_again_at_once() {
        let ids = TopicIds::default();
        let (orders, ghost, audit) = (Uuid::from_bytes([1; 16]), Uuid::from_bytes([2; 16]), Uuid::from_bytes([3; 16]));
        let asked = std::sync::Mutex::new(Vec::new());
        // The cluster names the ids it knows among those asked.
        let ask = |wanted: Vec<Uuid>| {
            let known: Vec<_> =
                [(orders, "orders"), (audit, "audit")].into_iter().filter(|(id, _)| wanted.contains(id)).collect();
            asked.lock().unwrap().push(wanted);
            async move { Ok::<_, String>(metadata(&known)) }
        };
        ids.resolve(&[orders, ghost], ask).await;
        assert_eq!(ids.name(&orders).as_deref(), Some("orders"));
        assert_eq!(ids.name(&ghost), None);
        assert_eq!(ids.name_or_id(&ghost).as_str(), ghost.to_string());
        // Known ids need no lookup, nor one just found unknown; another unknown one does.
        ids.resolve(&[orders, ghost], |_| async { Err::<MetadataResponse, _>("not asked") }).await;
        ids.resolve(&[audit], ask).await;
        assert_eq!(ids.name(&audit).as_deref(), Some("audit"));
        assert_eq!(*asked.lock().unwrap(), vec![vec![orders, ghost], vec![audit]]);
    }

    #[tokio::test]
    async fn made_up_ids_cost_the_cluster_a_bounded_number_of_lookups() {
        let ids = TopicIds::default();
        let asked = std::sync::atomic::AtomicUsize::new(0);
        for n in 0..100u128 {
            let ask = |_| {
                asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async { Ok::<_, String>(MetadataResponse::default()) }
            };
            ids.resolve(&[Uuid::from_u128(1000 + n)], ask).await;
        }
        assert_eq!(asked.into_inner(), MAX_LOOKUPS_PER_SECOND);
    }
}
