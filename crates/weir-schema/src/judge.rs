//! One payload judged by one rule's format: the verdict a policy acts on.
//!
//! `json` asks only that the payload be JSON text. The registry formats ask that the payload
//! be in the registry wire format, name a schema the registry has, of the format's type and a
//! version of the rule's subject (`<topic>-value` or `<topic>-key`), and decode as a value of
//! it. The registry is not asked here: [`judge`] reads what is cached and says which schema it
//! needs when something is not ([`Verdict::Needs`]); the caller fetches it and judges again.

use std::sync::Arc;

use serde::Deserialize;

use crate::avro::AvroSchema;
use crate::json_schema::JsonSchema;
use crate::protobuf::ProtobufSchema;
use crate::registry::{Fetched, Known, LookupError, Registry, SchemaKind};
use crate::wire::{framed, message_indexes};

/// What a payload must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// JSON text, any.
    Json,
    /// The wire format, a JSON Schema of the subject, a JSON document valid against it.
    JsonSchema,
    /// The wire format, an Avro schema of the subject, a value of it in Avro's binary encoding.
    Avro,
    /// The wire format, a Protobuf schema of the subject, a message of it.
    Protobuf,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::JsonSchema => "json_schema",
            Format::Avro => "avro",
            Format::Protobuf => "protobuf",
        }
    }

    /// The registry's type for schemas of this format; None for `json`, which needs none.
    pub fn schema_kind(self) -> Option<SchemaKind> {
        match self {
            Format::Json => None,
            Format::JsonSchema => Some(SchemaKind::Json),
            Format::Avro => Some(SchemaKind::Avro),
            Format::Protobuf => Some(SchemaKind::Protobuf),
        }
    }
}

/// A schema compiled for judging payloads; why not, for one that cannot be used.
pub type Compiled = Result<Validator, String>;

/// A compiled schema of some format.
#[derive(Debug)]
pub enum Validator {
    Avro(AvroSchema),
    JsonSchema(JsonSchema),
    Protobuf(ProtobufSchema),
}

/// What the registry keeps per schema id.
pub type SchemaRegistry = Registry<Compiled>;

/// Compiles a schema the registry gave (what [`SchemaRegistry::new`] is given).
pub fn compile(fetched: &Fetched) -> Compiled {
    if fetched.has_references {
        return Err("it refers to other schemas, which Weir does not fetch yet".into());
    }
    match fetched.kind {
        SchemaKind::Avro => AvroSchema::parse(&fetched.text).map(Validator::Avro).map_err(|e| e.to_string()),
        SchemaKind::Json => JsonSchema::parse(&fetched.text).map(Validator::JsonSchema).map_err(|e| e.to_string()),
        SchemaKind::Protobuf => {
            ProtobufSchema::parse(&fetched.text).map(Validator::Protobuf).map_err(|e| e.to_string())
        }
    }
}

/// Why a payload is refused, by kind (what metrics count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Not in the wire format, or (for `json`) not JSON.
    NotFramed,
    UnknownSchema,
    WrongSubject,
    WrongType,
    /// The schema cannot be used to judge anything.
    UnusableSchema,
    /// The payload does not decode as, or validate against, its schema.
    Invalid,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::NotFramed => "not_framed",
            Fault::UnknownSchema => "unknown_schema",
            Fault::WrongSubject => "wrong_subject",
            Fault::WrongType => "wrong_type",
            Fault::UnusableSchema => "unusable_schema",
            Fault::Invalid => "invalid",
        }
    }
}

/// A judgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Refused(Fault, String),
    /// The registry must be asked about this schema id first (not cached, or its subjects
    /// must be asked again).
    Needs(u32),
    /// The registry could not say.
    Unavailable(String),
}

/// What [`judge`] knows of the registry: the outcome of asking about an id, if it was asked.
pub trait Schemas {
    fn known(&self, id: u32) -> Option<Result<Arc<Known<Compiled>>, LookupError>>;
}

impl Schemas for SchemaRegistry {
    fn known(&self, id: u32) -> Option<Result<Arc<Known<Compiled>>, LookupError>> {
        self.cached_outcome(id)
    }
}

/// Judges `payload` by `format`, the schema (if the format has one) a version of `subject`.
pub fn judge(format: Format, payload: &[u8], subject: &str, schemas: &impl Schemas) -> Verdict {
    let Some(kind) = format.schema_kind() else {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(payload) {
            Ok(_) => Verdict::Valid,
            Err(e) => Verdict::Refused(Fault::NotFramed, format!("not JSON: {e}")),
        };
    };
    let framed = match framed(payload) {
        Ok(framed) => framed,
        Err(e) => return Verdict::Refused(Fault::NotFramed, format!("not in the schema registry wire format: {e}")),
    };
    let id = framed.schema_id;
    let known = match schemas.known(id) {
        None => return Verdict::Needs(id),
        Some(Err(LookupError::NotFound(_))) => {
            return Verdict::Refused(Fault::UnknownSchema, format!("schema {id} is not in the registry"))
        }
        Some(Err(e)) => return Verdict::Unavailable(e.to_string()),
        Some(Ok(known)) => known,
    };
    if known.kind != kind {
        let why = format!("schema {id} is a {} schema, not {}", known.kind.as_str(), kind.as_str());
        return Verdict::Refused(Fault::WrongType, why);
    }
    match known.is_version_of_cached(subject) {
        Some(true) => {}
        Some(false) => {
            let why = format!("schema {id} is not a version of subject `{subject}`");
            return Verdict::Refused(Fault::WrongSubject, why);
        }
        None => return Verdict::Needs(id),
    }
    let validator = match &known.compiled {
        Ok(validator) => validator,
        Err(why) => return Verdict::Refused(Fault::UnusableSchema, format!("schema {id} cannot be used: {why}")),
    };
    let checked = match validator {
        Validator::Avro(schema) => schema.validate(framed.payload).map_err(|e| e.to_string()),
        Validator::JsonSchema(schema) => schema.validate_text(framed.payload).map_err(|e| e.to_string()),
        Validator::Protobuf(schema) => match message_indexes(framed.payload) {
            Ok((indexes, message)) => schema.validate(&indexes, message).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
    };
    match checked {
        Ok(()) => Verdict::Valid,
        Err(why) => Verdict::Refused(Fault::Invalid, format!("not a value of schema {id}: {why}")),
    }
}
