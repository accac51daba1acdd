//! A v2 record batch's header read whole, and new batches written: what a policy writes when
//! it keeps some records of a client's batch and sends others elsewhere (a dead-letter
//! topic). A batch that passes a policy unchanged is never rewritten; this is for the ones
//! that cannot be.
//!
//! The header (KIP-98):
//!
//! ```text
//! baseOffset int64, batchLength int32, partitionLeaderEpoch int32, magic int8 (2),
//! crc uint32 (CRC-32C of attributes..end), attributes int16, lastOffsetDelta int32,
//! baseTimestamp int64, maxTimestamp int64, producerId int64, producerEpoch int16,
//! baseSequence int32, recordsCount int32, records...
//! ```

use bytes::{BufMut, BytesMut};

use crate::compression::{compress, Codec};
use crate::record_view::RecordView;
use crate::records::BATCH_HEAD;

/// The `isTransactional` bit of a batch's attributes.
const TRANSACTIONAL: i16 = 0x10;
/// The `isControlBatch` bit.
const CONTROL: i16 = 0x20;
/// The timestamp type bit (log append time).
const LOG_APPEND_TIME: i16 = 0x08;

/// What a v2 batch's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// The first record's offset: the broker's, in a batch it serves; 0 in a client's.
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    /// The last record's offset less the first's, kept when records are removed (by
    /// compaction, or a policy): a consumer goes on after it.
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: i32,
}

impl BatchHeader {
    /// The header of the v2 batch starting `batch`; None when it is shorter than a header or
    /// not v2.
    pub fn read(batch: &[u8]) -> Option<BatchHeader> {
        let h = batch.get(..BATCH_HEAD)?;
        if h[16] != 2 {
            return None;
        }
        let i16_at = |at: usize| i16::from_be_bytes([h[at], h[at + 1]]);
        let i32_at = |at: usize| i32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let i64_at = |at: usize| i64::from_be_bytes(h[at..at + 8].try_into().unwrap_or_default());
        Some(BatchHeader {
            base_offset: i64_at(0),
            partition_leader_epoch: i32_at(12),
            attributes: i16_at(21),
            last_offset_delta: i32_at(23),
            base_timestamp: i64_at(27),
            max_timestamp: i64_at(35),
            producer_id: i64_at(43),
            producer_epoch: i16_at(51),
            base_sequence: i32_at(53),
            records: i32_at(57),
        })
    }

    /// Whether the batch belongs to an idempotent (or transactional) producer's sequence:
    /// then removing records from it breaks the producer's next batch.
    pub fn is_sequenced(&self) -> bool {
        self.producer_id >= 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL != 0
    }

    pub fn codec(&self) -> Option<Codec> {
        Codec::of_attributes(self.attributes)
    }
}

/// A record to write: what a [`RecordView`] holds, headers as a list (repeated keys kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord<'a> {
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

impl<'a> NewRecord<'a> {
    /// The record `view` of a batch whose base timestamp is `base_timestamp`.
    pub fn from_view(view: &RecordView<'a>, base_timestamp: i64) -> Self {
        NewRecord {
            timestamp: base_timestamp.wrapping_add(view.timestamp_delta),
            key: view.key,
            value: view.value,
            headers: view.headers().collect(),
        }
    }
}

