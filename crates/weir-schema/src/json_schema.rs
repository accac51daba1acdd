//! JSON Schema: a schema compiled into a table of checks, and a JSON document judged against
//! it, the first fault named by where it is in the document.
//!
//! Drafts 4 to 2020-12, the keywords that decide validity: `type`, `enum`, `const`; number
//! bounds and `multipleOf`; string lengths and `pattern`; `items` (a schema, or a tuple in
//! drafts before 2020-12), `prefixItems`, `additionalItems`, `contains` with
//! `minContains`/`maxContains`, item counts, `uniqueItems`; `properties`,
//! `patternProperties`, `additionalProperties`, `required`, property counts,
//! `propertyNames`, `dependentRequired`, `dependentSchemas`, `dependencies`; `allOf`,
//! `anyOf`, `oneOf`, `not`, `if`/`then`/`else`; boolean schemas; `$ref` within the schema
//! (`#`, `#/$defs/…`, `#/definitions/…`, any JSON pointer into it). `format` is an
//! annotation (as 2019-09 and later say by default) and is not checked.
//!
//! Not supported, and so a schema using them cannot be used (every record it judges is
//! refused, saying why): `$ref` to another document, `$dynamicRef`/`$recursiveRef`,
//! `unevaluatedProperties`/`unevaluatedItems`, regular expressions the `regex` crate does not
//! read (look-around, back-references).
//!
//! Bounded: documents nest at most 128 deep (serde_json's own limit while parsing), a
//! schema's references at most [`MAX_DEPTH`] deep while judging (a schema that refers to itself
//! without end is an error, not a loop), and judging a document takes at most a number of
//! steps proportional to its size (a schema whose `anyOf`/`allOf` of references would take
//! exponential work is an error, not a hang). A schema compiles at most [`MAX_PATTERNS`]
//! patterns, each within a size limit, matching in linear time.

use std::cell::Cell;
use std::collections::HashMap;

use regex::Regex;
use serde_json::{Map, Number, Value};

/// How deep judging may go, document nesting and schema references together.
pub const MAX_DEPTH: usize = 256;
/// The most a compiled pattern may take (its program, and its lazy DFA's cache).
const PATTERN_SIZE_LIMIT: usize = 64 << 10;
/// The most patterns one schema may compile, so that their memory stays bounded too.
pub const MAX_PATTERNS: usize = 256;
/// Steps (schema nodes applied to document values) judging a document may take: a base, and
/// more for each byte of the document. `anyOf`/`allOf` chains of references can ask for work
/// exponential in the schema's size; this is where that ends, as an error.
const BASE_STEPS: usize = 10_000;
const STEPS_PER_BYTE: usize = 64;

/// A compiled JSON Schema.
#[derive(Debug)]
pub struct JsonSchema {
    nodes: Vec<Node>,
    /// Per node: whether a value can be judged by it while the document is parsed.
    streamable: Vec<bool>,
}

/// Why a schema cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a usable JSON Schema: {0}")]
pub struct JsonSchemaError(pub String);

/// Why a document is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at {path}")]
pub struct JsonError {
    /// A JSON pointer into the document (`/lines/3/price`; empty for the whole).
    pub path: String,
    pub what: String,
}

type Id = usize;

#[derive(Debug, Default)]
struct Node {
    /// A boolean schema `false` (or a node that refuses everything).
    never: bool,
    reference: Option<Id>,
    types: Option<Vec<Kind>>,
    enumeration: Option<Vec<Value>>,
    constant: Option<Value>,
    multiple_of: Option<f64>,
    maximum: Option<Bound>,
    minimum: Option<Bound>,
    max_length: Option<u64>,
    min_length: Option<u64>,
    pattern: Option<Regex>,
    prefix_items: Vec<Id>,
    /// Items after the prefix (`items` in 2020-12, `additionalItems` with a tuple before).
    rest_items: Option<Id>,
    contains: Option<Id>,
    min_contains: Option<u64>,
    max_contains: Option<u64>,
    max_items: Option<u64>,
    min_items: Option<u64>,
    unique_items: bool,
    properties: Vec<(String, Id)>,
    pattern_properties: Vec<(Regex, Id)>,
    additional_properties: Option<Id>,
    required: Vec<String>,
    max_properties: Option<u64>,
    min_properties: Option<u64>,
    property_names: Option<Id>,
    dependent_required: Vec<(String, Vec<String>)>,
    dependent_schemas: Vec<(String, Id)>,
    all_of: Vec<Id>,
    any_of: Vec<Id>,
    one_of: Vec<Id>,
    not: Option<Id>,
    if_then_else: Option<(Id, Option<Id>, Option<Id>)>,
}

