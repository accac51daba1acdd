//! TLS termination for any Weir listener: certificates from PEM files (reloaded when they
//! change), optional client certificates verified against a CA bundle, and the client's
//! identity (principal) read from its certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// TLS settings of a listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Server private key (PKCS#8, PKCS#1 or SEC1), PEM.
    pub key: PathBuf,
    /// CA bundle (PEM) that client certificates must chain to; none: no client certificates.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse clients without a certificate (mTLS). Default true.
    #[serde(default = "default_true")]
    pub require_client_cert: bool,
    /// Lowest protocol version: `"1.2"` (default) or `"1.3"`.
    #[serde(default = "default_min_version")]
    pub min_version: String,
    /// Cipher suites by IANA name (e.g. `TLS13_AES_128_GCM_SHA256`); default: rustls' safe set.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Where the principal comes from, first match wins.
    #[serde(default = "default_principal_from")]
    pub principal_from: Vec<PrincipalSource>,
    /// How often the PEM files are checked for changes.
    #[serde(default = "default_reload_ms")]
    pub reload_interval_ms: u64,
    /// A client that has not finished its handshake by then is disconnected.
    #[serde(default = "default_handshake_ms")]
    pub handshake_timeout_ms: u64,
}

/// A part of a client certificate that can name the client.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalSource {
    /// A `spiffe://` URI SAN (the mesh's workload identities).
    SpiffeUri,
    /// The first DNS SAN.
    DnsSan,
    /// The subject's common name.
    CommonName,
}

fn default_true() -> bool {
    true
}
fn default_min_version() -> String {
    "1.2".into()
}
fn default_principal_from() -> Vec<PrincipalSource> {
    vec![PrincipalSource::SpiffeUri, PrincipalSource::DnsSan, PrincipalSource::CommonName]
}
fn default_reload_ms() -> u64 {
    10_000
}
fn default_handshake_ms() -> u64 {
    10_000
}

/// TLS towards a server (e.g. the brokers): whom to trust, and optionally a client certificate.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsOriginConfig {
    /// CA bundle (PEM) the server's certificate must chain to.
    pub ca: PathBuf,
    /// Client certificate chain (PEM), for servers that require one.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// How often the files are checked for changes (new connections use new files).
    #[serde(default = "default_reload_ms")]
    pub reload_interval_ms: u64,
    /// Present the mesh's workload certificate (instead of `cert`/`key`): a sidecar managed by
    /// `weir control` fills in the files of its current certificate, renewed as it renews.
    #[serde(default)]
    pub workload_identity: bool,
}

impl TlsOriginConfig {
    /// Presents the mesh's workload certificate (its current `cert` and `key` files, which a
    /// managed sidecar keeps renewed) when `workload_identity` asks for it.
    pub fn use_workload_certificate(&mut self, cert: &Path, key: &Path) {
        if self.workload_identity {
            self.workload_identity = false;
            self.cert = Some(cert.to_owned());
            self.key = Some(key.to_owned());
        }
    }
}

/// Builds the rustls client configuration for connections to servers.
pub fn client_config(config: &TlsOriginConfig) -> Result<rustls::ClientConfig, TlsError> {
    if config.workload_identity {
        return Err(TlsError::Settings(
            "`workload_identity` needs a sidecar managed by the control plane (weir proxy --control), which \
             holds a workload certificate"
                .into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in read_certs(&config.ca, "CA certificates")? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            what: "CA certificates",
            file: config.ca.clone(),
            error: e.to_string(),
        })?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Settings(e.to_string()))?
        .with_root_certificates(roots);
    match (&config.cert, &config.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert, "certificates")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
                what: "a private key",
                file: key.clone(),
                error: e.to_string(),
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::Settings(format!("client certificate: {e}")))
        }
        _ => Err(TlsError::Settings("a client certificate needs both `cert` and `key`".into())),
    }
}

