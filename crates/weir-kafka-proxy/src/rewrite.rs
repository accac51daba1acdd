//! Address rewriting: every broker address a response reveals is replaced by the sidecar's own
//! listener for that broker, so a client never learns (or connects to) a broker directly.
//!
//! Pure functions over decoded messages; where the addresses point is the [`AddressMap`]'s job.

use kafka_protocol::messages::{
    DescribeClusterResponse, FetchResponse, FindCoordinatorResponse, MetadataResponse, ProduceResponse,
    ShareAcknowledgeResponse, ShareFetchResponse,
};
use kafka_protocol::protocol::StrBytes;

/// Why an address could not be rewritten. The response is then not forwarded at all: a
/// client must never receive a broker's real address.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("broker node id {node_id} has no sidecar port: node ids 0..{count} are mapped (raise broker_ports.count)")]
    NodeOutOfRange { node_id: i32, count: u16 },
    #[error("cannot open the sidecar listener for broker {node_id} on {addr}: {error}")]
    Listen { node_id: i32, addr: std::net::SocketAddr, error: std::io::Error },
}

/// Where clients must connect to reach a broker through the sidecar.
pub trait AddressMap {
    /// Learns that broker `node_id` is reachable upstream at `host:port` and returns the
    /// `(host, port)` clients must be given instead.
    fn map(&self, node_id: i32, host: &str, port: i32) -> Result<(StrBytes, i32), RewriteError>;
}

/// Rewrites one `(node_id, host, port)` triple in place; returns 1 if it was an address.
fn rewrite(map: &impl AddressMap, node_id: i32, host: &mut StrBytes, port: &mut i32) -> Result<usize, RewriteError> {
    // Error entries carry node -1 and an empty host: nothing to hide, nothing to map.
    if node_id < 0 || host.is_empty() {
        return Ok(0);
    }
    let (new_host, new_port) = map.map(node_id, host.as_str(), *port)?;
    *host = new_host;
    *port = new_port;
    Ok(1)
}

pub fn metadata(resp: &mut MetadataResponse, map: &impl AddressMap) -> Result<usize, RewriteError> {
    let mut n = 0;
    for b in &mut resp.brokers {
        n += rewrite(map, b.node_id.0, &mut b.host, &mut b.port)?;
    }
    Ok(n)
}

/// Covers both the single-coordinator form (v0-v3) and the batched `coordinators` (v4+).
pub fn find_coordinator(resp: &mut FindCoordinatorResponse, map: &impl AddressMap) -> Result<usize, RewriteError> {
    let mut n = rewrite(map, resp.node_id.0, &mut resp.host, &mut resp.port)?;
    for c in &mut resp.coordinators {
        n += rewrite(map, c.node_id.0, &mut c.host, &mut c.port)?;
    }
    Ok(n)
}

pub fn describe_cluster(resp: &mut DescribeClusterResponse, map: &impl AddressMap) -> Result<usize, RewriteError> {
    let mut n = 0;
    for b in &mut resp.brokers {
        n += rewrite(map, b.broker_id.0, &mut b.host, &mut b.port)?;
    }
    Ok(n)
}

macro_rules! node_endpoints {
    ($name:ident, $ty:ty) => {
        /// Rewrites the leader hints (`NodeEndpoints`) sent when leadership moved.
        pub fn $name(resp: &mut $ty, map: &impl AddressMap) -> Result<usize, RewriteError> {
            let mut n = 0;
            for e in &mut resp.node_endpoints {
                n += rewrite(map, e.node_id.0, &mut e.host, &mut e.port)?;
            }
            Ok(n)
        }
    };
}