/// A v2 batch of `records` (at least one), compressed with `codec`, by a producer with no
/// sequence (producer id -1): what a sidecar writes of its own, or in a client's stead. The
/// timestamp type (create or log-append time) is `like`'s.
pub fn write_batch(records: &[NewRecord<'_>], codec: Codec, like: Option<&BatchHeader>) -> BytesMut {
    let base_timestamp = records.iter().map(|r| r.timestamp).min().unwrap_or(-1);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
    let timestamp_type = like.map_or(0, |h| h.attributes & LOG_APPEND_TIME);
    let header = BatchHeader {
        base_offset: 0,
        partition_leader_epoch: -1,
        attributes: codec_bits(codec) | timestamp_type,
        last_offset_delta: records.len().saturating_sub(1) as i32,
        base_timestamp,
        max_timestamp,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records: records.len() as i32,
    };
    encode(records, |i| i as i32, codec, &header)
}

/// A client's batch written again with other records in place of its own, one for one: its
/// header kept whole (producer id, epoch and base sequence, so an idempotent or transactional
/// producer's sequence holds; transactional flag, timestamps, codec), its records re-encoded
/// and compressed again with its codec. For changing records (their headers), never their
/// number.
pub fn rewrite_batch(header: &BatchHeader, records: &[NewRecord<'_>]) -> BytesMut {
    let codec = header.codec().unwrap_or(Codec::None);
    let attributes = (header.attributes & !0x07) | codec_bits(codec);
    let last_offset_delta = records.len().saturating_sub(1) as i32;
    let header = BatchHeader { attributes, last_offset_delta, records: records.len() as i32, ..*header };
    encode(records, |i| i as i32, codec, &header)
}

/// A batch a broker served, written again with some of its records (changed or not) in
/// their places: each record keeps its offset (`offset_deltas[i]` for `records[i]`, as read),
/// and the batch its base offset and last offset delta, so that a consumer's positions,
/// commits and seeks stay true and it goes on after the batch even when its last records are
/// gone (as after compaction; no record at all is an empty batch, which Kafka also serves).
/// Producer id, epoch, sequence, flags and timestamps are kept; the records are written with
/// `codec`.
pub fn refill_batch(header: &BatchHeader, records: &[NewRecord<'_>], offset_deltas: &[i32], codec: Codec) -> BytesMut {
    debug_assert_eq!(records.len(), offset_deltas.len());
    let attributes = (header.attributes & !0x07) | codec_bits(codec);
    let header = BatchHeader { attributes, records: records.len() as i32, ..*header };
    encode(records, |i| offset_deltas[i], codec, &header)
}

/// `len` bytes that every client reads as the start of a batch cut short, as a broker's
/// last batch may be at a fetch's byte limit: what keeps a partition's records section its
/// size when a policy rewrote its batches smaller, so that lengths already sent stay true.
/// Fewer than 12 bytes are too short to hold a batch's length; from 12, the length
/// says 1 GiB (more than any section holds, and far from overflowing a client's `int` when
/// it adds the 12 bytes before it) and, from 17, the magic byte is 2, which the Java client
/// checks before it sees the batch does not end.
pub fn filler(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill(&mut out);
    out
}

/// Overwrites `region` with [`filler`] of its length.
pub fn fill(region: &mut [u8]) {
    region.fill(0);
    if region.len() >= 12 {
        region[..8].copy_from_slice(&(-1i64).to_be_bytes());
        region[8..12].copy_from_slice(&(1i32 << 30).to_be_bytes());
    }
    if region.len() > crate::records::MAGIC_OFFSET {
        region[crate::records::MAGIC_OFFSET] = 2;
    }
}

/// The batch of `records` under `header` (its record count is the records'), the record at
/// `i` written with offset delta `offset_delta(i)`.
fn encode(
    records: &[NewRecord<'_>],
    offset_delta: impl Fn(usize) -> i32,
    codec: Codec,
    header: &BatchHeader,
) -> BytesMut {
    let mut section = Vec::new();
    for (i, record) in records.iter().enumerate() {
        write_record(&mut section, record, offset_delta(i), header.base_timestamp);
    }
    let section = match codec {
        Codec::None => section,
        codec => compress(codec, &section),
    };
    let mut out = BytesMut::with_capacity(BATCH_HEAD + section.len());
    out.put_i64(header.base_offset);
    out.put_i32((BATCH_HEAD - 12 + section.len()) as i32);
    out.put_i32(header.partition_leader_epoch);
    out.put_u8(2);
    out.put_u32(0); // crc, below
    out.put_i16(header.attributes);
    out.put_i32(header.last_offset_delta);
    out.put_i64(header.base_timestamp);
    out.put_i64(header.max_timestamp);
    out.put_i64(header.producer_id);
    out.put_i16(header.producer_epoch);
    out.put_i32(header.base_sequence);
    out.put_i32(records.len() as i32);
    out.put_slice(&section);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

fn codec_bits(codec: Codec) -> i16 {
    match codec {
        Codec::None => 0,
        Codec::Gzip => 1,
        Codec::Snappy => 2,
        Codec::Lz4 => 3,
        Codec::Zstd => 4,
    }
}

fn write_record(out: &mut Vec<u8>, record: &NewRecord<'_>, offset_delta: i32, base_timestamp: i64) {
    let mut body = Vec::with_capacity(16 + record.key.map_or(0, <[u8]>::len) + record.value.map_or(0, <[u8]>::len));
    body.push(0); // attributes
    varlong(&mut body, record.timestamp.wrapping_sub(base_timestamp));
    varlong(&mut body, i64::from(offset_delta));
    bytes_field(&mut body, record.key);
    bytes_field(&mut body, record.value);
    varlong(&mut body, record.headers.len() as i64);
    for (key, value) in &record.headers {
        bytes_field(&mut body, Some(key));
        bytes_field(&mut body, *value);
    }
    varlong(out, body.len() as i64);
    out.extend_from_slice(&body);
}

fn bytes_field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => varlong(out, -1),
        Some(bytes) => {
            varlong(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

/// A zigzag varint (a varint of an int32 is the same bytes).
fn varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (raw & 0x7f) as u8;
        raw >>= 7;
        if raw == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::RecordBatchDecoder;

    use super::*;
    use crate::record_view::batch_records;

    fn records() -> Vec<NewRecord<'static>> {
        vec![
            NewRecord {
                timestamp: 1_700_000_000_500,
                key: Some(b"k0"),
                value: Some(b"v0"),
                headers: vec![(b"dup", Some(b"a")), (b"dup", Some(b"b"))],
            },
            NewRecord { timestamp: 1_700_000_000_000, key: None, value: None, headers: vec![(b"h", None)] },
        ]
    }

    #[test]
    fn a_written_batch_reads_back_as_written_by_the_reference_decoder_and_ours() {
        for codec in [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let batch = write_batch(&records(), codec, None);
            let header = BatchHeader::read(&batch).unwrap();
            assert_eq!((header.codec(), header.records, header.producer_id), (Some(codec), 2, -1));
            assert_eq!((header.base_timestamp, header.max_timestamp), (1_700_000_000_000, 1_700_000_000_500));
            let mut scratch = Vec::new();
            let read: Vec<NewRecord<'_>> = batch_records(&batch, 1 << 20, &mut scratch)
                .unwrap()
                .map(|r| NewRecord::from_view(&r.unwrap(), header.base_timestamp))
                .collect();
            assert_eq!(read, records(), "{codec}: repeated header keys kept, timestamps and nulls too");
            if codec == Codec::None {
                // The reference decoder checks the CRC and the lengths.
                let mut bytes = batch.clone().freeze();
                let decoded = RecordBatchDecoder::decode(&mut bytes).unwrap();
                assert_eq!(decoded.records.len(), 2);
                assert_eq!(decoded.records[1].offset, 1);
            }
        }
    }

    #[test]
    fn a_rewritten_batch_keeps_the_clients_header_whole() {
        let mut client = write_batch(&records(), Codec::Lz4, None).to_vec();
        client[43..51].copy_from_slice(&7i64.to_be_bytes()); // producer id
        client[51..53].copy_from_slice(&3i16.to_be_bytes()); // epoch
        client[53..57].copy_from_slice(&41i32.to_be_bytes()); // base sequence
        client[22] |= 0x10; // transactional
        let header = BatchHeader::read(&client).unwrap();
        let mut changed = records();
        changed[0].headers.push((b"added", Some(b"yes")));
        let rewritten = rewrite_batch(&header, &changed);
        let again = BatchHeader::read(&rewritten).unwrap();
        assert_eq!(again, header, "producer id, epoch, sequence, flags, timestamps, codec: all kept");
        let mut scratch = Vec::new();
        let read: Vec<NewRecord<'_>> = batch_records(&rewritten, 1 << 20, &mut scratch)
            .unwrap()
            .map(|r| NewRecord::from_view(&r.unwrap(), again.base_timestamp))
            .collect();
        assert_eq!(read, changed);
    }

    #[test]
    fn a_refilled_batch_keeps_every_records_offset_and_the_batchs_last() {
        let mut served = write_batch(&records(), Codec::Zstd, None).to_vec();
        served[..8].copy_from_slice(&1_000i64.to_be_bytes()); // the broker's base offset
        let crc = crc32c::crc32c(&served[21..]);
        served[17..21].copy_from_slice(&crc.to_be_bytes());
        let header = BatchHeader::read(&served).unwrap();
        assert_eq!((header.base_offset, header.last_offset_delta), (1_000, 1));
        // The first record removed: the second keeps offset 1001, the batch still ends there.
        let kept = &records()[1..];
        let refilled = refill_batch(&header, kept, &[1], Codec::None);
        let mut bytes = refilled.clone().freeze();
        let decoded = RecordBatchDecoder::decode(&mut bytes).unwrap();
        assert_eq!(decoded.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [1_001]);
        let again = BatchHeader::read(&refilled).unwrap();
        assert_eq!(again, BatchHeader { attributes: header.attributes & !0x07, records: 1, ..header });
        // Every record removed: an empty batch that still spans offsets 1000..=1001.
        let empty = refill_batch(&header, &[], &[], Codec::None);
        let again = BatchHeader::read(&empty).unwrap();
        assert_eq!((again.base_offset, again.last_offset_delta, again.records), (1_000, 1, 0));
        assert_eq!(empty.len(), crate::records::BATCH_HEAD);
        assert_eq!(crc32c::crc32c(&empty[21..]).to_be_bytes(), empty[17..21]);
    }

    #[test]
    fn filler_after_whole_batches_is_read_as_a_batch_cut_short() {
        let batch = write_batch(&records(), Codec::None, None);
        for len in [0, 1, 11, 12, 16, 17, 60, 4096] {
            let mut section = batch.to_vec();
            section.extend(filler(len));
            assert_eq!(crate::records::count_records(&section), 2, "{len}");
            assert_eq!(crate::records::batches(&section).count(), 1, "{len}");
            // The reference decoder reads the whole batch and stops at the filler.
            let mut bytes = bytes::Bytes::from(section);
            let decoded = RecordBatchDecoder::decode(&mut bytes).unwrap();
            assert_eq!(decoded.records.len(), 2);
            assert_eq!(bytes.len(), len, "the filler is left unread");
        }
    }

    #[test]
    fn a_clients_batch_header_is_read() {
        let batch = write_batch(&records(), Codec::None, None);
        let mut sequenced = batch.to_vec();
        sequenced[43..51].copy_from_slice(&7i64.to_be_bytes());
        sequenced[22] |= 0x10;
        let header = BatchHeader::read(&sequenced).unwrap();
        assert!(header.is_sequenced() && header.is_transactional() && !header.is_control());
        assert_eq!(BatchHeader::read(&sequenced[..60]), None);
    }
}
