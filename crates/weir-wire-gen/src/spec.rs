//! Reading Kafka's JSON message specs and writing them out as weir-wire's static tables.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::annotations::ANNOTATIONS;

/// One request or response spec, as read.
pub struct Message {
    name: String,
    api_key: i16,
    request: bool,
    versions: Versions,
    flexible: Versions,
    fields: Vec<Field>,
}

struct Field {
    name: String,
    ty: String,
    versions: Versions,
    nullable: Versions,
    tag: Option<(u32, Versions)>,
    entity: &'static str,
    /// The struct this field's type names, when it is one: fields defined inline, or a common
    /// struct of the message.
    fields: Option<Vec<Field>>,
}

#[derive(Clone, Copy)]
struct Versions {
    lo: i16,
    hi: i16,
}

impl Versions {
    const NONE: Versions = Versions { lo: 0, hi: -1 };

    fn contains(self, v: i16) -> bool {
        self.lo <= v && v <= self.hi
    }

    fn parse(text: &str, at: &str) -> Result<Versions, String> {
        let num = |s: &str| s.trim().parse::<i16>().map_err(|_| format!("{at}: bad version range {text:?}"));
        Ok(match text.trim() {
            "none" => Versions::NONE,
            t if t.ends_with('+') => Versions { lo: num(&t[..t.len() - 1])?, hi: i16::MAX },
            t => match t.split_once('-') {
                Some((lo, hi)) => Versions { lo: num(lo)?, hi: num(hi)? },
                None => Versions { lo: num(t)?, hi: num(t)? },
            },
        })
    }

    fn rust(self) -> String {
        if self.lo > self.hi {
            "Versions::NONE".into()
        } else if self.hi == i16::MAX {
            format!("Versions {{ lo: {}, hi: i16::MAX }}", self.lo)
        } else {
            format!("Versions {{ lo: {}, hi: {} }}", self.lo, self.hi)
        }
    }
}

/// Every request and response spec in `dir`, ordered by api key.
pub fn read_dir(dir: &Path) -> Result<Vec<Message>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut messages = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let json: Value = serde_json::from_str(&strip_comments(&text))
            .map_err(|e| format!("{}: not JSON after removing comments: {e}", path.display()))?;
        if let Some(message) = read_message(&json).map_err(|e| format!("{}: {e}", path.display()))? {
            messages.push(message);
        }
    }
    messages.sort_by_key(|m| (m.api_key, !m.request));
    if messages.is_empty() {
        return Err(format!("{}: no request or response specs", dir.display()));
    }
    for (message, path, _, _) in ANNOTATIONS {
        let found = messages.iter().find(|m| m.name == *message).is_some_and(|m| has_path(&m.fields, path));
        if !found {
            return Err(format!("annotations.rs names {message}.{path}, which the specs do not have"));
        }
    }
    Ok(messages)
}

fn has_path(fields: &[Field], path: &str) -> bool {
    let (head, rest) = path.split_once('.').map_or((path, None), |(h, r)| (h, Some(r)));
    fields.iter().any(|f| {
        f.name == head
            && match rest {
                None => true,
                Some(rest) => f.fields.as_deref().is_some_and(|children| has_path(children, rest)),
            }
    })
}

/// The spec files carry `//` comments, which JSON does not allow; a `//` inside a string stays.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_string = false;
        let mut escaped = false;
        let mut end = line.len();
        let bytes = line.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if in_string => escaped = true,
                b'"' => in_string = !in_string,
                b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&line[..end]);
        out.push('\n');
    }
    out
}

fn read_message(json: &Value) -> Result<Option<Message>, String> {
    let request = match json["type"].as_str() {
        Some("request") => true,
        Some("response") => false,
        _ => return Ok(None),
    };
    let name = str_field(json, "name", "message")?;
    let versions = Versions::parse(&str_field(json, "validVersions", &name)?, &name)?;
    // Kafka keeps removed apis (LeaderAndIsr, ...) as specs with no versions and no fields.
    if versions.lo > versions.hi {
        return Ok(None);
    }
    let api_key =
        json["apiKey"].as_i64().and_then(|k| i16::try_from(k).ok()).ok_or_else(|| format!("{name}: no apiKey"))?;
    let flexible = Versions::parse(&str_field(json, "flexibleVersions", &name)?, &name)?;
    let mut common = BTreeMap::new();
    for s in json["commonStructs"].as_array().map(Vec::as_slice).unwrap_or_default() {
        common.insert(str_field(s, "name", &name)?, s["fields"].clone());
    }
    let fields = read_fields(&json["fields"], &name, "", &common)?;
    Ok(Some(Message { name, api_key, request, versions, flexible, fields }))
}

