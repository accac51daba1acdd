//! An external KMS: AWS KMS, or anything that speaks its JSON API (a regional endpoint, a VPC
//! endpoint, LocalStack or moto for tests). A data key is wrapped by `Encrypt` under the
//! configured key (an id, ARN or `alias/…`) and unwrapped by `Decrypt`; the key material
//! never leaves the KMS. Requests are signed with Signature Version 4 from credentials the
//! sidecar is given (the standard `AWS_*` environment variables), and bounded in time.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::Engine;
use ring::{digest, hmac};
use serde::Deserialize;

use crate::kms::{Kms, KmsError, KmsFuture, WrappedKey};

/// Where an [`AwsKms`] is and who it signs as.
#[derive(Debug, Clone)]
pub struct AwsKmsSettings {
    /// E.g. `https://kms.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    pub region: String,
    /// The key-encryption key: a key id, its ARN or `alias/<name>`.
    pub key_id: String,
    pub credentials: AwsCredentials,
    /// How long one call may take before the KMS counts as unavailable.
    pub timeout: Duration,
    /// The CA bundle an `https` endpoint is checked against.
    pub ca: PathBuf,
}

/// Credentials for Signature Version 4.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// For temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("AwsCredentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl AwsCredentials {
    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (optionally) `AWS_SESSION_TOKEN`.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(AwsCredentials {
            access_key_id: var("AWS_ACCESS_KEY_ID").ok_or("AWS_ACCESS_KEY_ID is not set")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY").ok_or("AWS_SECRET_ACCESS_KEY is not set")?,
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }
}

/// The answers this client reads (AWS KMS API reference: Encrypt, Decrypt, errors).
#[derive(Deserialize)]
struct Encrypted {
    #[serde(rename = "CiphertextBlob")]
    ciphertext_blob: String,
}

#[derive(Deserialize)]
struct Decrypted {
    #[serde(rename = "Plaintext")]
    plaintext: String,
}

#[derive(Deserialize)]
struct Failure {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(alias = "Message", default)]
    message: String,
}

/// Answers longer than this are not KMS answers.
const MAX_ANSWER: usize = 64 * 1024;

pub struct AwsKms {
    settings: AwsKmsSettings,
    /// The `Host` header (what the signature covers).
    host: String,
}

impl AwsKms {
    pub fn new(settings: AwsKmsSettings) -> Result<Self, String> {
        let host = weir_core::http_get::host_header(&settings.endpoint).map_err(|e| e.to_string())?;
        Ok(AwsKms { settings, host })
    }

    /// One call of the KMS API: `action` (`Encrypt`, `Decrypt`) with a JSON body.
    async fn call(&self, action: &str, body: serde_json::Value) -> Result<bytes::Bytes, KmsError> {
        let body = serde_json::to_vec(&body).map_err(|e| KmsError::Unavailable(e.to_string()))?;
        let target = format!("TrentService.{action}");
        let signed = sign(&self.settings, &self.host, &target, &body, SystemTime::now());
        let mut headers: Vec<(&str, &str)> = vec![
            ("content-type", CONTENT_TYPE),
            ("x-amz-date", &signed.amz_date),
            ("x-amz-target", &target),
            ("authorization", &signed.authorization),
        ];
        if let Some(token) = &self.settings.credentials.session_token {
            headers.push(("x-amz-security-token", token));
        }
        let call = weir_core::http_get::post_with_headers(
            &self.settings.endpoint,
            &headers,
            body.into(),
            &self.settings.ca,
            MAX_ANSWER,
        );
        let answer = tokio::time::timeout(self.settings.timeout, call)
            .await
            .map_err(|_| {
                KmsError::Unavailable(format!(
                    "{} did not answer {action} within {:?}",
                    self.settings.endpoint, self.settings.timeout
                ))
            })?
            .map_err(|e| KmsError::Unavailable(format!("{}: {e}", self.settings.endpoint)))?;
        if answer.status.is_success() {
            return Ok(answer.body);
        }
        let failure: Failure = serde_json::from_slice(&answer.body)
            .unwrap_or(Failure { kind: String::new(), message: String::from_utf8_lossy(&answer.body).into_owned() });
        // `__type` may be prefixed with a namespace: `com.amazonaws.kms#NotFoundException`.
        let kind = failure.kind.rsplit('#').next().unwrap_or_default();
        let what = format!("{action}: {} {kind}: {}", answer.status.as_u16(), failure.message);
        Err(match kind {
            "NotFoundException" | "DisabledException" | "KMSInvalidStateException" => {
                KmsError::UnknownKey(format!("{} ({what})", self.settings.key_id))
            }
            "InvalidCiphertextException" | "IncorrectKeyException" => {
                KmsError::BadWrappedKey(format!("{} ({what})", self.settings.key_id))
            }
            _ => KmsError::Unavailable(what),
        })
    }
}