#[derive(Debug, Clone, Copy)]
struct Bound {
    value: f64,
    exclusive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Boolean,
    Object,
    Array,
    Number,
    String,
    Integer,
}

impl Kind {
    fn named(name: &str) -> Option<Kind> {
        Some(match name {
            "null" => Kind::Null,
            "boolean" => Kind::Boolean,
            "object" => Kind::Object,
            "array" => Kind::Array,
            "number" => Kind::Number,
            "string" => Kind::String,
            "integer" => Kind::Integer,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Boolean => "boolean",
            Kind::Object => "object",
            Kind::Array => "array",
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Integer => "integer",
        }
    }

    fn of(value: &Value) -> Kind {
        match value {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Boolean,
            Value::Object(_) => Kind::Object,
            Value::Array(_) => Kind::Array,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
        }
    }

    fn admits(self, value: &Value) -> bool {
        match (self, value) {
            (Kind::Integer, Value::Number(n)) => is_integer(n),
            (kind, value) => kind == Kind::of(value),
        }
    }
}

fn is_integer(n: &Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

impl JsonSchema {
    /// Compiles a schema's JSON text.
    pub fn parse(text: &str) -> Result<Self, JsonSchemaError> {
        let root: Value = serde_json::from_str(text).map_err(|e| JsonSchemaError(format!("not JSON: {e}")))?;
        let mut compiler = Compiler { root: &root, nodes: Vec::new(), patterns: 0, by_pointer: HashMap::new() };
        compiler.compile_at("")?;
        let streamable = streaming::streamable(&compiler.nodes);
        Ok(JsonSchema { nodes: compiler.nodes, streamable })
    }

    /// Whether the document `text` is valid.
    pub fn validate_text(&self, text: &[u8]) -> Result<(), JsonError> {
        // Most documents are valid: judged while parsed when the schema allows it; any other
        // (and any the fast path cannot pass) on the parsed value, which names the fault.
        if streaming::passes(self, text) {
            return Ok(());
        }
        let document: Value = serde_json::from_slice(text)
            .map_err(|e| JsonError { path: String::new(), what: format!("not JSON: {e}") })?;
        self.judge(&document, BASE_STEPS.saturating_add(text.len().saturating_mul(STEPS_PER_BYTE)))
    }

    /// Whether `document` is valid.
    pub fn validate(&self, document: &Value) -> Result<(), JsonError> {
        let size = document.to_string().len();
        self.judge(document, BASE_STEPS.saturating_add(size.saturating_mul(STEPS_PER_BYTE)))
    }

    fn judge(&self, document: &Value, steps: usize) -> Result<(), JsonError> {
        let mut path = Vec::new();
        let walk = Walk { steps: Cell::new(steps), budget: steps, exhausted: Cell::new(false) };
        walk.check(self, 0, document, 0, &mut path).map_err(|what| JsonError { path: render(&path), what })
    }
}

/// One document's judging: the steps it has left.
struct Walk {
    steps: Cell<usize>,
    budget: usize,
    /// Set once the steps ran out: every check fails from then on, and says why.
    exhausted: Cell<bool>,
}

impl Walk {
    /// Checks `value` against node `id`; on error, `path` says where in the document.
    fn check<'v>(
        &self,
        schema: &JsonSchema,
        id: Id,
        value: &'v Value,
        depth: usize,
        path: &mut Vec<Step<'v>>,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("the schema refers to itself more than {MAX_DEPTH} deep"));
        }
        match self.steps.get().checked_sub(1) {
            Some(left) => self.steps.set(left),
            None => {
                self.exhausted.set(true);
                return Err(format!(
                    "judging took more than {} steps: the schema is too costly to judge a document of this size by",
                    self.budget
                ));
            }
        }
        let this = schema;
        let node = &this.nodes[id];
        if node.never {
            return Err("no value is allowed here".into());
        }
        if let Some(target) = node.reference {
            self.check(this, target, value, depth + 1, path)?;
        }
        if let Some(types) = &node.types {
            if !types.iter().any(|kind| kind.admits(value)) {
                let wanted: Vec<&str> = types.iter().map(|k| k.as_str()).collect();
                return Err(format!("a {} where {} is wanted", Kind::of(value).as_str(), wanted.join(" or ")));
            }
        }
        if let Some(options) = &node.enumeration {
            if !options.iter().any(|option| equal(option, value)) {
                return Err(format!("{} is not one of the values allowed", shown(value)));
            }
        }
        if let Some(constant) = &node.constant {
            if !equal(constant, value) {
                return Err(format!("{} is not {}", shown(value), shown(constant)));
            }
        }
        match value {
            Value::Number(n) => check_number(node, n)?,
            Value::String(s) => check_string(node, s)?,
            Value::Array(items) => self.check_array(this, node, items, depth, path)?,
            Value::Object(object) => self.check_object(this, node, value, object, depth, path)?,
            Value::Null | Value::Bool(_) => {}
        }
        for &sub in &node.all_of {
            self.check(this, sub, value, depth + 1, path)?;
        }
        if !node.any_of.is_empty() && !self.any(this, &node.any_of, value, depth)? {
            return Err("matches none of anyOf".into());
        }
        if !node.one_of.is_empty() {
            let mut matching = 0;
            for &sub in &node.one_of {
                matching += usize::from(self.passes(this, sub, value, depth)?);
            }
            if matching != 1 {
                return Err(format!("matches {matching} of oneOf, not exactly one"));
            }
        }
        if let Some(not) = node.not {
            if self.passes(this, not, value, depth)? {
                return Err("matches the schema of `not`".into());
            }
        }
        if let Some((condition, then, otherwise)) = node.if_then_else {
            let branch = if self.passes(this, condition, value, depth)? { then } else { otherwise };
            if let Some(branch) = branch {
                self.check(this, branch, value, depth + 1, path)?;
            }
        }
        Ok(())
    }

