//! Authorization as a filter of the chain.

use kafka_protocol::messages::ApiKey;

use super::{AfterResponse, AuthzEnv, AuthzError, ConnectionAuthz, Verdict};
use crate::filter::{later, Filter, FilterError, Hook, RequestAction, RequestContext, ResponseContext, Services};
use crate::snapshot::Snapshot;

impl<'a> AuthzEnv<'a> {
    fn of(services: &'a dyn Services) -> Self {
        Self { topic_ids: services.topic_ids(), metrics: services.metrics(), audit: services.audit() }
    }
}

impl From<AuthzError> for FilterError {
    fn from(err: AuthzError) -> Self {
        match err {
            AuthzError::BadRequest(e) => Self::BadRequest(e),
            AuthzError::BadRequestBody(e) => Self::BadRequestBody(e),
            AuthzError::Denied { api, operation, resource } => Self::Denied { api, operation, resource },
        }
    }
}

impl Filter for ConnectionAuthz {
    fn name(&self) -> &'static str {
        "authz"
    }

    fn wants_request(&self, _api: ApiKey, _version: i16) -> bool {
        self.enabled()
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        later(async move {
            let env = AuthzEnv::of(cx.services);
            let mut verdict = self.check(&env, cx.frame(), cx.header, false)?;
            if let Verdict::Unresolved(ids) = &verdict {
                cx.services.resolve_topic_ids(ids).await;
                verdict = self.check(&env, cx.frame(), cx.header, true)?;
            }
            let mut after = None;
            let action = match verdict {
                Verdict::Forward => RequestAction::Continue,
                Verdict::Filter(step) => {
                    after = Some(step);
                    RequestAction::Continue
                }
                Verdict::Rewritten(frame, step) => {
                    cx.replace_frame(frame);
                    after = step;
                    RequestAction::Continue
                }
                Verdict::Answer(answer) => RequestAction::Answer(answer),
                Verdict::Drop => RequestAction::Drop,
                // Only before a lookup, which was just made.
                Verdict::Unresolved(_) => return Err(FilterError::UnresolvedTopicIds),
            };
            if let Some(after) = after {
                cx.remember(after);
                cx.will_change_response();
            }
            Ok(action)
        })
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        later(async move {
            let Some(after) = cx.take_note::<AfterResponse>() else { return Ok(()) };
            let topic_ids = cx.services.topic_ids();
            let mut unknown = after.topic_ids(cx.message).map_err(FilterError::BadResponse)?;
            unknown.retain(|id| topic_ids.name(id).is_none());
            if !unknown.is_empty() {
                cx.services.resolve_topic_ids(&unknown).await;
            }
            after.apply(cx.message).map_err(FilterError::BadResponse)
        })
    }

    fn on_authenticated(&mut self, principal: &str) {
        self.set_principal(principal);
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) {
        self.set_policy(snapshot.policy.as_ref());
    }
}
