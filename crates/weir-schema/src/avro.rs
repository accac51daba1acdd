//! Avro: a schema (its JSON form, as a registry holds it) compiled into a tree, and a payload
//! checked to be exactly one value of it in Avro's binary encoding.
//!
//! Checked, not decoded: nothing is built from the payload, and nothing is allocated from a
//! length or count it declares. Every value checked costs a step from a budget set by the
//! payload's size, so neither a block claiming 2^62 nulls in ten bytes nor a schema whose
//! records of records (of zero-byte fields) would take exponential work ends other than as an
//! error. Values nest at most [`MAX_DEPTH`] deep (a recursive schema can ask for more).
//!
//! Supported: every primitive, records (and errors), enums, arrays, maps, unions, fixed, named
//! references (namespaces resolved as Avro's specification says), logical types (checked as
//! their underlying type). Defaults, aliases and `order` are not used: they matter to readers
//! resolving one schema against another, not to a payload's validity.

use std::collections::HashMap;

use serde_json::Value;

/// How deep values may nest.
pub const MAX_DEPTH: usize = 64;
/// Values a payload may hold: a base, and more for each of its bytes (a value of a zero-byte
/// type, `null` or an empty record, is still a step).
const BASE_STEPS: usize = 4_096;
const STEPS_PER_BYTE: usize = 8;

/// A compiled Avro schema.
#[derive(Debug, Clone)]
pub struct AvroSchema {
    nodes: Vec<Node>,
    root: usize,
}

#[derive(Debug, Clone)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Record {
        name: String,
        fields: Vec<(String, usize)>,
    },
    Enum {
        name: String,
        symbols: usize,
    },
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    Fixed {
        name: String,
        size: usize,
    },
    /// A named type, resolved to its node after parsing.
    Ref(String),
}

/// Why a schema cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a usable Avro schema: {0}")]
pub struct AvroSchemaError(pub String);

/// Why a payload is not a value of the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at {path} (byte {at})")]
pub struct AvroError {
    /// Where in the value, e.g. `Order.lines[3].price`.
    pub path: String,
    pub at: usize,
    pub what: String,
}

impl AvroSchema {
    /// Compiles the schema's JSON text.
    pub fn parse(text: &str) -> Result<Self, AvroSchemaError> {
        let json: Value = serde_json::from_str(text).map_err(|e| AvroSchemaError(format!("not JSON: {e}")))?;
        let mut parser = Parser { nodes: Vec::new(), names: HashMap::new() };
        let root = parser.node(&json, "")?;
        parser.resolve()?;
        Ok(AvroSchema { nodes: parser.nodes, root })
    }

    /// Whether `payload` is exactly one value of the schema.
    pub fn validate(&self, payload: &[u8]) -> Result<(), AvroError> {
        let budget = payload.len().saturating_mul(STEPS_PER_BYTE).saturating_add(BASE_STEPS);
        let mut reader = Reader { bytes: payload, pos: 0, budget };
        let mut path = Vec::new();
        let checked = self.check(self.root, &mut reader, 0, &mut path);
        let fail = |what: String, at: usize, path: &[Segment]| AvroError { path: render(path), at, what };
        match checked {
            Err(what) => Err(fail(what, reader.pos, &path)),
            Ok(()) if reader.pos != payload.len() => {
                Err(fail(format!("{} bytes after the value", payload.len() - reader.pos), reader.pos, &[]))
            }
            Ok(()) => Ok(()),
        }
    }

