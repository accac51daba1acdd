//! Judging a document while it is parsed, without building it as a value: for schemas whose
//! every keyword needs each value once (types, scalar enums and consts, number and string
//! bounds, patterns, items, properties, `required`, counts, plain `$ref`s). Half of judging a
//! typical document was building its `Value`; this skips that.
//!
//! It only ever says "valid". A document it cannot pass (an invalid one, or a keyword it does
//! not take, such as `anyOf` or `uniqueItems`) is judged again on its parsed value, which
//! names the fault; so the two can never disagree about what is valid, only about how fast.
//! Bounded as the parser is (128 levels of nesting) and by [`MAX_DEPTH`] references per value.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use super::{check_number, check_string, Id, JsonSchema, Kind, Node, MAX_DEPTH};

/// Per node: whether it judges while parsing (its keywords, and its subschemas', allow it).
pub(super) fn streamable(nodes: &[Node]) -> Vec<bool> {
    let mut ok: Vec<bool> = nodes.iter().map(locally_streamable).collect();
    // Until nothing changes: a node whose subschema cannot stream cannot either.
    loop {
        let mut changed = false;
        for (id, node) in nodes.iter().enumerate() {
            if ok[id] && children(node).any(|child| !ok[child]) {
                ok[id] = false;
                changed = true;
            }
        }
        if !changed {
            return ok;
        }
    }
}

fn children(node: &Node) -> impl Iterator<Item = Id> + '_ {
    node.reference
        .iter()
        .copied()
        .chain(node.prefix_items.iter().copied())
        .chain(node.rest_items)
        .chain(node.properties.iter().map(|(_, id)| *id))
        .chain(node.pattern_properties.iter().map(|(_, id)| *id))
        .chain(node.additional_properties)
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

fn locally_streamable(node: &Node) -> bool {
    let needs_whole_value = !node.all_of.is_empty()
        || !node.any_of.is_empty()
        || !node.one_of.is_empty()
        || node.not.is_some()
        || node.if_then_else.is_some()
        || node.contains.is_some()
        || node.unique_items
        || !node.dependent_required.is_empty()
        || !node.dependent_schemas.is_empty()
        || node.property_names.is_some()
        || node.required.len() > 64
        || node.enumeration.as_ref().is_some_and(|options| !options.iter().all(is_scalar))
        || node.constant.as_ref().is_some_and(|constant| !is_scalar(constant));
    if needs_whole_value {
        return false;
    }
    // A `$ref` beside other keywords asks for two schemas on one value: not while parsing.
    let has_own = node.types.is_some()
        || node.enumeration.is_some()
        || node.constant.is_some()
        || node.multiple_of.is_some()
        || node.maximum.is_some()
        || node.minimum.is_some()
        || node.max_length.is_some()
        || node.min_length.is_some()
        || node.pattern.is_some()
        || !node.prefix_items.is_empty()
        || node.rest_items.is_some()
        || node.max_items.is_some()
        || node.min_items.is_some()
        || !node.properties.is_empty()
        || !node.pattern_properties.is_empty()
        || node.additional_properties.is_some()
        || !node.required.is_empty()
        || node.max_properties.is_some()
        || node.min_properties.is_some()
        || node.never;
    node.reference.is_none() || !has_own
}

/// Whether `text` is a valid document, judged while parsed; false also when it could not be
/// judged that way.
pub(super) fn passes(schema: &JsonSchema, text: &[u8]) -> bool {
    if !schema.streamable.first().copied().unwrap_or(false) {
        return false;
    }
    let mut parser = serde_json::Deserializer::from_slice(text);
    Seed { schema, node: 0 }.deserialize(&mut parser).is_ok() && parser.end().is_ok()
}

/// Judges one value by a node.
#[derive(Clone, Copy)]
struct Seed<'s> {
    schema: &'s JsonSchema,
    node: Id,
}

/// Not valid, or not judged: the value path will say which.
fn no<E: de::Error>() -> E {
    E::custom("")
}

impl<'s> Seed<'s> {
    /// The node `id` stands for: its `$ref` followed, as far as [`MAX_DEPTH`].
    fn resolved(self) -> Option<&'s Node> {
        let mut node = &self.schema.nodes[self.node];
        for _ in 0..MAX_DEPTH {
            match node.reference {
                Some(target) => node = &self.schema.nodes[target],
                None => return Some(node),
            }
        }
        None
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let node = self.resolved().ok_or_else(no::<D::Error>)?;
        if node.never {
            return Err(no());
        }
        deserializer.deserialize_any(Judging { schema: self.schema, node })
    }
}

