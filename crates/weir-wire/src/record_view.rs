//! The records inside a v2 record batch, read in place with every length and count checked:
//! what a policy that judges records themselves (their size, headers, schema) reads. Nothing
//! is allocated from a count a client declares, and the batch's bytes are only borrowed, so
//! the batch can be forwarded exactly as it came.
//!
//! [`records`] reads a records section as it is; [`batch_records`] takes a whole batch and
//! decompresses its section first when the batch is compressed (within a limit, see
//! [`crate::compression`]). A record (KIP-98):
//!
//! ```text
//! length varint, attributes int8, timestampDelta varlong, offsetDelta varint,
//! keyLength varint, key, valueLength varint, value,
//! headerCount varint, [headerKeyLength varint, headerKey, headerValueLength varint, headerValue]
//! ```
//!
//! Varints are zigzag-encoded; a length of -1 is null (header keys never are).

use crate::compression::{decompress, Codec, DecompressError};
use crate::records::{ATTRIBUTES_OFFSET, BATCH_HEAD, MAGIC_OFFSET};

/// A record the bytes do not hold as Kafka writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed record {index} at byte {at} of the batch's records: {what}")]
pub struct RecordError {
    /// Which record (from 0).
    pub index: usize,
    /// Where in the records section the fault is.
    pub at: usize,
    pub what: &'static str,
}

/// Why the records of a batch cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("a batch of magic {0}: only v2 batches hold records that can be read")]
    NotV2(u8),
    #[error("a batch of {0} bytes, shorter than a v2 batch header")]
    Short(usize),
    #[error("compression codec {0} is not one Kafka defines")]
    UnknownCodec(i16),
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    #[error("a batch declaring {0} records, more than the {MAX_BATCH_RECORDS} a policy reads")]
    TooManyRecords(i32),
}

/// The most records a batch may declare for its records to be read: policies that rewrite a
/// batch hold a view of each record (tens of bytes), and a compressed batch of a megabyte can
/// hold tens of millions of empty records. No producer's batch comes near it.
pub const MAX_BATCH_RECORDS: i32 = 1 << 20;

/// The records of one whole v2 `batch` (as [`crate::records::batches`] cuts them), its section
/// decompressed into `scratch` first when the batch is compressed, to at most `limit` bytes.
pub fn batch_records<'a>(batch: &'a [u8], limit: usize, scratch: &'a mut Vec<u8>) -> Result<Records<'a>, BatchError> {
    let head = batch.get(..BATCH_HEAD).ok_or(BatchError::Short(batch.len()))?;
    if head[MAGIC_OFFSET] != 2 {
        return Err(BatchError::NotV2(head[MAGIC_OFFSET]));
    }
    let attributes = i16::from_be_bytes([head[ATTRIBUTES_OFFSET], head[ATTRIBUTES_OFFSET + 1]]);
    let declared =
        i32::from_be_bytes([head[BATCH_HEAD - 4], head[BATCH_HEAD - 3], head[BATCH_HEAD - 2], head[BATCH_HEAD - 1]]);
    if declared > MAX_BATCH_RECORDS {
        return Err(BatchError::TooManyRecords(declared));
    }
    let section = &batch[BATCH_HEAD..];
    match Codec::of_attributes(attributes) {
        Some(Codec::None) => Ok(records(section, declared)),
        Some(codec) => {
            decompress(codec, section, limit, scratch)?;
            Ok(records(scratch, declared))
        }
        None => Err(BatchError::UnknownCodec(attributes & 0x07)),
    }
}

/// One record, borrowed from the records section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The record's size as written (its length prefix excluded).
    pub size: usize,
    headers: &'a [u8],
    header_count: usize,
}

impl<'a> RecordView<'a> {
    /// The record's headers in order, repeated keys kept (they were checked when read).
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let (mut rest, count) = (self.headers, self.header_count);
        (0..count).map_while(move |_| {
            let mut at = Reader { bytes: rest, pos: 0 };
            let key = at.bytes_field().ok()??;
            let value = at.bytes_field().ok()?;
            rest = &rest[at.pos..];
            Some((key, value))
        })
    }
}

