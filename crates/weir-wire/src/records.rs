//! Counting records in a `records` field by reading record-batch headers only.
//!
//! A v2 record batch starts with `baseOffset: i64, batchLength: i32`, and its record count sits
//! at byte 57. Legacy (v0/v1) message sets count one record per entry. Nothing is decompressed.
//! Control batches (transaction markers) are not the application's records and are not counted.

pub(crate) const MAGIC_OFFSET: usize = 16;
pub(crate) const ATTRIBUTES_OFFSET: usize = 21;
/// The `isControlBatch` bit of a v2 batch's attributes.
const CONTROL_BATCH: u8 = 0x20;
const RECORD_COUNT_OFFSET: usize = 57;
const LOG_OVERHEAD: usize = 12;
/// The bytes of a batch that [`batch_head`] reads: up to and including the v2 record count.
pub const BATCH_HEAD: usize = RECORD_COUNT_OFFSET + 4;

/// What the start of a batch says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchHead {
    /// A whole batch of `size` bytes holding `records` application records.
    Whole { size: usize, records: u64 },
    /// The batch does not end within the bytes left (a Fetch response may end with a partial
    /// batch), or its length is negative: the rest is not counted.
    Partial,
}

/// Reads the batch starting at `head`, where `left` bytes of the records field remain
/// (`head` holds the first `min(left, BATCH_HEAD)` of them, or more).
pub fn batch_head(head: &[u8], left: usize) -> BatchHead {
    let Some(prefix) = head.get(..LOG_OVERHEAD) else { return BatchHead::Partial };
    let length = i32::from_be_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
    let Ok(length) = usize::try_from(length) else { return BatchHead::Partial };
    let size = LOG_OVERHEAD + length;
    if size > left {
        return BatchHead::Partial;
    }
    let head = &head[..head.len().min(size)];
    let control = head.get(ATTRIBUTES_OFFSET + 1).is_some_and(|low| low & CONTROL_BATCH != 0);
    let records = match head.get(MAGIC_OFFSET) {
        Some(2) if control => 0,
        Some(2) => head
            .get(RECORD_COUNT_OFFSET..BATCH_HEAD)
            .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]).max(0) as u64)
            .unwrap_or(0),
        Some(_) => 1,
        None => 0,
    };
    BatchHead::Whole { size, records }
}

/// The records blob with its first whole batch sent twice (fault injection: a client must
/// skip what it already has); None when it holds no whole batch.
pub fn duplicate_first_batch(records: &[u8]) -> Option<bytes::Bytes> {
    let BatchHead::Whole { size, .. } = batch_head(records, records.len()) else { return None };
    let mut out = bytes::BytesMut::with_capacity(records.len() + size);
    out.extend_from_slice(&records[..size]);
    out.extend_from_slice(records);
    Some(out.freeze())
}

/// The records blob with the stored CRC of its first whole v2 batch inverted, so that the
/// batch fails a client's CRC check (fault injection); None when it holds no whole v2 batch.
pub fn corrupt_first_batch(records: &[u8]) -> Option<bytes::Bytes> {
    const CRC_OFFSET: usize = MAGIC_OFFSET + 1;
    let BatchHead::Whole { size, .. } = batch_head(records, records.len()) else { return None };
    if size < ATTRIBUTES_OFFSET || records[MAGIC_OFFSET] != 2 {
        return None;
    }
    let mut out = bytes::BytesMut::from(records);
    out[CRC_OFFSET..ATTRIBUTES_OFFSET].iter_mut().for_each(|b| *b = !*b);
    Some(out.freeze())
}

/// Who wrote the first batch of a records blob and where it stands in that producer's
/// sequence: an idempotent producer's id, epoch and the batch's base sequence (v2 batches);
/// None for a producer that is not idempotent (id -1) or a blob too short.
pub fn producer_sequence(records: &[u8]) -> Option<ProducerSequence> {
    const PRODUCER_ID: usize = 43;
    if records.get(MAGIC_OFFSET) != Some(&2) {
        return None;
    }
    let b = records.get(PRODUCER_ID..RECORD_COUNT_OFFSET)?;
    let producer_id = i64::from_be_bytes(b[..8].try_into().ok()?);
    let epoch = i16::from_be_bytes([b[8], b[9]]);
    let base_sequence = i32::from_be_bytes([b[10], b[11], b[12], b[13]]);
    (producer_id >= 0).then_some(ProducerSequence { producer_id, epoch, base_sequence })
}

