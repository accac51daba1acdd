//! JSON paths of the small kind transform rules name (`$.card.number`, `$.items[*].price`,
//! `$['odd key'][0]`), and the spans of a JSON document's values they select, found in one
//! pass over the text: a rule that masks a field replaces exactly those bytes and leaves the
//! rest of the document as it was written (key order, spacing, numbers).

use std::ops::Range;

/// How deep a document may nest before it is refused (the scanner recurses).
const MAX_DEPTH: usize = 128;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
    /// `[*]` or `.*`: every member of an object or element of an array.
    Any,
}

/// A parsed path: `$` then steps `.name`, `['name']` / `["name"]`, `[index]`, `[*]`, `.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text.strip_prefix('$').ok_or("a JSON path starts with `$`")?;
        let bytes = rest.as_bytes();
        let mut steps = Vec::new();
        let mut at = 0;
        let column = |at: usize| at + 2;
        while at < bytes.len() {
            match bytes[at] {
                b'.' => {
                    let end = rest[at + 1..].find(['.', '[']).map_or(rest.len(), |e| at + 1 + e);
                    let name = &rest[at + 1..end];
                    if name.is_empty() {
                        return Err(format!("a field name is missing at column {}", column(at + 1)));
                    }
                    steps.push(if name == "*" { Step::Any } else { Step::Field(name.to_owned()) });
                    at = end;
                }
                b'[' => {
                    let end = rest[at..]
                        .find(']')
                        .map(|e| at + e)
                        .ok_or_else(|| format!("a `[` at column {} has no `]`", column(at)))?;
                    let inside = &rest[at + 1..end];
                    let quoted = inside.len() >= 2
                        && ((inside.starts_with('\'') && inside.ends_with('\''))
                            || (inside.starts_with('"') && inside.ends_with('"')));
                    steps.push(if inside == "*" {
                        Step::Any
                    } else if quoted {
                        Step::Field(inside[1..inside.len() - 1].to_owned())
                    } else {
                        Step::Index(inside.parse().map_err(|_| {
                            format!("`[{inside}]` at column {} is not an index, `*` or a quoted name", column(at))
                        })?)
                    });
                    at = end + 1;
                }
                _ => return Err(format!("expected `.` or `[` at column {}", column(at))),
            }
        }
        Ok(JsonPath { steps })
    }

    /// Whether it may select more than one value.
    pub fn has_wildcard(&self) -> bool {
        self.steps.contains(&Step::Any)
    }
}

/// Why a document could not be scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not JSON at byte {at}: {what}")]
pub struct NotJson {
    pub at: usize,
    pub what: &'static str,
}

/// The spans of the values `paths` select in `doc`, each with the index of the first path
/// that selected it, in document order. A value selected is not looked into further (a path
/// reaching inside it selects nothing more). Fails when `doc` is not one JSON value.
pub fn select(doc: &[u8], paths: &[&JsonPath]) -> Result<Vec<(Range<usize>, usize)>, NotJson> {
    let mut scanner = Scanner { doc, at: 0, found: Vec::new() };
    let live: Vec<(usize, usize)> = (0..paths.len()).map(|p| (p, 0)).collect();
    scanner.skip_space();
    scanner.value(paths, &live, 0)?;
    scanner.skip_space();
    if scanner.at != doc.len() {
        return Err(scanner.fault("bytes after the value"));
    }
    Ok(scanner.found)
}

/// The first value `path` selects in `doc`, if any.
pub fn find<'a>(doc: &'a [u8], path: &JsonPath) -> Result<Option<&'a [u8]>, NotJson> {
    Ok(select(doc, &[path])?.into_iter().next().map(|(span, _)| &doc[span]))
}

struct Scanner<'a> {
    doc: &'a [u8],
    at: usize,
    found: Vec<(Range<usize>, usize)>,
}

