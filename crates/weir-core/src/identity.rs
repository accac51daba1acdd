//! Who a client is, as far as its connection tells before any protocol byte: the principal in
//! its TLS certificate, else the listener's fixed principal. Any protocol's session starts
//! here; what SASL or a token adds later is the protocol's business.

use tokio::net::TcpStream;

use crate::io::{split_any, split_tcp, BoxRead, BoxWrite};
use crate::tls::{TlsError, TlsTerminator};

/// A connection ready for the protocol, and who is on the other end.
pub struct Identified {
    pub read: BoxRead,
    pub write: BoxWrite,
    /// From the client certificate, else the fixed principal; none: not identified yet.
    pub principal: Option<String>,
    /// How: `mtls` (a certificate named the client), `tls` (encrypted, unnamed), `fixed`.
    pub mechanism: &'static str,
}

/// Terminates TLS when the listener has it (reading the principal from the client
/// certificate), and falls back to `fixed` for a client no certificate names.
pub async fn identify(
    stream: TcpStream,
    tls: Option<&TlsTerminator>,
    fixed: Option<&str>,
) -> Result<Identified, TlsError> {
    let fixed = || fixed.map(str::to_owned);
    let Some(tls) = tls else {
        let (read, write) = split_tcp(stream);
        return Ok(Identified { read, write, principal: fixed(), mechanism: "fixed" });
    };
    let accepted = tls.accept(stream).await?;
    let mechanism = if accepted.principal.is_some() { "mtls" } else { "tls" };
    let principal = accepted.principal.or_else(fixed);
    let (read, write) = split_any(accepted.stream);
    Ok(Identified { read, write, principal, mechanism })
}
