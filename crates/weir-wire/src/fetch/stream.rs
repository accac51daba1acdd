//! A Fetch response read while it streams through, a piece at a time: the facts
//! [`super::count_fetch_response`] gives of a whole body (partitions with their records counted,
//! the session, where the leader hints sit), without the response ever being held whole. The
//! records are passed over batch by batch, reading only each batch's head.

use super::{FetchSummary, PartitionCount, FIRST_FLEXIBLE, FIRST_NODE_ENDPOINTS, FIRST_TOPIC_ID};
use crate::records::{batch_head, BatchHead, BATCH_HEAD};
use crate::scan::{node_endpoints, Cursor, ScanError, TopicRef, TRUNCATED};

/// The largest piece the scan needs in one run of bytes (a topic name, a partition's tagged
/// fields, the response's leader hints): a caller's buffer must be able to hold this much.
pub const MAX_PIECE: usize = 64 * 1024;

const MESSAGE: &str = "Fetch response";

/// A topic as a digest keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TopicKey {
    Name(String),
    Id([u8; 16]),
}

impl TopicKey {
    fn of(topic: TopicRef<'_>) -> Self {
        match topic {
            TopicRef::Name(name) => TopicKey::Name(name.to_owned()),
            TopicRef::Id(id) => TopicKey::Id(id),
        }
    }

    fn as_ref(&self) -> TopicRef<'_> {
        match self {
            TopicKey::Name(name) => TopicRef::Name(name),
            TopicKey::Id(id) => TopicRef::Id(*id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CountedPartition {
    /// Index into `FetchDigest::topics`.
    topic: usize,
    partition: i32,
    error_code: i16,
    record_bytes: usize,
    records: u64,
}

/// What a streamed Fetch response said, kept for the filters that read it after it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchDigest {
    pub summary: FetchSummary,
    topics: Vec<TopicKey>,
    partitions: Vec<CountedPartition>,
}

impl FetchDigest {
    /// Every partition, in response order.
    pub fn partitions(&self) -> impl Iterator<Item = PartitionCount<'_>> {
        self.partitions.iter().map(|p| PartitionCount {
            topic: self.topics[p.topic].as_ref(),
            partition: p.partition,
            error_code: p.error_code,
            record_bytes: p.record_bytes,
            records: p.records,
        })
    }
}

/// Where one partition sits in the frame: what a caller that rewrites records in place needs
/// (see [`FetchStream::keep_spans`]). Offsets are the frame's, length prefix included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpan {
    /// Its position among the response's partitions ([`FetchStream::fail_partition`]).
    pub index: usize,
    /// Index of its topic among those read so far ([`FetchStream::topic`]).
    pub topic: usize,
    pub partition: i32,
    /// Where its error code (an i16) is.
    pub error_code_at: usize,
    /// Its records section (without the length before it).
    pub records: std::ops::Range<usize>,
}

/// Which piece of the response comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// Length, response header, the fixed top-level fields, the topic count.
    Head,
    /// A topic's name or id and its partition count.
    Topic,
    /// A partition's fixed fields up to its aborted-transaction count.
    Partition,
    /// One aborted transaction.
    Aborted,
    /// The preferred read replica and the records' length.
    RecordsLength,
    /// The next batch's head, or the bytes still to pass over.
    Records,
    PartitionTags,
    TopicTags,
    /// The response's tagged fields (leader hints), its last bytes.
    ResponseTags,
    Done,
}

/// Reads one Fetch response frame (length prefix included) fed in order, a piece at a time.
pub struct FetchStream {
    version: i16,
    flexible: bool,
    /// The frame's size, prefix included.
    total: usize,
    /// Frame offset of the next byte to be fed.
    at: usize,
    /// Frame offset of the body (after the response header), once known.
    body_start: usize,
    next: Piece,
    topics_left: usize,
    partitions_left: usize,
    aborted_left: usize,
    /// Bytes of the current records field not yet passed over.
    records_left: usize,
    /// Bytes of the current batch (or partial tail) still to pass over.
    skip: usize,
    current: CountedPartition,
    /// Frame offsets of the current partition's first byte and of its records section.
    partition_start: usize,
    records_start: usize,
    /// Partitions read since the caller last took them; None unless asked for.
    spans: Option<Vec<PartitionSpan>>,
    digest: FetchDigest,
}

