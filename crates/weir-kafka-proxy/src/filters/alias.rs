//! Topic aliases (see [`crate::alias`]): a client's topic names are the cluster's aliased
//! topics in every request, and the cluster's names are the client's again in every answer.
//!
//! Requests and answers of any api are renamed by the schema walk, which leaves a frame that
//! names no aliased topic as the very bytes that came. Metadata answers are the exception: the
//! cluster's topic the client's name stands for replaces the topic of that name (which the
//! client no longer sees), so that an answer listing every topic names each once. Filters
//! after this one in the chain (authorization, quotas, metrics, faults, shadows) see the
//! cluster's names: a policy speaks of the topics that are really read and written.
//!
//! Topic ids need nothing: the cluster's id of the aliased topic is what the client learns
//! from Metadata, so requests by id already name the right topic.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, MetadataResponse};

use crate::alias::TopicAlias;
use crate::filter::ResponseContext;
use crate::filter::{ready, ConnectionInfo, Filter, FilterError, Hook, RequestAction, RequestContext};
use crate::quota::{covers, ANONYMOUS};
use crate::snapshot::Snapshot;

/// The first Fetch version that names topics by id: its answers name none.
const FIRST_FETCH_BY_ID: i16 = 13;

pub(crate) struct AliasFilter {
    aliases: Arc<[TopicAlias]>,
    /// The aliases whose principals cover this connection's: (client's name, cluster's name).
    mine: Vec<(String, String)>,
    principal: String,
}

impl AliasFilter {
    pub(crate) fn new(snapshot: &Snapshot, connection: &ConnectionInfo) -> Self {
        let principal = connection.principal.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        let mut filter = Self { aliases: snapshot.topic_aliases.clone(), mine: Vec::new(), principal };
        filter.choose();
        filter
    }

    fn choose(&mut self) {
        let principal = &self.principal;
        self.mine = self
            .aliases
            .iter()
            .filter(|a| covers(&a.principals, principal))
            .map(|a| (a.topic.clone(), a.to.clone()))
            .collect();
    }

    fn to_cluster(&self, name: &str) -> Option<String> {
        self.mine.iter().find(|(client, _)| client == name).map(|(_, cluster)| cluster.clone())
    }

    fn to_client(&self, name: &str) -> Option<String> {
        self.mine.iter().find(|(_, cluster)| cluster == name).map(|(client, _)| client.clone())
    }

    /// A Metadata answer in the client's names: the cluster's topics its names stand for
    /// take their place. Returns whether it changed.
    fn metadata(&self, cx: &mut ResponseContext<'_>) -> Result<bool, FilterError> {
        let names = |resp: &MetadataResponse| -> bool {
            resp.topics
                .iter()
                .filter_map(|t| t.name.as_ref())
                .any(|n| self.mine.iter().any(|(client, cluster)| n.as_str() == client || n.as_str() == cluster))
        };
        if !names(cx.message.decoded::<MetadataResponse>().map_err(FilterError::BadResponse)?) {
            return Ok(false);
        }
        let resp = cx.message.decoded_mut::<MetadataResponse>().map_err(FilterError::BadResponse)?;
        let is_client_name = |n: &str| self.mine.iter().any(|(client, _)| n == client);
        resp.topics.retain(|t| !t.name.as_ref().is_some_and(|n| is_client_name(n.as_str())));
        for topic in &mut resp.topics {
            if let Some(client) = topic.name.as_ref().and_then(|n| self.to_client(n.as_str())) {
                topic.name = Some(kafka_protocol::messages::TopicName(client.into()));
            }
        }
        Ok(true)
    }
}

impl Filter for AliasFilter {
    fn name(&self) -> &'static str {
        "alias"
    }

    fn wants_request(&self, _api: ApiKey, _version: i16) -> bool {
        !self.mine.is_empty()
    }

    fn wants_response(&self, _api: ApiKey, _version: i16) -> bool {
        !self.mine.is_empty()
    }

    fn on_request<'a>(&'a mut self, cx: &'a mut RequestContext<'_>) -> Hook<'a, RequestAction> {
        let renamed = weir_wire::rename::rename_request_topics(cx.frame(), cx.header, &|n| self.to_cluster(n));
        match renamed {
            Ok(Some(frame)) => cx.replace_frame(frame),
            Ok(None) => {}
            Err(err) => return ready(Err(FilterError::Rename(err))),
        }
        // A Fetch answer by name may name the cluster's topic even when the request named
        // none (a fetch session's topics): it is read whole, never streamed, to be renamed.
        if cx.header.api_key == ApiKey::Fetch && cx.header.api_version < FIRST_FETCH_BY_ID {
            cx.will_change_response();
        }
        ready(Ok(RequestAction::Continue))
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        let renamed = match cx.message.api_key() {
            ApiKey::Metadata => self.metadata(cx).map(drop),
            _ if cx.message.is_sent() => Ok(()),
            _ => cx.message.rename_topics(&|n| self.to_client(n)).map(drop).map_err(FilterError::BadResponse),
        };
        ready(renamed)
    }

    fn on_authenticated(&mut self, principal: &str) {
        principal.clone_into(&mut self.principal);
        self.choose();
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) {
        self.aliases = snapshot.topic_aliases.clone();
        self.choose();
    }
}
