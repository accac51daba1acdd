//! The mesh's certificate authority: issues each sidecar a short-lived certificate whose URI
//! SAN is its workload's SPIFFE id, from a certificate signing request (the sidecar's key never
//! leaves its host), and the control plane's own serving certificate.
//!
//! The signing CA is a root made on first start in `DATA_DIR/ca/` (`ca.pem`, `ca.key` mode
//! 0600), or an intermediate the user supplies (signed by a CA that brokers and other peers
//! already trust). The trust bundle (`bundle.pem`) is every root peers accept; during a root
//! rotation it holds the old and the new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot use {path}: {error}")]
    File { path: PathBuf, error: std::io::Error },
    #[error("{what}: {error}")]
    Crypto { what: String, error: rcgen::Error },
    /// A request the CA will not sign; said to the requester.
    #[error("{0}")]
    Refused(String),
}

const CERT: &str = "ca.pem";
const KEY: &str = "ca.key";
const BUNDLE: &str = "bundle.pem";
const PREVIOUS_CERT: &str = "previous.pem";
const PREVIOUS_KEY: &str = "previous.key";

/// How far a certificate's `notBefore` lies before its issue, for peers whose clocks are a
/// little behind.
const CLOCK_SLACK: Duration = Duration::from_secs(60);

/// When a certificate this CA signed was issued (unix s), from its `notBefore`; what a
/// `CertificateRevocation` compares with.
pub fn issued_at(not_before: u64) -> u64 {
    not_before + CLOCK_SLACK.as_secs()
}

/// What a sidecar gets from [`MeshCa::certify`].
#[derive(Debug, Clone)]
pub struct Issued {
    pub chain_pem: String,
    pub not_after: SystemTime,
    /// The subject of the CA that signed it.
    pub issuer: String,
}

pub struct MeshCa {
    /// What signs now; `previous` during a root rotation.
    signers: std::sync::RwLock<Signers>,
    /// The roots peers accept (PEM); streams follow it to send it to their sidecars.
    bundle: watch::Sender<Arc<str>>,
    /// `DATA_DIR/ca` when the root is the control plane's own (it can rotate it); none for a
    /// supplied CA.
    own_dir: Option<PathBuf>,
    pub trust_domain: String,
    pub ttl: Duration,
}

struct Signers {
    current: Arc<Signer>,
    /// The root being rotated out: it still signs the control plane's serving certificate,
    /// which sidecars that have not yet seen the new bundle must be able to verify.
    previous: Option<Arc<Signer>>,
}

struct Signer {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    /// Its subject, as certificates it signs name their issuer.
    subject: String,
    /// The signing CA's certificate, sent with each leaf when it is an intermediate.
    intermediate_pem: Option<String>,
}

impl Signer {
    fn load(cert_pem: String, key_pem: &str, intermediate: bool) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(crypto("the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(crypto("the CA certificate"))?;
        let intermediate_pem = intermediate.then(|| cert_pem.clone());
        let subject = pem_certificates(&cert_pem).first().map(subject_of).unwrap_or_default();
        Ok(Self { issuer, cert_pem, subject, intermediate_pem })
    }
}

/// Where a root rotation stands (`weir ctl ca`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaStatus {
    /// Whether the root is the control plane's own (rotatable) or supplied.
    pub own_root: bool,
    /// Subjects of the roots in the bundle, in order.
    pub bundle: Vec<String>,
    /// When the current root began signing (unix s), if a rotation is in progress.
    pub rotation_started: Option<u64>,
}

/// Where a user-supplied CA is (all three together).
#[derive(Debug, Clone)]
pub struct SuppliedCa {
    /// The intermediate (or root) CA certificate that signs, PEM.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The roots peers trust, PEM.
    pub bundle: PathBuf,
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|error| CaError::File { path: path.to_owned(), error })
}

fn crypto(what: &str) -> impl FnOnce(rcgen::Error) -> CaError + '_ {
    move |error| CaError::Crypto { what: what.to_owned(), error }
}

