//! Policies that read or rewrite what a consumer fetches, partition by partition (opening
//! sealed records): a [`RecordsPass`], handed over with the Fetch request
//! ([`RequestContext::pass_records`]), instead of having the whole response held back.
//!
//! A large response that no filter changes otherwise streams through the session as it
//! arrives; the session holds back each partition of a covered topic only until its records
//! are in, gives them to the pass, writes what it answers in their place (the same number of
//! bytes: the frame's length went out first) and sends the partition on. A response read
//! whole anyway (small, or changed by another filter) is passed by the filter that made the
//! pass, at its place in the chain ([`pass_whole_response`]). Either way the pass sees topics
//! by the names the broker answered with (ids named first) and the same bytes.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::FetchResponse;

use super::{FilterError, Hook, Notes, RequestContext, ResponseContext, Services};

/// What a pass makes of one partition's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassOutcome {
    /// Forwarded as they are.
    Same,
    /// Forwarded as the pass wrote them into `out`: as many bytes as the records were (see
    /// `crate::fetched::refill_partition_same_size`); any other length fails the partition.
    Rewritten,
    /// The partition answers this error and no records.
    Failed(ResponseError),
}

/// A policy over fetched records, one partition at a time.
pub trait RecordsPass: Send {
    /// Whether the partitions of `topic` (as the broker named it) go through
    /// [`RecordsPass::partition`]; the session holds back only those.
    fn covers(&self, topic: &str) -> bool;

    /// One partition of a covered topic: its records section as fetched (possibly empty);
    /// `out` is a buffer the caller keeps for [`PassOutcome::Rewritten`] (its contents are
    /// the pass's to replace).
    fn partition<'a>(
        &'a mut self,
        services: &'a dyn Services,
        topic: &'a str,
        partition: i32,
        records: &'a [u8],
        out: &'a mut Vec<u8>,
    ) -> Hook<'a, PassOutcome>;
}

/// The note a pass travels in with its request.
pub(crate) struct PassNote(pub(crate) Box<dyn RecordsPass>);

impl RequestContext<'_> {
    /// Has `pass` read or rewrite the records of the response's partitions (see the module).
    /// Unlike [`RequestContext::will_change_response`], the response may still stream. The
    /// filter gets the pass back as its note when the response is read whole.
    pub fn pass_records(&mut self, pass: Box<dyn RecordsPass>) {
        self.remember(PassNote(pass));
    }
}

impl Notes {
    /// Takes out the passes, in response order (the chain's reverse), for a response the
    /// session streams: their filters then get no note back.
    pub(crate) fn take_passes(&mut self) -> Vec<Box<dyn RecordsPass>> {
        let mut taken: Vec<(usize, Box<dyn RecordsPass>)> = Vec::new();
        let mut index = 0;
        while index < self.0.len() {
            if self.0[index].1.is::<PassNote>() {
                let (filter, note) = self.0.remove(index);
                if let Ok(note) = note.downcast::<PassNote>() {
                    taken.push((filter, note.0));
                }
            } else {
                index += 1;
            }
        }
        taken.sort_by_key(|(filter, _)| std::cmp::Reverse(*filter));
        taken.into_iter().map(|(_, pass)| pass).collect()
    }
}

/// Passes every covered partition of a whole (decoded) Fetch response: what a filter's
/// `on_response` does with the pass it gets back as its note.
pub async fn pass_whole_response(cx: &mut ResponseContext<'_>, pass: &mut dyn RecordsPass) -> Result<(), FilterError> {
    let unknown = crate::filters::unknown_fetch_topic_ids(cx)?;
    if !unknown.is_empty() {
        cx.services.resolve_topic_ids(&unknown).await;
    }
    let version = cx.message.version();
    let ids = cx.services.topic_ids().clone();
    let services = cx.services;
    let mut out = Vec::new();
    let response: &mut FetchResponse = cx.message.decoded_mut().map_err(FilterError::BadResponse)?;
    for topic in &mut response.responses {
        let Some(name) = crate::filters::fetched_topic_name(&ids, version, topic) else { continue };
        if !pass.covers(&name) {
            continue;
        }
        for partition in &mut topic.partitions {
            let records = partition.records.clone().unwrap_or_default();
            match pass.partition(services, &name, partition.partition_index, &records, &mut out).await? {
                PassOutcome::Same => {}
                PassOutcome::Rewritten if out.len() == records.len() => {
                    partition.records = Some(Bytes::from(std::mem::take(&mut out)));
                }
                PassOutcome::Rewritten => {
                    tracing::warn!(
                        topic = %name,
                        partition = partition.partition_index,
                        "records rewritten to {} bytes where {} were fetched: not served",
                        out.len(),
                        records.len()
                    );
                    fail(partition, ResponseError::UnknownServerError);
                }
                PassOutcome::Failed(error) => fail(partition, error),
            }
        }
    }
    Ok(())
}

fn fail(partition: &mut kafka_protocol::messages::fetch_response::PartitionData, error: ResponseError) {
    partition.records = Some(Bytes::new());
    partition.error_code = error.code();
}