    /// Checks one value of `node`; on error, `path` is left saying where.
    fn check<'s>(
        &'s self,
        node: usize,
        r: &mut Reader<'_>,
        depth: usize,
        path: &mut Vec<Segment<'s>>,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("values nested deeper than {MAX_DEPTH}"));
        }
        if r.budget == 0 {
            return Err("more values than a payload of this size can hold".into());
        }
        r.budget -= 1;
        match &self.nodes[node] {
            Node::Null => Ok(()),
            Node::Boolean => match r.byte()? {
                0 | 1 => Ok(()),
                b => Err(format!("a boolean of byte {b}, not 0 or 1")),
            },
            Node::Int => r.int().map(drop),
            Node::Long => r.long().map(drop),
            Node::Float => r.take(4).map(drop),
            Node::Double => r.take(8).map(drop),
            Node::Bytes => r.sized().map(drop),
            Node::String => {
                let bytes = r.sized()?;
                std::str::from_utf8(bytes).map(drop).map_err(|_| "a string that is not UTF-8".to_owned())
            }
            Node::Fixed { name, size } => r.take(*size).map(drop).map_err(|e| format!("{e} (fixed {name})")),
            Node::Enum { name, symbols } => {
                let index = r.int()?;
                if index < 0 || index as usize >= *symbols {
                    return Err(format!("symbol {index} of enum {name}, which has {symbols}"));
                }
                Ok(())
            }
            Node::Union(branches) => {
                let index = r.long()?;
                let branch = usize::try_from(index).ok().and_then(|i| branches.get(i));
                let branch = branch.ok_or_else(|| format!("union branch {index} of {}", branches.len()))?;
                self.check(*branch, r, depth + 1, path)
            }
            Node::Record { name, fields } => {
                if path.is_empty() {
                    path.push(Segment::Name(name));
                }
                for (field, node) in fields {
                    path.push(Segment::Field(field));
                    self.check(*node, r, depth + 1, path)?;
                    path.pop();
                }
                Ok(())
            }
            Node::Array(items) => self.blocks(r, path, |schema, r, path| schema.check(*items, r, depth + 1, path)),
            Node::Map(values) => self.blocks(r, path, |schema, r, path| {
                let key = r.sized()?;
                std::str::from_utf8(key).map_err(|_| "a map key that is not UTF-8".to_owned())?;
                schema.check(*values, r, depth + 1, path)
            }),
            Node::Ref(name) => Err(format!("unresolved type {name}")),
        }
    }

    /// The blocks of an array or map, each item checked by `item`.
    fn blocks<'s>(
        &'s self,
        r: &mut Reader<'_>,
        path: &mut Vec<Segment<'s>>,
        item: impl Fn(&'s Self, &mut Reader<'_>, &mut Vec<Segment<'s>>) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut index = 0u64;
        loop {
            let count = r.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                // A negative count is followed by the block's size in bytes.
                let size = r.long()?;
                if size < 0 {
                    return Err(format!("a block size of {size}"));
                }
            }
            for _ in 0..count.unsigned_abs() {
                if r.budget == 0 {
                    return Err("more values than a payload of this size can hold".into());
                }
                path.push(Segment::Index(index));
                item(self, r, path)?;
                path.pop();
                index += 1;
            }
        }
    }
}

