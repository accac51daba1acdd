//! Every broker address a response reveals becomes the sidecar's listener for that broker
//! ([`crate::rewrite`]), so a client never learns (or connects to) a broker directly. On the
//! way, topic ids are learned from Metadata, and ApiVersions is narrowed to what the sidecar
//! handles ([`crate::versions`]).
//!
//! Produce and Fetch responses carry addresses only as leader hints after a leadership change
//! (KIP-951): they are walked in place and decoded only when they do. A Fetch response already
//! streamed to the client is left alone here; the session hides its hints (see
//! `session::responses`).

use std::sync::Arc;

use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse, MetadataResponse,
    ProduceResponse, ShareAcknowledgeResponse, ShareFetchResponse,
};
use weir_wire::fetch::scan_fetch_response;
use weir_wire::message::{ResponseBody, ResponseMessage};
use weir_wire::produce::scan_produce_response;

use crate::directory::BrokerDirectory;
use crate::filter::{ready, Filter, FilterError, Hook, ResponseContext};
use crate::rewrite::{self, RewriteError};
use crate::versions;

pub(crate) struct AddressFilter {
    directory: Arc<BrokerDirectory>,
}

impl AddressFilter {
    pub(crate) fn new(directory: Arc<BrokerDirectory>) -> Self {
        Self { directory }
    }
}

/// Rewrites the decoded response with `change`; returns how many addresses it rewrote.
fn change<T: ResponseBody>(
    message: &mut ResponseMessage,
    change: impl FnOnce(&mut T) -> Result<usize, RewriteError>,
) -> Result<usize, FilterError> {
    Ok(change(message.decoded_mut::<T>().map_err(FilterError::BadResponse)?)?)
}

/// Reads the decoded response (decoded once, shared with later filters).
fn read<T: ResponseBody>(message: &mut ResponseMessage) -> Result<&T, FilterError> {
    message.decoded::<T>().map_err(FilterError::BadResponse)
}

impl Filter for AddressFilter {
    fn name(&self) -> &'static str {
        "addresses"
    }

    fn wants_response(&self, api: ApiKey, _version: i16) -> bool {
        use ApiKey::*;
        matches!(
            api,
            ApiVersions
                | Metadata
                | FindCoordinator
                | DescribeCluster
                | Produce
                | Fetch
                | ShareFetch
                | ShareAcknowledge
        )
    }

    fn on_response<'a>(&'a mut self, cx: &'a mut ResponseContext<'_>) -> Hook<'a, ()> {
        let rewritten = self.rewrite(cx);
        ready(rewritten.map(|count| {
            if count > 0 {
                cx.services.metrics().api(cx.message.api_key()).rewrites.inc_by(count as u64);
            }
        }))
    }
}

impl AddressFilter {
    fn rewrite(&self, cx: &mut ResponseContext<'_>) -> Result<usize, FilterError> {
        let map = &*self.directory;
        let message = &mut *cx.message;
        let version = message.version();
        match message.api_key() {
            ApiKey::ApiVersions => change(message, |r: &mut ApiVersionsResponse| {
                versions::intersect(r);
                Ok(0)
            }),
            ApiKey::Metadata => {
                let topic_ids = cx.services.topic_ids();
                change(message, |r: &mut MetadataResponse| {
                    topic_ids.learn(r);
                    rewrite::metadata(r, map)
                })
            }
            ApiKey::FindCoordinator => {
                change(message, |r: &mut FindCoordinatorResponse| rewrite::find_coordinator(r, map))
            }
            ApiKey::DescribeCluster => {
                change(message, |r: &mut DescribeClusterResponse| rewrite::describe_cluster(r, map))
            }
            // The session hides the hints of a response it streamed.
            _ if message.is_sent() => Ok(0),
            ApiKey::Produce => {
                let body = message.body().map_err(FilterError::BadResponse)?;
                let hints =
                    scan_produce_response(&body, version, |_, _, _| {}).map_err(FilterError::BadResponseBody)?;
                if !hints {
                    return Ok(0);
                }
                change(message, |r: &mut ProduceResponse| rewrite::produce(r, map))
            }
            ApiKey::Fetch => {
                let body = message.body().map_err(FilterError::BadResponse)?;
                let summary = scan_fetch_response(&body, version, |_| {}).map_err(FilterError::BadResponseBody)?;
                if !summary.has_node_endpoints() {
                    return Ok(0);
                }
                change(message, |r: &mut FetchResponse| rewrite::fetch(r, map))
            }
            ApiKey::ShareFetch => {
                if read::<ShareFetchResponse>(message)?.node_endpoints.is_empty() {
                    return Ok(0);
                }
                change(message, |r: &mut ShareFetchResponse| rewrite::share_fetch(r, map))
            }
            ApiKey::ShareAcknowledge => {
                if read::<ShareAcknowledgeResponse>(message)?.node_endpoints.is_empty() {
                    return Ok(0);
                }
                change(message, |r: &mut ShareAcknowledgeResponse| rewrite::share_acknowledge(r, map))
            }
            _ => Ok(0),
        }
    }
}
