//! Reaching brokers: name resolution (with the configured overrides), connect timeouts, and
//! the sidecar's own Metadata probe that decides readiness and discovers brokers early.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weir_wire::frame::with_length_prefix;
use weir_wire::FrameReader;

use crate::config::split_host_port;

/// Why a broker could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("`{0}` is not host:port")]
    BadAddress(String),
    #[error("cannot resolve `{host}`: {error}")]
    Resolve { host: String, error: std::io::Error },
    #[error("`{0}` resolved to no address")]
    NoAddress(String),
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout { addr: SocketAddr, timeout: Duration },
    #[error("cannot connect to {addr}: {error}")]
    Connect { addr: SocketAddr, error: std::io::Error },
    #[error("metadata probe to {addr} failed: {reason}")]
    Probe { addr: String, reason: String },
}

/// How to turn a broker's advertised `host:port` into a socket.
#[derive(Clone)]
pub struct Connector {
    resolve: BTreeMap<String, IpAddr>,
    timeout: Duration,
}

impl Connector {
    pub fn new(resolve: BTreeMap<String, IpAddr>, timeout: Duration) -> Self {
        Self { resolve, timeout }
    }

    /// Resolves `host` through the static overrides (exact name first, then the longest
    /// matching `*.suffix`), falling back to the system resolver.
    pub async fn resolve(&self, address: &str) -> Result<SocketAddr, UpstreamError> {
        let (host, port) = split_host_port(address).ok_or_else(|| UpstreamError::BadAddress(address.to_owned()))?;
        if let Some(ip) = self.override_for(host) {
            return Ok(SocketAddr::new(ip, port));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let mut addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| UpstreamError::Resolve { host: host.to_owned(), error })?;
        addrs.next().ok_or_else(|| UpstreamError::NoAddress(host.to_owned()))
    }

    fn override_for(&self, host: &str) -> Option<IpAddr> {
        if let Some(ip) = self.resolve.get(host) {
            return Some(*ip);
        }
        self.resolve
            .iter()
            .filter_map(|(pattern, ip)| {
                let suffix = pattern.strip_prefix('*')?;
                host.ends_with(suffix).then_some((suffix.len(), *ip))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, ip)| ip)
    }

    pub async fn connect(&self, address: &str) -> Result<TcpStream, UpstreamError> {
        let addr = self.resolve(address).await?;
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout { addr, timeout: self.timeout })?
            .map_err(|error| UpstreamError::Connect { addr, error })?;
        // Kafka frames are written whole; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Asks a broker for the cluster's brokers (no topics) with the sidecar's own request.
    pub async fn probe_metadata(&self, address: &str, max_frame: usize) -> Result<MetadataResponse, UpstreamError> {
        const VERSION: i16 = 12;
        let probe_err = |reason: String| UpstreamError::Probe { addr: address.to_owned(), reason };
        let mut stream = self.connect(address).await?;
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(VERSION)
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_static_str("weir-sidecar")));
        let request = MetadataRequest::default().with_topics(Some(vec![]));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, ApiKey::Metadata.request_header_version(VERSION))
            .and_then(|_| request.encode(&mut buf, VERSION))
            .map_err(|e| probe_err(e.to_string()))?;
        stream.write_all(&with_length_prefix(&buf)).await.map_err(|e| probe_err(e.to_string()))?;
        let mut reader = FrameReader::new(stream, max_frame);
        let frame = tokio::time::timeout(self.timeout, reader.next_frame())
            .await
            .map_err(|_| probe_err(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| probe_err(e.to_string()))?
            .ok_or_else(|| probe_err("connection closed before the answer".into()))?;
        let (_, response) = weir_wire::message::decode_response::<MetadataResponse>(&frame, ApiKey::Metadata, VERSION)
            .map_err(|e| probe_err(e.to_string()))?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overrides_win_and_longest_wildcard_matches() {
        let mut map = BTreeMap::new();
        map.insert("*.weir.invalid".to_owned(), "127.0.0.2".parse().unwrap());
        map.insert("*.main.weir.invalid".to_owned(), "127.0.0.3".parse().unwrap());
        map.insert("exact.host".to_owned(), "127.0.0.4".parse().unwrap());
        let c = Connector::new(map, Duration::from_secs(1));
        assert_eq!(c.resolve("broker-1.main.weir.invalid:9093").await.unwrap(), "127.0.0.3:9093".parse().unwrap());
        assert_eq!(c.resolve("broker-1.edge.weir.invalid:9293").await.unwrap(), "127.0.0.2:9293".parse().unwrap());
        assert_eq!(c.resolve("exact.host:1").await.unwrap(), "127.0.0.4:1".parse().unwrap());
        assert_eq!(c.resolve("127.0.0.9:7").await.unwrap(), "127.0.0.9:7".parse().unwrap());
        assert!(matches!(c.resolve("nohost").await, Err(UpstreamError::BadAddress(_))));
    }
}
