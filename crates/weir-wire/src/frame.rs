//! Length-prefixed framing: `[i32 length][length bytes]`, read into `Bytes` without copying.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Size of the length prefix in front of every Kafka frame.
pub const LENGTH_PREFIX: usize = 4;

/// What a reader allocates when it needs room: one page. A larger frame reserves room for
/// itself.
const INITIAL_CAPACITY: usize = 4 * 1024;
/// The least room a read is given.
const MIN_READ: usize = 1024;

/// Why a stream could not be cut into Kafka frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("negative frame length {0}")]
    NegativeLength(i32),
    #[error("a TLS handshake was sent to a plaintext Kafka listener (is the client configured for SSL?)")]
    TlsOnPlaintext,
    #[error("an HTTP request was sent to a Kafka listener")]
    HttpOnKafka,
    #[error("connection closed mid-frame: got {got} of {expected} bytes")]
    Truncated { got: usize, expected: usize },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads whole frames from a byte stream. Each returned `Bytes` holds the length prefix *and*
/// the payload, so forwarding a frame is writing the same bytes back out.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_frame: usize,
    /// The most the buffer held since it was last given back. (Frames taken off it keep
    /// sharing its allocation, so its own `capacity()` understates what it holds.)
    peak: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader that allocates its buffer at the first read.
    pub fn new(inner: R, max_frame: usize) -> Self {
        Self { inner, buf: BytesMut::new(), max_frame, peak: 0 }
    }

    /// Changes the largest frame accepted from here on (e.g. raised once a client has
    /// authenticated).
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// How much memory the buffer may hold: the most it grew to (for the largest frame read)
    /// since it was last given back.
    pub fn capacity(&self) -> usize {
        self.peak.max(self.buf.capacity())
    }

    /// Whether no frame is buffered but memory is held: what
    /// [`FrameReader::release_if_empty`] would give back.
    pub fn holds_idle_memory(&self) -> bool {
        self.buf.is_empty() && self.capacity() > 0
    }

    fn note_growth(&mut self) {
        self.peak = self.peak.max(self.buf.capacity());
    }

    /// Gives the buffer back when no frame is in it, so that a connection without traffic holds
    /// none (the next read allocates again). Called after a while without traffic, not after
    /// every frame: a busy connection keeps its buffer.
    pub fn release_if_empty(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
            self.peak = 0;
        }
    }

    /// Room for a read of at least [`MIN_READ`] bytes.
    fn ensure_room(&mut self) {
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            self.buf.reserve(INITIAL_CAPACITY);
            self.note_growth();
        }
    }

    /// The next frame, or `None` on a clean end of stream between frames.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = split_frame(&mut self.buf, self.max_frame)? {
                return Ok(Some(frame));
            }
            // split_frame reserved room for the rest of a frame begun.
            self.note_growth();
            self.ensure_room();
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    let expected = check_prefix(&self.buf, self.max_frame)?.unwrap_or(LENGTH_PREFIX);
                    Err(FrameError::Truncated { got: self.buf.len(), expected })
                };
            }
        }
    }
}

