//! Reaching brokers: name resolution (with the configured overrides), connect timeouts, and
//! the sidecar's own Metadata probe that decides readiness and discovers brokers early.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use uuid::Uuid;
use weir_core::io::{split_any, split_tcp, BoxRead, BoxWrite};
use weir_core::policy::Pattern;
use weir_core::sasl::{SaslClientConfig, ScramClient, ScramMechanism};
use weir_core::tls::{TlsError, TlsOriginator};
use weir_wire::frame::with_length_prefix;
use weir_wire::FrameReader;

use crate::config::{split_host_port, PrincipalSasl};
use crate::snapshot::Snapshots;

/// Frames of a SASL exchange are small; a larger one is not an answer to ours.
const SASL_FRAME_LIMIT: usize = 1 << 20;
/// A Metadata answer naming some topic ids.
const LOOKUP_FRAME_LIMIT: usize = 16 << 20;

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
    #[error("TLS to broker {addr} failed: {error}")]
    Tls { addr: String, error: String },
    #[error("SASL to broker {addr} failed: {error}")]
    Sasl { addr: String, error: String },
    #[error("metadata probe to {addr} failed: {reason}")]
    Probe { addr: String, reason: String },
}

impl UpstreamError {
    /// The broker could not be reached at all (refused, timed out): what outlier detection
    /// counts. TLS and SASL failures are configuration, not a broker's health.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::ConnectTimeout { .. } | Self::Connect { .. })
    }
}

/// A broker connection the sidecar authenticated with its own SASL credentials, in a cluster
/// that ends sessions (KIP-368): it must authenticate again on the same connection before
/// `due` (85 % of the lifetime the broker announced), or the broker closes it.
#[derive(Debug, Clone)]
pub struct Reauthentication {
    pub address: String,
    pub sasl: SaslClientConfig,
    pub due: Instant,
}

impl Reauthentication {
    fn after(address: &str, sasl: &SaslClientConfig, lifetime: Duration) -> Self {
        Self { address: address.to_owned(), sasl: sasl.clone(), due: Instant::now() + lifetime * 85 / 100 }
    }
}

/// One request/response round trip on a broker connection, for the sidecar's own SASL
/// exchange: directly while connecting, or queued behind the client's requests when a running
/// connection re-authenticates.
pub(crate) trait RoundTrip {
    async fn round_trip(&mut self, frame: Bytes) -> Result<Bytes, String>;
}

/// Round trips on a connection nobody else uses yet.
struct Direct<'a> {
    reader: &'a mut FrameReader<BoxRead>,
    write: &'a mut BoxWrite,
    timeout: Duration,
}

impl RoundTrip for Direct<'_> {
    async fn round_trip(&mut self, frame: Bytes) -> Result<Bytes, String> {
        self.write.write_all(&frame).await.map_err(|e| e.to_string())?;
        tokio::time::timeout(self.timeout, self.reader.next_frame())
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "connection closed before the answer".to_owned())
    }
}

/// What the readiness probe learned from a bootstrap server.
pub struct Probed {
    /// The broker's ApiVersions answer (v3), as received.
    pub versions: ApiVersionsResponse,
    /// The cluster's brokers, unless the cluster wants authentication first.
    pub metadata: Option<MetadataResponse>,
}

/// How to turn a broker's advertised `host:port` into a connection: name resolution, timeout,
/// and TLS when the brokers speak it.
#[derive(Clone)]
pub struct Connector {
    resolve: BTreeMap<String, IpAddr>,
    timeout: Duration,
    /// Where TLS towards the brokers comes from, if they speak it (read at each connect).
    snapshots: Snapshots,
    sasl: Option<SaslClientConfig>,
    sasl_by_principal: Vec<(Vec<Pattern>, SaslClientConfig)>,
}

