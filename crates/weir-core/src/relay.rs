//! Passing framed bytes from one socket to another, whatever the protocol: frames read into
//! one buffer, each judged by the protocol, and every run of frames passed unchanged written
//! with one write (one system call for many small messages, never a copy). The protocol says
//! where a frame ends ([`FrameLen`]) and what becomes of each ([`Action`]); this module knows
//! no protocol.
//!
//! Each side's writer is shared ([`Writer`]): the direction forwarding to it, and the
//! protocol's own answers from the other direction (a refusal, say), each written whole.

use std::future::Future;
use std::pin::Pin;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where the frame at the start of a buffer ends: `Ok(Some(len))` once its header is there
/// (the whole frame's length, header included), `Ok(None)` before; an error for bytes that are
/// no frame or a frame over `limit`.
pub type FrameLen<E> = fn(buf: &[u8], limit: usize) -> Result<Option<usize>, E>;

/// Why passing frames stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError<E> {
    /// The bytes were no frame (the protocol's error).
    #[error("malformed frame from the {side}: {error}")]
    Malformed { side: &'static str, error: E },
    #[error("the {0} closed the connection in the middle of a frame")]
    Cut(&'static str),
    #[error("{side} connection: {error}")]
    Io { side: &'static str, error: std::io::Error },
}

/// Frames read off one side into one buffer.
pub struct Frames<R, E> {
    inner: R,
    /// What has been read and not yet passed on; frames start at its beginning.
    pub buf: BytesMut,
    /// The largest frame allowed now (it may change, e.g. after a login).
    pub limit: usize,
    side: &'static str,
    frame_len: FrameLen<E>,
}

impl<R: AsyncRead + Unpin, E> Frames<R, E> {
    pub fn new(inner: R, limit: usize, side: &'static str, frame_len: FrameLen<E>) -> Self {
        Frames { inner, buf: BytesMut::with_capacity(16 * 1024), limit, side, frame_len }
    }

    pub fn side(&self) -> &'static str {
        self.side
    }

    /// The length of the frame at `at` when the whole frame is in the buffer.
    pub fn whole_at(&self, at: usize) -> Result<Option<usize>, RelayError<E>> {
        let len = (self.frame_len)(&self.buf[at..], self.limit)
            .map_err(|error| RelayError::Malformed { side: self.side, error })?;
        Ok(len.filter(|len| self.buf.len() - at >= *len))
    }

    /// Reads more; false when the stream ends between frames.
    pub async fn fill(&mut self) -> Result<bool, RelayError<E>> {
        let pending = (self.frame_len)(&self.buf, self.limit)
            .map_err(|error| RelayError::Malformed { side: self.side, error })?;
        // Room for the whole of a large frame at once; else a read's worth.
        let wanted = match pending {
            Some(len) => len.saturating_sub(self.buf.len()).max(4096),
            None => 16 * 1024,
        };
        if self.buf.capacity() - self.buf.len() < wanted {
            self.buf.reserve(wanted);
        }
        let read =
            self.inner.read_buf(&mut self.buf).await.map_err(|error| RelayError::Io { side: self.side, error })?;
        if read == 0 {
            return if self.buf.is_empty() { Ok(false) } else { Err(RelayError::Cut(self.side)) };
        }
        Ok(true)
    }

    /// Reads until the buffer holds `len` bytes; false if the stream ends first.
    pub async fn fill_to(&mut self, len: usize) -> Result<bool, RelayError<E>> {
        while self.buf.len() < len {
            self.buf.reserve(len - self.buf.len());
            let read =
                self.inner.read_buf(&mut self.buf).await.map_err(|error| RelayError::Io { side: self.side, error })?;
            if read == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next whole frame, taken out of the buffer (for a handshake, before frames pass in
    /// runs); None when the stream ends between frames.
    pub async fn next(&mut self) -> Result<Option<BytesMut>, RelayError<E>> {
        loop {
            if let Some(len) = self.whole_at(0)? {
                return Ok(Some(self.buf.split_to(len)));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }
}

/// One side's writer, shared by the direction that forwards to it and the answers the
/// protocol gives from the other direction.
pub struct Writer<W> {
    half: tokio::sync::Mutex<W>,
    side: &'static str,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub fn new(half: W, side: &'static str) -> Self {
        Writer { half: tokio::sync::Mutex::new(half), side }
    }

    pub async fn write(&self, bytes: &[u8]) -> Result<(), std::io::Error> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.half.lock().await.write_all(bytes).await
    }

    async fn write_or<F>(&self, bytes: &[u8]) -> Result<(), RelayError<F>> {
        self.write(bytes).await.map_err(|error| RelayError::Io { side: self.side, error })
    }

    pub async fn shutdown(&self) {
        let _ = self.half.lock().await.shutdown().await;
    }
}

/// What becomes of one frame.
pub enum Action<E> {
    Forward,
    /// Not forwarded; `back` (if any) answers the side it came from.
    Drop {
        back: Option<Vec<u8>>,
    },
    /// `onward` goes on in its place (may be empty) and `back` (may be empty) answers the side
    /// it came from.
    Replace {
        onward: Vec<u8>,
        back: Vec<u8>,
    },
    /// Forwarded once this completes (the protocol waits for the other side to catch up).
    ForwardAfter(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Stop: the connection ends with this error.
    Fail(E),
}

/// Passes frames from `from` to `onward` until `from` ends (Ok) or fails: runs of forwarded
/// frames in one write each, the others as `judge` (given each whole frame) says. The
/// protocol's error type `S` takes the relay's own errors in.
pub async fn pump<R, W, B, F, S>(
    from: &mut Frames<R, F>,
    onward: &Writer<W>,
    back: &Writer<B>,
    mut judge: impl FnMut(&[u8]) -> Action<S>,
) -> Result<(), S>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    B: AsyncWrite + Unpin,
    S: From<RelayError<F>>,
{
    loop {
        let (mut at, mut run_start) = (0, 0);
        while let Some(len) = from.whole_at(at)? {
            let action = judge(&from.buf[at..at + len]);
            if !matches!(action, Action::Forward) {
                onward.write_or(&from.buf[run_start..at]).await?;
                run_start = at + len;
            }
            match action {
                Action::Forward => {}
                Action::Drop { back: answer } => back.write_or(answer.as_deref().unwrap_or_default()).await?,
                Action::Replace { onward: instead, back: answer } => {
                    onward.write_or(&instead).await?;
                    back.write_or(&answer).await?;
                }
                Action::ForwardAfter(wait) => {
                    wait.await;
                    onward.write_or(&from.buf[at..at + len]).await?;
                }
                Action::Fail(error) => return Err(error),
            }
            at += len;
        }
        onward.write_or(&from.buf[run_start..at]).await?;
        from.buf.advance(at);
        if !from.fill().await? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    /// Frames of `len (1 byte) payload`.
    fn one_byte_len(buf: &[u8], limit: usize) -> Result<Option<usize>, String> {
        match buf.first() {
            Some(len) if usize::from(*len) + 1 > limit => Err(format!("a frame of {} bytes", len + 1)),
            Some(len) => Ok(Some(usize::from(*len) + 1)),
            None => Ok(None),
        }
    }

    #[derive(Debug)]
    struct Error(String);

    impl From<RelayError<String>> for Error {
        fn from(error: RelayError<String>) -> Self {
            Error(error.to_string())
        }
    }

    #[tokio::test]
    async fn frames_pass_in_runs_and_judged_ones_become_what_the_judge_says() {
        let (mut client, from_client) = duplex(64);
        let (onward_half, mut onward_out) = duplex(1024);
        let (back_half, mut back_out) = duplex(1024);
        let mut frames = Frames::new(from_client, 16, "client", one_byte_len as FrameLen<String>);
        let (onward, back) = (Writer::new(onward_half, "broker"), Writer::new(back_half, "client"));
        // Frames cut across writes: a, b (dropped with an answer), c (replaced), d.
        let writing = tokio::spawn(async move {
            for part in [&b"\x01a\x01"[..], b"b\x02", b"cc\x01d"] {
                client.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let judge = |frame: &[u8]| match frame {
            b"\x01b" => Action::Drop { back: Some(b"no b".to_vec()) },
            b"\x02cc" => Action::Replace { onward: b"C".to_vec(), back: Vec::new() },
            _ => Action::<Error>::Forward,
        };
        pump(&mut frames, &onward, &back, judge).await.unwrap();
        writing.await.unwrap();
        onward.shutdown().await;
        back.shutdown().await;
        let (mut passed, mut answered) = (Vec::new(), Vec::new());
        onward_out.read_to_end(&mut passed).await.unwrap();
        back_out.read_to_end(&mut answered).await.unwrap();
        assert_eq!(passed, b"\x01aC\x01d");
        assert_eq!(answered, b"no b");
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_or_cut_short_stops_the_pump() {
        let (mut client, from_client) = duplex(64);
        let mut frames = Frames::new(from_client, 4, "client", one_byte_len as FrameLen<String>);
        let (sink, _keep) = duplex(64);
        let writer = Writer::new(sink, "broker");
        client.write_all(b"\x09too long").await.unwrap();
        let err = pump(&mut frames, &writer, &writer, |_| Action::<Error>::Forward).await.unwrap_err();
        assert_eq!(err.0, "malformed frame from the client: a frame of 10 bytes");

        let (mut client, from_client) = duplex(64);
        let mut frames = Frames::new(from_client, 16, "client", one_byte_len as FrameLen<String>);
        client.write_all(b"\x03ab").await.unwrap();
        drop(client);
        let err = pump(&mut frames, &writer, &writer, |_| Action::<Error>::Forward).await.unwrap_err();
        assert_eq!(err.0, "the client closed the connection in the middle of a frame");
    }
}