/// The visitor judging one value by a resolved node.
struct Judging<'s> {
    schema: &'s JsonSchema,
    node: &'s Node,
}

impl Judging<'_> {
    fn admits(&self, kind: Kind, number: Option<&Number>) -> bool {
        let Some(types) = &self.node.types else { return true };
        types.iter().any(|t| {
            *t == kind || (*t == Kind::Integer && kind == Kind::Number && number.is_some_and(super::is_integer))
        })
    }

    /// Enum and const, for a scalar.
    fn allowed<E: de::Error>(&self, matches: impl Fn(&Value) -> bool) -> Result<(), E> {
        let in_enum = self.node.enumeration.as_ref().is_none_or(|options| options.iter().any(&matches));
        let is_const = self.node.constant.as_ref().is_none_or(&matches);
        if in_enum && is_const {
            Ok(())
        } else {
            Err(no())
        }
    }

    fn number<E: de::Error>(&self, n: Number) -> Result<(), E> {
        if !self.admits(Kind::Number, Some(&n)) {
            return Err(no());
        }
        self.allowed(|v| super::equal(v, &Value::Number(n.clone())))?;
        check_number(self.node, &n).map_err(|_| no())
    }

    fn string<E: de::Error>(&self, s: &str) -> Result<(), E> {
        if !self.admits(Kind::String, None) {
            return Err(no());
        }
        self.allowed(|v| v.as_str() == Some(s))?;
        check_string(self.node, s).map_err(|_| no())
    }
}

impl<'de> Visitor<'de> for Judging<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if !self.admits(Kind::Null, None) {
            return Err(no());
        }
        self.allowed(Value::is_null)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        if !self.admits(Kind::Boolean, None) {
            return Err(no());
        }
        self.allowed(|v| v.as_bool() == Some(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        self.number(Number::from(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.number(Number::from(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<(), E> {
        self.number(Number::from_f64(n).ok_or_else(no::<E>)?)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.string(s)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !self.admits(Kind::Array, None) {
            return Err(no());
        }
        let node = self.node;
        let mut count = 0usize;
        loop {
            let schema = node.prefix_items.get(count).copied().or(if count >= node.prefix_items.len() {
                node.rest_items
            } else {
                None
            });
            let more = match schema {
                Some(id) => seq.next_element_seed(Seed { schema: self.schema, node: id })?.is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                break;
            }
            count += 1;
        }
        let count = count as u64;
        if node.max_items.is_some_and(|max| count > max) || node.min_items.is_some_and(|min| count < min) {
            return Err(no());
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if !self.admits(Kind::Object, None) {
            return Err(no());
        }
        let node = self.node;
        let (mut count, mut seen) = (0u64, 0u64);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            count += 1;
            let key = key.as_str();
            if let Some(at) = node.required.iter().position(|name| name == key) {
                seen |= 1 << at;
            }
            let named = node.properties.iter().find(|(name, _)| name == key).map(|(_, id)| *id);
            let mut patterns = node.pattern_properties.iter().filter(|(pattern, _)| pattern.is_match(key));
            let schema = match (named, patterns.next(), patterns.next()) {
                (Some(id), None, _) => Some(id),
                (None, Some((_, id)), None) => Some(*id),
                (None, None, _) => match node.additional_properties {
                    Some(id) if node_is_never(self.schema, id) => return Err(no()),
                    other => other,
                },
                // Two schemas for one value: not while parsing.
                _ => return Err(no()),
            };
            match schema {
                Some(id) => map.next_value_seed(Seed { schema: self.schema, node: id })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let all_required = node.required.is_empty() || seen == u64::MAX >> (64 - node.required.len());
        if !all_required
            || node.max_properties.is_some_and(|max| count > max)
            || node.min_properties.is_some_and(|min| count < min)
        {
            return Err(no());
        }
        Ok(())
    }
}

fn node_is_never(schema: &JsonSchema, id: Id) -> bool {
    schema.nodes[id].never
}

/// A member name, borrowed from the document unless it had escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
        Ok(Key::Owned(s.to_owned()))
    }
}