impl Connector {
    pub fn new(
        resolve: BTreeMap<String, IpAddr>,
        timeout: Duration,
        snapshots: Snapshots,
        sasl: Option<SaslClientConfig>,
        sasl_by_principal: &[PrincipalSasl],
    ) -> Self {
        let sasl_by_principal = sasl_by_principal
            .iter()
            .map(|rule| (rule.principals.iter().map(|p| Pattern::parse(p)).collect(), rule.sasl.clone()))
            .collect();
        Self { resolve, timeout, snapshots, sasl, sasl_by_principal }
    }

    /// TLS towards the brokers, if they speak it: the current snapshot's.
    fn tls(&self) -> Option<Arc<TlsOriginator>> {
        self.snapshots.borrow().upstream_tls.clone()
    }

    /// The broker identity for a client: the first mapping that names its principal, else
    /// the sidecar's default.
    fn sasl_for(&self, principal: Option<&str>) -> Option<&SaslClientConfig> {
        let mapped = principal.and_then(|principal| {
            self.sasl_by_principal.iter().find(|(patterns, _)| patterns.iter().any(|p| p.matches(principal)))
        });
        mapped.map(|(_, sasl)| sasl).or(self.sasl.as_ref())
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

    /// Connects (and, with TLS, completes the handshake, checking the broker's certificate
    /// against the host name it advertised) within the connect timeout.
    pub async fn connect(&self, address: &str, principal: Option<&str>) -> Result<(BoxRead, BoxWrite), UpstreamError> {
        self.connect_session(address, principal).await.map(|(read, write, _)| (read, write))
    }

    /// [`Connector::connect`], saying also when the connection must re-authenticate (only
    /// when the sidecar authenticated it and the broker announced a session lifetime).
    pub async fn connect_session(
        &self,
        address: &str,
        principal: Option<&str>,
    ) -> Result<(BoxRead, BoxWrite, Option<Reauthentication>), UpstreamError> {
        let (read, mut write) = self.connect_transport(address).await?;
        let Some(sasl) = self.sasl_for(principal) else { return Ok((read, write, None)) };
        let sasl_err = |error: String| UpstreamError::Sasl { addr: address.to_owned(), error };
        let mut reader = FrameReader::new(read, SASL_FRAME_LIMIT);
        let mut direct = Direct { reader: &mut reader, write: &mut write, timeout: self.timeout };
        let lifetime = self.authenticate(sasl, &mut direct, 1).await.map_err(sasl_err)?;
        let read = reader.into_inner().map_err(|_| sasl_err("unexpected bytes after authentication".into()))?;
        Ok((read, write, lifetime.map(|l| Reauthentication::after(address, sasl, l))))
    }

    /// Authenticates a running connection again (KIP-368) through `channel`; when the next
    /// re-authentication is due.
    pub(crate) async fn reauthenticate(
        &self,
        due: &Reauthentication,
        channel: &mut impl RoundTrip,
        first_correlation_id: i32,
    ) -> Result<Option<Reauthentication>, UpstreamError> {
        let lifetime = self
            .authenticate(&due.sasl, channel, first_correlation_id)
            .await
            .map_err(|error| UpstreamError::Sasl { addr: due.address.clone(), error })?;
        Ok(lifetime.map(|l| Reauthentication::after(&due.address, &due.sasl, l)))
    }

    /// The connect timeout, which also bounds each round trip of the sidecar's own exchanges.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn connect_transport(&self, address: &str) -> Result<(BoxRead, BoxWrite), UpstreamError> {
        let stream = self.connect_tcp(address).await?;
        let Some(tls) = self.tls() else { return Ok(split_tcp(stream)) };
        let stream = tls.connect(address, stream, self.timeout).await.map_err(|e| match e {
            TlsError::Settings(_) => UpstreamError::BadAddress(address.to_owned()),
            e => UpstreamError::Tls { addr: address.to_owned(), error: e.to_string() },
        })?;
        Ok(split_any(stream))
    }

