//! Envelope encryption of records: the sidecar's `kms:` and `encryption:` config, and what
//! sealing and opening a record's value (or some of its JSON fields) is. The keys and the
//! envelope are `weir-envelope`'s; the filters are [`crate::filters::encryption`].
//!
//! A record written to a covered topic is stored with its value sealed (or each of the
//! rule's JSON fields replaced by a JSON string holding its sealed text) and a header
//! `weir.encryption` saying how (`v1`, or `v1;` and the paths sealed): keys, timestamps and
//! other headers stay as written, so that partitioning, compaction and routing still work.
//! Principals the rule names read the value as written; others get it sealed, or nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use weir_core::config::{invalid, ConfigError};
use weir_core::policy::Pattern;
use weir_envelope::{DataKey, EnvelopeError, Opener, Rotation};

use crate::quota::covers;
use crate::transform::json_document;
use crate::transform::json_path::{select, JsonPath};

/// The header that marks a sealed record, and says what of it is sealed.
pub const HEADER: &str = "weir.encryption";
/// Its value for a whole sealed value; fields add `;` and each path.
const WHOLE: &str = "v1";

/// Where the key-encryption keys are: one KMS per sidecar, read at start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KmsConfig {
    /// Keys in a local JSON file: `{"current": "<id>", "keys": {"<id>": "<base64 of 32 bytes>"}}`.
    Local(LocalKmsConfig),
    /// AWS KMS (or anything speaking its API): data keys wrapped by `Encrypt` under `key_id`.
    Aws(AwsKmsConfig),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsKmsConfig {
    pub region: String,
    /// A key id, its ARN or `alias/<name>`.
    pub key_id: String,
    /// Default: `https://kms.<region>.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// How long one KMS call may take before the KMS counts as unavailable.
    #[serde(default = "default_kms_timeout_ms")]
    pub timeout_ms: u64,
    /// The CA an `https` endpoint is checked against (default: the system's).
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

fn default_kms_timeout_ms() -> u64 {
    5_000
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalKmsConfig {
    pub key_file: PathBuf,
    /// How often the file is read again (a new current key); keys read before go on serving
    /// when it cannot be.
    #[serde(default = "default_reread_ms")]
    pub reread_after_ms: u64,
}

fn default_reread_ms() -> u64 {
    30_000
}

impl KmsConfig {
    /// The KMS this config names; an AWS one takes its credentials from the standard
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) variables.
    pub fn kms(&self) -> Result<std::sync::Arc<dyn weir_envelope::Kms>, String> {
        match self {
            KmsConfig::Local(local) => {
                let reread = Duration::from_millis(local.reread_after_ms);
                Ok(std::sync::Arc::new(weir_envelope::LocalKms::with_reread(&local.key_file, reread)))
            }
            KmsConfig::Aws(aws) => {
                let credentials = weir_envelope::AwsCredentials::from_env()?;
                let settings = weir_envelope::AwsKmsSettings {
                    endpoint: aws
                        .endpoint
                        .clone()
                        .unwrap_or_else(|| format!("https://kms.{}.amazonaws.com", aws.region)),
                    region: aws.region.clone(),
                    key_id: aws.key_id.clone(),
                    credentials,
                    timeout: Duration::from_millis(aws.timeout_ms),
                    ca: weir_core::http_get::ca_or_system(aws.ca.as_deref()),
                };
                Ok(std::sync::Arc::new(weir_envelope::AwsKms::new(settings)?))
            }
        }
    }
}

/// What a principal the rule does not name gets of a covered topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Others {
    /// The records as stored: values sealed.
    #[default]
    Ciphertext,
    /// No records: TOPIC_AUTHORIZATION_FAILED for the topic's partitions.
    Refuse,
}

