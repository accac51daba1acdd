//! The mesh state: every resource, and the version that counts accepted changes. Changes are
//! pure functions from one state to the next, so the control plane (which stores the result)
//! and `weir ctl diff` (which only shows it) cannot disagree.

use serde::{Deserialize, Serialize};

use crate::error::MeshError;
use crate::kinds::{certificate_revocation, workload, Kind, Selector};
use crate::protocol::Protocol;
use crate::resource::Resource;

/// Every resource of the mesh at one version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeshState {
    /// One more with every accepted change that altered something; 0 for an empty mesh.
    pub version: u64,
    /// By kind, then name; each carries the `resourceVersion` at which it last changed.
    pub resources: Vec<Resource>,
}

/// What one accepted write did to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Created,
    Configured,
    Unchanged,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: String,
    pub name: String,
    pub action: ChangeKind,
}

impl MeshState {
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.kind == kind.name() && r.metadata.name == name)
    }

    pub fn list(&self, kind: Kind) -> impl Iterator<Item = &Resource> {
        self.resources.iter().filter(move |r| r.kind == kind.name())
    }

    /// The state after applying `batch` (create or replace each resource), and what happened to
    /// each. All or nothing: any invalid resource, stale `resourceVersion` or broken reference
    /// refuses the whole batch. The version moves only if something changed.
    pub fn apply(&self, batch: &[Resource]) -> Result<(MeshState, Vec<Change>), MeshError> {
        let version = self.version + 1;
        let mut next = self.clone();
        let mut changes = Vec::with_capacity(batch.len());
        for (i, resource) in batch.iter().enumerate() {
            let kind = resource.check()?;
            if batch[..i].iter().any(|r| r.kind == resource.kind && r.metadata.name == resource.metadata.name) {
                return Err(MeshError::invalid(resource.id(), "metadata.name", "given twice in one apply"));
            }
            let stored = next.get(kind, &resource.metadata.name);
            check_expected(resource, stored)?;
            let action = match stored {
                None => ChangeKind::Created,
                Some(stored) if stored.without_version() == resource.without_version() => ChangeKind::Unchanged,
                Some(_) => ChangeKind::Configured,
            };
            if action != ChangeKind::Unchanged {
                let mut stored = resource.clone();
                stored.metadata.resource_version = Some(version.to_string());
                next.resources.retain(|r| !(r.kind == resource.kind && r.metadata.name == resource.metadata.name));
                next.resources.push(stored);
            }
            changes.push(Change { kind: resource.kind.clone(), name: resource.metadata.name.clone(), action });
        }
        if changes.iter().any(|c| c.action != ChangeKind::Unchanged) {
            next.version = version;
            next.sort();
            next.check_references()?;
            next.check_renders()?;
        }
        Ok((next, changes))
    }

    /// The state without one resource. `expected`: the `resourceVersion` the caller saw, if it
    /// wants the deletion refused when the resource changed since.
    pub fn delete(&self, kind: Kind, name: &str, expected: Option<&str>) -> Result<MeshState, MeshError> {
        let id = format!("{kind}/{name}");
        let stored = self.get(kind, name).ok_or_else(|| MeshError::NotFound { resource: id.clone() })?;
        let actual = stored.metadata.resource_version.clone().unwrap_or_default();
        if let Some(expected) = expected.filter(|e| *e != actual) {
            return Err(MeshError::Conflict { resource: id, expected: expected.to_owned(), actual });
        }
        let users: Vec<String> = self.workloads_of(kind, name).map(Resource::id).collect();
        if !users.is_empty() {
            let field = if kind == Kind::KafkaCluster { "spec.cluster" } else { "spec.broker" };
            return Err(MeshError::Reference {
                resource: id,
                message: format!("in use by {} (`{field}`); delete or move them first", users.join(", ")),
            });
        }
        let mut next = self.clone();
        next.resources.retain(|r| !(r.kind == kind.name() && r.metadata.name == name));
        next.version += 1;
        next.check_references()?;
        next.check_renders()?;
        Ok(next)
    }

    /// The `AuthorizationPolicy` resources of `workload`'s protocol that select it.
    pub fn policies_for<'a>(&'a self, workload: &'a Resource) -> impl Iterator<Item = &'a Resource> + 'a {
        let protocol = Protocol::of(&workload.spec);
        self.list(Kind::AuthorizationPolicy).filter(move |p| {
            Protocol::of(&p.spec) == protocol.policy_protocol()
                && selector_of(p).selects(&workload.metadata.name, &workload.metadata.labels)
        })
    }

    /// The `PeerAuthentication` that selects `workload`, if any (at most one does).
    pub fn peer_authentication_for(&self, workload: &Resource) -> Option<&Resource> {
        self.list(Kind::PeerAuthentication)
            .find(|p| selector_of(p).selects(&workload.metadata.name, &workload.metadata.labels))
    }

    /// The workloads a policy-like resource (one with a `selector`) applies to; an
    /// `AuthorizationPolicy` only to those of its protocol.
    pub fn selected_by<'a>(&'a self, policy: &'a Resource) -> impl Iterator<Item = &'a Resource> + 'a {
        let selector = selector_of(policy);
        let protocol = (policy.kind == Kind::AuthorizationPolicy.name()).then(|| Protocol::of(&policy.spec));
        self.list(Kind::Workload).filter(move |w| {
            protocol.is_none_or(|p| Protocol::of(&w.spec).policy_protocol() == p)
                && selector.selects(&w.metadata.name, &w.metadata.labels)
        })
    }

    /// The SPIFFE id a workload's sidecars are certified as.
    pub fn spiffe_id(&self, workload: &str, trust_domain: &str) -> Option<String> {
        self.get(Kind::Workload, workload).map(|w| workload::spiffe_id(w, trust_domain))
    }

    /// The revocation, if any, of a certificate of `workload` issued at `issued_at` (unix s).
    pub fn revocation_of(&self, workload: &str, issued_at: u64) -> Option<&Resource> {
        self.list(Kind::CertificateRevocation).find(|r| {
            certificate_revocation::revokes(r)
                .is_some_and(|(revoked, before)| revoked == workload && issued_at < before)
        })
    }

    /// The workloads that reach a cluster or broker (`kind` `KafkaCluster`, `MqttBroker`,
    /// `AmqpBroker`).
    pub fn workloads_of<'a>(&'a self, kind: Kind, name: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        self.list(Kind::Workload).filter(move |w| workload::broker_of(w) == (kind, name.to_owned()))
    }

    fn sort(&mut self) {
        self.resources.sort_by(|a, b| (a.known_kind(), &a.metadata.name).cmp(&(b.known_kind(), &b.metadata.name)));
    }

    /// What must hold between resources: a workload's cluster or broker exists; at most one
    /// `PeerAuthentication` selects a workload.
    fn check_references(&self) -> Result<(), MeshError> {
        for workload in self.list(Kind::Workload) {
            let (kind, name) = workload::broker_of(workload);
            if self.get(kind, &name).is_none() {
                let field = Protocol::of(&workload.spec).broker_field();
                return Err(MeshError::Reference {
                    resource: workload.id(),
                    message: format!("`spec.{field}` names {kind}/{name}, which does not exist"),
                });
            }
            let mut peer_authentications = self
                .list(Kind::PeerAuthentication)
                .filter(|p| selector_of(p).selects(&workload.metadata.name, &workload.metadata.labels));
            if let (Some(first), Some(second)) = (peer_authentications.next(), peer_authentications.next()) {
                return Err(MeshError::Reference {
                    resource: workload.id(),
                    message: format!("selected by both {} and {}; at most one may apply", first.id(), second.id()),
                });
            }
        }
        Ok(())
    }
}

/// A write that names a `resourceVersion` succeeds only on that version.
fn check_expected(resource: &Resource, stored: Option<&Resource>) -> Result<(), MeshError> {
    let Some(expected) = &resource.metadata.resource_version else { return Ok(()) };
    let actual = match stored {
        Some(stored) => stored.metadata.resource_version.clone().unwrap_or_default(),
        None => "none (it does not exist)".to_owned(),
    };
    if *expected != actual {
        return Err(MeshError::Conflict { resource: resource.id(), expected: expected.clone(), actual });
    }
    Ok(())
}

/// The selector of a stored policy-like resource (checked at apply).
pub(crate) fn selector_of(resource: &Resource) -> Selector {
    resource.spec.get("selector").and_then(|s| serde_json::from_value(s.clone()).ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
