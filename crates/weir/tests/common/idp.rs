//! A throwaway identity provider for bearer-token tests: an ES256 key, its JWKS file, and the
//! tokens it signs.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use super::unique;

pub const ISSUER: &str = "https://idp.weir.test";
pub const AUDIENCE: &str = "kafka";

pub struct IdentityProvider {
    key: EcdsaKeyPair,
    /// Holds `jwks.json` (and whatever a test puts beside it); removed on drop.
    pub dir: PathBuf,
}

impl IdentityProvider {
    pub fn new(name: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let dir = std::env::temp_dir().join(format!("weir-{}", unique(name)));
        std::fs::create_dir_all(&dir).unwrap();
        let point = key.public_key().as_ref();
        let jwks = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"weir-test","use":"sig","x":"{}","y":"{}"}}]}}"#,
            B64URL.encode(&point[1..33]),
            B64URL.encode(&point[33..])
        );
        std::fs::write(dir.join("jwks.json"), jwks).unwrap();
        Self { key, dir }
    }

    /// A token for `sub`, valid for `ttl_s` seconds from now (negative: already expired).
    pub fn token(&self, sub: &str, audience: &str, ttl_s: i64) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let header = r#"{"alg":"ES256","kid":"weir-test","typ":"JWT"}"#;
        let claims = format!(
            r#"{{"iss":"{ISSUER}","aud":"{audience}","sub":"{sub}","iat":{},"exp":{}}}"#,
            now - 60,
            now + ttl_s
        );
        let signed = format!("{}.{}", B64URL.encode(header), B64URL.encode(claims));
        let signature = self.key.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", B64URL.encode(signature.as_ref()))
    }
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