/// The records of a records section that its batch header says holds `declared` records.
/// Each item is a record or the first fault (after which the iteration ends); a section that
/// holds fewer or more records than declared, or bytes after the last, is a fault too.
pub fn records(section: &[u8], declared: i32) -> Records<'_> {
    Records { reader: Reader { bytes: section, pos: 0 }, declared, index: 0, done: false }
}

/// See [`records`].
pub struct Records<'a> {
    reader: Reader<'a>,
    declared: i32,
    index: usize,
    done: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let declared = usize::try_from(self.declared).unwrap_or(0);
        let at_end = self.reader.pos == self.reader.bytes.len();
        let fault = |what| RecordError { index: self.index, at: self.reader.pos, what };
        let outcome = match (self.index < declared, at_end) {
            (false, true) => {
                self.done = true;
                return None;
            }
            (false, false) => Err(fault("bytes after the last record the batch declares")),
            (true, true) => Err(fault("fewer records than the batch declares")),
            (true, false) => self.record(),
        };
        if outcome.is_err() {
            self.done = true;
        }
        self.index += 1;
        Some(outcome)
    }
}

impl<'a> Records<'a> {
    fn record(&mut self) -> Result<RecordView<'a>, RecordError> {
        let index = self.index;
        let start = self.reader.pos;
        let fault = |at, what| RecordError { index, at, what };
        let length = self.reader.varint().map_err(|what| fault(start, what))?;
        let size = usize::try_from(length).map_err(|_| fault(start, "negative record length"))?;
        let body_at = self.reader.pos;
        let body = self.reader.take(size).ok_or_else(|| fault(start, "record length beyond the bytes"))?;
        let mut r = Reader { bytes: body, pos: 0 };
        let within = |r: &Reader<'_>, what| fault(body_at + r.pos, what);
        r.take(1).ok_or_else(|| within(&r, "no attributes"))?;
        let timestamp_delta = r.varlong().map_err(|what| within(&r, what))?;
        let offset_delta = r.varint().map_err(|what| within(&r, what))?;
        let key = r.bytes_field().map_err(|what| within(&r, what))?;
        let value = r.bytes_field().map_err(|what| within(&r, what))?;
        let count = r.varint().map_err(|what| within(&r, what))?;
        let header_count = usize::try_from(count).map_err(|_| within(&r, "negative header count"))?;
        let headers_at = r.pos;
        // Counted, not collected: nothing is sized by the declared count.
        for _ in 0..header_count {
            match r.bytes_field().map_err(|what| within(&r, what))? {
                Some(_) => {}
                None => return Err(within(&r, "a header key is null")),
            }
            r.bytes_field().map_err(|what| within(&r, what))?;
        }
        if r.pos != body.len() {
            return Err(within(&r, "bytes after the record's last header"));
        }
        let headers = &body[headers_at..];
        Ok(RecordView { timestamp_delta, offset_delta, key, value, size, headers, header_count })
    }
}