    /// Whether `value` passes node `id` (its faults not kept).
    /// Whether `value` passes node `id` (its faults not kept); an error only when the step
    /// budget ran out, which ends the whole judgement.
    fn passes(&self, schema: &JsonSchema, id: Id, value: &Value, depth: usize) -> Result<bool, String> {
        match self.check(schema, id, value, depth + 1, &mut Vec::new()) {
            Ok(()) => Ok(true),
            Err(why) if self.exhausted.get() => Err(why),
            Err(_) => Ok(false),
        }
    }

    /// Whether `value` passes any of `ids`.
    fn any(&self, schema: &JsonSchema, ids: &[Id], value: &Value, depth: usize) -> Result<bool, String> {
        for &id in ids {
            if self.passes(schema, id, value, depth)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn check_array<'v>(
        &self,
        this: &JsonSchema,
        node: &Node,
        items: &'v [Value],
        depth: usize,
        path: &mut Vec<Step<'v>>,
    ) -> Result<(), String> {
        let count = items.len() as u64;
        if let Some(max) = node.max_items.filter(|max| count > *max) {
            return Err(format!("{count} items; at most {max}"));
        }
        if let Some(min) = node.min_items.filter(|min| count < *min) {
            return Err(format!("{count} items; at least {min}"));
        }
        for (i, item) in items.iter().enumerate() {
            let schema =
                node.prefix_items.get(i).copied().or(if i >= node.prefix_items.len() { node.rest_items } else { None });
            if let Some(schema) = schema {
                path.push(Step::Index(i));
                self.check(this, schema, item, depth + 1, path)?;
                path.pop();
            }
        }
        if let Some(contains) = node.contains {
            let mut found = 0u64;
            for item in items {
                found += u64::from(self.passes(this, contains, item, depth)?);
            }
            let min = node.min_contains.unwrap_or(1);
            if found < min {
                return Err(format!("{found} items match `contains`; at least {min} must"));
            }
            if let Some(max) = node.max_contains.filter(|max| found > *max) {
                return Err(format!("{found} items match `contains`; at most {max} may"));
            }
        }
        if node.unique_items {
            if let Some((a, b)) = first_duplicate(items) {
                return Err(format!("items {a} and {b} are equal; items must be unique"));
            }
        }
        Ok(())
    }

    fn check_object<'v>(
        &self,
        this: &JsonSchema,
        node: &Node,
        value: &'v Value,
        object: &'v Map<String, Value>,
        depth: usize,
        path: &mut Vec<Step<'v>>,
    ) -> Result<(), String> {
        let count = object.len() as u64;
        if let Some(max) = node.max_properties.filter(|max| count > *max) {
            return Err(format!("{count} properties; at most {max}"));
        }
        if let Some(min) = node.min_properties.filter(|min| count < *min) {
            return Err(format!("{count} properties; at least {min}"));
        }
        if let Some(missing) = node.required.iter().find(|name| !object.contains_key(*name)) {
            return Err(format!("the required property `{missing}` is missing"));
        }
        for (name, needs) in &node.dependent_required {
            if object.contains_key(name) {
                if let Some(missing) = needs.iter().find(|n| !object.contains_key(*n)) {
                    return Err(format!("property `{name}` needs property `{missing}`, which is missing"));
                }
            }
        }
        for (name, schema) in &node.dependent_schemas {
            if object.contains_key(name) {
                self.check(this, *schema, value, depth + 1, path)?;
            }
        }
        for (name, member) in object {
            if let Some(names) = node.property_names {
                let key = Value::String(name.clone());
                if !self.passes(this, names, &key, depth)? {
                    return Err(format!("the property name `{name}` is not allowed by propertyNames"));
                }
            }
            let mut matched = false;
            path.push(Step::Key(name));
            for (_, schema) in node.properties.iter().filter(|(n, _)| n == name) {
                matched = true;
                self.check(this, *schema, member, depth + 1, path)?;
            }
            for (_, schema) in node.pattern_properties.iter().filter(|(p, _)| p.is_match(name)) {
                matched = true;
                self.check(this, *schema, member, depth + 1, path)?;
            }
            if !matched {
                if let Some(additional) = node.additional_properties {
                    if this.nodes[additional].never {
                        return Err(format!("the property `{name}` is not allowed (additionalProperties)"));
                    }
                    self.check(this, additional, member, depth + 1, path)?;
                }
            }
            path.pop();
        }
        Ok(())
    }
}

