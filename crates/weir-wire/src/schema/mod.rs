//! Kafka's message schemas as data: for every request and response body at every version, a
//! walk program (its fields in wire order, with their nullability, tags and the resources they
//! name; fixed-width fields nobody reads merged into one skip).
//!
//! The programs in `generated.rs` are written by `weir-wire-gen` from the JSON message specs that
//! ship inside Apache Kafka's `kafka-clients` jar (`scripts/regen-schema.sh` regenerates them and
//! `--check` fails when the checked-in file differs). Nothing here is written by hand but the
//! shapes below; [`walk`] runs a program over a body without allocation and without trust in
//! declared lengths. Adding a Kafka version is a regeneration.

#[rustfmt::skip]
#[allow(clippy::all)]
mod generated;
pub mod walk;

pub use walk::{walk_body, Value, Visitor};

/// An inclusive range of message versions; empty when `lo > hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub lo: i16,
    pub hi: i16,
}

impl Versions {
    pub const NONE: Versions = Versions { lo: 0, hi: -1 };

    pub const fn contains(self, version: i16) -> bool {
        self.lo <= version && version <= self.hi
    }
}

/// What a field names, from the spec's `entityType` annotations, plus the few fields the spec
/// does not annotate but a proxy's policy must read (listed in `weir-wire-gen`'s
/// `annotations.rs`, with the reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    None,
    TopicName,
    /// A topic's id (`uuid` fields named `TopicId`; the spec does not annotate them).
    TopicId,
    /// An array whose elements each name one topic (a null one means "all topics" in the
    /// requests that allow it).
    Topics,
    GroupId,
    TransactionalId,
    /// FindCoordinator's key and keys, whose meaning depends on the key type.
    CoordinatorKey,
    CoordinatorKeyType,
    /// Describe/Alter/IncrementalAlterConfigs: the resource's type and name.
    ConfigResourceType,
    ConfigResourceName,
    /// Metadata: whether the broker may create the topics it is asked about.
    AutoCreateTopics,
    /// A response's `ErrorCode` inside an entry (a topic, a partition, a member, ...).
    ErrorCode,
    /// A response's `ErrorCode` of the whole body.
    TopLevelErrorCode,
    /// A response's `ThrottleTimeMs` (always of the whole body).
    ThrottleTime,
}

/// One step of a walk program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Fixed-width fields nobody reads, side by side: skipped together.
    Skip(u32),
    /// A fixed-width integer that names something (width 1, 2, 4 or 8).
    Int {
        width: u8,
        unsigned: bool,
        entity: Entity,
    },
    Bool(Entity),
    Uuid(Entity),
    String {
        nullable: bool,
        entity: Entity,
    },
    /// Bytes or a record batch set: length-prefixed, never read.
    Bytes {
        nullable: bool,
    },
    /// A nested struct; a nullable one is a marker byte first.
    Struct {
        nullable: bool,
        program: &'static Program,
    },
    /// An array of `element`s (a `Skip` element: fixed-width elements skipped in one go).
    Array {
        nullable: bool,
        entity: Entity,
        element: &'static Op,
    },
}

/// How to walk one struct at one version: its inline fields in order, then (in flexible
/// versions) its tagged fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    pub flexible: bool,
    pub ops: &'static [Op],
    /// The tags the struct knows; `op: None` for a tag it has only in other versions, which
    /// the decoder refuses.
    pub tags: &'static [TaggedOp],
}

/// A tagged field a struct knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaggedOp {
    pub tag: u32,
    pub op: Option<Op>,
}

/// Whether a message is a request or a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// One request or response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSpec {
    /// The spec's name, e.g. `FetchRequest`.
    pub name: &'static str,
    /// How errors name it: `Fetch request`.
    pub label: &'static str,
    pub api_key: i16,
    pub direction: Direction,
    pub versions: Versions,
    /// Versions with compact lengths and tagged fields.
    pub flexible: Versions,
    /// The body's walk at each version, from `versions.lo` on.
    pub programs: &'static [&'static Program],
}

impl MessageSpec {
    /// The body's walk at `version`, if the spec has that version.
    pub fn program(&self, version: i16) -> Option<&'static Program> {
        let i = usize::try_from(version.checked_sub(self.versions.lo)?).ok()?;
        self.programs.get(i).copied()
    }
}

/// The Apache Kafka release whose specs the tables were generated from.
pub const KAFKA_VERSION: &str = generated::KAFKA_VERSION;

/// The request body schema of `api_key`, if Kafka defines one.
pub fn request(api_key: i16) -> Option<&'static MessageSpec> {
    by_key(generated::REQUESTS, api_key)
}

/// The response body schema of `api_key`, if Kafka defines one.
pub fn response(api_key: i16) -> Option<&'static MessageSpec> {
    by_key(generated::RESPONSES, api_key)
}

/// The tables are indexed by api key (a gap is None).
fn by_key(table: &'static [Option<&'static MessageSpec>], api_key: i16) -> Option<&'static MessageSpec> {
    usize::try_from(api_key).ok().and_then(|i| table.get(i).copied().flatten())
}

/// Every request and response schema the tables hold.
pub fn all() -> impl Iterator<Item = &'static MessageSpec> {
    generated::REQUESTS.iter().chain(generated::RESPONSES.iter()).copied().flatten()
}

#[cfg(test)]
mod tests;