    /// SASL as a client: SaslHandshake v1, then one SaslAuthenticate (PLAIN) or two (SCRAM);
    /// the session lifetime the broker announced, if any (KIP-368).
    async fn authenticate(
        &self,
        sasl: &SaslClientConfig,
        channel: &mut impl RoundTrip,
        first_correlation_id: i32,
    ) -> Result<Option<Duration>, String> {
        let id = first_correlation_id;
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(sasl.mechanism.clone()));
        let (_, answer): (_, SaslHandshakeResponse) = call(channel, ApiKey::SaslHandshake, 1, id, &handshake).await?;
        if answer.error_code != 0 {
            let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(format!("mechanism {} refused (broker offers {})", sasl.mechanism, offered.join(", ")));
        }
        let last = match ScramMechanism::from_name(&sasl.mechanism) {
            None if sasl.mechanism == "PLAIN" => {
                let token = format!("\0{}\0{}", sasl.username, sasl.password).into_bytes();
                sasl_round(channel, id + 1, token).await?
            }
            None => return Err(format!("unsupported mechanism {}", sasl.mechanism)),
            Some(mechanism) => {
                let (mut client, first) =
                    ScramClient::start(mechanism, &sasl.username, &sasl.password).map_err(|e| e.to_string())?;
                let server_first = sasl_round(channel, id + 1, first.into_bytes()).await?;
                let client_final = client.finish(&server_first.auth_bytes).map_err(|e| e.to_string())?;
                let server_final = sasl_round(channel, id + 2, client_final.into_bytes()).await?;
                client.verify(&server_final.auth_bytes).map_err(|e| e.to_string())?;
                server_final
            }
        };
        Ok((last.session_lifetime_ms > 0).then(|| Duration::from_millis(last.session_lifetime_ms as u64)))
    }

    async fn connect_tcp(&self, address: &str) -> Result<TcpStream, UpstreamError> {
        let addr = self.resolve(address).await?;
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout { addr, timeout: self.timeout })?
            .map_err(|error| UpstreamError::Connect { addr, error })?;
        // Kafka frames are written whole; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Checks that a broker answers (ApiVersions, which needs no authentication), then asks it
    /// for the cluster's brokers (no topics). A cluster that requires SASL answers the first
    /// but not the second (the sidecar holds no credentials); then `Ok(None)`: broker
    /// listeners will open as clients discover brokers.
    pub async fn probe(&self, address: &str, max_frame: usize) -> Result<Probed, UpstreamError> {
        let probe_err = |reason: String| UpstreamError::Probe { addr: address.to_owned(), reason };
        let (read, mut write) = self.connect(address, None).await?;
        let mut reader = FrameReader::new(read, max_frame);
        let mut direct = Direct { reader: &mut reader, write: &mut write, timeout: self.timeout };
        let versions = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("weir"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let (_, versions): (_, ApiVersionsResponse) =
            call(&mut direct, ApiKey::ApiVersions, 3, 1, &versions).await.map_err(probe_err)?;
        if versions.error_code != 0 {
            return Err(probe_err(format!("ApiVersions answered error code {}", versions.error_code)));
        }
        let metadata = MetadataRequest::default().with_topics(Some(vec![]));
        let metadata = match call(&mut direct, ApiKey::Metadata, 12, 2, &metadata).await {
            Ok((_, metadata)) => Some(metadata),
            Err(reason) => {
                tracing::debug!(%address, %reason, "no Metadata without authentication");
                None
            }
        };
        Ok(Probed { versions, metadata })
    }
}