/// A copy of a records blob that any producer may write anywhere: each v2 batch loses its
/// producer id, epoch and sequence (-1) and its transactional flag, and gets its CRC again;
/// control batches are left out, as is a trailing partial batch. What a shadow writes: the
/// original producer's sequence means nothing on another topic, and a transaction marker is
/// not the shadowing sidecar's to write. Returns the copy and how many records it holds.
pub fn plain_copy(records: &[u8]) -> (bytes::Bytes, u64) {
    const CRC_OFFSET: usize = MAGIC_OFFSET + 1;
    const PRODUCER_ID: usize = 43;
    const TRANSACTIONAL: u8 = 0x10;
    let mut out = bytes::BytesMut::with_capacity(records.len());
    let (mut pos, mut count) = (0usize, 0u64);
    while let BatchHead::Whole { size, records: n } = batch_head(&records[pos..], records.len() - pos) {
        let batch = &records[pos..pos + size];
        pos += size;
        if batch.get(MAGIC_OFFSET) != Some(&2) {
            out.extend_from_slice(batch);
            count += n;
            continue;
        }
        if size < BATCH_HEAD || batch[ATTRIBUTES_OFFSET + 1] & CONTROL_BATCH != 0 {
            continue;
        }
        let start = out.len();
        out.extend_from_slice(batch);
        let copy = &mut out[start..];
        copy[ATTRIBUTES_OFFSET + 1] &= !TRANSACTIONAL;
        copy[PRODUCER_ID..RECORD_COUNT_OFFSET].fill(0xff);
        let crc = crc32c::crc32c(&copy[ATTRIBUTES_OFFSET..]);
        copy[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
        count += n;
    }
    (out.freeze(), count)
}

/// See [`producer_sequence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSequence {
    pub producer_id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

/// One whole batch of a `records` blob, as its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo<'a> {
    /// Its bytes, header included, as written (compressed).
    pub bytes: &'a [u8],
    /// Its size in bytes, header included (as written: compressed).
    pub size: usize,
    /// Its attributes (compression codec in the low three bits), for a v2 batch; None for
    /// legacy message sets.
    pub attributes: Option<i16>,
}

/// The whole batches of a `records` blob, in order, read from their headers; a trailing
/// partial batch is left out.
pub fn batches(records: &[u8]) -> impl Iterator<Item = BatchInfo<'_>> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let BatchHead::Whole { size, .. } = batch_head(&records[pos..], records.len() - pos) else { return None };
        let batch = &records[pos..pos + size];
        pos += size;
        let attributes = match (batch.get(MAGIC_OFFSET), batch.get(ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2)) {
            (Some(2), Some(a)) => Some(i16::from_be_bytes([a[0], a[1]])),
            _ => None,
        };
        Some(BatchInfo { bytes: batch, size, attributes })
    })
}