fn read_fields(
    json: &Value,
    message: &str,
    path: &str,
    common: &BTreeMap<String, Value>,
) -> Result<Vec<Field>, String> {
    let list = json.as_array().ok_or_else(|| format!("{message}{path}: fields is not a list"))?;
    list.iter().map(|f| read_field(f, message, path, common)).collect()
}

fn read_field(json: &Value, message: &str, parent: &str, common: &BTreeMap<String, Value>) -> Result<Field, String> {
    let name = str_field(json, "name", message)?;
    let path = if parent.is_empty() { name.clone() } else { format!("{parent}.{name}") };
    let at = format!("{message}.{path}");
    let ty = str_field(json, "type", &at)?;
    let versions = Versions::parse(&str_field(json, "versions", &at)?, &at)?;
    let nullable = match json["nullableVersions"].as_str() {
        Some(v) => Versions::parse(v, &at)?,
        None => Versions::NONE,
    };
    let tag = match (json["tag"].as_u64(), json["taggedVersions"].as_str()) {
        (Some(tag), Some(v)) => Some((u32::try_from(tag).map_err(|_| format!("{at}: tag"))?, Versions::parse(v, &at)?)),
        (None, None) => None,
        _ => return Err(format!("{at}: a tag needs both tag and taggedVersions")),
    };
    let element = ty.strip_prefix("[]").unwrap_or(&ty);
    let fields = if json.get("fields").is_some() {
        Some(read_fields(&json["fields"], message, &path, common)?)
    } else if let Some(c) = common.get(element) {
        Some(read_fields(c, message, &path, common)?)
    } else if primitive(element).is_none() {
        return Err(format!("{at}: unknown type {ty:?}"));
    } else {
        None
    };
    let entity = entity(json, message, &path, &ty, fields.as_deref())?;
    Ok(Field { name, ty, versions, nullable, tag, entity, fields })
}

fn entity(json: &Value, message: &str, path: &str, ty: &str, fields: Option<&[Field]>) -> Result<&'static str, String> {
    if let Some(&(_, _, entity, _)) = ANNOTATIONS.iter().find(|(m, p, _, _)| *m == message && *p == path) {
        return Ok(entity);
    }
    let name = path.rsplit('.').next().unwrap_or(path);
    Ok(match json["entityType"].as_str() {
        Some("topicName") => "TopicName",
        Some("groupId") => "GroupId",
        Some("transactionalId") => "TransactionalId",
        // Nothing in Weir reads broker or producer ids through the walk (addresses are rewritten
        // on decoded messages), so they are skipped like any other number.
        Some("brokerId" | "producerId") => "None",
        Some(other) => return Err(format!("{message}.{path}: unknown entityType {other:?}")),
        None if ty == "uuid" && name == "TopicId" => "TopicId",
        // Fault injection sets a response's error codes in place (`weir_wire::errors`).
        None if ty == "int16" && name == "ErrorCode" && message.ends_with("Response") => {
            if path.contains('.') {
                "ErrorCode"
            } else {
                "TopLevelErrorCode"
            }
        }
        // Quotas raise a response's throttle time in place (`weir_wire::throttle`).
        None if ty == "int32" && path == "ThrottleTimeMs" && message.ends_with("Response") => "ThrottleTime",
        None if ty.starts_with("[]") && fields.is_some_and(names_a_topic) => "Topics",
        None => "None",
    })
}

/// A struct whose own fields name a topic (its name or id).
fn names_a_topic(fields: &[Field]) -> bool {
    fields.iter().any(|f| matches!(f.entity, "TopicName" | "TopicId"))
}

fn str_field(json: &Value, key: &str, at: &str) -> Result<String, String> {
    json[key].as_str().map(str::to_owned).ok_or_else(|| format!("{at}: no {key:?}"))
}

fn primitive(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "bool" => "Bool",
        "int8" => "Int8",
        "int16" => "Int16",
        "uint16" => "Uint16",
        "int32" => "Int32",
        "uint32" => "Uint32",
        "int64" => "Int64",
        "float64" => "Float64",
        "uuid" => "Uuid",
        "string" => "String",
        "bytes" => "Bytes",
        "records" => "Records",
        _ => return None,
    })
}