fn check_number(node: &Node, n: &Number) -> Result<(), String> {
    let x = n.as_f64().unwrap_or(f64::NAN);
    if let Some(m) = node.multiple_of {
        let quotient = x / m;
        if !quotient.is_finite() || (quotient - quotient.round()).abs() > 1e-9 {
            return Err(format!("{n} is not a multiple of {m}"));
        }
    }
    if let Some(Bound { value, exclusive }) = node.maximum {
        if x > value || (exclusive && x == value) {
            let than = if exclusive { "less than" } else { "at most" };
            return Err(format!("{n} is more than allowed (must be {than} {value})"));
        }
    }
    if let Some(Bound { value, exclusive }) = node.minimum {
        if x < value || (exclusive && x == value) {
            let than = if exclusive { "more than" } else { "at least" };
            return Err(format!("{n} is less than allowed (must be {than} {value})"));
        }
    }
    Ok(())
}

fn check_string(node: &Node, s: &str) -> Result<(), String> {
    if node.max_length.is_some() || node.min_length.is_some() {
        let length = s.chars().count() as u64;
        if let Some(max) = node.max_length.filter(|max| length > *max) {
            return Err(format!("a string of {length} characters; at most {max}"));
        }
        if let Some(min) = node.min_length.filter(|min| length < *min) {
            return Err(format!("a string of {length} characters; at least {min}"));
        }
    }
    if let Some(pattern) = node.pattern.as_ref().filter(|p| !p.is_match(s)) {
        return Err(format!("{} does not match the pattern {}", shown_str(s), pattern.as_str()));
    }
    Ok(())
}