/// Streaming access, for frames large enough that forwarding them as they arrive (instead of
/// after the last byte) saves a noticeable store-and-forward delay, and that need not be held
/// whole: the caller reads a window at a time and [`FrameReader::discard`]s what it is done with.
impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Waits for the next frame's length prefix; returns the frame's total size (prefix
    /// included), or `None` on a clean end of stream. Nothing is reserved for the frame yet:
    /// [`FrameReader::whole_frame`] takes it whole, [`FrameReader::read_within`] in pieces.
    pub async fn next_frame_size(&mut self) -> Result<Option<usize>, FrameError> {
        loop {
            if let Some(total) = check_prefix(&self.buf, self.max_frame)? {
                return Ok(Some(total));
            }
            self.ensure_room();
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated { got: self.buf.len(), expected: LENGTH_PREFIX })
                };
            }
        }
    }

    /// The frame of `total` bytes (prefix included) whose size [`FrameReader::next_frame_size`]
    /// gave, once all of it is in; room for it is reserved in one allocation.
    pub async fn whole_frame(&mut self, total: usize) -> Result<Bytes, FrameError> {
        self.buf.reserve(total.saturating_sub(self.buf.len()));
        self.note_growth();
        loop {
            if self.buf.len() >= total {
                return Ok(self.buf.split_to(total).freeze());
            }
            self.read_more(total).await?;
        }
    }

    /// The stream back, once nothing is buffered (e.g. after an exchange the reader was only
    /// borrowed for); `Err` gives the reader back when bytes are still waiting.
    pub fn into_inner(self) -> Result<R, Self> {
        if self.buf.is_empty() {
            Ok(self.inner)
        } else {
            Err(self)
        }
    }

    /// What is buffered: the rest of the current frame so far (and possibly what follows it).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The buffered bytes, to be rewritten in place (a response's records, keeping their size).
    pub fn buffered_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Takes the first `n` buffered bytes (at most what is buffered).
    pub fn split_buffered(&mut self, n: usize) -> Bytes {
        let n = n.min(self.buf.len());
        self.buf.split_to(n).freeze()
    }

    /// Drops the first `n` buffered bytes, which the caller has dealt with.
    pub fn discard(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        bytes::Buf::advance(&mut self.buf, n);
    }

    /// Reads more of a frame of `total` bytes without letting the buffer grow much past
    /// `window`: what is buffered plus room for one read. The end of the stream is a
    /// truncation.
    pub async fn read_within(&mut self, total: usize, window: usize) -> Result<(), FrameError> {
        let room = window.saturating_sub(self.buf.len()).max(MIN_READ);
        if self.buf.capacity() - self.buf.len() < room {
            // Reuses the allocation (moving the few bytes kept to its front) when it can.
            self.buf.reserve(room);
            self.note_growth();
        }
        self.read_more(total).await
    }

    /// Reads more of a frame of `total` bytes into the room there is; the end of the stream is
    /// a truncation.
    async fn read_more(&mut self, total: usize) -> Result<(), FrameError> {
        if self.inner.read_buf(&mut self.buf).await? == 0 {
            return Err(FrameError::Truncated { got: self.buf.len(), expected: total });
        }
        Ok(())
    }
}

/// Takes one whole frame off the front of `buf` if it holds one. When only part of a frame is
/// there, reserves room for the rest (one allocation instead of repeated doubling).
pub fn split_frame(buf: &mut BytesMut, max_frame: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(total) = check_prefix(buf, max_frame)? else { return Ok(None) };
    if buf.len() >= total {
        return Ok(Some(buf.split_to(total).freeze()));
    }
    buf.reserve(total - buf.len());
    Ok(None)
}

/// Validates the length prefix at the start of `buf`; returns the total frame size (prefix
/// included) once four bytes are there.
pub fn check_prefix(buf: &[u8], max_frame: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX) else {
        // A TLS record or an HTTP verb is recognisable from fewer than four bytes only in
        // part; wait for four so the message names the right culprit.
        return Ok(None);
    };
    if prefix[0] == 0x16 && prefix[1] == 0x03 {
        return Err(FrameError::TlsOnPlaintext);
    }
    if [b"GET ", b"POST", b"PUT ", b"HEAD", b"PRI ", b"DELE", b"OPTI"].iter().any(|verb| prefix == &verb[..]) {
        return Err(FrameError::HttpOnKafka);
    }
    let len = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len < 0 {
        return Err(FrameError::NegativeLength(len));
    }
    let size = len as usize;
    if size > max_frame {
        return Err(FrameError::TooLarge { size, limit: max_frame });
    }
    Ok(Some(LENGTH_PREFIX + size))
}

