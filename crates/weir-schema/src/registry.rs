//! A schema registry's Confluent-compatible API, asked for schemas by id: the schema (its type
//! and text) from `GET /schemas/ids/{id}`, the subjects it is a version of from
//! `GET /schemas/ids/{id}/versions`. Answers are cached by id (a schema id names one schema
//! forever): each id is asked once however many requests want it at the same moment, and a
//! failure is remembered for `retry_after_ms`, so a registry that is down or slow costs each
//! request at most one `timeout_ms`, and asks of it stay few.
//!
//! What callers build from a schema (a compiled validator) is theirs: the registry keeps
//! whatever the `compile` function it is given returns.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::OnceCell;

/// The `schema_registry:` of a sidecar's config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The base of the Confluent-compatible API, e.g.
    /// `http://127.0.0.1:28080/apis/ccompat/v7` (Apicurio) or `http://registry:8081`.
    pub url: String,
    /// The CA that signs an https registry's certificate; absent: the system's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The longest wait for one answer of the registry.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// After the registry failed to answer about an id (down, slow, an error), how long that
    /// failure is the answer before the registry is asked again; likewise for an id it does
    /// not know (a producer may register a schema just after using its id).
    #[serde(default = "defaults::retry_after_ms")]
    pub retry_after_ms: u64,
    /// Schemas kept at most; past it, failures are forgotten first, then half of the rest.
    #[serde(default = "defaults::max_cached_schemas")]
    pub max_cached_schemas: usize,
}

mod defaults {
    pub fn timeout_ms() -> u64 {
        2_000
    }
    pub fn retry_after_ms() -> u64 {
        1_000
    }
    pub fn max_cached_schemas() -> usize {
        10_000
    }
}

impl RegistryConfig {
    /// What is wrong with it, naming the field (relative to `schema_registry`).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let scheme_ok = self.url.starts_with("http://") || self.url.starts_with("https://");
        if !scheme_ok || self.url.parse::<hyper::Uri>().is_err() {
            return Err(("url", format!("`{}` is not an http:// or https:// URL", self.url)));
        }
        if self.timeout_ms == 0 {
            return Err(("timeout_ms", "must be at least 1".into()));
        }
        if self.max_cached_schemas == 0 {
            return Err(("max_cached_schemas", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// A schema's type, as the registry's `schemaType` names it (absent: Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    Avro,
    Json,
    Protobuf,
}

impl SchemaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaKind::Avro => "AVRO",
            SchemaKind::Json => "JSON",
            SchemaKind::Protobuf => "PROTOBUF",
        }
    }
}

/// A schema as the registry gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub id: u32,
    pub kind: SchemaKind,
    pub text: String,
    /// Whether it refers to other registered schemas (which are not fetched).
    pub has_references: bool,
}

/// A schema the registry knows, with what the caller compiled from it.
#[derive(Debug)]
pub struct Known<T> {
    pub id: u32,
    pub kind: SchemaKind,
    pub compiled: T,
    /// The subjects it is a version of, and when the registry said so.
    subjects: Mutex<(Vec<String>, Instant)>,
}

impl<T> Known<T> {
    /// Whether it is a version of `subject` as far as the registry said lately: None when it
    /// was not, and the registry said so long enough ago to be asked again
    /// ([`Registry::is_version_of`]).
    pub fn is_version_of_cached(&self, subject: &str) -> Option<bool> {
        let subjects = self.subjects.lock().unwrap_or_else(|e| e.into_inner());
        if subjects.0.iter().any(|s| s == subject) {
            return Some(true);
        }
        (subjects.1.elapsed() < SUBJECTS_FRESH).then_some(false)
    }
}

/// Why the registry gave no schema for an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("schema {0} is not in the registry")]
    NotFound(u32),
    #[error("the schema registry did not answer about schema {id}: {why}")]
    Unavailable { id: u32, why: String },
}

impl LookupError {
    /// Whether asking again later may succeed (the registry failed, rather than answered).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, LookupError::Unavailable { .. })
    }
}

type Lookup<T> = Arc<OnceCell<(Result<Arc<Known<T>>, LookupError>, Instant)>>;

/// A registry client and its cache; shared by every connection of a sidecar.
pub struct Registry<T> {
    config: RegistryConfig,
    base: String,
    ca: PathBuf,
    compile: fn(&Fetched) -> T,
    entries: Mutex<HashMap<u32, Lookup<T>>>,
}

/// The most a registry answer may hold: a schema larger than this is not one a record needs.
const MAX_ANSWER_BYTES: usize = 4 << 20;
/// How long a schema's subjects are trusted before a record of another subject asks again
/// (the same schema may have been registered under that subject since).
const SUBJECTS_FRESH: Duration = Duration::from_secs(5);
const ACCEPT: &str = "application/vnd.schemaregistry.v1+json, application/json";

