//! The mesh's certificate authority: issues each sidecar a short-lived certificate whose URI
//! SAN is its workload's SPIFFE id, from a certificate signing request (the sidecar's key never
//! leaves its host), and the control plane's own serving certificate.
//!
//! The signing CA is a root made on first start in `DATA_DIR/ca/` (`ca.pem`, `ca.key` mode
//! 0600), or an intermediate the user supplies (signed by a CA that brokers and other peers
//! already trust). The trust bundle (`bundle.pem`) is every root peers accept; during a root
//! rotation it holds the old and the new one.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
}

pub struct MeshCa {
    issuer: Issuer<'static, KeyPair>,
    /// The signing CA's certificate, sent with each leaf when it is an intermediate.
    intermediate_pem: Option<String>,
    bundle_pem: String,
    pub trust_domain: String,
    pub ttl: Duration,
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

fn write_private(path: &Path, text: &str) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let file_error = |error| CaError::File { path: path.to_owned(), error };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(file_error)?;
    out.write_all(text.as_bytes()).map_err(file_error)?;
    out.sync_all().map_err(file_error)
}

impl MeshCa {
    /// The CA of `dir/ca/`, made on first start unless `supplied`.
    pub fn load_or_create(
        dir: &Path,
        supplied: Option<&SuppliedCa>,
        trust_domain: &str,
        ttl: Duration,
    ) -> Result<Self, CaError> {
        let (cert_pem, key_pem, bundle_pem, intermediate) = match supplied {
            Some(ca) => {
                let cert = read(&ca.cert)?;
                (cert.clone(), read(&ca.key)?, read(&ca.bundle)?, Some(cert))
            }
            None => {
                let ca_dir = dir.join("ca");
                std::fs::create_dir_all(&ca_dir).map_err(|error| CaError::File { path: ca_dir.clone(), error })?;
                let (cert, key, bundle) = (ca_dir.join("ca.pem"), ca_dir.join("ca.key"), ca_dir.join("bundle.pem"));
                if !cert.exists() {
                    let (cert_pem, key_pem) = new_root(trust_domain)?;
                    write_private(&key, &key_pem)?;
                    write_private(&cert, &cert_pem)?;
                    write_private(&bundle, &cert_pem)?;
                    tracing::info!(dir = %ca_dir.display(), %trust_domain, "made the mesh's root CA");
                }
                (read(&cert)?, read(&key)?, read(&bundle)?, None)
            }
        };
        let key = KeyPair::from_pem(&key_pem).map_err(crypto("the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(crypto("the CA certificate"))?;
        Ok(Self { issuer, intermediate_pem: intermediate, bundle_pem, trust_domain: trust_domain.to_owned(), ttl })
    }

    pub fn bundle_pem(&self) -> &str {
        &self.bundle_pem
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
        let signed = CertificateSigningRequestParams { params, public_key: request.public_key }
            .signed_by(&self.issuer)
            .map_err(crypto("signing the certificate"))?;
        let mut chain_pem = signed.pem();
        if let Some(intermediate) = &self.intermediate_pem {
            chain_pem.push_str(intermediate);
        }
        Ok(Issued { chain_pem, not_after })
    }

    /// The control plane's own serving certificate for `names` (DNS names or IP addresses):
    /// (chain PEM, key PEM).
    pub fn serving_certificate(&self, names: &[String]) -> Result<(String, String), CaError> {
        let key = KeyPair::generate().map_err(crypto("a key for the control plane"))?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(crypto("the control plane's names"))?;
        params.distinguished_name.push(DnType::CommonName, "weir control");
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + Duration::from_secs(365 * 24 * 3600)).into();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(crypto("the control plane's certificate"))?;
        let mut chain = cert.pem();
        if let Some(intermediate) = &self.intermediate_pem {
            chain.push_str(intermediate);
        }
        Ok((chain, key.serialize_pem()))
    }
}

fn new_root(trust_domain: &str) -> Result<(String, String), CaError> {
    let key = KeyPair::generate().map_err(crypto("a key for the root CA"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, format!("weir mesh root CA ({trust_domain})"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + Duration::from_secs(10 * 365 * 24 * 3600)).into();
    let cert = params.self_signed(&key).map_err(crypto("the root CA"))?;
    Ok((cert.pem(), key.serialize_pem()))
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