impl Kms for AwsKms {
    fn wrap<'a>(&'a self, data_key: &'a [u8; 32]) -> KmsFuture<'a, WrappedKey> {
        Box::pin(async move {
            let body = serde_json::json!({
                "KeyId": self.settings.key_id,
                "Plaintext": base64::engine::general_purpose::STANDARD.encode(data_key),
            });
            let answer = self.call("Encrypt", body).await?;
            let encrypted: Encrypted = serde_json::from_slice(&answer)
                .map_err(|e| KmsError::Unavailable(format!("Encrypt: an answer without CiphertextBlob: {e}")))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encrypted.ciphertext_blob)
                .map_err(|e| KmsError::Unavailable(format!("Encrypt: CiphertextBlob is not base64: {e}")))?;
            // An envelope gives each a byte of length.
            if bytes.len() > 255 || self.settings.key_id.len() > 255 {
                return Err(KmsError::Unavailable(format!(
                    "Encrypt: a wrapped key of {} bytes under a key id of {} does not fit an envelope (255 each)",
                    bytes.len(),
                    self.settings.key_id.len()
                )));
            }
            Ok(WrappedKey { kek_id: self.settings.key_id.clone(), bytes })
        })
    }

    fn unwrap<'a>(&'a self, wrapped: &'a WrappedKey) -> KmsFuture<'a, [u8; 32]> {
        Box::pin(async move {
            let body = serde_json::json!({
                "KeyId": wrapped.kek_id,
                "CiphertextBlob": base64::engine::general_purpose::STANDARD.encode(&wrapped.bytes),
            });
            let answer = self.call("Decrypt", body).await?;
            let decrypted: Decrypted = serde_json::from_slice(&answer)
                .map_err(|e| KmsError::Unavailable(format!("Decrypt: an answer without Plaintext: {e}")))?;
            let plaintext = base64::engine::general_purpose::STANDARD
                .decode(decrypted.plaintext)
                .map_err(|_| KmsError::BadWrappedKey(wrapped.kek_id.clone()))?;
            plaintext.try_into().map_err(|_| KmsError::BadWrappedKey(wrapped.kek_id.clone()))
        })
    }
}

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The headers a Signature Version 4 request carries.
#[derive(Debug, PartialEq, Eq)]
struct Signed {
    amz_date: String,
    authorization: String,
}

/// Signs a POST of `body` to `/` of `host` with `x-amz-target: target`, at `now`.
fn sign(settings: &AwsKmsSettings, host: &str, target: &str, body: &[u8], now: SystemTime) -> Signed {
    let amz_date = weir_core::utc::Utc::of(now).basic();
    let date = &amz_date[..8];
    let token = settings.credentials.session_token.as_deref();
    let mut canonical_headers = format!("content-type:{CONTENT_TYPE}\nhost:{host}\nx-amz-date:{amz_date}\n");
    let mut signed_headers = String::from("content-type;host;x-amz-date");
    if let Some(token) = token {
        canonical_headers.push_str(&format!("x-amz-security-token:{token}\n"));
        signed_headers.push_str(";x-amz-security-token");
    }
    canonical_headers.push_str(&format!("x-amz-target:{target}\n"));
    signed_headers.push_str(";x-amz-target");
    let canonical_request = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex(digest::digest(&digest::SHA256, body).as_ref())
    );
    let scope = format!("{date}/{}/kms/aws4_request", settings.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let mac = |key: &[u8], data: &[u8]| hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let secret = format!("AWS4{}", settings.credentials.secret_access_key);
    let k_date = mac(secret.as_bytes(), date.as_bytes());
    let k_region = mac(k_date.as_ref(), settings.region.as_bytes());
    let k_service = mac(k_region.as_ref(), b"kms");
    let k_signing = mac(k_service.as_ref(), b"aws4_request");
    let signature = hex(mac(k_signing.as_ref(), string_to_sign.as_bytes()).as_ref());
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        settings.credentials.access_key_id
    );
    Signed { amz_date, authorization }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signing key of AWS's published example (General Reference, "Calculate the
    /// signature": the example secret, 20120215, us-east-1, iam).
    #[test]
    fn the_signing_key_is_derived_as_documented() {
        let mac = |key: &[u8], data: &[u8]| hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
        let k_date = mac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20120215");
        let k_region = mac(k_date.as_ref(), b"us-east-1");
        let k_service = mac(k_region.as_ref(), b"iam");
        let k_signing = mac(k_service.as_ref(), b"aws4_request");
        assert_eq!(hex(k_signing.as_ref()), "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    }

    #[test]
    fn a_request_is_signed_over_its_headers_and_body() {
        let settings = AwsKmsSettings {
            endpoint: "https://kms.us-east-1.amazonaws.com".into(),
            region: "us-east-1".into(),
            key_id: "alias/weir".into(),
            credentials: AwsCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
                session_token: None,
            },
            timeout: Duration::from_secs(1),
            ca: PathBuf::new(),
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let one = sign(&settings, "kms.us-east-1.amazonaws.com", "TrentService.Encrypt", b"{}", at);
        assert_eq!(one.amz_date, "20150830T123600Z");
        assert!(one.authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
        ));
        // Any change to what is signed changes the signature.
        let other_body = sign(&settings, "kms.us-east-1.amazonaws.com", "TrentService.Encrypt", b"{ }", at);
        let other_target = sign(&settings, "kms.us-east-1.amazonaws.com", "TrentService.Decrypt", b"{}", at);
        assert_ne!(one.authorization, other_body.authorization);
        assert_ne!(one.authorization, other_target.authorization);
        let with_token = AwsKmsSettings {
            credentials: AwsCredentials { session_token: Some("token".into()), ..settings.credentials.clone() },
            ..settings.clone()
        };
        let signed = sign(&with_token, "kms.us-east-1.amazonaws.com", "TrentService.Encrypt", b"{}", at);
        assert!(signed
            .authorization
            .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"));
        assert!(!format!("{:?}", settings.credentials).contains("wJalr"), "no secret in Debug");
    }
}