/// Prepends the length prefix to an encoded payload.
pub fn with_length_prefix(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(LENGTH_PREFIX + payload.len());
    out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(input: &[u8], max: usize) -> Result<Vec<Bytes>, FrameError> {
        let mut reader = FrameReader::new(input, max);
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame().await? {
            frames.push(frame);
        }
        Ok(frames)
    }

    #[tokio::test]
    async fn splits_pipelined_frames_and_keeps_prefix() {
        let mut input = with_length_prefix(b"abc").to_vec();
        input.extend_from_slice(&with_length_prefix(b""));
        input.extend_from_slice(&with_length_prefix(b"hello"));
        let frames = read_all(&input, 100).await.unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(&frames[0][..], b"\0\0\0\x03abc");
        assert_eq!(&frames[2][4..], b"hello");
    }

    #[tokio::test]
    async fn a_buffer_is_given_back_only_when_empty() {
        let large = with_length_prefix(&vec![7u8; 1 << 20]);
        let mut reader = FrameReader::new(&large[..], 2 << 20);
        assert!(!reader.holds_idle_memory(), "nothing allocated before the first read");
        assert_eq!(reader.next_frame().await.unwrap().unwrap().len(), large.len());
        assert!(reader.capacity() >= large.len());
        assert!(reader.holds_idle_memory());
        reader.release_if_empty();
        assert_eq!(reader.capacity(), 0);
        assert!(!reader.holds_idle_memory());

        // Part of a frame is waiting: its buffer stays.
        let mut reader = FrameReader::new(&large[..100], 2 << 20);
        assert_eq!(reader.next_frame_size().await.unwrap(), Some(large.len()));
        assert!(!reader.holds_idle_memory(), "a frame is in it");
        let before = reader.capacity();
        reader.release_if_empty();
        assert_eq!(reader.capacity(), before);
    }

    #[tokio::test]
    async fn rejects_oversized_frame_before_reading_it() {
        let input = 1_000_000i32.to_be_bytes();
        let err = read_all(&input, 1000).await.unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { size: 1_000_000, limit: 1000 }), "{err}");
    }

    #[tokio::test]
    async fn reports_truncation_with_counts() {
        let mut input = 10i32.to_be_bytes().to_vec();
        input.extend_from_slice(b"12345");
        let err = read_all(&input, 100).await.unwrap_err();
        assert!(matches!(err, FrameError::Truncated { got: 9, expected: 14 }), "{err}");
    }

    #[tokio::test]
    async fn names_tls_and_http_clients() {
        let tls = [0x16, 0x03, 0x01, 0x02, 0x00];
        assert!(matches!(read_all(&tls, 100).await, Err(FrameError::TlsOnPlaintext)));
        let http = b"GET /metrics HTTP/1.1\r\n\r\n";
        assert!(matches!(read_all(http, 100).await, Err(FrameError::HttpOnKafka)));
    }

    #[tokio::test]
    async fn streams_a_frame_through_a_window_then_takes_one_whole() {
        let mut input = with_length_prefix(&[7u8; 10_000]).to_vec();
        input.extend_from_slice(&with_length_prefix(&[8u8; 50_000]));
        input.extend_from_slice(&with_length_prefix(b"next"));
        let mut reader = FrameReader::new(&input[..], 1 << 20);
        let total = reader.next_frame_size().await.unwrap().unwrap();
        assert_eq!(total, 10_004);
        let mut passed = Vec::new();
        while passed.len() < total {
            let have = reader.buffered().len().min(total - passed.len());
            passed.extend_from_slice(&reader.buffered()[..have]);
            reader.discard(have);
            if passed.len() < total {
                reader.read_within(total, 2 * 1024).await.unwrap();
            }
            assert_eq!(reader.capacity(), INITIAL_CAPACITY, "the buffer grew past the window");
        }
        assert_eq!(passed, &input[..total]);
        let total = reader.next_frame_size().await.unwrap().unwrap();
        assert_eq!(reader.whole_frame(total).await.unwrap().len(), 50_004);
        assert_eq!(&reader.next_frame().await.unwrap().unwrap()[4..], b"next");
        assert!(reader.next_frame_size().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rejects_negative_length() {
        let input = (-5i32).to_be_bytes();
        assert!(matches!(read_all(&input, 100).await, Err(FrameError::NegativeLength(-5))));
    }
}