/// A step into the document.
enum Step<'v> {
    Key(&'v str),
    Index(usize),
}

/// A JSON pointer (RFC 6901) of the path.
fn render(path: &[Step<'_>]) -> String {
    let mut out = String::new();
    for step in path {
        out.push('/');
        match step {
            Step::Key(key) => out.push_str(&key.replace('~', "~0").replace('/', "~1")),
            Step::Index(i) => out.push_str(&i.to_string()),
        }
    }
    if out.is_empty() {
        out.push_str("the document's root");
    }
    out
}

/// A value as errors show it: short.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn shown_str(s: &str) -> String {
    shown(&Value::String(s.to_owned()))
}

/// JSON equality, numbers by value (1 equals 1.0).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        (a, b) => a == b,
    }
}

/// The first two equal items, if any: pairwise while few, by canonical text when many (so a
/// large array costs n log n, not n²).
fn first_duplicate(items: &[Value]) -> Option<(usize, usize)> {
    const PAIRWISE: usize = 64;
    if items.len() <= PAIRWISE {
        for i in 0..items.len() {
            for j in i + 1..items.len() {
                if equal(&items[i], &items[j]) {
                    return Some((i, j));
                }
            }
        }
        return None;
    }
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(first) = seen.insert(canonical(item), i) {
            return Some((first, i));
        }
    }
    None
}

/// Text that equal values share (object keys sorted, integral numbers without a fraction).
fn canonical(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        Value::Object(object) => {
            let mut entries: Vec<String> =
                object.iter().map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical(v))).collect();
            entries.sort();
            format!("{{{}}}", entries.join(","))
        }
        other => other.to_string(),
    }
}

struct Compiler<'s> {
    root: &'s Value,
    nodes: Vec<Node>,
    patterns: usize,
    /// Nodes compiled, by the JSON pointer of their schema: each once, so references (cycles
    /// included) share them.
    by_pointer: HashMap<String, Id>,
}

impl<'s> Compiler<'s> {
    /// The node of the schema at `pointer` in the root, compiled once.
    fn compile_at(&mut self, pointer: &str) -> Result<Id, JsonSchemaError> {
        if let Some(&id) = self.by_pointer.get(pointer) {
            return Ok(id);
        }
        let schema = self
            .root
            .pointer(pointer)
            .ok_or_else(|| JsonSchemaError(format!("`$ref` to `#{pointer}`, which the schema does not have")))?;
        let id = self.nodes.len();
        self.nodes.push(Node::default());
        self.by_pointer.insert(pointer.to_owned(), id);
        let node = self.node(schema, pointer)?;
        self.nodes[id] = node;
        Ok(id)
    }

    fn regex(&mut self, pattern: &str) -> Result<Regex, String> {
        self.patterns += 1;
        if self.patterns > MAX_PATTERNS {
            return Err(format!("more than {MAX_PATTERNS} patterns"));
        }
        regex(pattern)
    }

