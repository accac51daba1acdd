//! Kafka's message schemas as data: every request and response body, field by field, with the
//! versions each field exists in, where it is nullable or tagged, and which resource it names.
//!
//! The tables in [`generated`] are written by `weir-wire-gen` from the JSON message specs that
//! ship inside Apache Kafka's `kafka-clients` jar (`scripts/regen-schema.sh` regenerates them and
//! `--check` fails when the checked-in file differs). Nothing here is written by hand but the
//! shapes below; [`walk`] reads any body by its table, without allocation and without trust in
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

/// A field's type on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Bool,
    Int8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Float64,
    Uuid,
    String,
    Bytes,
    /// A record batch set: length-prefixed bytes, never read by the walk.
    Records,
    Struct(&'static Struct),
    Array(&'static Type),
}

impl Type {
    /// The width of a fixed-width type, None for the others.
    pub const fn fixed_width(self) -> Option<usize> {
        match self {
            Type::Bool | Type::Int8 => Some(1),
            Type::Int16 | Type::Uint16 => Some(2),
            Type::Int32 | Type::Uint32 => Some(4),
            Type::Int64 | Type::Float64 => Some(8),
            Type::Uuid => Some(16),
            _ => None,
        }
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
    BrokerId,
    ProducerId,
    /// FindCoordinator's key and keys, whose meaning depends on the key type.
    CoordinatorKey,
    CoordinatorKeyType,
    /// Describe/Alter/IncrementalAlterConfigs: the resource's type and name.
    ConfigResourceType,
    ConfigResourceName,
    /// Metadata: whether the broker may create the topics it is asked about.
    AutoCreateTopics,
}

/// A tagged field's tag and the versions in which it is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub tag: u32,
    pub versions: Versions,
}

/// One field of a struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub ty: Type,
    pub versions: Versions,
    pub nullable: Versions,
    pub tag: Option<Tag>,
    pub entity: Entity,
}

/// A struct: a message body, an array element or a nested struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Struct {
    pub name: &'static str,
    pub fields: &'static [Field],
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
    pub body: &'static Struct,
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
