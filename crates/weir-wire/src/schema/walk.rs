//! One walk for every message: reads a body by its [`MessageSpec`], field by field, the way
//! kafka-protocol's generated decoders read it (same order, same version conditions, same
//! nullability), with no allocation and no trust in declared lengths (see [`crate::walk`]).
//!
//! Tagged fields the schema knows are walked inside their declared size, which they must fill
//! exactly (the decoder reads them from the stream whatever size is declared, so a size that
//! disagrees would shift it off this walk); a known tag at a version where it is not a tagged
//! field is refused, as the decoder refuses it; unknown tags are skipped. A visitor sees the
//! value of every field that names something ([`Entity`]), in wire order.

use super::{Entity, Field, MessageSpec, Struct, Type};
use crate::scan::ScanError;
use crate::walk::Walk;

/// A named field's value, as read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Str(Option<&'a str>),
    Uuid([u8; 16]),
    Int(i64),
    Bool(bool),
    /// An array's element count (None: a null array); its elements follow.
    Array(Option<usize>),
}

/// What a walk reports.
pub trait Visitor<'a> {
    /// A field with an [`Entity`] other than `None`, or one element of such an array of
    /// primitives.
    fn value(&mut self, _entity: Entity, _value: Value<'a>) {}
    /// The end of a struct (an array element, a nested struct or the body).
    fn end_struct(&mut self) {}
}

/// A visitor that sees nothing: the walk only checks bounds.
impl Visitor<'_> for () {}

/// Walks `body` as `spec` at `version`, which the caller has checked is one of the spec's.
/// Returns the bytes walked (the decoder ignores bytes after the last field, as brokers do).
pub fn walk_body<'a>(
    body: &'a [u8],
    spec: &'static MessageSpec,
    version: i16,
    visitor: &mut impl Visitor<'a>,
) -> Result<usize, ScanError> {
    let mut w = Walk::new(body, spec.label, version, spec.flexible.contains(version));
    if !spec.versions.contains(version) {
        return Err(w.c.err("unsupported version"));
    }
    walk_struct(&mut w, spec.body, version, visitor)?;
    Ok(w.c.pos())
}

fn walk_struct<'a>(
    w: &mut Walk<'a>,
    s: &'static Struct,
    v: i16,
    visitor: &mut impl Visitor<'a>,
) -> Result<(), ScanError> {
    for f in s.fields {
        if f.tag.is_none() && f.versions.contains(v) {
            walk_field(w, f, v, visitor)?;
        }
    }
    if w.flexible {
        w.tags_with(|tag, value| {
            let Some(f) = s.fields.iter().find(|f| f.tag.is_some_and(|t| t.tag == tag)) else {
                return Ok(false);
            };
            if !f.tag.is_some_and(|t| t.versions.contains(v)) || !f.versions.contains(v) {
                return Err(value.c.err("tag not valid at this version"));
            }
            walk_field(value, f, v, visitor).map(|()| true)
        })?;
    }
    visitor.end_struct();
    Ok(())
}

fn walk_field<'a>(
    w: &mut Walk<'a>,
    f: &'static Field,
    v: i16,
    visitor: &mut impl Visitor<'a>,
) -> Result<(), ScanError> {
    let nullable = f.nullable.contains(v);
    match f.ty {
        Type::Struct(s) => {
            // A nullable struct is a marker byte, the struct when it is 1 (the decoder reads any
            // other value as null).
            if !nullable || w.i8()? == 1 {
                walk_struct(w, s, v, visitor)?;
            }
            Ok(())
        }
        Type::Array(element) => {
            let n = if nullable { w.nullable_array()? } else { Some(w.array()?) };
            if f.entity != Entity::None {
                visitor.value(f.entity, Value::Array(n));
            }
            let n = n.unwrap_or(0);
            match *element {
                Type::Struct(s) => (0..n).try_for_each(|_| walk_struct(w, s, v, visitor)),
                _ if f.entity == Entity::None && element.fixed_width().is_some() => {
                    w.skip(n.saturating_mul(element.fixed_width().unwrap_or(0)))
                }
                ty => (0..n).try_for_each(|_| walk_value(w, ty, false, f.entity, visitor)),
            }
        }
        ty => walk_value(w, ty, nullable, f.entity, visitor),
    }
}

/// A value of a primitive type.
fn walk_value<'a>(
    w: &mut Walk<'a>,
    ty: Type,
    nullable: bool,
    entity: Entity,
    visitor: &mut impl Visitor<'a>,
) -> Result<(), ScanError> {
    let value = match ty {
        Type::String => Value::Str(if nullable { w.nullable_string()? } else { Some(w.string()?) }),
        Type::Bytes | Type::Records => {
            return if nullable || ty == Type::Records { w.nullable_bytes() } else { w.bytes() };
        }
        Type::Uuid => Value::Uuid(w.uuid()?),
        Type::Bool => Value::Bool(w.bool()?),
        Type::Int8 => Value::Int(w.i8()?.into()),
        Type::Int16 | Type::Uint16 | Type::Int32 | Type::Uint32 | Type::Int64 | Type::Float64 => {
            let width = ty.fixed_width().unwrap_or(0);
            if entity == Entity::None {
                return w.skip(width);
            }
            let b = w.c.take(width)?;
            let be = |n: usize| -> [u8; 8] {
                let mut a = [0; 8];
                a[8 - n..].copy_from_slice(&b[..n]);
                a
            };
            Value::Int(match ty {
                Type::Int16 => i16::from_be_bytes([b[0], b[1]]).into(),
                Type::Int32 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]).into(),
                Type::Int64 => i64::from_be_bytes(be(8)),
                _ => i64::from_be_bytes(be(width)), // unsigned: zero-extended
            })
        }
        Type::Struct(_) | Type::Array(_) => return Err(w.c.err("nested type where a primitive was expected")),
    };
    if entity != Entity::None {
        visitor.value(entity, value);
    }
    Ok(())
}