    fn sub(&mut self, pointer: &str, key: &str) -> Result<Id, JsonSchemaError> {
        self.compile_at(&format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1")))
    }

    fn node(&mut self, schema: &'s Value, at: &str) -> Result<Node, JsonSchemaError> {
        let fault = |what: String| JsonSchemaError(format!("{what} (at #{at})"));
        let object = match schema {
            Value::Bool(true) => return Ok(Node::default()),
            Value::Bool(false) => return Ok(Node { never: true, ..Node::default() }),
            Value::Object(object) => object,
            other => return Err(fault(format!("`{}` is not a schema", shown(other)))),
        };
        for unsupported in ["$dynamicRef", "$recursiveRef", "unevaluatedProperties", "unevaluatedItems"] {
            if object.contains_key(unsupported) {
                return Err(fault(format!("`{unsupported}` is not supported")));
            }
        }
        let mut node = Node::default();
        let count = |key: &str| -> Result<Option<u64>, JsonSchemaError> {
            match object.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64))
                    .map(Some)
                    .ok_or_else(|| fault(format!("`{key}` must be a non-negative integer"))),
            }
        };
        let number = |key: &str| -> Result<Option<f64>, JsonSchemaError> {
            match object.get(key) {
                None | Some(Value::Bool(_)) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| fault(format!("`{key}` must be a number"))),
            }
        };
        if let Some(reference) = object.get("$ref") {
            let reference = reference.as_str().ok_or_else(|| fault("`$ref` must be a string".into()))?;
            let pointer = reference.strip_prefix('#').ok_or_else(|| {
                fault(format!("`$ref` to `{reference}`: only references within the schema (`#…`) are supported"))
            })?;
            let pointer = percent_decoded(pointer);
            node.reference = Some(self.compile_at(&pointer)?);
        }
        if let Some(types) = object.get("type") {
            let names: Vec<&Value> = match types {
                Value::Array(names) => names.iter().collect(),
                one => vec![one],
            };
            let kinds = names.iter().map(|name| name.as_str().and_then(Kind::named));
            let kinds: Option<Vec<Kind>> = kinds.collect();
            node.types = Some(kinds.ok_or_else(|| fault(format!("`type` {} names no JSON type", shown(types))))?);
        }
        if let Some(options) = object.get("enum") {
            let options = options.as_array().ok_or_else(|| fault("`enum` must be an array".into()))?;
            node.enumeration = Some(options.clone());
        }
        node.constant = object.get("const").cloned();
        node.multiple_of = number("multipleOf")?;
        if node.multiple_of.is_some_and(|m| m <= 0.0) {
            return Err(fault("`multipleOf` must be more than 0".into()));
        }
        node.maximum = bound(object, "exclusiveMaximum", number("maximum")?, number("exclusiveMaximum")?);
        node.minimum = bound(object, "exclusiveMinimum", number("minimum")?, number("exclusiveMinimum")?);
        node.max_length = count("maxLength")?;
        node.min_length = count("minLength")?;
        if let Some(pattern) = object.get("pattern") {
            let pattern = pattern.as_str().ok_or_else(|| fault("`pattern` must be a string".into()))?;
            node.pattern = Some(self.regex(pattern).map_err(fault)?);
        }
        // Arrays: 2020-12 spells a tuple `prefixItems` (then `items` is the rest); earlier
        // drafts spell it `items: [...]` (then `additionalItems` is the rest).
        if let Some(prefix) = object.get("prefixItems") {
            let prefix = prefix.as_array().ok_or_else(|| fault("`prefixItems` must be an array".into()))?;
            for i in 0..prefix.len() {
                node.prefix_items.push(self.compile_at(&format!("{at}/prefixItems/{i}"))?);
            }
            if object.contains_key("items") {
                node.rest_items = Some(self.sub(at, "items")?);
            }
        } else {
            match object.get("items") {
                Some(Value::Array(tuple)) => {
                    for i in 0..tuple.len() {
                        node.prefix_items.push(self.compile_at(&format!("{at}/items/{i}"))?);
                    }
                    if object.contains_key("additionalItems") {
                        node.rest_items = Some(self.sub(at, "additionalItems")?);
                    }
                }
                Some(_) => node.rest_items = Some(self.sub(at, "items")?),
                None => {}
            }
        }
        if object.contains_key("contains") {
            node.contains = Some(self.sub(at, "contains")?);
        }
        node.min_contains = count("minContains")?;
        node.max_contains = count("maxContains")?;
        node.max_items = count("maxItems")?;
        node.min_items = count("minItems")?;
        node.unique_items = object.get("uniqueItems").and_then(Value::as_bool).unwrap_or(false);
        if let Some(properties) = object.get("properties") {
            let properties = properties.as_object().ok_or_else(|| fault("`properties` must be an object".into()))?;
            for name in properties.keys() {
                let id = self.sub(&format!("{at}/properties"), name)?;
                node.properties.push((name.clone(), id));
            }
        }
        if let Some(patterns) = object.get("patternProperties") {
            let patterns = patterns.as_object().ok_or_else(|| fault("`patternProperties` must be an object".into()))?;
            for pattern in patterns.keys() {
                let compiled = self.regex(pattern).map_err(fault)?;
                node.pattern_properties.push((compiled, self.sub(&format!("{at}/patternProperties"), pattern)?));
            }
        }
        if object.contains_key("additionalProperties") {
            node.additional_properties = Some(self.sub(at, "additionalProperties")?);
        }
        if let Some(required) = object.get("required") {
            node.required = strings(required).ok_or_else(|| fault("`required` must be an array of names".into()))?;
        }
        node.max_properties = count("maxProperties")?;
        node.min_properties = count("minProperties")?;
        if object.contains_key("propertyNames") {
            node.property_names = Some(self.sub(at, "propertyNames")?);
        }
        for key in ["dependentRequired", "dependentSchemas", "dependencies"] {
            let Some(map) = object.get(key) else { continue };
            let map = map.as_object().ok_or_else(|| fault(format!("`{key}` must be an object")))?;
            for (name, dependency) in map {
                if let Some(names) = strings(dependency).filter(|_| key != "dependentSchemas") {
                    node.dependent_required.push((name.clone(), names));
                } else {
                    node.dependent_schemas.push((name.clone(), self.sub(&format!("{at}/{key}"), name)?));
                }
            }
        }
        for (key, list) in [("allOf", &mut node.all_of), ("anyOf", &mut node.any_of), ("oneOf", &mut node.one_of)] {
            let Some(schemas) = object.get(key) else { continue };
            let schemas = schemas.as_array().ok_or_else(|| fault(format!("`{key}` must be an array")))?;
            for i in 0..schemas.len() {
                list.push(self.compile_at(&format!("{at}/{key}/{i}"))?);
            }
        }
        if object.contains_key("not") {
            node.not = Some(self.sub(at, "not")?);
        }
        if object.contains_key("if") {
            let condition = self.sub(at, "if")?;
            let then = if object.contains_key("then") { Some(self.sub(at, "then")?) } else { None };
            let otherwise = if object.contains_key("else") { Some(self.sub(at, "else")?) } else { None };
            node.if_then_else = Some((condition, then, otherwise));
        }
        Ok(node)
    }
}