/// Reads zigzag varints and length-prefixed fields, every length checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }

    /// An unsigned varint of at most `max_bytes` bytes.
    fn unsigned(&mut self, max_bytes: usize) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let byte = *self.bytes.get(self.pos).ok_or("a varint runs past the bytes")?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint longer than its type")
    }

    fn varint(&mut self) -> Result<i32, &'static str> {
        let raw = u32::try_from(self.unsigned(5)?).map_err(|_| "a varint beyond 32 bits")?;
        Ok((raw >> 1) as i32 ^ -((raw & 1) as i32))
    }

    fn varlong(&mut self) -> Result<i64, &'static str> {
        let raw = self.unsigned(10)?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    /// A varint length and that many bytes; -1 is null.
    fn bytes_field(&mut self) -> Result<Option<&'a [u8]>, &'static str> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < -1 => Err("a length below -1"),
            n => self.take(n as usize).map(Some).ok_or("a length beyond the bytes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::Record;

    use super::*;
    use crate::records::BATCH_HEAD;
    use crate::test_support::{encode_batch, gzip, lz4, plain_record, snappy_raw, snappy_xerial, zstd};

    fn record(
        i: usize,
        key: Option<&'static [u8]>,
        value: Option<&'static [u8]>,
        headers: &[(&'static str, &'static [u8])],
    ) -> Record {
        let mut map = IndexMap::new();
        for (k, v) in headers {
            map.insert(StrBytes::from_static_str(k), Some(Bytes::from_static(v)));
        }
        let timestamp = 1_700_000_000_000 + i as i64;
        Record {
            key: key.map(Bytes::from_static),
            value: value.map(Bytes::from_static),
            headers: map,
            timestamp,
            ..plain_record(i)
        }
    }

    /// A batch as a client's encoder writes it: its records section and declared count.
    fn section(records: &[Record]) -> (Vec<u8>, i32) {
        let batch = encode_batch(records);
        let declared = i32::from_be_bytes(batch[BATCH_HEAD - 4..BATCH_HEAD].try_into().unwrap());
        (batch[BATCH_HEAD..].to_vec(), declared)
    }

    #[test]
    fn records_are_read_as_the_encoder_wrote_them() {
        let written = [
            record(0, Some(b"k0"), Some(b"v0"), &[("trace", b"t0"), ("dup", b"a")]),
            record(1, None, Some(b""), &[]),
            record(2, Some(b"k2"), None, &[("dup", b"b")]),
        ];
        let (bytes, declared) = section(&written);
        let read: Vec<RecordView<'_>> = records(&bytes, declared).collect::<Result<_, _>>().unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(
            (read[0].key, read[0].value, read[0].offset_delta, read[0].timestamp_delta),
            (Some(&b"k0"[..]), Some(&b"v0"[..]), 0, 0)
        );
        let headers: Vec<_> = read[0].headers().collect();
        assert_eq!(headers, [(&b"trace"[..], Some(&b"t0"[..])), (&b"dup"[..], Some(&b"a"[..]))]);
        assert_eq!((read[1].key, read[1].value, read[1].headers().count()), (None, Some(&b""[..]), 0));
        assert_eq!((read[2].value, read[2].offset_delta, read[2].timestamp_delta), (None, 2, 2));
        assert!(read.iter().all(|r| r.size > 0));
    }

    #[test]
    fn lying_counts_and_lengths_are_faults_not_allocations() {
        let (bytes, declared) = section(&[record(0, Some(b"k"), Some(b"v"), &[("h", b"x")])]);
        let fault = |bytes: &[u8], declared: i32| records(bytes, declared).find_map(Result::err).map(|e| e.what);
        assert_eq!(fault(&bytes, declared), None);
        assert_eq!(fault(&bytes, i32::MAX), Some("fewer records than the batch declares"));
        assert_eq!(fault(&bytes, 0), Some("bytes after the last record the batch declares"));
        assert_eq!(fault(&bytes[..bytes.len() - 1], declared), Some("record length beyond the bytes"));
        // A header count of a billion in a record of a few bytes.
        let mut lying = bytes.clone();
        let count_at = lying.len() - 5; // headerCount varint (1) then key "h" (1 + 1) and value "x" (1 + 1)
        assert_eq!(lying[count_at], 2, "one header, zigzag");
        lying[count_at] = 0x7e; // 63 headers
        assert_eq!(fault(&lying, declared), Some("a varint runs past the bytes"));
        let mut negative = bytes.clone();
        negative[count_at] = 0x03; // -2
        assert_eq!(fault(&negative, declared), Some("negative header count"));
        assert_eq!(fault(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 1), Some("a varint longer than its type"));
        assert_eq!(fault(&[0x01], 1), Some("negative record length"));
        let error = records(&[0x01], 1).next().unwrap().unwrap_err();
        assert_eq!(error.to_string(), "malformed record 0 at byte 0 of the batch's records: negative record length");
    }

    #[test]
    fn a_null_header_key_and_bytes_after_the_last_header_are_faults() {
        let (bytes, declared) = section(&[record(0, None, Some(b"v"), &[("h", b"x")])]);
        let fault = |bytes: &[u8]| records(bytes, declared).find_map(Result::err).map(|e| e.what);
        let mut null_key = bytes.clone();
        let key_at = null_key.len() - 4;
        null_key[key_at] = 0x01; // -1: a null key (the rest no longer adds up either)
        assert_eq!(fault(&null_key), Some("a header key is null"));
        let mut trailing = bytes.clone();
        trailing[0] += 2; // the record claims one more byte (zigzag +1)
        trailing.push(0);
        assert_eq!(fault(&trailing), Some("bytes after the record's last header"));
    }

    #[test]
    fn a_batch_declaring_more_records_than_a_policy_reads_is_refused_before_any_is_read() {
        let mut batch = encode_batch(&[record(0, Some(b"k"), Some(b"v"), &[])]).to_vec();
        batch[BATCH_HEAD - 4..BATCH_HEAD].copy_from_slice(&(MAX_BATCH_RECORDS + 1).to_be_bytes());
        let error = batch_records(&batch, 1 << 16, &mut Vec::new()).err().unwrap();
        assert_eq!(error, BatchError::TooManyRecords(MAX_BATCH_RECORDS + 1));
        assert!(error.to_string().contains("more than the 1048576 a policy reads"));
        batch[BATCH_HEAD - 4..BATCH_HEAD].copy_from_slice(&MAX_BATCH_RECORDS.to_be_bytes());
        assert!(batch_records(&batch, 1 << 16, &mut Vec::new()).is_ok(), "at the cap: read (and found short)");
    }

    #[test]
    fn a_compressed_batch_is_read_after_decompression_within_the_limit() {
        let written = [
            record(0, Some(b"k0"), Some(b"a value that compresses, a value that compresses"), &[("h", b"1")]),
            record(1, None, Some(b"v1"), &[]),
        ];
        let plain = encode_batch(&written);
        let mut scratch = Vec::new();
        let keys = |batch: &[u8], scratch: &mut Vec<u8>| -> Result<Vec<Option<Vec<u8>>>, BatchError> {
            let records = batch_records(batch, 1 << 16, scratch)?;
            Ok(records.map(|r| r.unwrap().key.map(<[u8]>::to_vec)).collect())
        };
        let expected = vec![Some(b"k0".to_vec()), None];
        assert_eq!(keys(&plain, &mut scratch).unwrap(), expected);
        assert!(scratch.is_empty(), "an uncompressed batch is read in place");
        let section = &plain[BATCH_HEAD..];
        for (codec, compressed) in [
            (1u8, gzip(section)),
            (2, snappy_raw(section)),
            (2, snappy_xerial(section, 16)),
            (3, lz4(section)),
            (4, zstd(section)),
        ] {
            let mut batch = plain[..BATCH_HEAD].to_vec();
            batch[ATTRIBUTES_OFFSET + 1] |= codec;
            batch.extend_from_slice(&compressed);
            assert_eq!(keys(&batch, &mut scratch).unwrap(), expected, "codec {codec}");
            let err = batch_records(&batch, section.len() - 1, &mut scratch).err().unwrap();
            assert!(matches!(err, BatchError::Decompress(DecompressError::TooLarge { .. })), "codec {codec}: {err}");
        }
        let mut unknown = plain.clone();
        unknown[ATTRIBUTES_OFFSET + 1] |= 6;
        assert_eq!(batch_records(&unknown, 1 << 16, &mut scratch).err(), Some(BatchError::UnknownCodec(6)));
        let mut legacy = plain.clone();
        legacy[MAGIC_OFFSET] = 1;
        assert_eq!(batch_records(&legacy, 1 << 16, &mut scratch).err(), Some(BatchError::NotV2(1)));
        assert_eq!(batch_records(&plain[..60], 1 << 16, &mut scratch).err(), Some(BatchError::Short(60)));
    }
}