impl FetchStream {
    /// A scan of a Fetch response of `version` whose frame is `total` bytes long.
    pub fn new(version: i16, total: usize) -> Self {
        Self {
            version,
            flexible: version >= FIRST_FLEXIBLE,
            total,
            at: 0,
            body_start: 0,
            next: Piece::Head,
            topics_left: 0,
            partitions_left: 0,
            aborted_left: 0,
            records_left: 0,
            skip: 0,
            current: CountedPartition { topic: 0, partition: 0, error_code: 0, record_bytes: 0, records: 0 },
            partition_start: 0,
            records_start: 0,
            spans: None,
            digest: FetchDigest {
                summary: FetchSummary { error_code: 0, session_id: 0, node_endpoints: None },
                topics: Vec::new(),
                partitions: Vec::new(),
            },
        }
    }

    /// Keeps where each partition sits ([`FetchStream::take_spans`]), for a caller that
    /// rewrites records in place.
    pub fn keep_spans(mut self) -> Self {
        self.spans = Some(Vec::new());
        self
    }

    /// The partitions read whole since the last call (only with [`FetchStream::keep_spans`]).
    pub fn take_spans(&mut self) -> Vec<PartitionSpan> {
        self.spans.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Records that the caller failed the partition at `index` (see [`PartitionSpan`]) with
    /// `error_code` and served none of its records: what the digest then says of it.
    pub fn fail_partition(&mut self, index: usize, error_code: i16) {
        if let Some(partition) = self.digest.partitions.get_mut(index) {
            (partition.error_code, partition.records, partition.record_bytes) = (error_code, 0, 0);
        }
    }

    /// How many topics were read so far (the last one may still be being read).
    pub fn topics_read(&self) -> usize {
        self.digest.topics.len()
    }

    /// The topic at `index` in response order, once read.
    pub fn topic(&self, index: usize) -> Option<TopicRef<'_>> {
        self.digest.topics.get(index).map(TopicKey::as_ref)
    }

    /// The partition being read, if the scan is inside one: its topic's index and the frame
    /// offset of its first byte.
    pub fn partition_in_progress(&self) -> Option<(usize, usize)> {
        matches!(self.next, Piece::Aborted | Piece::RecordsLength | Piece::Records | Piece::PartitionTags)
            .then_some((self.current.topic, self.partition_start))
    }

    /// How many bytes of the frame were fed and read so far.
    pub fn consumed(&self) -> usize {
        self.at
    }

    /// Frame offset of the body (after the response header), once the head was read.
    pub fn body_start(&self) -> usize {
        self.body_start
    }

