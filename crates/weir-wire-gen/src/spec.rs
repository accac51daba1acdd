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
        Some("brokerId") => "BrokerId",
        Some("producerId") => "ProducerId",
        Some(other) => return Err(format!("{message}.{path}: unknown entityType {other:?}")),
        None if ty == "uuid" && name == "TopicId" => "TopicId",
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

/// The generated file's text.
pub fn emit(messages: &[Message], kafka_version: &str) -> Result<String, String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Generated by weir-wire-gen from the JSON message specs of Apache Kafka {kafka_version}\n\
         // (kafka-clients jar, common/message/*.json). Do not edit: run scripts/regen-schema.sh.\n\n\
         use super::{{Direction, Entity, Field, MessageSpec, Struct, Tag, Type, Versions}};\n\n\
         pub(super) const KAFKA_VERSION: &str = \"{kafka_version}\";\n"
    );
    let mut statics = String::new();
    let mut requests = BTreeMap::new();
    let mut responses = BTreeMap::new();
    for m in messages {
        let ident = upper_snake(&m.name);
        emit_struct(&mut statics, &ident, &m.name, &m.fields)?;
        let _ = writeln!(
            statics,
            "static {ident}_SPEC: MessageSpec = MessageSpec {{ name: \"{}\", label: \"{}\", api_key: {}, \
             direction: Direction::{}, versions: {}, flexible: {}, body: &{ident} }};\n",
            m.name,
            label(&m.name, m.request),
            m.api_key,
            if m.request { "Request" } else { "Response" },
            m.versions.rust(),
            m.flexible.rust(),
        );
        let table = if m.request { &mut requests } else { &mut responses };
        if table.insert(m.api_key, format!("{ident}_SPEC")).is_some() {
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
    out.push_str(&statics);
    Ok(out)
}

/// Writes the struct `ident` and, before it, every struct its fields name.
fn emit_struct(out: &mut String, ident: &str, name: &str, fields: &[Field]) -> Result<(), String> {
    let mut lines = Vec::new();
    for f in fields {
        let element = f.ty.strip_prefix("[]");
        let base = element.unwrap_or(&f.ty);
        let inner = match &f.fields {
            Some(children) => {
                let child = format!("{ident}__{}", upper_snake(&f.name));
                emit_struct(out, &child, base, children)?;
                format!("Type::Struct(&{child})")
            }
            None => format!("Type::{}", primitive(base).ok_or_else(|| format!("{name}.{}: type {base}", f.name))?),
        };
        let ty = if element.is_some() { format!("Type::Array(&{inner})") } else { inner };
        let tag = match f.tag {
            Some((tag, v)) => format!("Some(Tag {{ tag: {tag}, versions: {} }})", v.rust()),
            None => "None".into(),
        };
        lines.push(format!(
            "    Field {{ name: \"{}\", ty: {ty}, versions: {}, nullable: {}, tag: {tag}, entity: Entity::{} }},",
            f.name,
            f.versions.rust(),
            f.nullable.rust(),
            f.entity
        ));
    }
    let _ = writeln!(out, "static {ident}: Struct = Struct {{ name: \"{name}\", fields: &[");
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "] }};\n");
    Ok(())
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
