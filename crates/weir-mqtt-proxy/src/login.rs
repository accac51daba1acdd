//! Who an MQTT client is, from its CONNECT and the rules: what the MQTT sidecar and the MQTT
//! gateway both do before anything else.

use std::net::SocketAddr;

use weir_core::audit::{AuditLog, AuthenticationEvent};
use weir_core::rules::Rules;
use weir_mqtt::packet::Connect;

/// Who a client proved to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// A user of the credentials file, by name (each front names it as its policies do: the
    /// MQTT sidecar `User:NAME`, as MQTT brokers' ACLs; the gateways `NAME`, as the Kafka
    /// sidecar names SASL users).
    User(String),
    /// No credentials to check: the configured fixed principal, or nobody.
    Unchecked(Option<String>),
}

/// Who the client is: checked against the credentials when there are some (else the fixed
/// principal, or nobody); why not, in words.
pub async fn authenticate(rules: &Rules, connect: &Connect<'_>) -> Result<Login, String> {
    let Some(credentials) = &rules.credentials else { return Ok(Login::Unchecked(rules.fixed_principal.clone())) };
    let (Some(user), Some(password)) = (connect.username, connect.password) else {
        return Err("no username and password".into());
    };
    let password = std::str::from_utf8(password).map_err(|_| format!("user {user}: a password that is not UTF-8"))?;
    // PBKDF2: off the runtime's workers.
    let check = credentials.password_check(user, password);
    let verified = tokio::task::spawn_blocking(move || check.verify()).await.unwrap_or(false);
    if verified {
        Ok(Login::User(user.to_owned()))
    } else {
        Err(format!("user {user}: wrong username or password"))
    }
}

/// Writes a login (refused when `reason` says why) to the audit log, if there is one.
pub fn audit_login(
    audit: Option<&AuditLog>,
    listener: &str,
    mechanism: &str,
    who: &str,
    client: SocketAddr,
    reason: Option<&str>,
) {
    if let Some(audit) = audit {
        let principal = Some(who);
        let event = AuthenticationEvent { mechanism, success: reason.is_none(), principal, client, listener, reason };
        audit.authentication(&event);
    }
}
