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

/// Frames that are ready together leave together: several frames pushed before a flush go out
/// in one vectored write (one system call, one wake-up of the peer) instead of one write each.
/// The caller flushes before it would wait for more input, so nothing is held back while the
/// connection is idle; a full outbox is flushed at once.
#[derive(Default)]
pub struct Outbox {
    frames: std::collections::VecDeque<bytes::Bytes>,
    bytes: usize,
}

impl Outbox {
    /// The most an outbox holds before it must be flushed.
    pub const FLUSH_AT: usize = 256 * 1024;
    /// The most slices one vectored write is given.
    const SLICES: usize = 32;

    pub fn push(&mut self, frame: bytes::Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.bytes >= Self::FLUSH_AT
    }

    /// Writes everything held, in order.
    pub async fn flush<W: AsyncWrite + Unpin + ?Sized>(&mut self, writer: &mut W) -> std::io::Result<()> {
        use bytes::Buf;
        use tokio::io::AsyncWriteExt;
        while !self.frames.is_empty() {
            let mut slices = [std::io::IoSlice::new(&[]); Self::SLICES];
            let mut count = 0;
            for (slot, frame) in slices.iter_mut().zip(&self.frames) {
                *slot = std::io::IoSlice::new(frame);
                count += 1;
            }
            let mut written = writer.write_vectored(&slices[..count]).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.bytes -= written;
            while written > 0 {
                let Some(front) = self.frames.front_mut() else { break };
                if written >= front.len() {
                    written -= front.len();
                    self.frames.pop_front();
                } else {
                    front.advance(written);
                    written = 0;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn an_outbox_writes_its_frames_in_order_and_whole() {
        let (mut near, mut far) = tokio::io::duplex(7); // small: every write is partial
        let mut outbox = Outbox::default();
        let frames: Vec<Bytes> = (0..40u8).map(|i| Bytes::from(vec![i; usize::from(i % 5) + 1])).collect();
        for f in &frames {
            outbox.push(f.clone());
        }
        assert!(!outbox.is_empty() && !outbox.is_full());
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        let reader = tokio::spawn(async move {
            let mut got = vec![0; expected.len()];
            far.read_exact(&mut got).await.unwrap();
            assert_eq!(got, expected);
        });
        outbox.flush(&mut near).await.unwrap();
        assert!(outbox.is_empty());
        reader.await.unwrap();
        outbox.push(Bytes::from(vec![0; Outbox::FLUSH_AT]));
        assert!(outbox.is_full());
    }
}