/// A bound from its inclusive keyword and its exclusive one (a number from draft 6, a
/// boolean modifying the inclusive one in draft 4); the stricter when both are numbers.
fn bound(
    object: &Map<String, Value>,
    exclusive_key: &str,
    inclusive: Option<f64>,
    exclusive: Option<f64>,
) -> Option<Bound> {
    let draft4_exclusive = object.get(exclusive_key).and_then(Value::as_bool).unwrap_or(false);
    match (inclusive, exclusive) {
        (Some(i), None) => Some(Bound { value: i, exclusive: draft4_exclusive }),
        (None, Some(e)) => Some(Bound { value: e, exclusive: true }),
        (Some(i), Some(e)) => {
            let is_max = exclusive_key == "exclusiveMaximum";
            let exclusive_is_stricter = if is_max { e <= i } else { e >= i };
            Some(if exclusive_is_stricter {
                Bound { value: e, exclusive: true }
            } else {
                Bound { value: i, exclusive: false }
            })
        }
        (None, None) => None,
    }
}

fn strings(value: &Value) -> Option<Vec<String>> {
    value.as_array()?.iter().map(|v| v.as_str().map(str::to_owned)).collect()
}

fn regex(pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("the pattern {} cannot be used: {}", shown_str(pattern), first_line(&e.to_string())))
}

fn first_line(text: &str) -> &str {
    text.lines().rfind(|l| l.starts_with("error:")).unwrap_or_else(|| text.lines().next().unwrap_or(text))
}

/// A `$ref` fragment with its %-escapes decoded (URI fragments escape what JSON pointers keep).
fn percent_decoded(fragment: &str) -> String {
    let bytes = fragment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b))) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

mod streaming;

#[cfg(test)]
mod tests;