/// One rule of `encryption:`. The first rule covering a topic applies to it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionRule {
    pub name: String,
    /// The topics whose records are sealed: literal, `prefix*` or globs.
    pub topics: Vec<String>,
    /// JSON fields of the value sealed, by path; none: the whole value.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Who reads plaintext (principals as authorization names them).
    #[serde(default)]
    pub decrypt_for: Vec<String>,
    #[serde(default)]
    pub others: Others,
    /// A topic's data key is replaced after this long…
    #[serde(default = "default_rotate_ms")]
    pub rotate_after_ms: u64,
    /// …or after sealing this many values.
    #[serde(default = "default_rotate_records")]
    pub rotate_after_records: u64,
}

fn default_rotate_ms() -> u64 {
    3_600_000
}

fn default_rotate_records() -> u64 {
    1_000_000
}

impl EncryptionRule {
    fn validate(&self, origin: &Path, at: &str, has_kms: bool) -> Result<(), ConfigError> {
        let field = |name: &str| format!("{at}.{name}");
        if self.name.is_empty() {
            return Err(invalid(origin, &field("name"), "a rule needs a name"));
        }
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            return Err(invalid(origin, &field("topics"), "name the topics it covers (`*` for every topic)"));
        }
        if !has_kms {
            return Err(invalid(
                origin,
                at,
                "encryption needs a KMS: set `kms` ({local: {key_file: PATH}} or {aws: {region, key_id}})",
            ));
        }
        for (i, path) in self.fields.iter().enumerate() {
            let at = format!("{at}.fields[{i}]");
            JsonPath::parse(path).map_err(|why| invalid(origin, &at, why))?;
            if path.contains(';') {
                return Err(invalid(origin, &at, "a sealed field's path has no `;`"));
            }
        }
        if self.rotate_after_ms == 0 || self.rotate_after_records == 0 {
            return Err(invalid(origin, at, "rotate_after_ms and rotate_after_records are at least 1"));
        }
        if self.rotate_after_records > weir_envelope::keys::MAX_USES {
            let why = format!("at most {} (2^32) values per data key", weir_envelope::keys::MAX_USES);
            return Err(invalid(origin, &field("rotate_after_records"), why));
        }
        Ok(())
    }
}

/// Checks `encryption:`: each rule named, unique, covering topics, its paths readable, a KMS
/// to take keys from.
pub fn validate_rules(rules: &[EncryptionRule], has_kms: bool, origin: &Path) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        rule.validate(origin, &format!("encryption[{i}]"), has_kms)?;
    }
    crate::config::unique_names(rules.iter().map(|rule| rule.name.as_str()), "encryption", origin)
}

/// A rule as the filters apply it.
#[derive(Debug, Clone)]
pub struct CompiledEncryption {
    pub rule: String,
    topics: Vec<Pattern>,
    fields: Vec<JsonPath>,
    /// The header value of what it seals.
    marker: Vec<u8>,
    pub rotation: Rotation,
    pub decrypt_for: Vec<String>,
    pub others: Others,
}

impl CompiledEncryption {
    pub fn new(rule: &EncryptionRule) -> Self {
        let mut marker = WHOLE.to_owned();
        for path in &rule.fields {
            marker.push(';');
            marker.push_str(path);
        }
        CompiledEncryption {
            rule: rule.name.clone(),
            topics: rule.topics.iter().map(|p| Pattern::parse(p)).collect(),
            fields: rule.fields.iter().filter_map(|p| JsonPath::parse(p).ok()).collect(),
            marker: marker.into_bytes(),
            rotation: Rotation {
                max_age: Duration::from_millis(rule.rotate_after_ms),
                max_uses: rule.rotate_after_records,
            },
            decrypt_for: rule.decrypt_for.clone(),
            others: rule.others,
        }
    }

    pub fn covers(&self, topic: &str) -> bool {
        self.topics.iter().any(|p| p.matches(topic))
    }

    /// Whether `principal` reads plaintext.
    pub fn decrypts_for(&self, principal: &str) -> bool {
        !self.decrypt_for.is_empty() && covers(&self.decrypt_for, principal)
    }

    /// The header value marking what it seals.
    pub fn marker(&self) -> &[u8] {
        &self.marker
    }

