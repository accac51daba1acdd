//! Bearer tokens (JWT, RFC 7519) checked at the sidecar, for SASL/OAUTHBEARER and any other
//! protocol that carries one.
//!
//! A token is accepted when its signature verifies against a key of the configured JWKS file
//! (RS256/384/512 or ES256/384; `alg: none` and HMAC are refused, since a shared secret would
//! let every holder mint tokens), it has not expired (`exp` is required), is already valid
//! (`nbf`), and its issuer and audience match the configuration. The principal is the
//! configured claim. The JWKS comes from a file (re-read when it changes) or an http(s) URL
//! (fetched again every `reload_interval_ms`, and at once when a token names a key the set
//! lacks, at most once per [`MIN_UNKNOWN_KEY_REFETCH`]), so keys rotate without restarts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

mod jwks;
use jwks::{Jwks, Key};
pub use jwks::{JwksError, MIN_UNKNOWN_KEY_REFETCH};

/// How tokens are checked (`sasl.oauthbearer` in a sidecar's config).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// A JWKS document (`{"keys": [...]}`) with the issuer's public keys.
    #[serde(default)]
    pub jwks: Option<PathBuf>,
    /// Or the issuer's JWKS URL (`https://…` or `http://…`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// CA bundle (PEM) for an https `jwks_url`; default: the system bundle.
    #[serde(default)]
    pub jwks_ca: Option<PathBuf>,
    /// Required `iss`; any issuer when absent.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required in `aud` (a string or a list); any audience when absent.
    #[serde(default)]
    pub audience: Option<String>,
    /// The claim that names the principal.
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// Tolerated clock difference for `exp` and `nbf`.
    #[serde(default = "default_skew")]
    pub clock_skew_s: u64,
    #[serde(default = "default_reload_ms")]
    pub reload_interval_ms: u64,
}

fn default_principal_claim() -> String {
    "sub".into()
}

fn default_skew() -> u64 {
    30
}

fn default_reload_ms() -> u64 {
    10_000
}

/// Why a token was refused; the text goes to the client, the log and the audit line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token algorithm `{0}` is not accepted")]
    Algorithm(String),
    #[error("no key `{0}` in the JWKS")]
    UnknownKey(String),
    #[error("token signature does not verify")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token has no `exp` claim")]
    NoExpiry,
    #[error("token issuer `{0}` is not the configured one")]
    Issuer(String),
    #[error("token audience does not include `{0}`")]
    Audience(String),
    #[error("token has no string claim `{0}` to name the principal")]
    NoPrincipal(String),
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub principal: String,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

