//! A partition's fetched records rewritten record by record, every record kept at its own
//! offset: what every policy that changes what a consumer reads (fetch transforms,
//! decryption) shares. A policy judges each record ([`Fate`]); batches where none changes,
//! control batches and empty ones go on as the same bytes; the others are refilled
//! ([`weir_wire::batch::refill_batch`]): records taken out leave gaps, a batch left with none
//! is an empty batch spanning its offsets, and rewritten batches are written uncompressed
//! (they go to the local client beside the sidecar). A partial batch at the end (cut by the
//! fetch's byte limit) is left out of a changed answer, so that none of its bytes escapes the
//! policy; the consumer reads it whole at its next fetch.

use bytes::{Bytes, BytesMut};
use weir_wire::batch::{refill_batch, BatchHeader, NewRecord};
use weir_wire::compression::Codec;
use weir_wire::record_view::{batch_records, RecordView};

/// What becomes of one fetched record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Unchanged,
    /// Taken out: its offset becomes a gap.
    Dropped,
    Changed(Rewritten),
}

/// A record's new value and headers (its key and timestamp stay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The value in its place; None keeps it.
    pub value: Option<Option<Vec<u8>>>,
    /// Every header it keeps or gets, in order.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Rewritten {
    /// A record with its own headers, and a value to change.
    pub fn of(view: &RecordView<'_>) -> Self {
        Rewritten {
            value: None,
            headers: view.headers().map(|(key, value)| (key.to_vec(), value.map(<[u8]>::to_vec))).collect(),
        }
    }
}