impl Scanner<'_> {
    fn fault(&self, what: &'static str) -> NotJson {
        NotJson { at: self.at, what }
    }

    fn peek(&self) -> Option<u8> {
        self.doc.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), NotJson> {
        self.skip_space();
        if self.peek() != Some(byte) {
            return Err(self.fault(what));
        }
        self.at += 1;
        Ok(())
    }

    /// One value; `live` are the paths still following this branch, with the steps taken.
    fn value(&mut self, paths: &[&JsonPath], live: &[(usize, usize)], depth: usize) -> Result<(), NotJson> {
        if depth > MAX_DEPTH {
            return Err(self.fault("nested deeper than 128"));
        }
        self.skip_space();
        let start = self.at;
        let selected = live.iter().find(|(p, taken)| paths[*p].steps.len() == *taken).map(|(p, _)| *p);
        // A selected value is not looked into: the paths going deeper stop here.
        let live: &[(usize, usize)] = if selected.is_some() { &[] } else { live };
        match self.peek().ok_or_else(|| self.fault("a value is missing"))? {
            b'{' => self.object(paths, live, depth)?,
            b'[' => self.array(paths, live, depth)?,
            b'"' => self.string()?,
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return Err(self.fault("expected a value")),
        }
        if let Some(path) = selected {
            self.found.push((start..self.at, path));
        }
        Ok(())
    }

    fn object(&mut self, paths: &[&JsonPath], live: &[(usize, usize)], depth: usize) -> Result<(), NotJson> {
        self.at += 1;
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        let mut next = Vec::new();
        loop {
            self.skip_space();
            let key_start = self.at;
            self.string()?;
            let key = &self.doc[key_start + 1..self.at - 1];
            next.clear();
            for &(p, taken) in live {
                let follows = match &paths[p].steps[taken] {
                    Step::Any => true,
                    Step::Field(name) => key_is(key, name),
                    Step::Index(_) => false,
                };
                if follows {
                    next.push((p, taken + 1));
                }
            }
            self.expect(b':', "expected `:` after a key")?;
            self.value(paths, &next, depth + 1)?;
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.fault("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self, paths: &[&JsonPath], live: &[(usize, usize)], depth: usize) -> Result<(), NotJson> {
        self.at += 1;
        self.skip_space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        let mut next = Vec::new();
        for index in 0.. {
            next.clear();
            for &(p, taken) in live {
                if matches!(&paths[p].steps[taken], Step::Any) || paths[p].steps[taken] == Step::Index(index) {
                    next.push((p, taken + 1));
                }
            }
            self.value(paths, &next, depth + 1)?;
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.fault("expected `,` or `]`")),
            }
        }
        Ok(())
    }

    fn string(&mut self) -> Result<(), NotJson> {
        if self.peek() != Some(b'"') {
            return Err(self.fault("expected a string"));
        }
        self.at += 1;
        loop {
            match self.peek().ok_or_else(|| self.fault("a string is not closed"))? {
                b'"' => {
                    self.at += 1;
                    return Ok(());
                }
                b'\\' => {
                    let escaped = self.doc.get(self.at + 1).copied();
                    match escaped {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 2,
                        Some(b'u') => {
                            let hex =
                                self.doc.get(self.at + 2..self.at + 6).ok_or_else(|| self.fault("a cut `\\u`"))?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(self.fault("a `\\u` without four hex digits"));
                            }
                            self.at += 6;
                        }
                        _ => return Err(self.fault("an unknown escape")),
                    }
                }
                0..=0x1f => return Err(self.fault("a control character in a string")),
                _ => self.at += 1,
            }
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), NotJson> {
        if !self.doc[self.at..].starts_with(word) {
            return Err(self.fault("expected true, false or null"));
        }
        self.at += word.len();
        Ok(())
    }

    fn number(&mut self) -> Result<(), NotJson> {
        let start = self.at;
        while matches!(self.peek(), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.doc[start..self.at]).unwrap_or_default();
        // Within the characters above, serde's number grammar is JSON's.
        if serde_json::from_str::<serde_json::Number>(text).is_err() {
            self.at = start;
            return Err(self.fault("a malformed number"));
        }
        Ok(())
    }
}

/// Whether a key as written (between its quotes) is `name`.
fn key_is(raw: &[u8], name: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == name.as_bytes();
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).is_ok_and(|key| key == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> JsonPath {
        JsonPath::parse(text).unwrap()
    }

    fn selected<'a>(doc: &'a str, paths: &[&str]) -> Vec<(&'a str, usize)> {
        let paths: Vec<JsonPath> = paths.iter().map(|p| path(p)).collect();
        let refs: Vec<&JsonPath> = paths.iter().collect();
        select(doc.as_bytes(), &refs).unwrap().into_iter().map(|(span, p)| (&doc[span], p)).collect()
    }

    #[test]
    fn paths_select_fields_indexes_and_wildcards_as_written() {
        let doc = r#"{"card": {"number": "4111 1111", "cvc": 123}, "items": [{"sku": "a", "price": 1.5},
            {"sku": "b", "price": -2e3}], "odd key": [true, null], "n\u0061me": "x"}"#;
        assert_eq!(selected(doc, &["$.card.number"]), [("\"4111 1111\"", 0)]);
        assert_eq!(selected(doc, &["$.items[*].price"]), [("1.5", 0), ("-2e3", 0)]);
        assert_eq!(selected(doc, &["$['odd key'][1]", "$.name"]), [("null", 0), ("\"x\"", 1)]);
        assert_eq!(selected(doc, &["$.card", "$.card.cvc"]), [(r#"{"number": "4111 1111", "cvc": 123}"#, 0)]);
        assert_eq!(selected(doc, &["$.card.*"]).len(), 2);
        assert_eq!(selected(doc, &["$.missing", "$.items[7]", "$.card[0]"]), []);
        assert_eq!(selected(doc, &["$"]).len(), 1);
        assert!(path("$.items[*].price").has_wildcard() && !path("$.a['b'][0]").has_wildcard());
    }

    #[test]
    fn what_is_not_json_is_said_with_where() {
        let paths = [path("$.a")];
        let refs: Vec<&JsonPath> = paths.iter().collect();
        for (doc, what) in [
            ("{\"a\": 1", "expected `,` or `}`"),
            ("{\"a\": tru}", "expected true, false or null"),
            ("{\"a\": 01}", "a malformed number"),
            ("{\"a\": \"x\\q\"}", "an unknown escape"),
            ("{} {}", "bytes after the value"),
            ("plain text", "expected a value"),
            ("", "a value is missing"),
        ] {
            assert_eq!(select(doc.as_bytes(), &refs).unwrap_err().what, what, "{doc}");
        }
        let deep = "[".repeat(10_000);
        assert_eq!(select(deep.as_bytes(), &refs).unwrap_err().what, "nested deeper than 128");
    }

    #[test]
    fn bad_paths_are_refused_with_the_column() {
        assert!(JsonPath::parse("a.b").unwrap_err().contains("starts with `$`"));
        assert!(JsonPath::parse("$.a..b").unwrap_err().contains("missing at column 5"));
        assert!(JsonPath::parse("$.a[x]").unwrap_err().contains("not an index"));
        assert!(JsonPath::parse("$.a[0").unwrap_err().contains("has no `]`"));
        assert!(JsonPath::parse("$a").unwrap_err().contains("expected `.` or `[` at column 2"));
    }
}