/// Checks tokens against the configured issuer's keys.
pub struct JwtValidator {
    config: JwtConfig,
    jwks: RwLock<Arc<Jwks>>,
    /// When a token naming an unknown key last made us fetch the keys; held across that fetch,
    /// so concurrent logins with the new key wait for one fetch instead of each starting one.
    unknown_key_fetch: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl JwtValidator {
    /// Loads the keys; a broken source is an error here (at startup), later only a log line.
    pub async fn load(config: JwtConfig) -> Result<Arc<Self>, JwksError> {
        let jwks = config.fetch_keys().await?;
        Ok(Arc::new(Self { config, jwks: RwLock::new(Arc::new(jwks)), unknown_key_fetch: Default::default() }))
    }

    /// Validates `token` at the current time against the keys held now.
    pub fn validate(&self, token: &str) -> Result<Verified, JwtError> {
        self.validate_at(token, unix_now())
    }

    /// Validates `token` at the current time; when it names a key the set lacks and the keys
    /// come from a URL, fetches them at once (the issuer may have rotated since the last
    /// fetch) and tries again. See [`MIN_UNKNOWN_KEY_REFETCH`].
    pub async fn validate_fetching(&self, token: &str) -> Result<Verified, JwtError> {
        self.validate_fetching_at(token, unix_now()).await
    }

    /// [`Self::validate_fetching`] at `now` (Unix seconds).
    pub async fn validate_fetching_at(&self, token: &str, now: u64) -> Result<Verified, JwtError> {
        match self.validate_at(token, now) {
            Err(JwtError::UnknownKey(_)) if self.config.jwks_url.is_some() => {}
            checked => return checked,
        }
        let mut last = self.unknown_key_fetch.lock().await;
        // Another login may have fetched the new keys while this one waited.
        match self.validate_at(token, now) {
            Err(JwtError::UnknownKey(kid)) if last.is_none_or(|at| at.elapsed() >= MIN_UNKNOWN_KEY_REFETCH) => {
                *last = Some(Instant::now());
                match self.config.fetch_keys().await {
                    Ok(jwks) => {
                        tracing::info!(source = %self.config.source(), %kid, "JWKS fetched for a token naming an unknown key");
                        self.replace_keys(jwks);
                    }
                    Err(err) => tracing::error!(%err, "cannot fetch the JWKS; keeping the previous keys"),
                }
                self.validate_at(token, now)
            }
            checked => checked,
        }
    }

    /// The last second (Unix time) a verified token is accepted, clock skew included: where a
    /// session it opened must end.
    pub fn accepted_until(&self, verified: &Verified) -> u64 {
        verified.expires_at.saturating_add(self.config.clock_skew_s)
    }

    fn replace_keys(&self, jwks: Jwks) {
        *self.jwks.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(jwks);
    }

    pub fn validate_at(&self, token: &str, now: u64) -> Result<Verified, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("a JWT has three dot-separated parts"));
        };
        let decode = |part: &str, what| B64URL.decode(part).map_err(|_| JwtError::Malformed(what));
        let header: Header = serde_json::from_slice(&decode(header, "header is not base64url")?)
            .map_err(|_| JwtError::Malformed("header is not a JSON object with `alg`"))?;
        let signature = decode(signature, "signature is not base64url")?;
        let signed = &token[..token.len() - token.rsplit('.').next().map_or(0, str::len) - 1];
        let jwks = self.jwks.read().unwrap_or_else(|p| p.into_inner()).clone();
        let key = jwks.key(header.kid.as_deref())?;
        verify(&header.alg, key, signed.as_bytes(), &signature)?;

        let claims: Value = serde_json::from_slice(&decode(payload, "payload is not base64url")?)
            .map_err(|_| JwtError::Malformed("payload is not JSON"))?;
        let skew = self.config.clock_skew_s;
        let expires_at = claims.get("exp").and_then(Value::as_u64).ok_or(JwtError::NoExpiry)?;
        if now > expires_at.saturating_add(skew) {
            return Err(JwtError::Expired);
        }
        if claims.get("nbf").and_then(Value::as_u64).is_some_and(|nbf| now.saturating_add(skew) < nbf) {
            return Err(JwtError::NotYetValid);
        }
        if let Some(issuer) = &self.config.issuer {
            let got = claims.get("iss").and_then(Value::as_str).unwrap_or("");
            if got != issuer {
                return Err(JwtError::Issuer(got.to_owned()));
            }
        }
        if let Some(audience) = &self.config.audience {
            let matches = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !matches {
                return Err(JwtError::Audience(audience.clone()));
            }
        }
        let claim = &self.config.principal_claim;
        let principal =
            claims.get(claim).and_then(Value::as_str).ok_or_else(|| JwtError::NoPrincipal(claim.clone()))?;
        Ok(Verified { principal: principal.to_owned(), expires_at })
    }

    /// Keeps the keys current: a file is re-read when it changes, a URL fetched again every
    /// interval; keys that cannot be read leave the previous ones in place.
    pub async fn reload_on_change(self: Arc<Self>, stop: CancellationToken) {
        let interval = Duration::from_millis(self.config.reload_interval_ms.max(100));
        let stamp = |file: Option<&PathBuf>| {
            file.and_then(|f| std::fs::metadata(f).ok()).and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        let mut loaded = stamp(self.config.jwks.as_ref());
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if self.config.jwks.is_some() {
                let now = stamp(self.config.jwks.as_ref());
                if now == loaded {
                    continue;
                }
                loaded = now;
            }
            match self.config.fetch_keys().await {
                Ok(jwks) => {
                    tracing::debug!(source = %self.config.source(), keys = jwks.keys.len(), "JWKS loaded");
                    self.replace_keys(jwks);
                }
                Err(err) => tracing::error!(%err, "cannot refresh the JWKS; keeping the previous keys"),
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn verify(alg: &str, key: &Key, signed: &[u8], signature: &[u8]) -> Result<(), JwtError> {
    let checked = match (alg, key) {
        ("RS256" | "RS384" | "RS512", Key::Rsa { n, e }) => {
            let params = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                _ => &signature::RSA_PKCS1_2048_8192_SHA512,
            };
            RsaPublicKeyComponents { n, e }.verify(params, signed, signature)
        }
        (alg, Key::Ec { point, alg: curve_alg }) if alg == *curve_alg => {
            let params =
                if alg == "ES256" { &signature::ECDSA_P256_SHA256_FIXED } else { &signature::ECDSA_P384_SHA384_FIXED };
            UnparsedPublicKey::new(params, point).verify(signed, signature)
        }
        ("RS256" | "RS384" | "RS512" | "ES256" | "ES384", _) => return Err(JwtError::Signature),
        (other, _) => return Err(JwtError::Algorithm(other.to_owned())),
    };
    checked.map_err(|_| JwtError::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    struct Issuer {
        pair: EcdsaKeyPair,
        dir: PathBuf,
    }

    impl Drop for Issuer {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl Issuer {
        fn new(name: &str) -> Self {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
            let dir = std::env::temp_dir().join(format!("weir-jwt-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self { pair, dir }
        }

        fn jwks(&self) -> String {
            let point = self.pair.public_key().as_ref();
            format!(
                r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"k1","use":"sig","x":"{}","y":"{}"}}]}}"#,
                B64URL.encode(&point[1..33]),
                B64URL.encode(&point[33..])
            )
        }

        fn token(&self, header: &str, claims: &str) -> String {
            let signed = format!("{}.{}", B64URL.encode(header), B64URL.encode(claims));
            let sig = self.pair.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
            format!("{signed}.{}", B64URL.encode(sig.as_ref()))
        }

        fn validator(&self) -> Arc<JwtValidator> {
            let file = self.dir.join("jwks.json");
            std::fs::write(&file, self.jwks()).unwrap();
            block_on(JwtValidator::load(JwtConfig { jwks: Some(file), ..test_config() })).unwrap()
        }
    }

    /// The test issuer's settings, without a key source.
    fn test_config() -> JwtConfig {
        JwtConfig {
            jwks: None,
            jwks_url: None,
            jwks_ca: None,
            issuer: Some("https://idp.test".into()),
            audience: Some("kafka".into()),
            principal_claim: "sub".into(),
            clock_skew_s: 30,
            reload_interval_ms: 1000,
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
    }

    const HEADER: &str = r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#;
    const NOW: u64 = 1_800_000_000;

    fn claims(extra: &str) -> String {
        format!(
            r#"{{"iss":"https://idp.test","aud":["kafka","other"],"sub":"svc-orders","exp":{},"iat":{NOW}{extra}}}"#,
            NOW + 300
        )
    }

    #[test]
    fn accepts_a_good_token_and_names_the_principal() {
        let idp = Issuer::new("good");
        let v = idp.validator();
        let got = v.validate_at(&idp.token(HEADER, &claims("")), NOW).unwrap();
        assert_eq!(got, Verified { principal: "svc-orders".into(), expires_at: NOW + 300 });
    }

    #[test]
    fn refuses_every_kind_of_bad_token() {
        let idp = Issuer::new("bad");
        let v = idp.validator();
        let good = idp.token(HEADER, &claims(""));
        assert_eq!(v.validate_at(&good, NOW + 331), Err(JwtError::Expired));
        let nbf = idp.token(HEADER, &claims(&format!(r#","nbf":{}"#, NOW + 100)));
        assert_eq!(v.validate_at(&nbf, NOW), Err(JwtError::NotYetValid));
        let wrong_aud = idp.token(HEADER, &claims("").replace(r#"["kafka","other"]"#, r#""billing""#));
        assert_eq!(v.validate_at(&wrong_aud, NOW), Err(JwtError::Audience("kafka".into())));
        let wrong_iss = idp.token(HEADER, &claims("").replace("https://idp.test", "https://evil.test"));
        assert!(matches!(v.validate_at(&wrong_iss, NOW), Err(JwtError::Issuer(_))));
        let no_exp = idp.token(HEADER, r#"{"iss":"https://idp.test","aud":"kafka","sub":"x"}"#);
        assert_eq!(v.validate_at(&no_exp, NOW), Err(JwtError::NoExpiry));

        // Forged: signed by another key, payload swapped under a valid signature, alg none, HMAC.
        let other = Issuer::new("other");
        assert_eq!(v.validate_at(&other.token(HEADER, &claims("")), NOW), Err(JwtError::Signature));
        let mut parts: Vec<&str> = good.split('.').collect();
        let admin = B64URL.encode(claims("").replace("svc-orders", "admin"));
        parts[1] = &admin;
        assert_eq!(v.validate_at(&parts.join("."), NOW), Err(JwtError::Signature));
        let none = format!("{}.{}.", B64URL.encode(r#"{"alg":"none"}"#), B64URL.encode(claims("")));
        assert!(matches!(v.validate_at(&none, NOW), Err(JwtError::UnknownKey(_) | JwtError::Algorithm(_))));
        let none_kid = format!("{}.{}.", B64URL.encode(r#"{"alg":"none","kid":"k1"}"#), B64URL.encode(claims("")));
        assert_eq!(v.validate_at(&none_kid, NOW), Err(JwtError::Algorithm("none".into())));
        let hs = idp.token(r#"{"alg":"HS256","kid":"k1"}"#, &claims(""));
        assert_eq!(v.validate_at(&hs, NOW), Err(JwtError::Algorithm("HS256".into())));
        let unknown_kid = idp.token(r#"{"alg":"ES256","kid":"k9"}"#, &claims(""));
        assert_eq!(v.validate_at(&unknown_kid, NOW), Err(JwtError::UnknownKey("k9".into())));
        for garbage in ["", "a.b", "a.b.c.d", "!!.??.**", &format!("{}.x.y", B64URL.encode("{}"))] {
            assert!(matches!(v.validate_at(garbage, NOW), Err(JwtError::Malformed(_))), "{garbage}");
        }
    }

    /// Serves `body` with `status` to every request on a local port; the URL of `path`.
    async fn serve_once(status: &'static str, body: String) -> String {
        serve(status, Arc::new(std::sync::Mutex::new(body)), Default::default()).await
    }

    /// Serves what `body` holds at each request, counting them in `served`; the URL.
    async fn serve(
        status: &'static str,
        body: Arc<std::sync::Mutex<String>>,
        served: Arc<std::sync::atomic::AtomicUsize>,
    ) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = vec![0; 4096];
                let _ = socket.read(&mut request).await;
                served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = body.lock().unwrap().clone();
                let head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                let _ = socket.write_all((head + &body).as_bytes()).await;
            }
        });
        format!("http://{addr}/.well-known/jwks.json")
    }

    #[tokio::test]
    async fn keys_come_from_a_url_too() {
        let idp = Issuer::new("url");
        let config = |url: String| JwtConfig { jwks_url: Some(url), ..test_config() };
        let v = JwtValidator::load(config(serve_once("200 OK", idp.jwks()).await)).await.unwrap();
        assert_eq!(v.validate_at(&idp.token(HEADER, &claims("")), NOW).unwrap().principal, "svc-orders");

        let url = serve_once("404 Not Found", "nope".into()).await;
        let err = JwtValidator::load(config(url.clone())).await.err().unwrap().to_string();
        assert!(err.contains(&url) && err.contains("404"), "{err}");
        let err = JwtValidator::load(config("ftp://x/jwks".into())).await.err().unwrap().to_string();
        assert!(err.contains("https://"), "{err}");
        assert!(config("http://x".into()).check().is_ok());
        assert!(JwtConfig { jwks: Some("f".into()), ..config("http://x".into()) }.check().is_err());
    }

    /// An issuer rotates to a new key: the first token signed with it makes the sidecar fetch
    /// the keys at once, instead of failing until the next timed fetch; made-up key ids do
    /// not make it fetch again.
    #[tokio::test]
    async fn a_token_naming_an_unknown_key_fetches_the_keys_once() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let (old, new) = (Issuer::new("rotate-old"), Issuer::new("rotate-new"));
        let body = Arc::new(std::sync::Mutex::new(old.jwks()));
        let served = Arc::new(AtomicUsize::new(0));
        let url = serve("200 OK", body.clone(), served.clone()).await;
        let v = JwtValidator::load(JwtConfig { jwks_url: Some(url), ..test_config() }).await.unwrap();
        assert_eq!(served.load(SeqCst), 1);

        *body.lock().unwrap() = new.jwks().replace(r#""kid":"k1""#, r#""kid":"k2""#);
        let rotated = new.token(r#"{"alg":"ES256","kid":"k2"}"#, &claims(""));
        assert_eq!(v.validate_at(&rotated, NOW), Err(JwtError::UnknownKey("k2".into())));
        assert_eq!(v.validate_fetching_at(&rotated, NOW).await.unwrap().principal, "svc-orders");
        assert_eq!(served.load(SeqCst), 2);
        assert!(v.validate_at(&old.token(HEADER, &claims("")), NOW).is_err(), "the old key is gone");

        let forged = new.token(r#"{"alg":"ES256","kid":"k9"}"#, &claims(""));
        for _ in 0..3 {
            assert_eq!(v.validate_fetching_at(&forged, NOW).await, Err(JwtError::UnknownKey("k9".into())));
        }
        assert_eq!(served.load(SeqCst), 2, "at most one fetch per {MIN_UNKNOWN_KEY_REFETCH:?}");
    }

    /// RFC 7515 appendix A.2: an RS256 JWS and its key, from the standard.
    #[test]
    fn verifies_the_rfc_7515_rs256_example() {
        let n = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
        let jwks = format!(r#"{{"keys":[{{"kty":"RSA","n":"{n}","e":"AQAB"}}]}}"#);
        let file = std::env::temp_dir().join(format!("weir-jwt-rfc-{}.json", std::process::id()));
        std::fs::write(&file, jwks).unwrap();
        let v = block_on(JwtValidator::load(JwtConfig {
            jwks: Some(file.clone()),
            jwks_url: None,
            jwks_ca: None,
            issuer: Some("joe".into()),
            audience: None,
            principal_claim: "iss".into(),
            clock_skew_s: 0,
            reload_interval_ms: 1000,
        }))
        .unwrap();
        let token = concat!(
            "eyJhbGciOiJSUzI1NiJ9.",
            "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.",
            "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
        );
        assert_eq!(v.validate_at(token, 1_300_819_000).unwrap().principal, "joe");
        assert_eq!(v.validate_at(token, 1_300_819_381), Err(JwtError::Expired));
        std::fs::remove_file(file).ok();
    }
}
