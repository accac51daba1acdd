//! Produce safeguards (see [`crate::safeguard`]): the partitions of a produce request that
//! break a rule of their topic are taken out of it and answered here with the error a broker
//! would give (and, from Produce v8, a message naming the rule and `record_errors` naming the
//! records that broke it); the rest go to the broker, whose answer gets the refused
//! partitions added. Judged from the request and the batch headers as they are; the records
//! are read in place (decompressed into a scratch buffer when compressed) only for a rule
//! about records. A request breaking nothing goes on as the same bytes.

use std::sync::Arc;

use weir_wire::compression::Codec;

use crate::answers::{refuse_produce_partitions, PartitionRefusal, ProduceTopic};
use crate::filter::{ready, ConnectionInfo, FilterError, Hook, RequestAction, RequestContext};
use crate::filters::ProducePolicy;
use crate::quota::ANONYMOUS;
use crate::safeguard::{BatchFacts, Guard, ProduceSafeguard, Refusal};
use crate::snapshot::Snapshot;

pub(crate) struct SafeguardFilter {
    rules: Arc<[ProduceSafeguard]>,
    /// The rules whose principals cover this connection's.
    mine: Vec<Guard>,
    principal: String,
    /// The most a compressed batch may grow to when read (`limits.max_decompressed_batch_bytes`).
    decompressed_limit: usize,
    /// Where compressed batches are decompressed, kept between requests while small.
    scratch: Vec<u8>,
}

impl SafeguardFilter {
    pub(crate) fn new(snapshot: &Snapshot, connection: &ConnectionInfo, decompressed_limit: usize) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        let rules = snapshot.produce_safeguards.clone();
        let mut filter = Self { rules, mine: Vec::new(), principal, decompressed_limit, scratch: Vec::new() };
        filter.choose();
        filter
    }

    fn choose(&mut self) {
        let principal = &self.principal;
        self.mine = self.rules.iter().filter(|r| r.covers_principal(principal)).map(Guard::new).collect();
    }

    /// Every partition the rules refuse, with the first refusal of each.
    fn refusals(&mut self, cx: &RequestContext<'_>) -> Result<Vec<(ProduceTopic, i32, Refusal, u64)>, FilterError> {
        let ids = cx.services.topic_ids();
        let acks = weir_wire::produce::acks(cx.body(), cx.header.api_version).map_err(FilterError::BadRequestBody)?;
        let client_id = cx.header.client_id_str();
        let mut refused = Vec::new();
        let (mine, limit, scratch) = (&self.mine, self.decompressed_limit, &mut self.scratch);
        weir_wire::produce::scan_produce(cx.frame(), cx.header, |topic, partition, records| {
            let Some(name) = crate::filters::produce_topic_name(ids, topic) else { return };
            let name = &*name;
            let refusal = mine.iter().filter(|guard| guard.guards(name)).find_map(|guard| {
                guard.refuses_request(name, client_id, acks).or_else(|| {
                    weir_wire::records::batches(records).find_map(|batch| {
                        let codec = batch.attributes.and_then(Codec::of_attributes);
                        guard
                            .refuses_batch(&BatchFacts { size: batch.size, codec })
                            .or_else(|| guard.refuses_records(batch.bytes, limit, scratch))
                    })
                })
            });
            if let Some(refusal) = refusal {
                let records = weir_wire::records::count_records(records);
                refused.push((ProduceTopic::of(topic), partition, refusal, records));
            }
        })
        .map_err(FilterError::BadRequestBody)?;
        crate::filters::release_scratch(&mut self.scratch);
        Ok(refused)
    }

    fn guard(&mut self, cx: &mut RequestContext<'_>) -> Result<RequestAction, FilterError> {
        let refused = self.refusals(cx)?;
        if refused.is_empty() {
            return Ok(RequestAction::Continue);
        }
        let refused: Vec<PartitionRefusal> = refused
            .into_iter()
            .map(|(topic, partition, refusal, records)| {
                cx.services.metrics().produce_refused(&refusal.rule, refusal.breach.as_str(), records);
                tracing::debug!(partition, rule = refusal.rule, reason = refusal.message, "produce refused");
                let code = refusal.breach.error_code();
                let Refusal { message, record_errors, .. } = refusal;
                PartitionRefusal { topic, partition, code, message, record_errors }
            })
            .collect();
        refuse_produce_partitions(cx, &refused, Vec::new())
    }
}

impl ProducePolicy for SafeguardFilter {
    fn name(&self) -> &'static str {
        "safeguard"
    }

    fn has_rules(&self) -> bool {
        !self.mine.is_empty()
    }

    fn judge<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        ready(self.guard(cx))
    }

    fn principal_changed(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
        self.choose();
    }

    fn snapshot_changed(&mut self, snapshot: &Snapshot) {
        if !Arc::ptr_eq(&self.rules, &snapshot.produce_safeguards) {
            self.rules = snapshot.produce_safeguards.clone();
            self.choose();
        }
    }
}
