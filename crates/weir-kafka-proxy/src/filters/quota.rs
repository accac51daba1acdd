//! Byte-rate quotas (see [`crate::quota`]): Produce requests are metered by their size when
//! they arrive, Fetch responses by theirs when they return; a client over its quota is told
//! to back off ([`RequestContext::throttle`]) and is not read meanwhile.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use crate::filter::{ready, ConnectionInfo, Filter, FilterError, Hook, RequestAction, RequestContext};
use crate::filter::{ResponseContext, Services};
use crate::quota::{ClientQuotas, Metered, QuotaMeters, QuotaRule, ANONYMOUS};
use crate::snapshot::Snapshot;

pub(crate) struct QuotaFilter {
    rules: Arc<[QuotaRule]>,
    meters: Arc<QuotaMeters>,
    principal: String,
    /// The quotas of the client id last seen (clients keep one per connection).
    client: Option<(Option<Bytes>, ClientQuotas, ClientQuotas)>,
}

/// Left on a Fetch request whose response is metered.
struct MeterFetch(ClientQuotas);

impl QuotaFilter {
    pub(crate) fn new(snapshot: &Snapshot, meters: Arc<QuotaMeters>, connection: &ConnectionInfo) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        Self { rules: snapshot.quotas.clone(), meters, principal, client: None }
    }

    fn quotas(
        &mut self,
        client_id: &Option<Bytes>,
        client_id_str: &str,
    ) -> &(Option<Bytes>, ClientQuotas, ClientQuotas) {
        if self.client.as_ref().is_none_or(|(id, _, _)| id != client_id) {
            let of = |metered| QuotaMeters::for_client(&self.rules, metered, &self.principal, client_id_str);
            self.client = Some((client_id.clone(), of(Metered::Produce), of(Metered::Fetch)));
        }
        self.client.as_ref().expect("set above")
    }
}

fn over_quota(services: &dyn Services, rule: Option<&str>, metered: Metered) {
    if let Some(rule) = rule {
        services.metrics().over_quota(rule, metered.as_str());
    }
}

impl Filter for QuotaFilter {
    fn name(&self) -> &'static str {
        "quota"
    }

    fn wants_request(&self, api: ApiKey, _version: i16) -> bool {
        !self.rules.is_empty() && matches!(api, ApiKey::Produce | ApiKey::Fetch)
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        let header = cx.header;
        let meters = self.meters.clone();
        let (_, produce, fetch) = self.quotas(&header.client_id, header.client_id_str());
        match header.api_key {
            ApiKey::Produce if !produce.is_empty() => {
                let (wait, by) = meters.record(produce, cx.frame().len(), Instant::now());
                if !wait.is_zero() {
                    over_quota(cx.services, by.as_deref(), Metered::Produce);
                    cx.throttle(wait);
                }
            }
            ApiKey::Fetch if !fetch.is_empty() => {
                // Read whole, so that the response can say how long to wait.
                let fetch = fetch.clone();
                cx.will_change_response();
                cx.remember(MeterFetch(fetch));
            }
            _ => {}
        }
        ready(Ok(RequestAction::Continue))
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        if let Some(MeterFetch(quotas)) = cx.take_note::<MeterFetch>() {
            let size = match cx.message.body() {
                Ok(body) => body.len(),
                Err(err) => return ready(Err(FilterError::BadResponse(err))),
            };
            let (wait, by) = self.meters.record(&quotas, size, Instant::now());
            if !wait.is_zero() {
                over_quota(cx.services, by.as_deref(), Metered::Fetch);
                cx.throttle(wait);
            }
        }
        ready(Ok(()))
    }

    fn on_authenticated(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
        self.client = None;
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) {
        if !Arc::ptr_eq(&self.rules, &snapshot.quotas) {
            self.rules = snapshot.quotas.clone();
            self.client = None;
        }
    }
}
