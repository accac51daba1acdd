//! One walk for every message: runs a body's [`Program`] at its version, field by field, the
//! way kafka-protocol's generated decoders read it (same order, same version conditions, same
//! nullability), with no allocation and no trust in declared lengths.
//!
//! Tagged fields the schema knows are walked inside their declared size, which they must fill
//! exactly (the decoder reads them from the stream whatever size is declared, so a size that
//! disagrees would shift it off this walk); a known tag at a version where it is not a tagged
//! field is refused, as the decoder refuses it; unknown tags are skipped. A visitor sees the
//! value of every field that names something ([`Entity`]), in wire order.

use super::{Entity, MessageSpec, Op, Program, TaggedOp};
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
    /// An integer field with an [`Entity`], with its bytes in the body (for changes in place).
    fn int_field(&mut self, entity: Entity, value: i64, _raw: &'a [u8]) {
        self.value(entity, Value::Int(value));
    }
    /// A string field with an [`Entity`], with its bytes in the body, length prefix included
    /// (for changes).
    fn string_field(&mut self, entity: Entity, value: Option<&'a str>, _raw: &'a [u8]) {
        self.value(entity, Value::Str(value));
    }
    /// The walk enters (`true`) or leaves (`false`) the value of a tagged field, whose size
    /// is declared before it.
    fn tagged_field(&mut self, _inside: bool) {}
    /// The end of a struct (an array element, a nested struct or the body).
    fn end_struct(&mut self) {}
}

/// A visitor that sees nothing: the walk only checks bounds.
impl Visitor<'_> for () {}

/// Walks `body` as `spec` at `version`. Returns the bytes walked (the decoder ignores bytes
/// after the last field, as brokers do).
pub fn walk_body<'a>(
    body: &'a [u8],
    spec: &'static MessageSpec,
    version: i16,
    visitor: &mut impl Visitor<'a>,
) -> Result<usize, ScanError> {
    let mut w = Walk::new(body, spec.label, version, spec.flexible.contains(version));
    let program = spec.program(version).ok_or_else(|| w.c.err("unsupported version"))?;
    run(&mut w, program, visitor)?;
    Ok(w.c.pos())
}

/// One struct: its ops, then its tagged fields.
fn run<'a>(w: &mut Walk<'a>, program: &'static Program, visitor: &mut impl Visitor<'a>) -> Result<(), ScanError> {
    for op in program.ops {
        step(w, op, visitor)?;
    }
    if program.flexible {
        w.tags_with(|tag, value| match program.tags.iter().find(|t| t.tag == tag) {
            None => Ok(false),
            Some(TaggedOp { op: None, .. }) => Err(value.c.err("tag not valid at this version")),
            Some(TaggedOp { op: Some(op), .. }) => {
                visitor.tagged_field(true);
                let walked = step(value, op, visitor).map(|()| true);
                visitor.tagged_field(false);
                walked
            }
        })?;
    }
    visitor.end_struct();
    Ok(())
}

fn step<'a>(w: &mut Walk<'a>, op: &'static Op, visitor: &mut impl Visitor<'a>) -> Result<(), ScanError> {
    match *op {
        Op::Skip(n) => w.skip(n as usize),
        Op::String { nullable, entity } => {
            let start = w.c.pos();
            let s = if nullable { w.nullable_string()? } else { Some(w.string()?) };
            if entity != Entity::None {
                visitor.string_field(entity, s, w.c.since(start));
            }
            Ok(())
        }
        Op::Bytes { nullable: true } => w.nullable_bytes(),
        Op::Bytes { nullable: false } => w.bytes(),
        // A nullable struct is a marker byte, the struct when it is 1 (the decoder reads any
        // other value as null).
        Op::Struct { nullable, program } => {
            if !nullable || w.i8()? == 1 {
                run(w, program, visitor)?;
            }
            Ok(())
        }
        Op::Array { nullable, entity, element } => {
            let n = if nullable { w.nullable_array()? } else { Some(w.array()?) };
            if entity != Entity::None {
                visitor.value(entity, Value::Array(n));
            }
            let n = n.unwrap_or(0);
            match *element {
                Op::Skip(width) => w.skip(n.saturating_mul(width as usize)),
                _ => (0..n).try_for_each(|_| step(w, element, visitor)),
            }
        }
        Op::Int { width, unsigned, entity } => {
            let b = w.c.take(usize::from(width))?;
            let mut be = [0u8; 8];
            be[8 - b.len()..].copy_from_slice(b);
            let raw = i64::from_be_bytes(be);
            // Sign-extend the signed ones from their width.
            let shift = 64 - 8 * u32::from(width);
            let n = if unsigned || shift == 0 { raw } else { (raw << shift) >> shift };
            visitor.int_field(entity, n, b);
            Ok(())
        }
        Op::Bool(entity) => {
            let b = w.bool()?;
            visitor.value(entity, Value::Bool(b));
            Ok(())
        }
        Op::Uuid(entity) => {
            let id = w.uuid()?;
            visitor.value(entity, Value::Uuid(id));
            Ok(())
        }
    }
}
