//! Writes of the sidecar's own to one topic (not a client's): where its partitions lead, asked
//! of the cluster with Metadata and asked again after a failure, and one connection per leader
//! (see [`crate::upstream::OwnConnection`]), one request at a time. What a shadow and a canary
//! write with.

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::upstream::{Connector, OwnConnection};

/// Answers larger than this are not answers to the writer.
const MAX_ANSWER_BYTES: usize = 16 << 20;
const METADATA_VERSION: i16 = 12;

/// How the sidecar reaches a cluster for writes of its own.
#[derive(Clone)]
pub struct ClusterAccess {
    pub(crate) connector: Connector,
    pub(crate) bootstrap: Vec<String>,
}

impl ClusterAccess {
    /// `connector` reaches the brokers `bootstrap` leads to.
    pub fn new(connector: Connector, bootstrap: Vec<String>) -> Self {
        Self { connector, bootstrap }
    }

    /// A writer to `topic` of this cluster.
    pub(crate) fn writer(&self, topic: &str) -> TopicWriter {
        TopicWriter::new(topic.to_owned(), self.connector.clone(), self.bootstrap.clone())
    }
}

/// Where a topic's partitions lead.
#[derive(Debug)]
pub(crate) struct Leaders {
    /// Leader node of each partition, by index (-1: none now).
    pub(crate) leaders: Vec<i32>,
    pub(crate) brokers: HashMap<i32, String>,
    pub(crate) topic_id: Uuid,
}

/// The sidecar's writer to one topic of one cluster.
pub(crate) struct TopicWriter {
    topic: String,
    connector: Connector,
    bootstrap: Vec<String>,
    leaders: Option<Leaders>,
    connections: HashMap<i32, OwnConnection>,
}

impl TopicWriter {
    /// A writer to `topic` of the cluster `bootstrap` leads to, reached through `connector`.
    pub(crate) fn new(topic: String, connector: Connector, bootstrap: Vec<String>) -> Self {
        Self { topic, connector, bootstrap, leaders: None, connections: HashMap::new() }
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Where the topic's partitions lead, asked of a bootstrap server when not known.
    pub(crate) async fn leaders(&mut self) -> Result<&Leaders, String> {
        if self.leaders.is_none() {
            self.leaders = Some(self.lookup().await?);
        }
        Ok(self.leaders.as_ref().expect("set above"))
    }

    /// Leadership may have moved (a write failed): ask again before the next write.
    pub(crate) fn forget_leaders(&mut self) {
        self.leaders = None;
    }

    /// Sends `request` (Produce at `version`) to broker `leader`, whose answer may take
    /// `timeout`. On a failure the connection is dropped (it may be half used) and the leaders
    /// forgotten.
    pub(crate) async fn produce(
        &mut self,
        leader: i32,
        version: i16,
        request: &ProduceRequest,
        timeout: Duration,
    ) -> Result<ProduceResponse, String> {
        let answer = self.try_produce(leader, version, request, timeout).await;
        if answer.is_err() {
            self.connections.remove(&leader);
            self.forget_leaders();
        }
        answer
    }

    async fn try_produce(
        &mut self,
        leader: i32,
        version: i16,
        request: &ProduceRequest,
        timeout: Duration,
    ) -> Result<ProduceResponse, String> {
        let address = self.leaders.as_ref().and_then(|l| l.brokers.get(&leader)).cloned();
        let address = address.ok_or_else(|| format!("broker {leader} of `{}` is not known", self.topic))?;
        let connection = match self.connections.entry(leader) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let connection = self.connector.own_connection(&address, MAX_ANSWER_BYTES).await;
                entry.insert(connection.map_err(|e| e.to_string())?)
            }
        };
        let timeout = timeout + self.connector.timeout();
        connection
            .call(ApiKey::Produce, version, request, timeout)
            .await
            .map_err(|why| format!("broker {address}: {why}"))
    }

    async fn lookup(&self) -> Result<Leaders, String> {
        let name = TopicName(StrBytes::from_string(self.topic.clone()));
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name))]))
            .with_allow_auto_topic_creation(false);
        let timeout = self.connector.timeout();
        let mut last = String::from("no bootstrap server");
        for address in &self.bootstrap {
            let answer: Result<MetadataResponse, String> = async {
                let mut connection =
                    self.connector.own_connection(address, MAX_ANSWER_BYTES).await.map_err(|e| e.to_string())?;
                connection.call(ApiKey::Metadata, METADATA_VERSION, &request, timeout).await
            }
            .await;
            match answer {
                Ok(answer) => return leaders_of(&answer, &self.topic),
                Err(why) => last = format!("bootstrap {address}: {why}"),
            }
        }
        Err(last)
    }
}

/// The leaders of `topic`'s partitions in a Metadata answer.
fn leaders_of(answer: &MetadataResponse, topic: &str) -> Result<Leaders, String> {
    let found = answer.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic));
    let Some(found) = found else { return Err(format!("the answer does not name `{topic}`")) };
    if found.error_code != 0 {
        return Err(format!("`{topic}`: {}", error_name(found.error_code)));
    }
    let count = found.partitions.iter().map(|p| p.partition_index + 1).max().unwrap_or(0);
    if count <= 0 {
        return Err(format!("`{topic}` has no partitions"));
    }
    let mut leaders = vec![-1; count as usize];
    for partition in &found.partitions {
        if let Some(slot) = usize::try_from(partition.partition_index).ok().and_then(|i| leaders.get_mut(i)) {
            *slot = if partition.error_code == 0 { partition.leader_id.0 } else { -1 };
        }
    }
    let brokers = answer.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect();
    Ok(Leaders { leaders, brokers, topic_id: found.topic_id })
}

/// Whether a client may try again after this error code.
pub(crate) fn is_retriable(code: i16) -> bool {
    ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

/// A Kafka error code by its name, for logs.
pub(crate) fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code).map_or_else(|| format!("error code {code}"), |e| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaders_of_every_partition_are_read_from_metadata() {
        use kafka_protocol::messages::metadata_response::*;
        use kafka_protocol::messages::BrokerId;
        let partition = |index: i32, leader: i32, error_code: i16| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(leader))
                .with_error_code(error_code)
        };
        let answer = MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(2))
                .with_host(StrBytes::from_static_str("b2"))
                .with_port(9092)])
            .with_topics(vec![MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("s"))))
                .with_topic_id(Uuid::from_bytes([7; 16]))
                .with_partitions(vec![partition(1, 2, 0), partition(0, 2, 0), partition(2, 1, 5)])]);
        let leaders = leaders_of(&answer, "s").unwrap();
        assert_eq!(leaders.leaders, vec![2, 2, -1]);
        assert_eq!(leaders.brokers[&2], "b2:9092");
        assert_eq!(leaders.topic_id, Uuid::from_bytes([7; 16]));
        assert!(leaders_of(&answer, "other").is_err());
        let missing = MetadataResponse::default().with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("s"))))
            .with_error_code(3)]);
        let err = leaders_of(&missing, "s").unwrap_err();
        assert!(err.contains("UnknownTopicOrPartition"), "{err}");
    }
}