/// Why TLS could not be set up or a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {file}: {error}")]
    Pem { what: &'static str, file: PathBuf, error: String },
    #[error("{file} holds no {what}")]
    Empty { what: &'static str, file: PathBuf },
    #[error("invalid TLS settings: {0}")]
    Settings(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("TLS handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
}

/// A TLS listener's acceptor, built from its PEM files. Immutable: when the files change a
/// new one is built (see the sidecar's configuration snapshot); connections already open keep
/// the one they started with.
pub struct TlsTerminator {
    config: TlsListenerConfig,
    acceptor: TlsAcceptor,
}

/// A client that completed the handshake.
pub struct Accepted {
    pub stream: TlsStream<TcpStream>,
    /// From the client certificate, by `principal_from`; none without a certificate.
    pub principal: Option<String>,
}

impl TlsTerminator {
    pub fn new(config: TlsListenerConfig) -> Result<Arc<Self>, TlsError> {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&config)?));
        Ok(Arc::new(Self { config, acceptor }))
    }

    pub fn config(&self) -> &TlsListenerConfig {
        &self.config
    }

    /// The PEM files it was built from.
    pub fn files(&self) -> Vec<PathBuf> {
        let files = [Some(&self.config.cert), Some(&self.config.key), self.config.client_ca.as_ref()];
        files.into_iter().flatten().cloned().collect()
    }

    /// Runs the handshake (bounded by `handshake_timeout_ms`) and reads the client's principal.
    pub async fn accept(&self, stream: TcpStream) -> Result<Accepted, TlsError> {
        let timeout = Duration::from_millis(self.config.handshake_timeout_ms);
        let stream = tokio::time::timeout(timeout, self.acceptor.accept(stream))
            .await
            .map_err(|_| TlsError::HandshakeTimeout(timeout))?
            .map_err(TlsError::Handshake)?;
        let principal = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| principal_of(leaf, &self.config.principal_from));
        Ok(Accepted { stream, principal })
    }
}

/// TLS towards servers (the brokers), built from its PEM files. Immutable like
/// [`TlsTerminator`]: a certificate renewed on disk makes a new one, used by the next
/// connection, without a restart.
pub struct TlsOriginator {
    config: TlsOriginConfig,
    connector: TlsConnector,
}

impl TlsOriginator {
    pub fn new(config: TlsOriginConfig) -> Result<Arc<Self>, TlsError> {
        let connector = TlsConnector::from(Arc::new(client_config(&config)?));
        Ok(Arc::new(Self { config, connector }))
    }

    pub fn config(&self) -> &TlsOriginConfig {
        &self.config
    }

    /// The PEM files it was built from.
    pub fn files(&self) -> Vec<PathBuf> {
        let files = [Some(&self.config.ca), self.config.cert.as_ref(), self.config.key.as_ref()];
        files.into_iter().flatten().cloned().collect()
    }

    /// The configuration for a new connection.
    pub fn connector(&self) -> TlsConnector {
        self.connector.clone()
    }

    /// The handshake over `stream` to the server at `address` (`host:port`; the host is the
    /// name its certificate must hold), within `timeout`.
    pub async fn connect(
        &self,
        address: &str,
        stream: TcpStream,
        timeout: Duration,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsError> {
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| TlsError::Settings(format!("`{host}` is not a server name or address")))?;
        tokio::time::timeout(timeout, self.connector.connect(name, stream))
            .await
            .map_err(|_| TlsError::HandshakeTimeout(timeout))?
            .map_err(TlsError::Handshake)
    }
}

fn read_certs(file: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |error: String| TlsError::Pem { what, file: file.to_owned(), error };
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Empty { what, file: file.to_owned() });
    }
    Ok(certs)
}

/// Builds the rustls configuration from the files named in `config`.
pub fn server_config(config: &TlsListenerConfig) -> Result<ServerConfig, TlsError> {
    let certs = read_certs(&config.cert, "certificates")?;
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| TlsError::Pem {
        what: "a private key",
        file: config.key.clone(),
        error: e.to_string(),
    })?;
    let mut provider = rustls::crypto::ring::default_provider();
    if !config.cipher_suites.is_empty() {
        let wanted = &config.cipher_suites;
        let known: Vec<String> = provider.cipher_suites.iter().map(|s| format!("{:?}", s.suite())).collect();
        if let Some(unknown) = wanted.iter().find(|w| !known.contains(w)) {
            return Err(TlsError::Settings(format!("unknown cipher suite `{unknown}`; known: {}", known.join(", "))));
        }
        provider.cipher_suites.retain(|s| wanted.contains(&format!("{:?}", s.suite())));
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match config.min_version.as_str() {
        "1.2" => &[&rustls::version::TLS13, &rustls::version::TLS12],
        "1.3" => &[&rustls::version::TLS13],
        other => return Err(TlsError::Settings(format!("min_version `{other}`: expected \"1.2\" or \"1.3\""))),
    };
    let provider = Arc::new(provider);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Settings(e.to_string()))?;
    let builder = match &config.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca, "CA certificates")? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    what: "CA certificates",
                    file: ca.clone(),
                    error: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if config.require_client_cert { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Settings(e.to_string()))?)
        }
    };
    builder.with_single_cert(certs, key).map_err(|e| TlsError::Settings(format!("certificate and key: {e}")))
}