/// Writes a file only the control plane's user reads, replacing it whole.
fn write_private(path: &Path, text: &str) -> Result<(), CaError> {
    weir_core::fs::write_private(path, text.as_bytes()).map_err(|error| CaError::File { path: path.to_owned(), error })
}

impl MeshCa {
    /// The CA of `dir/ca/`, made on first start unless `supplied`.
    pub fn load_or_create(
        dir: &Path,
        supplied: Option<&SuppliedCa>,
        trust_domain: &str,
        ttl: Duration,
    ) -> Result<Self, CaError> {
        let (current, previous, bundle_pem, own_dir) = match supplied {
            Some(ca) => {
                let signer = Signer::load(read(&ca.cert)?, &read(&ca.key)?, true)?;
                (signer, None, read(&ca.bundle)?, None)
            }
            None => {
                let ca_dir = dir.join("ca");
                std::fs::create_dir_all(&ca_dir).map_err(|error| CaError::File { path: ca_dir.clone(), error })?;
                let (cert, key, bundle) = (ca_dir.join(CERT), ca_dir.join(KEY), ca_dir.join(BUNDLE));
                if !cert.exists() {
                    let (cert_pem, key_pem) = new_root(trust_domain)?;
                    write_private(&key, &key_pem)?;
                    write_private(&cert, &cert_pem)?;
                    write_private(&bundle, &cert_pem)?;
                    tracing::info!(dir = %ca_dir.display(), %trust_domain, "made the mesh's root CA");
                }
                let current = Signer::load(read(&cert)?, &read(&key)?, false)?;
                let previous = match ca_dir.join(PREVIOUS_CERT).exists() {
                    true => Some(Signer::load(
                        read(&ca_dir.join(PREVIOUS_CERT))?,
                        &read(&ca_dir.join(PREVIOUS_KEY))?,
                        false,
                    )?),
                    false => None,
                };
                (current, previous, read(&bundle)?, Some(ca_dir))
            }
        };
        let signers = Signers { current: Arc::new(current), previous: previous.map(Arc::new) };
        Ok(Self {
            signers: std::sync::RwLock::new(signers),
            bundle: watch::Sender::new(bundle_pem.into()),
            own_dir,
            trust_domain: trust_domain.to_owned(),
            ttl,
        })
    }

    /// The roots peers accept now, PEM.
    pub fn bundle_pem(&self) -> Arc<str> {
        self.bundle.borrow().clone()
    }

    /// Follows the bundle: it changes when a root rotation starts and when it finishes.
    pub fn subscribe_bundle(&self) -> watch::Receiver<Arc<str>> {
        self.bundle.subscribe()
    }

    fn signers(&self) -> std::sync::RwLockReadGuard<'_, Signers> {
        self.signers.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The subject of the CA that signs now.
    pub fn signer(&self) -> String {
        self.signers().current.subject.clone()
    }

    pub fn status(&self) -> CaStatus {
        let signers = self.signers();
        let rotation_started = signers.previous.as_ref().and_then(|_| {
            let der = pem_certificates(&signers.current.cert_pem).into_iter().next()?;
            Some(issued_at(weir_core::tls::validity(&der)?.0))
        });
        let bundle = pem_certificates(&self.bundle_pem()).iter().map(subject_of).collect();
        CaStatus { own_root: self.own_dir.is_some(), bundle, rotation_started }
    }

