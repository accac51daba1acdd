//! `CertificateRevocation`: every certificate issued to a workload before a moment is no longer
//! accepted — after its key leaked, or a host was lost. The control plane refuses such a
//! certificate for streams and renewals and ends the streams that hold one; the workload's
//! sidecars get new certificates with the join token (rotate it too if it may have leaked).
//!
//! A revocation stays until deleted: keep it for at least the certificate lifetime
//! (`weir control --cert-ttl-seconds`), after which the certificates it names have expired.

use serde::Deserialize;

use crate::error::MeshError;
use crate::resource::Resource;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRevocationSpec {
    /// The workload whose certificates are revoked (it need not exist any more).
    pub workload: String,
    /// RFC 3339 (`2026-12-02T06:00:00Z`): certificates issued before this are revoked.
    pub issued_before: String,
}

/// Unix seconds of an RFC 3339 time.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time like 2026-12-02T06:00:00Z ({e})"))?;
    u64::try_from(time.unix_timestamp()).map_err(|_| format!("`{text}` is before 1970"))
}

/// RFC 3339 of unix seconds (UTC).
pub fn format_time(unix_seconds: u64) -> String {
    let time = i64::try_from(unix_seconds)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    time.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

pub(crate) fn check(resource: &Resource) -> Result<(), MeshError> {
    let spec: CertificateRevocationSpec = super::spec(resource)?;
    if spec.workload.is_empty() {
        return Err(MeshError::invalid(resource.id(), "spec.workload", "names no workload"));
    }
    parse_time(&spec.issued_before).map_err(|e| MeshError::invalid(resource.id(), "spec.issued_before", e))?;
    Ok(())
}

/// `(workload, issued before)` of a stored (checked) revocation.
pub(crate) fn revokes(resource: &Resource) -> Option<(String, u64)> {
    let spec: CertificateRevocationSpec = serde_json::from_value(resource.spec.clone()).ok()?;
    Some((spec.workload, parse_time(&spec.issued_before).ok()?))
}
