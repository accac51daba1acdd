//! Reading stretches of partitions again: what a subscriber missed while it was away (the MQTT
//! gateway's persistent sessions resume from where their client last acknowledged, up to where
//! the live tail took them back).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::logging::Logging;
use crate::tail::Record;

/// Offsets `start..end` of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub topic: Arc<str>,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// Reads every range once, in offset order per partition, handing each record to `each` until
/// it says false or `stop`. A range whose start the log no longer holds (retention) starts at
/// the log's beginning. Blocking: run it off the runtime's workers.
pub fn replay(
    config: &KafkaConfig,
    ranges: &[Range],
    mut each: impl FnMut(Arc<Record>) -> bool,
    stop: &CancellationToken,
) -> Result<(), KafkaError> {
    let mut open: HashMap<(Arc<str>, i32), i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for range in ranges.iter().filter(|r| r.start < r.end) {
        assignment.add_partition_offset(&range.topic, range.partition, Offset::Offset(range.start))?;
        open.insert((range.topic.clone(), range.partition), range.end);
    }
    if open.is_empty() {
        return Ok(());
    }
    let mut client = config.client_config();
    client
        .set("group.id", "weir-gateway-replay")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer<Logging> = client.create_with_context(Logging)?;
    consumer.assign(&assignment)?;
    while !open.is_empty() && !stop.is_cancelled() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let key = (Arc::<str>::from(rdkafka::Message::topic(&message)), rdkafka::Message::partition(&message));
                let Some(&end) = open.get(&key) else { continue };
                let offset = rdkafka::Message::offset(&message);
                if offset < end && !each(Arc::new(Record::from_message(&key.0, &message))) {
                    return Ok(());
                }
                if offset + 1 >= end {
                    open.remove(&key);
                }
            }
            // The end of a partition: done with every range of that number the consumer has
            // read to its end (the event does not name the topic).
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let positions = consumer.position()?;
                open.retain(|(topic, p), end| {
                    let at = positions.find_partition(topic, *p).and_then(|e| e.offset().to_raw());
                    !(*p == partition && at.is_some_and(|at| at >= *end))
                });
            }
            Some(Err(error)) => tracing::info!(%error, "replaying"),
            None => {}
        }
    }
    Ok(())
}
