//! Record batch compression: which codec a v2 batch says it uses, and its records section
//! decompressed with a limit on what it may grow to. What a rule that judges the records
//! themselves reads when a client compressed them; the batch itself is still forwarded as the
//! client wrote it.
//!
//! The framings are Kafka's, as its clients write them:
//! - gzip: a gzip stream (members may follow one another);
//! - snappy: the Java client writes xerial framing (a 16-byte header starting `\x82SNAPPY\0`,
//!   then blocks each prefixed by its big-endian length); librdkafka writes one raw block.
//!   Both are read, told apart by the magic, as the broker does;
//! - lz4: an LZ4 frame;
//! - zstd: zstd frames.
//!
//! A client chooses how much its bytes claim to grow: every decoder's output is read through a
//! limit, nothing is sized from a length the data declares before it is checked against that
//! limit, and zstd may not ask for a window larger than the limit.

use std::io::Read;

/// A batch's compression codec: the low three bits of a v2 batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec of a v2 batch whose attributes are `attributes`; None for one Kafka does not
    /// define (the broker refuses it).
    pub fn of_attributes(attributes: i16) -> Option<Codec> {
        Some(match attributes & 0x07 {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }

    /// Its name as Kafka's `compression.type` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// The codec `compression.type` calls `name`.
    pub fn named(name: &str) -> Option<Codec> {
        [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd].into_iter().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compressed bytes that could not be read within the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    #[error("{codec} data decompresses to more than {limit} bytes")]
    TooLarge { codec: Codec, limit: usize },
    #[error("{codec} data is corrupt: {reason}")]
    Corrupt { codec: Codec, reason: String },
}

/// `input`, compressed with `codec`, decompressed into `out` (cleared first), which may grow
/// to `limit` bytes and no further.
pub fn decompress(codec: Codec, input: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), DecompressError> {
    out.clear();
    let corrupt = |reason: String| DecompressError::Corrupt { codec, reason };
    match codec {
        Codec::None => {
            if input.len() > limit {
                return Err(DecompressError::TooLarge { codec, limit });
            }
            out.extend_from_slice(input);
            Ok(())
        }
        Codec::Gzip => read_within(codec, flate2::read::MultiGzDecoder::new(input), limit, out),
        Codec::Lz4 => read_within(codec, lz4_flex::frame::FrameDecoder::new(input), limit, out),
        Codec::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt(e.to_string()))?;
            decoder.window_log_max(window_log_within(limit)).map_err(|e| corrupt(e.to_string()))?;
            read_within(codec, decoder, limit, out)
        }
        Codec::Snappy => snappy(input, limit, out),
    }
}

/// `input` compressed with `codec` as Kafka's clients write it (snappy as one raw block, as
/// librdkafka does: Java readers accept it too), for batches the sidecar writes itself.
pub fn compress(codec: Codec, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    // Writing into a Vec cannot fail; the encoders' errors are for other writers.
    let written = match codec {
        Codec::None => Ok(input.to_vec()),
        Codec::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(input).and_then(|()| encoder.finish())
        }
        Codec::Snappy => snap::raw::Encoder::new().compress_vec(input).map_err(std::io::Error::other),
        Codec::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder
                .write_all(input)
                .map_err(std::io::Error::other)
                .and_then(|()| encoder.finish().map_err(std::io::Error::other))
        }
        Codec::Zstd => zstd::stream::encode_all(input, 3),
    };
    written.unwrap_or_else(|_| input.to_vec())
}

/// Reads `reader` to its end into `out`, failing once it yields more than `limit` bytes.
fn read_within(codec: Codec, reader: impl Read, limit: usize, out: &mut Vec<u8>) -> Result<(), DecompressError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(out).map_err(|e| DecompressError::Corrupt { codec, reason: e.to_string() })?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { codec, limit });
    }
    Ok(())
}

/// The largest zstd window (log2 bytes) to allow when at most `limit` bytes may come out: a
/// frame cannot usefully refer further back than its own output, but a streaming encoder
/// declares its level's window whatever it writes (8 MiB up to level 19), so never less than
/// that; 27 (128 MiB) is zstd's own default limit.
fn window_log_within(limit: usize) -> u32 {
    let needed = usize::BITS - limit.saturating_sub(1).leading_zeros();
    needed.clamp(23, 27)
}

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\0";
/// The xerial header: the magic, then a version and a compatible version (i32 each).
const XERIAL_HEADER: usize = 16;

fn snappy(input: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), DecompressError> {
    let corrupt = |reason: &str| DecompressError::Corrupt { codec: Codec::Snappy, reason: reason.to_owned() };
    if !input.starts_with(XERIAL_MAGIC) {
        return snappy_block(input, limit, out);
    }
    let mut rest = input.get(XERIAL_HEADER..).ok_or_else(|| corrupt("a xerial header shorter than 16 bytes"))?;
    while !rest.is_empty() {
        let length = rest.get(..4).ok_or_else(|| corrupt("a xerial block length cut short"))?;
        let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
        let block = rest.get(4..4 + length).ok_or_else(|| corrupt("a xerial block longer than the bytes"))?;
        snappy_block(block, limit, out)?;
        rest = &rest[4 + length..];
    }
    Ok(())
}

