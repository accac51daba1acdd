//! Quotas (see [`crate::quota`]): Produce requests are metered by their size when they
//! arrive, Fetch responses by theirs before they are forwarded (so a large one still streams),
//! and, under a `request_percentage`, every request by the time it and its response spend
//! inside the sidecar. A client over its quota is told to back off ([`RequestContext::throttle`])
//! and is not read meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use crate::filter::{ready, ConnectionInfo, Filter, Hook, RequestAction, RequestContext, Services, Usage};
use crate::quota::{ClientQuotas, Metered, QuotaMeters, QuotaRule, ANONYMOUS};
use crate::snapshot::Snapshot;

pub(crate) struct QuotaFilter {
    rules: Arc<[QuotaRule]>,
    meters: Arc<QuotaMeters>,
    principal: String,
    /// Some rule limits request time: then every request is seen, not only Produce and Fetch.
    limits_requests: bool,
    /// The quotas of the client id last seen (clients keep one per connection).
    client: Option<(Option<Bytes>, Arc<ClientMeters>)>,
}

/// The quotas one client (principal, client id) is under.
struct ClientMeters {
    produce: ClientQuotas,
    fetch: ClientQuotas,
    request: ClientQuotas,
}

impl QuotaFilter {
    pub(crate) fn new(snapshot: &Snapshot, meters: Arc<QuotaMeters>, connection: &ConnectionInfo) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        let rules = snapshot.quotas.clone();
        Self { limits_requests: limits_requests(&rules), rules, meters, principal, client: None }
    }

    fn quotas(&mut self, client_id: &Option<Bytes>, client_id_str: &str) -> Arc<ClientMeters> {
        match &self.client {
            Some((id, quotas)) if id == client_id => quotas.clone(),
            _ => {
                let of = |metered| QuotaMeters::for_client(&self.rules, metered, &self.principal, client_id_str);
                let quotas = Arc::new(ClientMeters {
                    produce: of(Metered::Produce),
                    fetch: of(Metered::Fetch),
                    request: of(Metered::Request),
                });
                self.client = Some((client_id.clone(), quotas.clone()));
                quotas
            }
        }
    }
}

fn limits_requests(rules: &[QuotaRule]) -> bool {
    rules.iter().any(|rule| rule.request_percentage.is_some())
}

/// Accounts `units` to `quotas`; the wait they ask for, counted when there is one.
fn record(
    meters: &QuotaMeters,
    quotas: &ClientQuotas,
    units: usize,
    metered: Metered,
    services: &dyn Services,
) -> Duration {
    let (wait, by) = meters.record(quotas, units, Instant::now());
    if let Some(rule) = by.filter(|_| !wait.is_zero()) {
        services.metrics().over_quota(&rule, metered.as_str());
    }
    wait
}

impl Filter for QuotaFilter {
    fn name(&self) -> &'static str {
        "quota"
    }

    fn wants_request(&self, api: ApiKey, _version: i16) -> bool {
        !self.rules.is_empty() && (self.limits_requests || matches!(api, ApiKey::Produce | ApiKey::Fetch))
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        let header = cx.header;
        let quotas = self.quotas(&header.client_id, header.client_id_str());
        let api = header.api_key;
        if api == ApiKey::Produce && !quotas.produce.is_empty() {
            let wait = record(&self.meters, &quotas.produce, cx.frame().len(), Metered::Produce, cx.services);
            cx.throttle(wait);
        }
        let meters_fetch = api == ApiKey::Fetch && !quotas.fetch.is_empty();
        if meters_fetch || !quotas.request.is_empty() {
            let meters = self.meters.clone();
            cx.meter(Box::new(move |usage, services| match usage {
                Usage::ResponseBytes(size) if meters_fetch => {
                    record(&meters, &quotas.fetch, size, Metered::Fetch, services)
                }
                Usage::SidecarTime(spent) if !quotas.request.is_empty() => {
                    for rule in quotas.request.rules() {
                        services.metrics().request_time_metered(rule, spent);
                    }
                    let micros = usize::try_from(spent.as_micros()).unwrap_or(usize::MAX);
                    record(&meters, &quotas.request, micros, Metered::Request, services)
                }
                _ => Duration::ZERO,
            }));
        }
        ready(Ok(RequestAction::Continue))
    }

    fn on_authenticated(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
        self.client = None;
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) {
        if !Arc::ptr_eq(&self.rules, &snapshot.quotas) {
            self.rules = snapshot.quotas.clone();
            self.limits_requests = limits_requests(&self.rules);
            self.client = None;
        }
    }
}
