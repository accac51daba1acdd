//! Byte streams of any kind (plain TCP, TLS either way) behind one type, so protocol code reads
//! and writes without knowing what is underneath. Boxed: one indirect call per read or write
//! is nothing next to the system call behind it.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub type BoxRead = Box<dyn AsyncRead + Send + Sync + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Sync + Unpin>;

/// Splits a plain TCP stream (without the lock a generic split needs).
pub fn split_tcp(stream: TcpStream) -> (BoxRead, BoxWrite) {
    let (read, write) = stream.into_split();
    (Box::new(read), Box::new(write))
}

/// Splits any other stream (e.g. TLS).
pub fn split_any<S: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static>(stream: S) -> (BoxRead, BoxWrite) {
    let (read, write) = tokio::io::split(stream);
    (Box::new(read), Box::new(write))
}