/// One raw snappy block appended to `out`; its declared length is checked before any byte is
/// written for it.
fn snappy_block(block: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), DecompressError> {
    let corrupt = |e: snap::Error| DecompressError::Corrupt { codec: Codec::Snappy, reason: e.to_string() };
    let length = snap::raw::decompress_len(block).map_err(corrupt)?;
    if length > limit.saturating_sub(out.len()) {
        return Err(DecompressError::TooLarge { codec: Codec::Snappy, limit });
    }
    let start = out.len();
    out.resize(start + length, 0);
    let written = snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(corrupt)?;
    out.truncate(start + written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{gzip, lz4, snappy_raw, snappy_xerial, zstd};

    fn text(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"weir compresses records "[i % 24]).collect()
    }

    fn all_framings(data: &[u8]) -> Vec<(Codec, Vec<u8>)> {
        vec![
            (Codec::None, data.to_vec()),
            (Codec::Gzip, gzip(data)),
            (Codec::Gzip, [gzip(&data[..10]), gzip(&data[10..])].concat()),
            (Codec::Snappy, snappy_raw(data)),
            (Codec::Snappy, snappy_xerial(data, 1000)),
            (Codec::Lz4, lz4(data)),
            (Codec::Zstd, zstd(data)),
        ]
    }

    #[test]
    fn every_codec_and_framing_kafka_clients_write_decompresses() {
        let data = text(5000);
        let mut out = Vec::new();
        for (codec, compressed) in all_framings(&data) {
            decompress(codec, &compressed, data.len(), &mut out).unwrap_or_else(|e| panic!("{codec}: {e}"));
            assert_eq!(out, data, "{codec}");
        }
    }

    #[test]
    fn output_beyond_the_limit_is_an_error_for_every_codec() {
        let data = text(5000);
        let mut out = Vec::new();
        for (codec, compressed) in all_framings(&data) {
            let err = decompress(codec, &compressed, data.len() - 1, &mut out).unwrap_err();
            assert_eq!(err, DecompressError::TooLarge { codec, limit: data.len() - 1 }, "{codec}");
            assert!(out.capacity() < 2 * data.len(), "{codec}: grew to {}", out.capacity());
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let bomb = vec![0u8; 64 << 20];
        let mut out = Vec::new();
        for (codec, compressed) in [
            (Codec::Gzip, gzip(&bomb)),
            (Codec::Snappy, snappy_xerial(&bomb, 1 << 20)),
            (Codec::Lz4, lz4(&bomb)),
            (Codec::Zstd, zstd(&bomb)),
        ] {
            assert!(compressed.len() < 4 << 20, "{codec}: {}", compressed.len());
            let err = decompress(codec, &compressed, 1 << 20, &mut out).unwrap_err();
            assert!(matches!(err, DecompressError::TooLarge { .. }), "{codec}: {err}");
            assert!(out.capacity() <= 4 << 20, "{codec}: grew to {}", out.capacity());
        }
    }

    #[test]
    fn a_snappy_block_claiming_gigabytes_is_refused_before_anything_is_allocated() {
        // A raw block whose length preamble says 2 GiB, then nothing.
        let claim = [0x80, 0x80, 0x80, 0x80, 0x08];
        let mut out = Vec::new();
        let err = decompress(Codec::Snappy, &claim, 1 << 20, &mut out).unwrap_err();
        assert_eq!(err, DecompressError::TooLarge { codec: Codec::Snappy, limit: 1 << 20 });
        assert_eq!(out.capacity(), 0);
    }

    #[test]
    fn damaged_data_is_a_corrupt_error_naming_the_codec() {
        let data = text(2000);
        let mut out = Vec::new();
        for (codec, mut compressed) in all_framings(&data).into_iter().filter(|(c, _)| *c != Codec::None) {
            let cut = compressed.len() / 2;
            compressed.truncate(cut);
            let err = decompress(codec, &compressed, 1 << 20, &mut out).unwrap_err();
            assert!(matches!(err, DecompressError::Corrupt { codec: c, .. } if c == codec), "{codec}: {err}");
            assert!(err.to_string().starts_with(&format!("{codec} data is corrupt: ")), "{err}");
        }
        let short = decompress(Codec::Snappy, &XERIAL_MAGIC[..], 100, &mut out).unwrap_err();
        assert_eq!(short.to_string(), "snappy data is corrupt: a xerial header shorter than 16 bytes");
    }

    #[test]
    fn codecs_are_named_as_kafka_names_them() {
        assert_eq!(Codec::of_attributes(0x0013), Some(Codec::Lz4));
        assert_eq!(Codec::of_attributes(5), None);
        assert_eq!(Codec::named("zstd"), Some(Codec::Zstd));
        assert_eq!(Codec::named("brotli"), None);
        assert_eq!(window_log_within(1 << 24), 24);
        assert_eq!(window_log_within((1 << 24) + 1), 25);
        assert_eq!(window_log_within(1), 23);
        assert_eq!(window_log_within(usize::MAX), 27);
    }
}
