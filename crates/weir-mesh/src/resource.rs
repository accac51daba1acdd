//! One resource: `apiVersion`, `kind`, `metadata`, `spec`, and reading them from YAML.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::MeshError;
use crate::kinds::Kind;

/// The only API version so far; a later incompatible one gets its own conversion.
pub const API_VERSION: &str = "weir/v1alpha1";

/// A resource as written and as stored. `spec` stays JSON so that the store and the wire
/// carry every kind alike; [`crate::kinds`] checks it against the kind's own type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resource {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Set by the control plane: the mesh version at which this resource last changed. A write
    /// that carries it succeeds only if the resource has not changed since (optimistic
    /// concurrency); a write without it takes whatever is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

impl Resource {
    /// `Kind/name`, how errors and the CLI name a resource.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.metadata.name)
    }

    /// The resource's kind; resources from [`parse_documents`] always have a known one.
    pub fn known_kind(&self) -> Option<Kind> {
        Kind::parse(&self.kind)
    }

    /// The resource without what the control plane adds, for comparing intent.
    pub fn without_version(&self) -> Resource {
        let mut copy = self.clone();
        copy.metadata.resource_version = None;
        copy
    }

    /// Checks the envelope (API version, kind, name, labels) and the kind's spec.
    pub fn check(&self) -> Result<Kind, MeshError> {
        let who = if self.metadata.name.is_empty() { self.kind.clone() } else { self.id() };
        if self.api_version != API_VERSION {
            return Err(MeshError::invalid(
                who,
                "apiVersion",
                format!("expected `{API_VERSION}`, found `{}`", self.api_version),
            ));
        }
        let kind = Kind::parse_exact(&self.kind).ok_or_else(|| {
            MeshError::invalid(&who, "kind", format!("unknown kind `{}`; expected one of {}", self.kind, Kind::names()))
        })?;
        check_name(&self.metadata.name).map_err(|m| MeshError::invalid(&who, "metadata.name", m))?;
        for (key, value) in &self.metadata.labels {
            check_label(key, value).map_err(|m| MeshError::invalid(&who, format!("metadata.labels.{key}"), m))?;
        }
        if let Some(version) = &self.metadata.resource_version {
            if version.parse::<u64>().is_err() {
                return Err(MeshError::invalid(
                    who,
                    "metadata.resourceVersion",
                    "expected a number, as `get` shows it",
                ));
            }
        }
        kind.check_spec(self)?;
        Ok(kind)
    }
}

/// Names are DNS labels, as in Kubernetes: they become parts of identities and URLs.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name is required".into());
    }
    if name.len() > 63 {
        return Err(format!("`{name}` is longer than 63 characters"));
    }
    let valid = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        return Err(format!(
            "`{name}` is not a valid name: lowercase letters, digits and `-`, starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn check_label(key: &str, value: &str) -> Result<(), String> {
    let word = |s: &str| {
        s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
    };
    if key.is_empty() || !word(key) {
        return Err(format!("`{key}` is not a valid label key: letters, digits, `-`, `_`, `.`, `/`, at most 63"));
    }
    if !word(value) {
        return Err(format!("`{value}` is not a valid label value: letters, digits, `-`, `_`, `.`, `/`, at most 63"));
    }
    Ok(())
}

/// Reads every resource in a YAML text (documents separated by `---`; empty ones skipped) and
/// checks each. `origin` names the text in errors (a file name, or `-`). All or nothing: the
/// first bad document fails the whole text, so that an apply is never half-done.
pub fn parse_documents(text: &str, origin: &str) -> Result<Vec<Resource>, MeshError> {
    // YAML 1.2 booleans only: a principal named `y` or `no` must stay a name.
    let options = serde_saphyr::options! { strict_booleans: true };
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| MeshError::invalid(origin, ".", first_line(&e.to_string())))?;
    let mut resources = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        if document.is_null() {
            continue;
        }
        let where_ = format!("{origin}, document {}", index + 1);
        let resource: Resource = serde_path_to_error::deserialize(document).map_err(|err| {
            let field = err.path().to_string();
            MeshError::invalid(
                &where_,
                if field == "?" { ".".into() } else { field },
                first_line(&err.into_inner().to_string()),
            )
        })?;
        resource.check().map_err(|err| in_document(err, &where_))?;
        resources.push(resource);
    }
    Ok(resources)
}

/// Adds where a resource came from to its error.
fn in_document(err: MeshError, where_: &str) -> MeshError {
    match err {
        MeshError::Invalid { resource, field, message } => {
            MeshError::Invalid { resource: format!("{resource} ({where_})"), field, message }
        }
        other => other,
    }
}

pub(crate) fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// Writes resources as YAML documents (what `weir ctl get -o yaml` prints).
pub fn to_yaml(resources: &[Resource]) -> String {
    let mut out = String::new();
    for resource in resources {
        if !out.is_empty() {
            out.push_str("---\n");
        }
        // Serializing plain data cannot fail; an error would be a bug in the serializer.
        out.push_str(&serde_saphyr::to_string(resource).unwrap_or_else(|e| format!("# cannot write: {e}\n")));
    }
    out
}

#[cfg(test)]
mod tests;
