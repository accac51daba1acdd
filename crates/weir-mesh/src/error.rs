//! What can be wrong with a change to the mesh, said so a person can fix it.

/// Why a change to the mesh was refused. Every variant names the resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// A document that is not a resource at all, or a field with a wrong value.
    #[error("{resource}: at `{field}`: {message}")]
    Invalid { resource: String, field: String, message: String },
    /// A write that named the version it expected, and the resource has changed since.
    #[error("{resource}: changed since resourceVersion {expected} (now {actual}); get it again and reapply")]
    Conflict { resource: String, expected: String, actual: String },
    #[error("{resource}: not found")]
    NotFound { resource: String },
    /// A deletion or change that would leave another resource pointing at nothing.
    #[error("{resource}: {message}")]
    Reference { resource: String, message: String },
}

impl MeshError {
    pub(crate) fn invalid(resource: impl Into<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        MeshError::Invalid { resource: resource.into(), field: field.into(), message: message.into() }
    }

    /// The HTTP status the control plane answers with (the CLI maps it back).
    pub fn status(&self) -> u16 {
        match self {
            MeshError::Invalid { .. } | MeshError::Reference { .. } => 422,
            MeshError::Conflict { .. } => 409,
            MeshError::NotFound { .. } => 404,
        }
    }
}