/// A certificate's validity, `(not before, not after)` in Unix seconds (none if it does not
/// parse).
pub fn validity(cert: &CertificateDer<'_>) -> Option<(u64, u64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let validity = cert.validity();
    Some((u64::try_from(validity.not_before.timestamp()).ok()?, u64::try_from(validity.not_after.timestamp()).ok()?))
}

/// Reads the principal from a (verified) client certificate.
pub fn principal_of(cert: &CertificateDer<'_>, sources: &[PrincipalSource]) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let sans: Vec<GeneralName<'_>> =
        cert.subject_alternative_name().ok().flatten().map(|ext| ext.value.general_names.clone()).unwrap_or_default();
    sources.iter().find_map(|source| match source {
        PrincipalSource::SpiffeUri => sans.iter().find_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(uri.to_string()),
            _ => None,
        }),
        PrincipalSource::DnsSan => sans.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            _ => None,
        }),
        PrincipalSource::CommonName => {
            cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn cert_with(sans: Vec<SanType>, cn: &str) -> CertificateDer<'static> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().clone()
    }

    #[test]
    fn principal_prefers_spiffe_then_dns_then_cn() {
        let all = default_principal_from();
        let spiffe = cert_with(
            vec![
                SanType::DnsName("orders.svc".try_into().unwrap()),
                SanType::URI("spiffe://weir.local/ns/shop/sa/orders".try_into().unwrap()),
            ],
            "orders-cn",
        );
        assert_eq!(principal_of(&spiffe, &all).as_deref(), Some("spiffe://weir.local/ns/shop/sa/orders"));
        let dns = cert_with(vec![SanType::DnsName("billing.svc".try_into().unwrap())], "billing-cn");
        assert_eq!(principal_of(&dns, &all).as_deref(), Some("billing.svc"));
        assert_eq!(principal_of(&dns, &[PrincipalSource::CommonName]).as_deref(), Some("billing-cn"));
        let cn_only = cert_with(vec![], "legacy-app");
        assert_eq!(principal_of(&cn_only, &all).as_deref(), Some("legacy-app"));
        assert_eq!(principal_of(&cn_only, &[PrincipalSource::SpiffeUri]), None);
    }

    #[test]
    fn bad_files_and_settings_are_named() {
        let dir = std::env::temp_dir().join(format!("weir-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("empty.pem"), "").unwrap();
        let config = |cert: &str| TlsListenerConfig {
            cert: dir.join(cert),
            key: dir.join("key.pem"),
            client_ca: None,
            require_client_cert: true,
            min_version: "1.2".into(),
            cipher_suites: vec![],
            principal_from: default_principal_from(),
            reload_interval_ms: 1000,
            handshake_timeout_ms: 1000,
        };
        assert!(server_config(&config("cert.pem")).is_ok());
        let err = server_config(&config("empty.pem")).unwrap_err().to_string();
        assert!(err.contains("empty.pem") && err.contains("no certificates"), "{err}");
        let err = server_config(&config("missing.pem")).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        let mut bad_suite = config("cert.pem");
        bad_suite.cipher_suites = vec!["TLS_NULL_WITH_NULL_NULL".into()];
        assert!(server_config(&bad_suite).unwrap_err().to_string().contains("unknown cipher suite"));
        let mut only13 = config("cert.pem");
        only13.min_version = "1.3".into();
        only13.cipher_suites = vec!["TLS13_AES_256_GCM_SHA384".into()];
        assert!(server_config(&only13).is_ok());
        std::fs::remove_dir_all(dir).ok();
    }
}