/// The generated file's text: per message and version, a walk program.
pub fn emit(messages: &[Message], kafka_version: &str) -> Result<String, String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Generated by weir-wire-gen from the JSON message specs of Apache Kafka {kafka_version}\n\
         // (kafka-clients jar, common/message/*.json). Do not edit: run scripts/regen-schema.sh.\n\n\
         use super::{{Direction, Entity, MessageSpec, Op, Program, TaggedOp, Versions}};\n\n\
         pub(super) const KAFKA_VERSION: &str = \"{kafka_version}\";\n"
    );
    let mut programs = Programs::default();
    let mut specs = String::new();
    let mut requests = BTreeMap::new();
    let mut responses = BTreeMap::new();
    for m in messages {
        let ident = upper_snake(&m.name);
        let mut by_version = Vec::new();
        for v in m.versions.lo..=m.versions.hi {
            by_version.push(format!("&{}", programs.compile(&ident, &m.name, &m.fields, v, m.flexible.contains(v))?));
        }
        let _ = writeln!(
            specs,
            "static {ident}: MessageSpec = MessageSpec {{ name: \"{}\", label: \"{}\", api_key: {}, \
             direction: Direction::{}, versions: {}, flexible: {}, programs: &[{}] }};\n",
            m.name,
            label(&m.name, m.request),
            m.api_key,
            if m.request { "Request" } else { "Response" },
            m.versions.rust(),
            m.flexible.rust(),
            by_version.join(", "),
        );
        let table = if m.request { &mut requests } else { &mut responses };
        if table.insert(m.api_key, ident).is_some() {
            return Err(format!("two specs for api key {} ({})", m.api_key, m.name));
        }
    }
    for (name, table) in [("REQUESTS", &requests), ("RESPONSES", &responses)] {
        let max = table.keys().next_back().copied().unwrap_or(0);
        let _ = writeln!(out, "/// Indexed by api key.\npub(super) static {name}: &[Option<&MessageSpec>] = &[");
        for key in 0..=max {
            match table.get(&key) {
                Some(spec) => {
                    let _ = writeln!(out, "    Some(&{spec}),");
                }
                None => {
                    let _ = writeln!(out, "    None,");
                }
            }
        }
        let _ = writeln!(out, "];\n");
    }
    out.push_str(&specs);
    out.push_str(&programs.text);
    Ok(out)
}

/// The programs written so far; versions whose walk of a struct is the same share one.
#[derive(Default)]
struct Programs {
    text: String,
    /// Program body -> its static's name.
    seen: BTreeMap<String, String>,
    /// Struct ident -> how many programs it has.
    count: BTreeMap<String, usize>,
}

/// One field's walk: fixed-width bytes nobody reads (merged with their neighbours), or an op.
enum Step {
    Skip(u32, String),
    Op(String, String),
}

impl Programs {
    /// The program that walks `fields` at version `v`; returns its static's name.
    fn compile(&mut self, ident: &str, at: &str, fields: &[Field], v: i16, flexible: bool) -> Result<String, String> {
        let mut ops: Vec<String> = Vec::new();
        let mut skip = (0u32, Vec::new());
        let flush = |ops: &mut Vec<String>, skip: &mut (u32, Vec<String>)| {
            if skip.0 > 0 {
                ops.push(format!("    Op::Skip({}), // {}", skip.0, skip.1.join(", ")));
            }
            *skip = (0, Vec::new());
        };
        let mut tags = Vec::new();
        for f in fields.iter().filter(|f| f.versions.contains(v)) {
            if let Some((tag, tagged)) = f.tag {
                if !flexible {
                    return Err(format!("{at}.{}: tagged at v{v}, which is not flexible", f.name));
                }
                if tagged.lo != f.versions.lo || tagged.hi != f.versions.hi {
                    return Err(format!("{at}.{}: tagged in some of its versions only", f.name));
                }
                let op = self.op(ident, at, f, v, flexible)?;
                tags.push(format!("    TaggedOp {{ tag: {tag}, op: Some({op}) }}, // {}", f.name));
                continue;
            }
            match self.step(ident, at, f, v, flexible)? {
                Step::Skip(width, name) => {
                    skip.0 += width;
                    skip.1.push(name);
                }
                Step::Op(op, name) => {
                    flush(&mut ops, &mut skip);
                    ops.push(format!("    {op}, // {name}"));
                }
            }
        }
        flush(&mut ops, &mut skip);
        // A tag the struct has in other versions: the decoder refuses it here.
        for f in fields.iter().filter(|f| !f.versions.contains(v)) {
            if let (Some((tag, _)), true) = (f.tag, flexible) {
                tags.push(format!("    TaggedOp {{ tag: {tag}, op: None }}, // {}, not at this version", f.name));
            }
        }
        let body = format!("flexible: {flexible}, ops: &[\n{}], tags: &[\n{}] }};\n", lines(&ops), lines(&tags));
        let key = format!("{ident}|{body}");
        if let Some(name) = self.seen.get(&key) {
            return Ok(name.clone());
        }
        let n = self.count.entry(ident.to_owned()).or_default();
        let name = format!("{ident}_{n}");
        *n += 1;
        let _ = writeln!(self.text, "static {name}: Program = Program {{ {body}");
        self.seen.insert(key, name.clone());
        Ok(name)
    }