impl Connector {
    /// Asks the cluster, as the sidecar itself, for the names of topic ids (Metadata v12 by
    /// id): the first bootstrap server that answers does.
    pub async fn lookup_topic_ids(
        &self,
        bootstrap: &[String],
        ids: Vec<Uuid>,
    ) -> Result<MetadataResponse, UpstreamError> {
        let topics = ids.into_iter().map(|id| MetadataRequestTopic::default().with_topic_id(id)).collect();
        let request = MetadataRequest::default().with_topics(Some(topics)).with_allow_auto_topic_creation(false);
        let mut last = None;
        for address in bootstrap {
            let lookup_err = |reason: String| UpstreamError::Probe { addr: address.clone(), reason };
            let attempt = async {
                let (read, mut write) = self.connect(address, None).await?;
                let mut reader = FrameReader::new(read, LOOKUP_FRAME_LIMIT);
                let mut direct = Direct { reader: &mut reader, write: &mut write, timeout: self.timeout };
                let (_, answer): (_, MetadataResponse) =
                    call(&mut direct, ApiKey::Metadata, 12, 1, &request).await.map_err(lookup_err)?;
                Ok(answer)
            };
            match attempt.await {
                Ok(answer) => return Ok(answer),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| UpstreamError::NoAddress("bootstrap".into())))
    }
}

/// A broker connection of the sidecar's own (not a client's), authenticated with its default
/// broker credentials, for requests it makes itself (a shadow's writes).
pub(crate) struct OwnConnection {
    reader: FrameReader<BoxRead>,
    write: BoxWrite,
    correlation_id: i32,
}

impl Connector {
    /// Connects to `address` for the sidecar's own requests; answers larger than `max_frame`
    /// are refused.
    pub(crate) async fn own_connection(&self, address: &str, max_frame: usize) -> Result<OwnConnection, UpstreamError> {
        let (read, write) = self.connect(address, None).await?;
        Ok(OwnConnection { reader: FrameReader::new(read, max_frame), write, correlation_id: 0 })
    }
}

impl OwnConnection {
    /// One request and its answer, which must come within `timeout`.
    pub(crate) async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, String> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let mut direct = Direct { reader: &mut self.reader, write: &mut self.write, timeout };
        call(&mut direct, key, version, self.correlation_id, request).await.map(|(_, answer)| answer)
    }
}

/// One SaslAuthenticate (v2) round trip; the broker's answer, which must not be an error.
async fn sasl_round(
    channel: &mut impl RoundTrip,
    correlation_id: i32,
    token: Vec<u8>,
) -> Result<SaslAuthenticateResponse, String> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    let (_, answer): (_, SaslAuthenticateResponse) =
        call(channel, ApiKey::SaslAuthenticate, 2, correlation_id, &request).await?;
    if answer.error_code != 0 {
        let message = answer.error_message.as_ref().map(|m| m.as_str().to_owned()).unwrap_or_default();
        return Err(format!("error code {}: {message}", answer.error_code));
    }
    Ok(answer)
}

/// One request/response exchange of the sidecar's own.
async fn call<Req: Encodable, Resp: Decodable>(
    channel: &mut impl RoundTrip,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Result<(ResponseHeader, Resp), String> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("weir-sidecar")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .and_then(|_| request.encode(&mut buf, version))
        .map_err(|e| e.to_string())?;
    let frame = channel.round_trip(with_length_prefix(&buf)).await?;
    weir_wire::message::decode_response(&frame, key, version).map_err(|e| e.to_string())
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
        let (_, snapshots) = tokio::sync::watch::channel(Arc::default());
        let c = Connector::new(map, Duration::from_secs(1), snapshots, None, &[]);
        assert_eq!(c.resolve("broker-1.main.weir.invalid:9093").await.unwrap(), "127.0.0.3:9093".parse().unwrap());
        assert_eq!(c.resolve("broker-1.edge.weir.invalid:9293").await.unwrap(), "127.0.0.2:9293".parse().unwrap());
        assert_eq!(c.resolve("exact.host:1").await.unwrap(), "127.0.0.4:1".parse().unwrap());
        assert_eq!(c.resolve("127.0.0.9:7").await.unwrap(), "127.0.0.9:7".parse().unwrap());
        assert!(matches!(c.resolve("nohost").await, Err(UpstreamError::BadAddress(_))));
    }
}