    /// `value` sealed under `key` as the rule says: the whole of it, or its fields (each
    /// replaced by a JSON string of its sealed text, base64). Fails when fields are to be
    /// sealed and the value is not JSON: it must not be written unsealed.
    pub fn seal(&self, key: &DataKey, value: &[u8]) -> Result<Vec<u8>, String> {
        if self.fields.is_empty() {
            let mut out = Vec::with_capacity(value.len() + 128);
            key.seal_into(value, &mut out);
            return Ok(out);
        }
        let doc = json_document(value);
        let paths: Vec<&JsonPath> = self.fields.iter().collect();
        let spans = select(doc, &paths).map_err(|e| format!("the value is {e}: its fields cannot be sealed"))?;
        let framing = value.len() - doc.len();
        let mut out = Vec::with_capacity(value.len() + spans.len() * 160);
        out.extend_from_slice(&value[..framing]);
        let (mut copied, mut sealed) = (0, Vec::new());
        for (span, _) in spans {
            out.extend_from_slice(&doc[copied..span.start]);
            sealed.clear();
            key.seal_into(&doc[span.clone()], &mut sealed);
            out.push(b'"');
            out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(&sealed).as_bytes());
            out.push(b'"');
            copied = span.end;
        }
        out.extend_from_slice(&doc[copied..]);
        Ok(out)
    }
}

/// The envelopes in a sealed record's value, as its marker says: the value itself, or each
/// sealed field's (decoded). Fails on a marker this sidecar does not read, or fields that are
/// not sealed strings.
pub fn envelopes<'v>(marker: &[u8], value: &'v [u8]) -> Result<Vec<Sealed<'v>>, String> {
    let marker = std::str::from_utf8(marker).map_err(|_| "a `weir.encryption` header that is not text".to_owned())?;
    let mut parts = marker.split(';');
    if parts.next() != Some(WHOLE) {
        return Err(format!("`weir.encryption: {marker}` is not a version this sidecar reads"));
    }
    let paths: Vec<JsonPath> = parts.map(JsonPath::parse).collect::<Result<_, _>>()?;
    if paths.is_empty() {
        return Ok(vec![Sealed { span: 0..value.len(), envelope: std::borrow::Cow::Borrowed(value) }]);
    }
    let doc = json_document(value);
    let framing = value.len() - doc.len();
    let refs: Vec<&JsonPath> = paths.iter().collect();
    let spans = select(doc, &refs).map_err(|e| format!("a value with sealed fields is {e}"))?;
    spans
        .into_iter()
        .map(|(span, _)| {
            let text: String = serde_json::from_slice(&doc[span.clone()])
                .map_err(|_| format!("a sealed field at byte {} is not a string", span.start))?;
            let envelope = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| format!("a sealed field at byte {} is not base64", span.start))?;
            Ok(Sealed { span: span.start + framing..span.end + framing, envelope: envelope.into() })
        })
        .collect()
}

/// One envelope of a record's value, and where in the value it stands.
#[derive(Debug)]
pub struct Sealed<'v> {
    pub span: std::ops::Range<usize>,
    /// The value itself, or a field's envelope decoded from base64.
    pub envelope: std::borrow::Cow<'v, [u8]>,
}