impl<T: Send + Sync + 'static> Registry<T> {
    pub fn new(config: RegistryConfig, compile: fn(&Fetched) -> T) -> Self {
        let base = config.url.trim_end_matches('/').to_owned();
        let ca = weir_core::http_get::ca_or_system(config.ca.as_deref());
        Self { config, base, ca, compile, entries: Mutex::new(HashMap::new()) }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The schema with this id, from the cache or (once, for every caller waiting) the
    /// registry; at most one `timeout_ms` per answer the registry is asked for.
    pub async fn schema(&self, id: u32) -> Result<Arc<Known<T>>, LookupError> {
        let lookup = self.lookup(id);
        let (outcome, _) = lookup.get_or_init(|| async { (self.fetch(id).await, Instant::now()) }).await;
        outcome.clone()
    }

    /// What asking about this id gave, if it was asked and the answer still stands (a failure
    /// stands for `retry_after_ms`); no wait.
    pub fn cached_outcome(&self, id: u32) -> Option<Result<Arc<Known<T>>, LookupError>> {
        let retry_after = Duration::from_millis(self.config.retry_after_ms);
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(&id)?.get()? {
            (Err(_), at) if at.elapsed() >= retry_after => None,
            (outcome, _) => Some(outcome.clone()),
        }
    }

    /// Whether `known` is a version of `subject`; the registry is asked again (at most every
    /// few seconds) before saying no.
    pub async fn is_version_of(&self, known: &Known<T>, subject: &str) -> Result<bool, LookupError> {
        if let Some(answer) = known.is_version_of_cached(subject) {
            return Ok(answer);
        }
        let subjects = self.subjects(known.id).await?;
        let found = subjects.iter().any(|s| s == subject);
        *known.subjects.lock().unwrap_or_else(|e| e.into_inner()) = (subjects, Instant::now());
        Ok(found)
    }

    /// The cell for `id`: the one cached, unless it holds a failure older than
    /// `retry_after_ms` (then a fresh one).
    fn lookup(&self, id: u32) -> Lookup<T> {
        let retry_after = Duration::from_millis(self.config.retry_after_ms);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lookup) = entries.get(&id) {
            let expired = matches!(lookup.get(), Some((Err(_), at)) if at.elapsed() >= retry_after);
            if !expired {
                return lookup.clone();
            }
        }
        if entries.len() >= self.config.max_cached_schemas {
            entries.retain(|_, lookup| matches!(lookup.get(), Some((Ok(_), _))));
            if entries.len() >= self.config.max_cached_schemas {
                let forget: Vec<u32> = entries.keys().copied().step_by(2).collect();
                forget.iter().for_each(|id| drop(entries.remove(id)));
            }
        }
        let lookup: Lookup<T> = Arc::default();
        entries.insert(id, lookup.clone());
        lookup
    }

    async fn fetch(&self, id: u32) -> Result<Arc<Known<T>>, LookupError> {
        let (schema, subjects) = tokio::join!(self.schema_text(id), self.subjects(id));
        let fetched = schema?;
        let subjects = subjects?;
        let kind = fetched.kind;
        tracing::debug!(id, kind = kind.as_str(), ?subjects, "schema fetched from the registry");
        // Compiling a large schema may take a while: not on the runtime's threads.
        let compile = self.compile;
        let compiled = tokio::task::spawn_blocking(move || compile(&fetched))
            .await
            .map_err(|e| LookupError::Unavailable { id, why: format!("compiling the schema failed: {e}") })?;
        Ok(Arc::new(Known { id, kind, compiled, subjects: Mutex::new((subjects, Instant::now())) }))
    }

    /// GET `path` of the API: the body of a 2xx answer, None for a 404.
    async fn get(&self, id: u32, path: &str) -> Result<Option<bytes::Bytes>, LookupError> {
        let unavailable = |why: String| LookupError::Unavailable { id, why };
        let url = format!("{}{path}", self.base);
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let answer = tokio::time::timeout(timeout, weir_core::http_get::get(&url, ACCEPT, &self.ca, MAX_ANSWER_BYTES))
            .await
            .map_err(|_| unavailable(format!("no answer from {url} within {timeout:?}")))?
            .map_err(|e| unavailable(format!("{url}: {e}")))?;
        match answer.status.as_u16() {
            200..=299 => Ok(Some(answer.body)),
            404 => Ok(None),
            status => Err(unavailable(format!("{url} answered HTTP {status}"))),
        }
    }

    async fn schema_text(&self, id: u32) -> Result<Fetched, LookupError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            schema: String,
            #[serde(default)]
            schema_type: Option<String>,
            #[serde(default)]
            references: Vec<serde::de::IgnoredAny>,
        }
        let body = self.get(id, &format!("/schemas/ids/{id}")).await?.ok_or(LookupError::NotFound(id))?;
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| LookupError::Unavailable { id, why: format!("the registry's answer is not a schema: {e}") })?;
        let kind = match answer.schema_type.as_deref() {
            None | Some("AVRO") => SchemaKind::Avro,
            Some("JSON") => SchemaKind::Json,
            Some("PROTOBUF") => SchemaKind::Protobuf,
            Some(other) => {
                let why = format!("the registry says schema type `{other}`, not AVRO, JSON or PROTOBUF");
                return Err(LookupError::Unavailable { id, why });
            }
        };
        Ok(Fetched { id, kind, text: answer.schema, has_references: !answer.references.is_empty() })
    }

    async fn subjects(&self, id: u32) -> Result<Vec<String>, LookupError> {
        #[derive(Deserialize)]
        struct Version {
            subject: String,
        }
        let body = self.get(id, &format!("/schemas/ids/{id}/versions")).await?.ok_or(LookupError::NotFound(id))?;
        let versions: Vec<Version> = serde_json::from_slice(&body).map_err(|e| LookupError::Unavailable {
            id,
            why: format!("the registry's answer is not a list of subject versions: {e}"),
        })?;
        let mut subjects: Vec<String> = versions.into_iter().map(|v| v.subject).collect();
        subjects.dedup();
        Ok(subjects)
    }
}

#[cfg(test)]
mod tests;