/// Records in a `records` blob. A trailing partial batch (which Fetch responses may carry) is
/// ignored.
pub fn count_records(records: &[u8]) -> u64 {
    let mut pos = 0usize;
    let mut count = 0u64;
    while let BatchHead::Whole { size, records: n } = batch_head(&records[pos..], records.len() - pos) {
        count += n;
        pos += size;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::record_batch;

    #[test]
    fn batches_are_read_from_their_headers_and_a_partial_one_is_left_out() {
        let (one, two) = (record_batch(1, true), record_batch(3, false));
        let mut blob = [one.clone(), two.clone()].concat();
        blob.extend_from_slice(&two[..20]);
        let seen: Vec<BatchInfo> = batches(&blob).collect();
        let attributes = |b: &[u8]| Some(i16::from_be_bytes([b[21], b[22]]));
        assert_eq!(
            seen,
            [
                BatchInfo { bytes: &one, size: one.len(), attributes: attributes(&one) },
                BatchInfo { bytes: &two, size: two.len(), attributes: attributes(&two) }
            ]
        );
        assert_eq!(batches(&[]).count(), 0);
    }

    fn batch(n: usize) -> Vec<u8> {
        record_batch(n, false)
    }

    #[test]
    fn counts_across_batches_and_ignores_partial_tail() {
        let mut blob = batch(3);
        blob.extend(batch(5));
        assert_eq!(count_records(&blob), 8);
        let partial = batch(4);
        blob.extend_from_slice(&partial[..20]);
        assert_eq!(count_records(&blob), 8);
        assert_eq!(count_records(&[]), 0);
        assert_eq!(count_records(&[0xff; 11]), 0);
    }

    #[test]
    fn a_duplicated_batch_decodes_twice_and_a_corrupted_one_fails_its_crc() {
        use kafka_protocol::records::RecordBatchDecoder;
        let mut blob = batch(3);
        blob.extend(batch(2));
        let partial = batch(4);
        blob.extend_from_slice(&partial[..20]);
        let whole = blob.len() - 20;

        let doubled = duplicate_first_batch(&blob).unwrap();
        assert_eq!(count_records(&doubled), 3 + 3 + 2);
        let sets = RecordBatchDecoder::decode_all(&mut doubled.slice(..doubled.len() - 20)).unwrap();
        let offsets: Vec<Vec<i64>> = sets.iter().map(|s| s.records.iter().map(|r| r.offset).collect()).collect();
        assert_eq!(offsets, [vec![0, 1, 2], vec![0, 1, 2], vec![0, 1]]);

        let corrupt = corrupt_first_batch(&blob).unwrap();
        assert_eq!(corrupt.len(), blob.len());
        let err = RecordBatchDecoder::decode(&mut corrupt.slice(..whole)).unwrap_err();
        assert!(err.to_string().contains("Cyclic redundancy check failed"), "{err}");
        assert!(RecordBatchDecoder::decode(&mut bytes::Bytes::from(blob[..whole].to_vec())).is_ok());

        assert!(duplicate_first_batch(&partial[..20]).is_none());
        assert!(corrupt_first_batch(&[]).is_none());
    }

    #[test]
    fn an_idempotent_batch_says_its_producer_and_sequence() {
        use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
        let record = |offset: i64, sequence: i32| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 77,
            producer_epoch: 3,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence,
            timestamp: 0,
            key: None,
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: Default::default(),
        };
        let mut buf = bytes::BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression: Compression::None };
        RecordBatchEncoder::encode(&mut buf, &[record(0, 40), record(1, 41)], &options).unwrap();
        let expected = ProducerSequence { producer_id: 77, epoch: 3, base_sequence: 40 };
        assert_eq!(producer_sequence(&buf), Some(expected));
        assert_eq!(producer_sequence(&batch(2)), None, "a producer that is not idempotent (id -1)");
        assert_eq!(producer_sequence(&buf[..50]), None);
    }

    #[test]
    fn a_plain_copy_has_no_producer_no_transaction_no_marker_and_a_good_crc() {
        use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder};
        use kafka_protocol::records::{RecordEncodeOptions, TimestampType};
        let record = |offset: i64| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 77,
            producer_epoch: 3,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: 40 + offset as i32,
            timestamp: 1_700_000_000_000 + offset,
            key: Some(bytes::Bytes::from(format!("k{offset}"))),
            value: Some(bytes::Bytes::from(format!("v{offset}"))),
            headers: [("h".into(), Some(bytes::Bytes::from_static(b"x")))].into_iter().collect(),
        };
        let mut blob = bytes::BytesMut::new();
        for _ in 0..2 {
            let options = RecordEncodeOptions { version: 2, compression: Compression::None };
            RecordBatchEncoder::encode(&mut blob, &[record(0), record(1)], &options).unwrap();
        }
        blob.extend(record_batch(1, true));
        blob.extend_from_slice(&batch(4)[..30]);

        let (copy, records) = plain_copy(&blob);
        assert_eq!(records, 4);
        assert_eq!(producer_sequence(&copy), None);
        let sets = RecordBatchDecoder::decode_all(&mut copy.clone()).expect("CRCs hold");
        assert_eq!(sets.len(), 2, "two data batches; the marker and the partial tail are left out");
        for set in &sets {
            for (i, r) in set.records.iter().enumerate() {
                assert!(!r.transactional && !r.control);
                assert_eq!((r.producer_id, r.producer_epoch), (-1, -1));
                assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
                assert_eq!(r.value.as_deref(), Some(format!("v{i}").as_bytes()));
                assert_eq!(r.timestamp, 1_700_000_000_000 + i as i64);
                assert_eq!(r.headers.len(), 1);
            }
        }
        assert_eq!(plain_copy(&[]).1, 0);
    }

    #[test]
    fn transaction_markers_are_not_records() {
        let mut blob = batch(3);
        blob.extend(record_batch(1, true));
        assert_eq!(count_records(&blob), 3);
    }
}