/// As [`refill_partition`], into `out` (cleared first; a buffer the caller keeps, so that a
/// megabyte section costs no fresh allocation), the section kept its original size (what a
/// response rewritten while it streams needs: its length went out first). Returns whether
/// anything changed; only then does `out` hold the section. A rewritten section that came out
/// smaller ends with [`weir_wire::batch::filler`], which clients read as a batch cut short and
/// skip; one that grew keeps the whole batches that fit, then filler (the consumer fetches the
/// rest from the next offset). Fails when not even the first batch fits.
pub fn refill_partition_same_size(
    records: &[u8],
    limit: usize,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
    judge: impl FnMut(&RecordView<'_>) -> Result<Fate, String>,
) -> Result<bool, String> {
    if !refill_partition_into(records, limit, scratch, out, judge)? {
        return Ok(false);
    }
    let fits: usize = if out.len() <= records.len() {
        out.len()
    } else {
        weir_wire::records::batches(out)
            .scan(0, |end, batch| {
                *end += batch.size;
                Some(*end)
            })
            .take_while(|end| *end <= records.len())
            .last()
            .unwrap_or(0)
    };
    if fits == 0 && !out.is_empty() {
        return Err(format!(
            "its first batch rewritten is longer than the {} bytes fetched ({} rewritten in all)",
            records.len(),
            out.len()
        ));
    }
    out.resize(records.len(), 0);
    weir_wire::batch::fill(&mut out[fits..]);
    Ok(true)
}

/// `records` (a partition's, as fetched) with each record's fate applied; None when every
/// record is unchanged and there is no partial tail (the same bytes go on). Fails when a
/// batch cannot be read: then none of the partition's records may go.
pub fn refill_partition(
    records: &[u8],
    limit: usize,
    scratch: &mut Vec<u8>,
    judge: impl FnMut(&RecordView<'_>) -> Result<Fate, String>,
) -> Result<Option<Bytes>, String> {
    let mut out = Vec::new();
    Ok(refill_partition_into(records, limit, scratch, &mut out, judge)?.then(|| Bytes::from(out)))
}

/// As [`refill_partition`], into `out` (cleared first): whether anything changed.
fn refill_partition_into(
    records: &[u8],
    limit: usize,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
    mut judge: impl FnMut(&RecordView<'_>) -> Result<Fate, String>,
) -> Result<bool, String> {
    out.clear();
    let mut changed = false;
    let mut done = 0;
    for batch in weir_wire::records::batches(records) {
        let header = BatchHeader::read(batch.bytes).ok_or("a batch of a message format before v2")?;
        let refilled = if header.is_control() || header.records == 0 {
            None
        } else {
            refill(batch.bytes, &header, limit, scratch, &mut judge)
                .map_err(|why| format!("the batch at offset {}: {why}", header.base_offset))?
        };
        match refilled {
            Some(refilled) => {
                if !changed {
                    out.reserve(records.len());
                    out.extend_from_slice(&records[..done]);
                    changed = true;
                }
                out.extend_from_slice(&refilled);
            }
            None if changed => out.extend_from_slice(batch.bytes),
            None => {}
        }
        done += batch.size;
    }
    if !changed && done != records.len() {
        out.extend_from_slice(&records[..done]);
        changed = true;
    }
    Ok(changed)
}

/// One batch with its records' fates applied; None when none changed.
fn refill(
    batch: &[u8],
    header: &BatchHeader,
    limit: usize,
    scratch: &mut Vec<u8>,
    judge: &mut impl FnMut(&RecordView<'_>) -> Result<Fate, String>,
) -> Result<Option<BytesMut>, String> {
    let views: Vec<RecordView<'_>> = batch_records(batch, limit, scratch)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut fates = Vec::with_capacity(views.len());
    for view in &views {
        fates.push(judge(view)?);
    }
    if fates.iter().all(|fate| *fate == Fate::Unchanged) {
        return Ok(None);
    }
    let mut kept = Vec::with_capacity(views.len());
    let mut deltas = Vec::with_capacity(views.len());
    for (view, fate) in views.iter().zip(&fates) {
        let record = match fate {
            Fate::Dropped => continue,
            Fate::Unchanged => NewRecord::from_view(view, header.base_timestamp),
            Fate::Changed(rewritten) => {
                let mut record = NewRecord::from_view(view, header.base_timestamp);
                if let Some(value) = &rewritten.value {
                    record.value = value.as_deref();
                }
                record.headers = rewritten.headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
                record
            }
        };
        kept.push(record);
        deltas.push(view.offset_delta);
    }
    Ok(Some(refill_batch(header, &kept, &deltas, Codec::None)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_wire::batch::write_batch;

    fn batch(values: &[&[u8]]) -> BytesMut {
        let records: Vec<NewRecord<'_>> = values
            .iter()
            .map(|value| NewRecord { timestamp: 0, key: None, value: Some(value), headers: Vec::new() })
            .collect();
        write_batch(&records, Codec::None, None)
    }

    /// Each value replaced by `to(value)`.
    fn rewritten(records: &[u8], to: impl Fn(&[u8]) -> Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        let mut out = vec![7; 3];
        let changed = refill_partition_same_size(records, 1 << 20, &mut Vec::new(), &mut out, |view| {
            let mut rewritten = Rewritten::of(view);
            rewritten.value = Some(view.value.map(&to));
            Ok(Fate::Changed(rewritten))
        })?;
        Ok(changed.then_some(out))
    }

    /// The values of the whole batches in `records`, and the bytes after them.
    fn values(records: &[u8]) -> (Vec<Vec<u8>>, usize) {
        let mut out = Vec::new();
        let mut whole = 0;
        for b in weir_wire::records::batches(records) {
            whole += b.size;
            for view in batch_records(b.bytes, 1 << 20, &mut Vec::new()).unwrap() {
                out.push(view.unwrap().value.unwrap().to_vec());
            }
        }
        (out, records.len() - whole)
    }

    #[test]
    fn a_rewritten_section_keeps_its_size_whether_it_shrank_or_grew() {
        let mut records = batch(&[b"aaaaaaaaaa", b"bbbbbbbbbb"]);
        records.extend_from_slice(&batch(&[b"cccccccccc"]));
        let records = records.freeze();

        let shrunk = rewritten(&records, |v| v[..2].to_vec()).unwrap().unwrap();
        assert_eq!(shrunk.len(), records.len());
        assert_eq!(values(&shrunk).0, [b"aa".to_vec(), b"bb".to_vec(), b"cc".to_vec()]);

        // Grown by 30 bytes a value: the first batch still fits, the second no longer does and
        // is left for the next fetch, its place filled.
        let grown = rewritten(&records, |v| [v, &[b'+'; 30]].concat()).unwrap().unwrap();
        assert_eq!(grown.len(), records.len());
        let (kept, rest) = values(&grown);
        assert_eq!(kept.len(), 2, "the first batch's two records");
        assert!(rest > 0);

        // Not even the first batch fits: an error, never a cut batch.
        let err = rewritten(&records, |v| [v, &[b'+'; 200]].concat()).unwrap_err();
        assert!(err.contains("first batch"), "{err}");
    }
}