    fn step(&mut self, ident: &str, at: &str, f: &Field, v: i16, flexible: bool) -> Result<Step, String> {
        if f.entity == "None" && !f.ty.starts_with("[]") {
            if let Some(width) = fixed_width(&f.ty) {
                return Ok(Step::Skip(width, f.name.clone()));
            }
        }
        Ok(Step::Op(self.op(ident, at, f, v, flexible)?, f.name.clone()))
    }

    /// The op that walks one field (inline or as a tagged field's value).
    fn op(&mut self, ident: &str, at: &str, f: &Field, v: i16, flexible: bool) -> Result<String, String> {
        let nullable = f.nullable.contains(v);
        let entity = f.entity;
        let element = f.ty.strip_prefix("[]");
        let base = element.unwrap_or(&f.ty);
        let single = |this: &mut Self, nullable: bool| -> Result<String, String> {
            Ok(match &f.fields {
                Some(children) => {
                    let child = format!("{ident}__{}", upper_snake(&f.name));
                    let program = this.compile(&child, &format!("{at}.{}", f.name), children, v, flexible)?;
                    format!("Op::Struct {{ nullable: {nullable}, program: &{program} }}")
                }
                None => match (base, fixed_width(base)) {
                    (_, Some(width)) if entity == "None" => format!("Op::Skip({width})"),
                    ("string", _) => format!("Op::String {{ nullable: {nullable}, entity: Entity::{entity} }}"),
                    ("bytes", _) => format!("Op::Bytes {{ nullable: {nullable} }}"),
                    ("records", _) => "Op::Bytes { nullable: true }".into(),
                    ("bool", _) => format!("Op::Bool(Entity::{entity})"),
                    ("uuid", _) => format!("Op::Uuid(Entity::{entity})"),
                    (ty, Some(width)) => {
                        let unsigned = ty.starts_with("uint");
                        format!("Op::Int {{ width: {width}, unsigned: {unsigned}, entity: Entity::{entity} }}")
                    }
                    (ty, None) => return Err(format!("{at}.{}: type {ty}", f.name)),
                },
            })
        };
        match element {
            Some(_) => {
                let element = single(self, false)?;
                Ok(format!("Op::Array {{ nullable: {nullable}, entity: Entity::{entity}, element: &{element} }}"))
            }
            None => single(self, nullable),
        }
    }
}

fn lines(items: &[String]) -> String {
    items.iter().map(|l| format!("{l}\n")).collect()
}

fn fixed_width(ty: &str) -> Option<u32> {
    Some(match ty {
        "bool" | "int8" => 1,
        "int16" | "uint16" => 2,
        "int32" | "uint32" => 4,
        "int64" | "float64" => 8,
        "uuid" => 16,
        _ => return None,
    })
}

/// `FetchRequest` -> `FETCH_REQUEST`.
fn upper_snake(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let boundary = i > 0
            && c.is_uppercase()
            && (chars[i - 1].is_lowercase() || chars.get(i + 1).is_some_and(|n| n.is_lowercase()));
        if boundary {
            out.push('_');
        }
        out.extend(c.to_uppercase());
    }
    out
}

