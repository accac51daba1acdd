//! The broker directory: which upstream address each broker node has, and the sidecar
//! listener (port-per-broker) that stands in for it. Listeners open the first time a broker is
//! seen in a response, *before* that response reaches the client, so the client's very first
//! connection to the rewritten address succeeds.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use kafka_protocol::protocol::StrBytes;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;

use crate::rewrite::{AddressMap, RewriteError};

/// A newly opened broker listener, handed to the task that accepts on it.
pub struct OpenedListener {
    pub node_id: i32,
    pub listener: TcpListener,
}

pub struct BrokerDirectory {
    /// Read on every address a response reveals; written only when a broker is new or moved.
    brokers: RwLock<HashMap<i32, Broker>>,
    advertised_host: StrBytes,
    listen_ip: IpAddr,
    port_base: u16,
    port_count: u16,
    opened: mpsc::UnboundedSender<OpenedListener>,
}

struct Broker {
    upstream: String,
    listening: bool,
}

impl BrokerDirectory {
    pub fn new(
        advertised_host: String,
        listen_ip: IpAddr,
        port_base: u16,
        port_count: u16,
    ) -> (Self, mpsc::UnboundedReceiver<OpenedListener>) {
        let (opened, rx) = mpsc::unbounded_channel();
        let directory = Self {
            brokers: RwLock::new(HashMap::new()),
            advertised_host: StrBytes::from_string(advertised_host),
            listen_ip,
            port_base,
            port_count,
            opened,
        };
        (directory, rx)
    }

    /// The upstream `host:port` last advertised for a broker.
    pub fn upstream_of(&self, node_id: i32) -> Option<String> {
        self.read().get(&node_id).map(|b| b.upstream.clone())
    }

    /// The sidecar port that stands for a broker.
    pub fn port_of(&self, node_id: i32) -> Result<u16, RewriteError> {
        if node_id < 0 || node_id >= i32::from(self.port_count) {
            return Err(RewriteError::NodeOutOfRange { node_id, count: self.port_count });
        }
        Ok(self.port_base + node_id as u16)
    }

    // A panic while holding this lock leaves a plain map behind; keep using it.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<i32, Broker>> {
        self.brokers.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<i32, Broker>> {
        self.brokers.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl AddressMap for BrokerDirectory {
    fn map(&self, node_id: i32, host: &str, port: i32) -> Result<(StrBytes, i32), RewriteError> {
        let local_port = self.port_of(node_id)?;
        let known = |b: &Broker| b.listening && same_address(&b.upstream, host, port);
        if self.read().get(&node_id).is_some_and(known) {
            // Every response but the first of a broker (or of its move) ends here.
            return Ok((self.advertised_host.clone(), i32::from(local_port)));
        }
        let mut brokers = self.write();
        let broker = brokers.entry(node_id).or_insert_with(|| Broker { upstream: String::new(), listening: false });
        if broker.upstream.is_empty() || !same_address(&broker.upstream, host, port) {
            if !broker.upstream.is_empty() {
                tracing::info!(node_id, old = %broker.upstream, new = %format!("{host}:{port}"), "broker address changed");
            }
            broker.upstream = format!("{host}:{port}");
        }
        if !broker.listening {
            let addr = SocketAddr::new(self.listen_ip, local_port);
            let listener = bind(addr).map_err(|error| RewriteError::Listen { node_id, addr, error })?;
            tracing::info!(node_id, %addr, upstream = %broker.upstream, "opened listener for broker");
            broker.listening = true;
            // The receiver lives as long as the sidecar; if it is gone we are shutting down.
            let _ = self.opened.send(OpenedListener { node_id, listener });
        }
        Ok((self.advertised_host.clone(), i32::from(local_port)))
    }
}

fn same_address(current: &str, host: &str, port: i32) -> bool {
    current.rsplit_once(':').is_some_and(|(h, p)| h == host && p.parse() == Ok(port))
}

/// Binds a listening socket with SO_REUSEADDR, so a restarted sidecar gets its ports back
/// while old connections linger in TIME_WAIT.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