    /// Starts a root rotation: a new root signs every certificate from now on, the bundle
    /// holds the old and the new root, and the old one still signs the control plane's serving
    /// certificate (sidecars that have not seen the new bundle yet must verify it).
    pub fn start_rotation(&self) -> Result<CaStatus, CaError> {
        let dir = self.rotatable()?;
        let mut signers = self.signers.write().unwrap_or_else(|p| p.into_inner());
        if signers.previous.is_some() {
            return Err(CaError::Refused("a root rotation is already in progress; finish it first".into()));
        }
        let (cert_pem, key_pem) = new_root(&self.trust_domain)?;
        let old = signers.current.clone();
        let old_key = read(&dir.join(KEY))?;
        // Each step leaves a CA that loads: the old root is kept as `previous` before the new
        // one is trusted, and trusted before it signs.
        write_private(&dir.join(PREVIOUS_KEY), &old_key)?;
        write_private(&dir.join(PREVIOUS_CERT), &old.cert_pem)?;
        let bundle = format!("{}{}", self.bundle_pem(), cert_pem);
        write_private(&dir.join(BUNDLE), &bundle)?;
        write_private(&dir.join(KEY), &key_pem)?;
        write_private(&dir.join(CERT), &cert_pem)?;
        *signers = Signers { current: Arc::new(Signer::load(cert_pem, &key_pem, false)?), previous: Some(old) };
        drop(signers);
        self.bundle.send_replace(bundle.into());
        tracing::warn!(dir = %dir.display(), "root rotation started: a new root signs; the bundle holds the old and the new");
        Ok(self.status())
    }

    /// Finishes a root rotation: the bundle holds only the current root, which now also signs
    /// the serving certificate. Certificates from the old root are refused from then on.
    pub fn finish_rotation(&self) -> Result<CaStatus, CaError> {
        let dir = self.rotatable()?;
        let mut signers = self.signers.write().unwrap_or_else(|p| p.into_inner());
        if signers.previous.is_none() {
            return Err(CaError::Refused("no root rotation is in progress".into()));
        }
        let bundle = signers.current.cert_pem.clone();
        write_private(&dir.join(BUNDLE), &bundle)?;
        for file in [PREVIOUS_CERT, PREVIOUS_KEY] {
            let path = dir.join(file);
            std::fs::remove_file(&path).map_err(|error| CaError::File { path, error })?;
        }
        signers.previous = None;
        drop(signers);
        self.bundle.send_replace(bundle.into());
        tracing::warn!(dir = %dir.display(), "root rotation finished: the bundle holds only the new root");
        Ok(self.status())
    }

    fn rotatable(&self) -> Result<&Path, CaError> {
        self.own_dir.as_deref().ok_or_else(|| {
            CaError::Refused(
                "the CA was supplied (--ca-cert/--ca-key/--ca-bundle): rotate it by restarting with a \
                 bundle that holds the old and the new root, then with the new CA"
                    .into(),
            )
        })
    }

    /// Signs `csr_pem` for `spiffe_id`: the request must be well signed and ask for that
    /// identity or none; the certificate carries that URI SAN only, for client and server use.
    pub fn certify(&self, csr_pem: &str, spiffe_id: &str) -> Result<Issued, CaError> {
        let request = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::Refused(format!("the certificate signing request does not read: {e}")))?;
        let asked: Vec<String> = request
            .params
            .subject_alt_names
            .iter()
            .map(|san| match san {
                SanType::URI(uri) => uri.as_str().to_owned(),
                other => format!("{other:?}"),
            })
            .collect();
        // Nothing asked: the sidecar does not know its id yet (its first certificate).
        if !asked.is_empty() && asked != [spiffe_id] {
            return Err(CaError::Refused(format!(
                "the request asks for {asked:?}; this workload may only be {spiffe_id}"
            )));
        }
        let now = SystemTime::now();
        let not_before = now - CLOCK_SLACK;
        let not_after = now + self.ttl;
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().map_err(crypto("the SPIFFE id"))?)];
        params.distinguished_name = DistinguishedName::new();
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let signer = self.signers().current.clone();
        let signed = CertificateSigningRequestParams { params, public_key: request.public_key }
            .signed_by(&signer.issuer)
            .map_err(crypto("signing the certificate"))?;
        let mut chain_pem = signed.pem();
        if let Some(intermediate) = &signer.intermediate_pem {
            chain_pem.push_str(intermediate);
        }
        Ok(Issued { chain_pem, not_after, issuer: signer.subject.clone() })
    }

    /// The control plane's own serving certificate for `names` (DNS names or IP addresses):
    /// (chain PEM, key PEM). During a rotation the old root signs it.
    pub fn serving_certificate(&self, names: &[String]) -> Result<(String, String), CaError> {
        let key = KeyPair::generate().map_err(crypto("a key for the control plane"))?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(crypto("the control plane's names"))?;
        params.distinguished_name.push(DnType::CommonName, "weir control");
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + Duration::from_secs(365 * 24 * 3600)).into();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let signer = {
            let signers = self.signers();
            signers.previous.clone().unwrap_or_else(|| signers.current.clone())
        };
        let cert = params.signed_by(&key, &signer.issuer).map_err(crypto("the control plane's certificate"))?;
        let mut chain = cert.pem();
        if let Some(intermediate) = &signer.intermediate_pem {
            chain.push_str(intermediate);
        }
        Ok((chain, key.serialize_pem()))
    }
}