/// `MetadataResponse` -> `Metadata response`, as errors name a message.
fn label(name: &str, request: bool) -> String {
    let (base, kind) =
        if request { (name.strip_suffix("Request"), "request") } else { (name.strip_suffix("Response"), "response") };
    format!("{} {kind}", base.unwrap_or(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: &str) -> Message {
        let value: Value = serde_json::from_str(&strip_comments(json)).unwrap();
        read_message(&value).unwrap().unwrap()
    }

    #[test]
    fn version_ranges_read_as_kafka_writes_them() {
        let v = |t| Versions::parse(t, "test").map(|v| (v.lo, v.hi));
        assert_eq!(v("0+"), Ok((0, i16::MAX)));
        assert_eq!(v("3-5"), Ok((3, 5)));
        assert_eq!(v("7"), Ok((7, 7)));
        assert_eq!(v("none"), Ok((0, -1)));
        assert!(v("1-x").unwrap_err().contains("bad version range"));
    }

    #[test]
    fn comments_go_but_slashes_in_strings_stay() {
        let text = "// licence\n{ \"about\": \"see http://kafka\", // trailing\n \"x\": 1 }";
        let value: Value = serde_json::from_str(&strip_comments(text)).unwrap();
        assert_eq!(value["about"], "see http://kafka");
        assert_eq!(value["x"], 1);
    }

    #[test]
    fn names_and_labels() {
        assert_eq!(upper_snake("FetchRequest"), "FETCH_REQUEST");
        assert_eq!(upper_snake("AlterUserScramCredentialsResponse"), "ALTER_USER_SCRAM_CREDENTIALS_RESPONSE");
        assert_eq!(upper_snake("SASLHandshake"), "SASL_HANDSHAKE");
        assert_eq!(label("MetadataResponse", false), "Metadata response");
        assert_eq!(label("FetchRequest", true), "Fetch request");
    }

    #[test]
    fn entities_come_from_the_spec_the_topic_id_rule_and_the_annotations() {
        let m = message(
            r#"{ "apiKey": 1, "type": "request", "name": "FetchRequest", "validVersions": "4-18",
                 "flexibleVersions": "12+", "fields": [
                   { "name": "Topics", "type": "[]FetchTopic", "versions": "0+", "fields": [
                     { "name": "Topic", "type": "string", "versions": "0-12", "entityType": "topicName" },
                     { "name": "TopicId", "type": "uuid", "versions": "13+" } ] },
                   { "name": "ForgottenTopicsData", "type": "[]ForgottenTopic", "versions": "7+", "fields": [
                     { "name": "Topic", "type": "string", "versions": "7-12", "entityType": "topicName" } ] },
                   { "name": "ClusterId", "type": "string", "versions": "12+", "nullableVersions": "12+",
                     "taggedVersions": "12+", "tag": 0 } ] }"#,
        );
        let entity = |i: usize| m.fields[i].entity;
        assert_eq!(entity(0), "Topics");
        assert_eq!(m.fields[0].fields.as_ref().unwrap()[1].entity, "TopicId");
        // Annotated away: a forgotten topic is not read.
        assert_eq!(m.fields[1].fields.as_ref().unwrap()[0].entity, "None");
        assert_eq!(entity(1), "None");
        assert!(m.fields[2].tag.is_some());
        let text = emit(&[m], "9.9.9").unwrap();
        assert!(text.contains("REQUESTS: &[Option<&MessageSpec>] = &[\n    None,\n    Some(&FETCH_REQUEST),\n];"));
        // v4-6 walk alike, v7-11 add ForgottenTopicsData, v12+ are flexible, v13+ name topics by id.
        assert!(text.contains("programs: &[&FETCH_REQUEST_0, &FETCH_REQUEST_0, &FETCH_REQUEST_0, &FETCH_REQUEST_1,"));
        assert!(text.contains("Op::Array { nullable: false, entity: Entity::Topics, element: &Op::Struct { nullable: false, program: &FETCH_REQUEST__TOPICS_0 } }, // Topics"));
        assert!(text.contains("Op::Uuid(Entity::TopicId), // TopicId"));
        assert!(text.contains(
            "TaggedOp { tag: 0, op: Some(Op::String { nullable: true, entity: Entity::None }) }, // ClusterId"
        ));
    }

    #[test]
    fn unknown_types_and_half_tags_are_refused() {
        let bad = |fields: &str| {
            let json = format!(
                r#"{{ "apiKey": 0, "type": "request", "name": "XRequest", "validVersions": "0",
                     "flexibleVersions": "none", "fields": [{fields}] }}"#
            );
            read_message(&serde_json::from_str(&json).unwrap()).err().unwrap()
        };
        assert!(bad(r#"{ "name": "A", "type": "int128", "versions": "0+" }"#).contains("unknown type"));
        assert!(bad(r#"{ "name": "A", "type": "int8", "versions": "0+", "tag": 1 }"#).contains("tag"));
    }
}
