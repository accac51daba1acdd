//! AMQP field tables walked in place: a field's name, its type octet and its value, with
//! RabbitMQ's type letters (the ones its clients send). Nothing is built; a caller looks for
//! the fields it needs (AMQPLAIN's LOGIN and PASSWORD) and skips the rest, nested tables and
//! arrays by their length.

use crate::AmqpError;

/// One field of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub kind: u8,
    /// The value's bytes as they are on the wire (a long string's without its length).
    pub value: &'a [u8],
}

/// The fields of a table's body (the bytes after its four-byte length), in order; an error
/// for the first that is cut short or of an unknown type.
pub fn fields(body: &[u8]) -> impl Iterator<Item = Result<Field<'_>, AmqpError>> {
    let mut at = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || at >= body.len() {
            return None;
        }
        let result = field(body, &mut at);
        failed = result.is_err();
        Some(result)
    })
}

fn malformed(what: &'static str, at: usize) -> AmqpError {
    AmqpError::Malformed { method: "field table", what, at }
}

fn field<'a>(body: &'a [u8], at: &mut usize) -> Result<Field<'a>, AmqpError> {
    let name_len = *body.get(*at).ok_or_else(|| malformed("a field name cut short", *at))? as usize;
    let name = body.get(*at + 1..*at + 1 + name_len).ok_or_else(|| malformed("a field name cut short", *at))?;
    *at += 1 + name_len;
    let kind = *body.get(*at).ok_or_else(|| malformed("a field without a type", *at))?;
    *at += 1;
    let value = value(body, kind, at)?;
    Ok(Field { name, kind, value })
}

/// The value of type `kind` at `at`, which moves past it.
fn value<'a>(body: &'a [u8], kind: u8, at: &mut usize) -> Result<&'a [u8], AmqpError> {
    let fixed = match kind {
        b't' | b'b' | b'B' => Some(1),
        b's' | b'u' => Some(2),
        b'I' | b'i' | b'f' => Some(4),
        b'l' | b'L' | b'd' | b'T' => Some(8),
        b'D' => Some(5),
        b'V' => Some(0),
        b'S' | b'x' | b'A' | b'F' => None,
        _ => return Err(malformed("a field of unknown type", *at - 1)),
    };
    let start = *at;
    let (from, len) = match fixed {
        Some(len) => (start, len),
        None => {
            let len = body.get(start..start + 4).ok_or_else(|| malformed("a value's length cut short", start))?;
            (start + 4, u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
        }
    };
    let end =
        from.checked_add(len).filter(|end| *end <= body.len()).ok_or_else(|| malformed("a value cut short", start))?;
    *at = end;
    Ok(&body[from..end])
}

/// The long-string field `name` of a table body, if it has one.
pub fn string_field<'a>(body: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, AmqpError> {
    for field in fields(body) {
        let field = field?;
        if field.name == name.as_bytes() && field.kind == b'S' {
            return Ok(Some(field.value));
        }
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) fn encode_strings(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(b'S');
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_fields_are_found_past_values_of_every_type() {
        let mut body = Vec::new();
        body.extend_from_slice(b"\x01at\x01"); // a boolean
        body.extend_from_slice(b"\x01nF\x00\x00\x00\x07\x01xI\x00\x00\x00\x05"); // a nested table
        body.extend_from_slice(b"\x01aA\x00\x00\x00\x03b\x01V"); // an array of a byte and a void
        body.extend_from_slice(&encode_strings(&[("LOGIN", b"alice"), ("PASSWORD", b"s3cret")]));
        assert_eq!(string_field(&body, "PASSWORD"), Ok(Some(&b"s3cret"[..])));
        assert_eq!(string_field(&body, "LOGIN"), Ok(Some(&b"alice"[..])));
        assert_eq!(string_field(&body, "nothing"), Ok(None));
        assert_eq!(fields(&body).count(), 5);
    }

    #[test]
    fn cut_or_unknown_values_are_errors_not_panics() {
        assert!(string_field(b"\x05LOGINS\x00\x00\x01\x00ab", "LOGIN").is_err());
        assert!(string_field(b"\x05LOGINZ", "LOGIN").is_err());
        assert!(string_field(b"\x09LOGIN", "LOGIN").is_err());
        // A nested table that runs past the table; nested values are skipped by their
        // length, never descended into (so no nesting can run the stack out).
        assert!(string_field(b"\x01nF\x00\x00\x00\x09\x05x", "x").is_err());
        let mut deep = Vec::new();
        for _ in 0..10_000 {
            deep.extend_from_slice(b"\x01nF\x00\x00\x00\x00");
        }
        assert_eq!(string_field(&deep, "x"), Ok(None));
        for cut in 0..20 {
            let body = encode_strings(&[("LOGIN", b"alice")]);
            let _ = string_field(&body[..cut.min(body.len())], "LOGIN");
        }
    }
}