    /// Reads what it can of `input`: the frame's bytes from [`FetchStream::consumed`] on.
    /// Returns how many it used; the rest (the start of a piece not yet whole) must be fed
    /// again with what follows it.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, ScanError> {
        if input.len() > self.total - self.at {
            return Err(self.error(0, "more bytes than the frame's length"));
        }
        let mut used = 0;
        loop {
            let rest = &input[used..];
            let more = self.total - self.at - rest.len();
            match self.step(rest, more) {
                Ok(Some(n)) => {
                    used += n;
                    self.at += n;
                }
                Ok(None) => return Ok(used),
                Err(err) if err.what == TRUNCATED && more > 0 => {
                    if rest.len() >= MAX_PIECE {
                        return Err(self.error(0, "a field longer than the streaming window"));
                    }
                    return Ok(used);
                }
                Err(err) => return Err(self.error(err.offset, err.what)),
            }
        }
    }

    /// The digest, once the whole frame was fed.
    pub fn finish(self) -> Result<FetchDigest, ScanError> {
        if self.next != Piece::Done || self.at != self.total {
            return Err(self.error(0, TRUNCATED));
        }
        Ok(self.digest)
    }

    /// An error at `offset` bytes into the piece being read, located in the body.
    fn error(&self, offset: usize, what: &'static str) -> ScanError {
        ScanError {
            message: MESSAGE,
            version: self.version,
            offset: (self.at + offset).saturating_sub(self.body_start),
            what,
        }
    }

    /// Reads the next piece from `rest`; `None` when it needs more bytes (or the frame is done).
    fn step(&mut self, rest: &[u8], more: usize) -> Result<Option<usize>, ScanError> {
        let (version, flexible) = (self.version, self.flexible);
        let mut c = Cursor::streaming(rest, MESSAGE, version, more);
        match self.next {
            Piece::Head => {
                c.i32()?; // the length, which the caller has checked
                c.i32()?; // correlation id, which the caller has checked
                if flexible {
                    c.skip_tagged_fields()?;
                }
                // Known now, so that errors below are located in the body.
                self.body_start = self.at + c.pos();
                c.i32()?; // throttle_time_ms
                if version >= 7 {
                    self.digest.summary.error_code = c.i16()?;
                    self.digest.summary.session_id = c.i32()?;
                }
                self.topics_left = c.array_len(flexible)?;
                self.next = self.after_topics();
            }
            Piece::Topic => {
                let topic = c.topic_ref(flexible, version >= FIRST_TOPIC_ID)?;
                self.partitions_left = c.array_len(flexible)?;
                self.digest.topics.push(TopicKey::of(topic));
                self.next = if self.partitions_left > 0 { Piece::Partition } else { self.after_partitions() };
            }
            Piece::Partition => {
                self.partition_start = self.at;
                let partition = c.i32()?;
                let error_code = c.i16()?;
                c.i64()?; // high_watermark
                c.i64()?; // last_stable_offset
                if version >= 5 {
                    c.i64()?; // log_start_offset
                }
                self.aborted_left = c.array_len(flexible)?;
                let topic = self.digest.topics.len() - 1;
                self.current = CountedPartition { topic, partition, error_code, record_bytes: 0, records: 0 };
                self.next = if self.aborted_left > 0 { Piece::Aborted } else { Piece::RecordsLength };
            }
            Piece::Aborted => {
                c.i64()?; // producer_id
                c.i64()?; // first_offset
                if flexible {
                    c.skip_tagged_fields()?;
                }
                self.aborted_left -= 1;
                if self.aborted_left == 0 {
                    self.next = Piece::RecordsLength;
                }
            }
            Piece::RecordsLength => {
                if version >= 11 {
                    c.i32()?; // preferred_read_replica
                }
                let length = c.length(flexible, false)?.unwrap_or(0);
                if length > c.remaining() {
                    return Err(c.err(TRUNCATED_FIELD));
                }
                (self.current.record_bytes, self.records_left) = (length, length);
                self.records_start = self.at + c.pos();
                self.next = Piece::Records;
            }
            Piece::Records => return Ok(self.pass_records(rest)),
            Piece::PartitionTags => {
                c.skip_tagged_fields()?;
                self.end_partition();
            }
            Piece::TopicTags => {
                c.skip_tagged_fields()?;
                self.next = self.end_topic();
            }
            Piece::ResponseTags => {
                let hints = node_endpoints(&mut c, version >= FIRST_NODE_ENDPOINTS)?;
                let shift = self.at - self.body_start;
                self.digest.summary.node_endpoints = hints.map(|mut at| {
                    at.tag_offset += shift;
                    at.value = at.value.start + shift..at.value.end + shift;
                    at
                });
                self.next = Piece::Done;
            }
            Piece::Done => {
                return if rest.is_empty() { Ok(None) } else { Err(c.err("bytes after the end of the response")) };
            }
        }
        Ok(Some(c.pos()))
    }

    /// Passes over the records, counting each batch from its head: `Some(bytes used)`, or
    /// `None` when a batch head is not all there yet.
    fn pass_records(&mut self, rest: &[u8]) -> Option<usize> {
        if self.skip > 0 {
            let n = self.skip.min(rest.len());
            self.skip -= n;
            return (n > 0).then_some(n);
        }
        if self.records_left == 0 {
            if self.flexible {
                self.next = Piece::PartitionTags;
            } else {
                self.end_partition();
            }
            return Some(0);
        }
        let head = BATCH_HEAD.min(self.records_left);
        if rest.len() < head {
            return None;
        }
        match batch_head(&rest[..head], self.records_left) {
            BatchHead::Whole { size, records } => {
                self.current.records += records;
                self.skip = size;
            }
            BatchHead::Partial => self.skip = self.records_left,
        }
        self.records_left -= self.skip;
        Some(0)
    }

    fn end_partition(&mut self) {
        if let Some(spans) = &mut self.spans {
            spans.push(PartitionSpan {
                index: self.digest.partitions.len(),
                topic: self.current.topic,
                partition: self.current.partition,
                error_code_at: self.partition_start + 4,
                records: self.records_start..self.records_start + self.current.record_bytes,
            });
        }
        self.digest.partitions.push(self.current.clone());
        self.partitions_left -= 1;
        self.next = if self.partitions_left > 0 { Piece::Partition } else { self.after_partitions() };
    }

    /// A topic's partitions are read: its tagged fields next (flexible versions), or it is done.
    fn after_partitions(&mut self) -> Piece {
        if self.flexible {
            Piece::TopicTags
        } else {
            self.end_topic()
        }
    }

    fn end_topic(&mut self) -> Piece {
        self.topics_left -= 1;
        self.after_topics()
    }

    fn after_topics(&self) -> Piece {
        match (self.topics_left, self.flexible) {
            (0, true) => Piece::ResponseTags,
            (0, false) => Piece::Done,
            _ => Piece::Topic,
        }
    }
}

/// A records field longer than what is left of the frame.
const TRUNCATED_FIELD: &str = "records longer than the message";