/// `value` with every sealed part opened (the keys learned already).
pub fn open(opener: &mut Opener<'_>, value: &[u8], sealed: &[Sealed<'_>]) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::with_capacity(value.len());
    let mut copied = 0;
    for part in sealed {
        out.extend_from_slice(&value[copied..part.span.start]);
        opener.open_into(&part.envelope, &mut out)?;
        copied = part.span.end;
    }
    out.extend_from_slice(&value[copied..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn rules(yaml: &str, has_kms: bool) -> Result<Vec<EncryptionRule>, String> {
        let origin = Path::new("sidecar.yaml");
        let rules: Vec<EncryptionRule> = weir_core::config::parse_yaml(yaml, origin).map_err(|e| e.to_string())?;
        validate_rules(&rules, has_kms, origin).map_err(|e| e.to_string())?;
        Ok(rules)
    }

    fn keys() -> weir_envelope::DataKeys {
        let dir = std::env::temp_dir().join(format!("weir-encryption-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        std::fs::write(&path, weir_envelope::LocalKms::key_file("k1", &[("k1", [5; 32])])).unwrap();
        weir_envelope::DataKeys::new(Arc::new(weir_envelope::LocalKms::new(&path)))
    }

    #[tokio::test]
    async fn values_and_fields_seal_and_open_again() {
        let keys = keys();
        for (yaml, value) in [
            ("[{name: all, topics: [t]}]", &b"plain text \x00 any bytes"[..]),
            (
                "[{name: f, topics: [t], fields: ['$.card', '$.list[*].n']}]",
                br#"{"card": {"no": 4111}, "list": [{"n": 1}, {"n": "x"}], "k": 2}"#,
            ),
            ("[{name: framed, topics: [t], fields: ['$.card']}]", b"\0\0\0\0\x09{\"card\": \"4111\"}"),
        ] {
            let rule = CompiledEncryption::new(&rules(yaml, true).unwrap()[0]);
            let key = keys.current("t", &rule.rotation).await.unwrap();
            let sealed = rule.seal(&key, value).unwrap();
            assert!(!sealed.windows(4).any(|w| w == b"4111") && !sealed.windows(5).any(|w| w == b"plain"));
            let parts = envelopes(rule.marker(), &sealed).unwrap();
            assert_eq!(open(&mut Opener::new(&keys), &sealed, &parts).unwrap(), value, "{yaml}");
        }
        let fields = CompiledEncryption::new(&rules("[{name: f, topics: [t], fields: ['$.a']}]", true).unwrap()[0]);
        assert_eq!(fields.marker(), b"v1;$.a");
        let key = keys.current("t", &fields.rotation).await.unwrap();
        assert!(fields.seal(&key, b"not json").unwrap_err().contains("cannot be sealed"));
        assert!(envelopes(b"v9", b"x").unwrap_err().contains("not a version"));
        assert!(envelopes(b"v1;$.a", br#"{"a": 3}"#).unwrap_err().contains("not a string"));
    }

    #[test]
    fn a_kms_is_a_local_key_file_or_aws_kms_never_both() {
        let origin = Path::new("sidecar.yaml");
        let parse = |yaml: &str| weir_core::config::parse_yaml::<KmsConfig>(yaml, origin).map_err(|e| e.to_string());
        let aws = parse("{aws: {region: eu-west-1, key_id: alias/weir}}").unwrap();
        let KmsConfig::Aws(aws) = aws else { panic!("{aws:?}") };
        assert_eq!((aws.endpoint, aws.timeout_ms), (None, 5_000));
        assert!(matches!(parse("{local: {key_file: /k.json}}").unwrap(), KmsConfig::Local(_)));
        assert!(parse("{local: {key_file: /k.json}, aws: {region: r, key_id: k}}").is_err());
        assert!(parse("{aws: {region: r}}").unwrap_err().contains("key_id"));
        assert!(parse("{vault: {}}").unwrap_err().contains("vault"));
    }

    #[test]
    fn bad_rules_are_refused_with_the_field_named() {
        let err = |yaml: &str, kms: bool| rules(yaml, kms).unwrap_err();
        assert!(err("[{name: x, topics: [a]}]", false).contains("at `encryption[0]`: encryption needs a KMS"));
        assert!(err("[{name: x, topics: [a], fields: ['a']}]", true).contains("at `encryption[0].fields[0]`"));
        assert!(err("[{name: x, topics: [a], rotate_after_records: 0}]", true).contains("at least 1"));
        assert!(err("[{name: x, topics: [a], others: drop}]", true).contains("unknown variant `drop`"));
        assert!(err("[{name: x, topics: [a]}, {name: x, topics: [b]}]", true).contains("encryption[1].name"));
        let rule =
            CompiledEncryption::new(&rules("[{name: x, topics: [a], decrypt_for: ['User:b']}]", true).unwrap()[0]);
        assert!(rule.decrypts_for("User:b") && !rule.decrypts_for("User:c"));
    }
}