node_endpoints!(produce, ProduceResponse);
node_endpoints!(fetch, FetchResponse);
node_endpoints!(share_fetch, ShareFetchResponse);
node_endpoints!(share_acknowledge, ShareAcknowledgeResponse);

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::fetch_response::NodeEndpoint;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::protocol::{Decodable, Encodable, Message};
    use proptest::prelude::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Port-per-broker as the sidecar does it, recording what it learned.
    struct PortPerBroker {
        base: i32,
        count: u16,
        learned: RefCell<HashMap<i32, (String, i32)>>,
    }

    impl AddressMap for PortPerBroker {
        fn map(&self, node_id: i32, host: &str, port: i32) -> Result<(StrBytes, i32), RewriteError> {
            if node_id >= i32::from(self.count) {
                return Err(RewriteError::NodeOutOfRange { node_id, count: self.count });
            }
            self.learned.borrow_mut().insert(node_id, (host.to_owned(), port));
            Ok((StrBytes::from_static_str("sidecar.local"), self.base + node_id))
        }
    }

    fn sidecar() -> PortPerBroker {
        PortPerBroker { base: 20000, count: 1000, learned: RefCell::default() }
    }

    fn upstream_host(i: usize) -> String {
        format!("upstream-broker-{i}.cluster.example")
    }

    fn encoded<T: Encodable>(msg: &T, version: i16) -> Vec<u8> {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    prop_compose! {
        fn brokers()(ids in proptest::collection::btree_set(0i32..999, 1..8), ports in proptest::collection::vec(1i32..65535, 8))
            -> Vec<(i32, String, i32)> {
            ids.into_iter().enumerate().map(|(i, id)| (id, upstream_host(i), ports[i])).collect()
        }
    }

    proptest! {
        /// Whatever the brokers, at every version: ids are kept, every address is the sidecar's
        /// port for that id, the real addresses are learned and appear nowhere in the bytes.
        #[test]
        fn metadata_never_leaks_a_broker_address(brokers in brokers(), version in MetadataResponse::VERSIONS.min..=MetadataResponse::VERSIONS.max) {
            let mut resp = MetadataResponse::default().with_brokers(brokers.iter().map(|(id, host, port)| {
                MetadataResponseBroker::default().with_node_id((*id).into()).with_host(StrBytes::from_string(host.clone())).with_port(*port)
            }).collect());
            let map = sidecar();
            prop_assert_eq!(metadata(&mut resp, &map).unwrap(), brokers.len());
            let bytes = encoded(&resp, version);
            let decoded = MetadataResponse::decode(&mut bytes::Bytes::from(bytes.clone()), version).unwrap();
            for ((id, host, port), b) in brokers.iter().zip(&decoded.brokers) {
                prop_assert_eq!(b.node_id.0, *id);
                prop_assert_eq!(b.host.as_str(), "sidecar.local");
                prop_assert_eq!(b.port, 20000 + id);
                prop_assert!(!contains(&bytes, host));
                let learned = map.learned.borrow().get(id).cloned();
                prop_assert_eq!(learned, Some((host.clone(), *port)));
            }
        }

        #[test]
        fn find_coordinator_rewrites_both_forms(brokers in brokers(), version in FindCoordinatorResponse::VERSIONS.min..=FindCoordinatorResponse::VERSIONS.max) {
            let (id, host, port) = brokers[0].clone();
            let mut resp = FindCoordinatorResponse::default();
            if version < 4 {
                resp = resp.with_node_id(id.into()).with_host(StrBytes::from_string(host.clone())).with_port(port);
            } else {
                resp = resp.with_coordinators(brokers.iter().map(|(id, host, port)| Coordinator::default()
                    .with_key(StrBytes::from_static_str("group")).with_node_id((*id).into())
                    .with_host(StrBytes::from_string(host.clone())).with_port(*port)).collect());
            }
            find_coordinator(&mut resp, &sidecar()).unwrap();
            let bytes = encoded(&resp, version);
            for (_, host, _) in &brokers {
                prop_assert!(!contains(&bytes, host));
            }
            let decoded = FindCoordinatorResponse::decode(&mut bytes::Bytes::from(bytes), version).unwrap();
            if version < 4 {
                prop_assert_eq!(decoded.port, 20000 + id);
            } else {
                for (c, (id, _, _)) in decoded.coordinators.iter().zip(&brokers) {
                    prop_assert_eq!(c.port, 20000 + id);
                }
            }
        }

        #[test]
        fn describe_cluster_and_leader_hints(brokers in brokers()) {
            let mut dc = DescribeClusterResponse::default().with_brokers(brokers.iter().map(|(id, host, port)| {
                DescribeClusterBroker::default().with_broker_id((*id).into()).with_host(StrBytes::from_string(host.clone())).with_port(*port)
            }).collect());
            describe_cluster(&mut dc, &sidecar()).unwrap();
            let mut fetch_resp = FetchResponse::default().with_node_endpoints(brokers.iter().map(|(id, host, port)| {
                NodeEndpoint::default().with_node_id((*id).into()).with_host(StrBytes::from_string(host.clone())).with_port(*port)
            }).collect());
            fetch(&mut fetch_resp, &sidecar()).unwrap();
            let dc_bytes = encoded(&dc, 1);
            let fetch_bytes = encoded(&fetch_resp, 17);
            for (_, host, _) in &brokers {
                prop_assert!(!contains(&dc_bytes, host));
                prop_assert!(!contains(&fetch_bytes, host));
            }
        }
    }

    #[test]
    fn error_entries_are_left_alone_and_out_of_range_ids_refused() {
        let mut resp = FindCoordinatorResponse::default().with_error_code(15).with_node_id((-1).into()).with_port(-1);
        assert_eq!(find_coordinator(&mut resp, &sidecar()).unwrap(), 0);
        let mut resp = MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(5000.into())
            .with_host(StrBytes::from_static_str("far"))
            .with_port(1)]);
        let err = metadata(&mut resp, &sidecar()).unwrap_err();
        assert!(err.to_string().contains("broker_ports.count"), "{err}");
    }
}
