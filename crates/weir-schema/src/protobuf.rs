//! Protobuf: a schema (the `.proto` text a registry holds) compiled by protox, and a payload
//! decoded as the message the wire format's message indexes name, by prost-reflect.
//!
//! A payload is valid when it decodes as that message: every known field with the wire type
//! its declaration asks, strings UTF-8, nested messages likewise (unknown fields are allowed,
//! as Protobuf allows them). Decoding is bounded by the payload (lengths are checked before
//! use) and by prost's recursion limit (100 nested messages).
//!
//! A schema may import Google's well-known types (`google/protobuf/timestamp.proto`, …);
//! imports of other registered schemas (registry references) are not fetched yet. A schema
//! whose braces nest deeper than [`MAX_NESTING`] is refused before it is parsed, so that a
//! hostile registration cannot exhaust the parser's stack.

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

/// The registered text, and Google's well-known types beside it.
struct Registered(String);

impl FileResolver for Registered {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == SCHEMA_FILE {
            File::from_source(name, &self.0)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

impl ProtobufSchema {
    /// Compiles the schema's `.proto` text.
    pub fn parse(text: &str) -> Result<Self, ProtobufSchemaError> {
        if max_nesting(text) > MAX_NESTING {
            return Err(ProtobufSchemaError(format!("braces nest deeper than {MAX_NESTING}")));
        }
        let mut resolver = ChainFileResolver::new();
        resolver.add(Registered(text.to_owned()));
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

/// How deep `{` nests in `text`, outside strings and comments.
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
            b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' => depth = depth.saturating_sub(1),
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