fn new_root(trust_domain: &str) -> Result<(String, String), CaError> {
    let key = KeyPair::generate().map_err(crypto("a key for the root CA"))?;
    let mut params = CertificateParams::default();
    // Time and a random id tell roots apart in a bundle during a rotation.
    let made = weir_mesh::kinds::certificate_revocation::format_time(unix_seconds(SystemTime::now()));
    let id = crate::api::new_secret().map_err(|error| CaError::File { path: "/dev/urandom".into(), error })?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("weir mesh root CA ({trust_domain}, {made}, {})", &id[..8]));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + Duration::from_secs(10 * 365 * 24 * 3600)).into();
    let cert = params.self_signed(&key).map_err(crypto("the root CA"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn pem_certificates(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).filter_map(Result::ok).collect()
}

fn subject_of(der: &rustls::pki_types::CertificateDer<'_>) -> String {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, cert)| cert.subject().to_string())
        .unwrap_or_else(|_| "(unreadable)".into())
}

/// The subject of who signed `der`.
pub fn issuer_of(der: &rustls::pki_types::CertificateDer<'_>) -> String {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, cert)| cert.issuer().to_string())
        .unwrap_or_else(|_| "(unreadable)".into())
}

/// Unix seconds of `time`.
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_for(uris: &[&str]) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = uris.iter().map(|u| SanType::URI((*u).try_into().unwrap())).collect();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn certifies_exactly_the_workloads_identity() {
        let dir = std::env::temp_dir().join(format!("weir-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = MeshCa::load_or_create(&dir, None, "weir.test", Duration::from_secs(3600)).unwrap();
        let id = "spiffe://weir.test/ns/shop/sa/orders";
        let issued = ca.certify(&csr_for(&[id]), id).unwrap();
        let der = rustls_pki_der(&issued.chain_pem);
        let sources = [weir_core::tls::PrincipalSource::SpiffeUri];
        assert_eq!(weir_core::tls::principal_of(&der, &sources).as_deref(), Some(id));
        let lifetime = issued.not_after.duration_since(SystemTime::now()).unwrap();
        assert!(lifetime > Duration::from_secs(3500) && lifetime <= Duration::from_secs(3600));

        let other = ca.certify(&csr_for(&["spiffe://weir.test/ns/shop/sa/billing"]), id).unwrap_err();
        assert!(
            other.to_string().contains("this workload may only be spiffe://weir.test/ns/shop/sa/orders"),
            "{other}"
        );
        assert!(ca.certify(&csr_for(&[id, "spiffe://weir.test/ns/x/sa/y"]), id).is_err(), "nothing more than its own");
        assert!(ca.certify(&csr_for(&[]), id).is_ok(), "a first request may leave the id to the CA");
        assert!(ca
            .certify("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", id)
            .is_err());

        // The same CA after a restart: the files are reused, not remade.
        let again = MeshCa::load_or_create(&dir, None, "weir.test", Duration::from_secs(3600)).unwrap();
        assert_eq!(again.bundle_pem(), ca.bundle_pem());
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join("ca/ca.key")).unwrap().permissions());
        assert_eq!(mode & 0o077, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn rustls_pki_der(pem: &str) -> rustls::pki_types::CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).next().unwrap().unwrap()
    }
}
