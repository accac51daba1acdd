//! Protobuf: a schema (the `.proto` text a registry holds) compiled by protox, and a payload
//! decoded as the message the wire format's message indexes name, by prost-reflect.
//!
//! A payload is valid when it decodes as that message: every known field with the wire type
//! its declaration asks, strings UTF-8, nested messages likewise (unknown fields are allowed,
//! as Protobuf allows them). Decoding is bounded by the payload (lengths are checked before
//! use) and by prost's recursion limit (100 nested messages).
//!
//! The registry may hold the schema as `.proto` text, or (as Confluent's Python serializer
//! registers it, and Apicurio gives it back unchanged) as a base64-encoded
//! `FileDescriptorProto`: both are read.
//!
//! A schema may import Google's well-known types (`google/protobuf/timestamp.proto`, …);
//! imports of other registered schemas (registry references) are not fetched yet.
//!
//! The parsers recurse (prost-reflect's reading of option values without a limit), so a
//! hostile registration is refused before it reaches them: `.proto` text whose brackets
//! (`{`, `<`, `[`) nest deeper than [`MAX_NESTING`], and descriptors that carry options not
//! yet interpreted (a compiled descriptor, as serializers register, has none).

use prost_reflect::{DynamicMessage, FileDescriptor, MessageDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

/// How deep a schema's braces may nest (messages in messages, aggregate options).
pub const MAX_NESTING: usize = 64;
/// The name the schema's text is compiled under.
const SCHEMA_FILE: &str = "registered.proto";

/// A compiled Protobuf schema.
#[derive(Debug, Clone)]
pub struct ProtobufSchema {
    file: FileDescriptor,
}

/// Why a schema cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a usable Protobuf schema: {0}")]
pub struct ProtobufSchemaError(pub String);

/// Why a payload is not a message of the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtobufError(pub String);

/// The registered schema, as text or as a descriptor, under [`SCHEMA_FILE`].
enum Registered {
    Text(String),
    Descriptor(Box<prost_types::FileDescriptorProto>),
}

impl FileResolver for Registered {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self {
            _ if name != SCHEMA_FILE => Err(protox::Error::file_not_found(name)),
            Registered::Text(text) => File::from_source(name, text),
            Registered::Descriptor(descriptor) => Ok(File::from_file_descriptor_proto((**descriptor).clone())),
        }
    }
}

impl Registered {
    /// The schema as the registry gave it: a base64 `FileDescriptorProto`, or `.proto` text.
    fn read(text: &str) -> Result<Registered, ProtobufSchemaError> {
        use base64::Engine;
        use prost::Message;
        let trimmed = text.trim();
        let looks_encoded = !trimmed.is_empty() && !trimmed.contains(|c: char| c.is_whitespace() || c == ';');
        if looks_encoded {
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(trimmed) {
                let mut descriptor = prost_types::FileDescriptorProto::decode(bytes.as_slice())
                    .map_err(|e| ProtobufSchemaError(format!("base64 that is not a FileDescriptorProto: {e}")))?;
                if has_uninterpreted_options(&descriptor) {
                    let why = "a descriptor with options not yet interpreted (uninterpreted_option)";
                    return Err(ProtobufSchemaError(why.into()));
                }
                descriptor.name = Some(SCHEMA_FILE.to_owned());
                return Ok(Registered::Descriptor(Box::new(descriptor)));
            }
        }
        if max_nesting(text) > MAX_NESTING {
            return Err(ProtobufSchemaError(format!("brackets nest deeper than {MAX_NESTING}")));
        }
        Ok(Registered::Text(text.to_owned()))
    }
}

impl ProtobufSchema {
    /// Compiles the schema: `.proto` text, or a base64 `FileDescriptorProto`.
    pub fn parse(text: &str) -> Result<Self, ProtobufSchemaError> {
        let mut resolver = ChainFileResolver::new();
        resolver.add(Registered::read(text)?);
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler.open_file(SCHEMA_FILE).map_err(|e| ProtobufSchemaError(first_line(&e.to_string())))?;
        let file = compiler
            .descriptor_pool()
            .get_file_by_name(SCHEMA_FILE)
            .ok_or_else(|| ProtobufSchemaError("the compiled schema has no file".into()))?;
        if file.messages().len() == 0 {
            return Err(ProtobufSchemaError("it defines no message".into()));
        }
        Ok(ProtobufSchema { file })
    }

    /// The message the indexes name: the `indexes[0]`-th top-level message, then its
    /// `indexes[1]`-th nested message, and so on.
    fn message(&self, indexes: &[usize]) -> Result<MessageDescriptor, ProtobufError> {
        let missing = || ProtobufError(format!("the schema has no message at indexes {indexes:?}"));
        let (first, rest) = indexes.split_first().ok_or_else(missing)?;
        let mut message = self.file.messages().nth(*first).ok_or_else(missing)?;
        for index in rest {
            let child = message.child_messages().nth(*index);
            message = child.ok_or_else(missing)?;
        }
        Ok(message)
    }

    /// Whether `payload` decodes as the message `indexes` name.
    pub fn validate(&self, indexes: &[usize], payload: &[u8]) -> Result<(), ProtobufError> {
        let message = self.message(indexes)?;
        DynamicMessage::decode(message.clone(), payload)
            .map(drop)
            .map_err(|e| ProtobufError(format!("not a {} message: {e}", message.full_name())))
    }
}

/// Whether any options of the file, its messages, fields, oneofs, enums, values, services or
/// methods are left uninterpreted (text still to be parsed).
fn has_uninterpreted_options(file: &prost_types::FileDescriptorProto) -> bool {
    fn message(m: &prost_types::DescriptorProto) -> bool {
        m.options.as_ref().is_some_and(|o| !o.uninterpreted_option.is_empty())
            || m.field
                .iter()
                .chain(&m.extension)
                .any(|f| f.options.as_ref().is_some_and(|o| !o.uninterpreted_option.is_empty()))
            || m.oneof_decl.iter().any(|o| o.options.as_ref().is_some_and(|o| !o.uninterpreted_option.is_empty()))
            || m.extension_range.iter().any(|r| r.options.as_ref().is_some_and(|o| !o.uninterpreted_option.is_empty()))
            || m.enum_type.iter().any(enumeration)
            || m.nested_type.iter().any(message)
    }
    fn enumeration(e: &prost_types::EnumDescriptorProto) -> bool {
        e.options.as_ref().is_some_and(|o| !o.uninterpreted_option.is_empty())
            || e.value.iter().any(|v| v.options.as_ref().is_some_and(|o| !o.uninterpreted_option.is_empty()))
    }
    file.options.as_ref().is_some_and(|o| !o.uninterpreted_option.is_empty())
        || file.message_type.iter().any(message)
        || file.enum_type.iter().any(enumeration)
        || file.extension.iter().any(|f| f.options.as_ref().is_some_and(|o| !o.uninterpreted_option.is_empty()))
        || file.service.iter().any(|s| {
            s.options.as_ref().is_some_and(|o| !o.uninterpreted_option.is_empty())
                || s.method.iter().any(|m| m.options.as_ref().is_some_and(|o| !o.uninterpreted_option.is_empty()))
        })
}

/// How deep brackets (`{`, `<`, `[`: messages, and option values in the text format) nest in
/// `text`, outside strings and comments.
fn max_nesting(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 1;
            }
            quote @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'<' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b'>' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).to_owned()
}

#[cfg(test)]
mod tests;