/// A step of the path to a fault, borrowed from the schema (built into text only on a fault).
enum Segment<'s> {
    Name(&'s str),
    Field(&'s str),
    Index(u64),
}

fn render(path: &[Segment<'_>]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Name(name) => out.push_str(name),
            Segment::Field(field) => {
                out.push('.');
                out.push_str(field);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        out.push_str("the value");
    }
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Values left to read.
    budget: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| format!("{n} bytes wanted, {} left", self.bytes.len() - self.pos))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, String> {
        self.take(1).map(|b| b[0])
    }

    fn long(&mut self) -> Result<i64, String> {
        let mut raw = 0u64;
        for i in 0..10 {
            let byte = self.byte()?;
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err("a varint longer than a long".into())
    }

    fn int(&mut self) -> Result<i32, String> {
        let value = self.long()?;
        i32::try_from(value).map_err(|_| format!("an int of {value}, beyond 32 bits"))
    }

    /// A long length and that many bytes.
    fn sized(&mut self) -> Result<&'a [u8], String> {
        let length = self.long()?;
        let length = usize::try_from(length).map_err(|_| format!("a length of {length}"))?;
        self.take(length)
    }
}

struct Parser {
    nodes: Vec<Node>,
    /// Full names of named types, and their nodes.
    names: HashMap<String, usize>,
}

impl Parser {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The node for `json`, within `namespace`.
    fn node(&mut self, json: &Value, namespace: &str) -> Result<usize, AvroSchemaError> {
        match json {
            Value::String(name) => Ok(self.named_or_primitive(name, namespace)),
            Value::Array(branches) => {
                let at = self.push(Node::Union(Vec::new()));
                let mut nodes = Vec::with_capacity(branches.len());
                for branch in branches {
                    if branch.is_array() {
                        return Err(AvroSchemaError("a union directly inside a union".into()));
                    }
                    nodes.push(self.node(branch, namespace)?);
                }
                self.nodes[at] = Node::Union(nodes);
                Ok(at)
            }
            Value::Object(object) => {
                let kind = object.get("type").ok_or_else(|| AvroSchemaError("an object without `type`".into()))?;
                let kind = match kind {
                    Value::String(kind) => kind.as_str(),
                    // {"type": {...}} or {"type": [...]}: the inner schema (logical types and
                    // other annotations wrap schemas this way).
                    other => return self.node(other, namespace),
                };
                match kind {
                    "record" | "error" => self.record(object, namespace),
                    "enum" => {
                        let (name, _) = self.full_name(object, namespace)?;
                        let symbols = object.get("symbols").and_then(Value::as_array);
                        let symbols = symbols.ok_or_else(|| AvroSchemaError(format!("enum {name} has no symbols")))?;
                        let at = self.push(Node::Enum { name: name.clone(), symbols: symbols.len() });
                        self.define(name, at)
                    }
                    "fixed" => {
                        let (name, _) = self.full_name(object, namespace)?;
                        let size = object.get("size").and_then(Value::as_u64);
                        let size = size.ok_or_else(|| AvroSchemaError(format!("fixed {name} has no size")))?;
                        let size =
                            usize::try_from(size).map_err(|_| AvroSchemaError("a fixed size too large".into()))?;
                        let at = self.push(Node::Fixed { name: name.clone(), size });
                        self.define(name, at)
                    }
                    "array" => {
                        let items =
                            object.get("items").ok_or_else(|| AvroSchemaError("an array without items".into()))?;
                        let at = self.push(Node::Array(0));
                        let items = self.node(items, namespace)?;
                        self.nodes[at] = Node::Array(items);
                        Ok(at)
                    }
                    "map" => {
                        let values =
                            object.get("values").ok_or_else(|| AvroSchemaError("a map without values".into()))?;
                        let at = self.push(Node::Map(0));
                        let values = self.node(values, namespace)?;
                        self.nodes[at] = Node::Map(values);
                        Ok(at)
                    }
                    name => Ok(self.named_or_primitive(name, namespace)),
                }
            }
            other => Err(AvroSchemaError(format!("`{other}` is not a schema"))),
        }
    }

    fn record(&mut self, object: &serde_json::Map<String, Value>, namespace: &str) -> Result<usize, AvroSchemaError> {
        let (name, inner) = self.full_name(object, namespace)?;
        // Defined before its fields, which may refer to it.
        let at = self.push(Node::Record { name: name.clone(), fields: Vec::new() });
        self.define(name.clone(), at)?;
        let fields = object.get("fields").and_then(Value::as_array);
        let fields = fields.ok_or_else(|| AvroSchemaError(format!("record {name} has no fields")))?;
        let mut compiled = Vec::with_capacity(fields.len());
        for field in fields {
            let field_name = field.get("name").and_then(Value::as_str);
            let field_name = field_name.ok_or_else(|| AvroSchemaError(format!("a field of {name} has no name")))?;
            let schema = field.get("type");
            let schema = schema.ok_or_else(|| AvroSchemaError(format!("field {name}.{field_name} has no type")))?;
            compiled.push((field_name.to_owned(), self.node(schema, &inner)?));
        }
        self.nodes[at] = Node::Record { name, fields: compiled };
        Ok(at)
    }

    /// A type's full name and the namespace its own members are in.
    fn full_name(
        &self,
        object: &serde_json::Map<String, Value>,
        namespace: &str,
    ) -> Result<(String, String), AvroSchemaError> {
        let name = object.get("name").and_then(Value::as_str);
        let name = name.ok_or_else(|| AvroSchemaError("a named type without a name".into()))?;
        let full = match (name.contains('.'), object.get("namespace").and_then(Value::as_str)) {
            (true, _) => name.to_owned(),
            (false, Some(ns)) if !ns.is_empty() => format!("{ns}.{name}"),
            (false, Some(_)) => name.to_owned(),
            (false, None) if !namespace.is_empty() => format!("{namespace}.{name}"),
            (false, None) => name.to_owned(),
        };
        let inner = full.rsplit_once('.').map_or(String::new(), |(ns, _)| ns.to_owned());
        Ok((full, inner))
    }

    fn define(&mut self, name: String, at: usize) -> Result<usize, AvroSchemaError> {
        if self.names.insert(name.clone(), at).is_some() {
            return Err(AvroSchemaError(format!("type {name} is defined twice")));
        }
        Ok(at)
    }

    fn named_or_primitive(&mut self, name: &str, namespace: &str) -> usize {
        let node = match name {
            "null" => Node::Null,
            "boolean" => Node::Boolean,
            "int" => Node::Int,
            "long" => Node::Long,
            "float" => Node::Float,
            "double" => Node::Double,
            "bytes" => Node::Bytes,
            "string" => Node::String,
            name if name.contains('.') || namespace.is_empty() => Node::Ref(name.to_owned()),
            // A short name: the enclosing namespace's type, else a type with no namespace.
            name => Node::Ref(format!("{namespace}.{name}\u{0}{name}")),
        };
        self.push(node)
    }

    /// Every reference replaced by what it names.
    fn resolve(&mut self) -> Result<(), AvroSchemaError> {
        let find = |names: &HashMap<String, usize>, reference: &str| {
            let mut candidates = reference.split('\u{0}');
            candidates.find_map(|name| names.get(name).copied())
        };
        let mut targets = vec![None; self.nodes.len()];
        for (at, node) in self.nodes.iter().enumerate() {
            if let Node::Ref(reference) = node {
                let target = find(&self.names, reference).ok_or_else(|| {
                    let name = reference.split('\u{0}').next_back().unwrap_or(reference);
                    AvroSchemaError(format!("unknown type `{name}`"))
                })?;
                targets[at] = Some(target);
            }
        }
        // A reference names a named type (never another reference).
        let redirect = |i: usize| targets[i].unwrap_or(i);
        for node in &mut self.nodes {
            match node {
                Node::Record { fields, .. } => fields.iter_mut().for_each(|(_, n)| *n = redirect(*n)),
                Node::Array(n) | Node::Map(n) => *n = redirect(*n),
                Node::Union(branches) => branches.iter_mut().for_each(|n| *n = redirect(*n)),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
