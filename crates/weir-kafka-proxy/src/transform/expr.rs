//! The predicate language of `drop_if`: a small expression over one record, documented in
//! docs/event-policies.md.
//!
//! ```text
//! expr     := or
//! or       := and (("||" | "or") and)*
//! and      := unary (("&&" | "and") unary)*
//! unary    := ("!" | "not") unary | compare
//! compare  := operand (("==" | "!=" | "<" | "<=" | ">" | ">=") operand)?
//! operand  := "(" expr ")" | key | value | header("name") | json("$.path")
//!           | starts_with(operand, operand) | "text" | 'text' | number | true | false | null
//! ```
//!
//! `key`, `value` and `header(..)` are the record's bytes as text (null when absent; the first
//! header of that name); `json(..)` the value's field at a path (null when absent or the value
//! is not JSON). `==` compares numbers as numbers and texts as texts, values of different kinds
//! are never equal and never ordered; an operand alone holds when it is neither null nor false.

use std::borrow::Cow;

use super::json_path::{find, JsonPath};

/// What an operand is for one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    Number(f64),
    Text(Cow<'a, str>),
    /// A JSON object or array: only ever "not null".
    Composite,
}

/// What an expression reads of a record.
pub trait RecordFacts {
    fn key(&self) -> Option<&[u8]>;
    fn value(&self) -> Option<&[u8]>;
    fn header(&self, name: &str) -> Option<Option<&[u8]>>;
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Key,
    Value,
    Header(String),
    Json(JsonPath),
    StartsWith(Box<Operand>, Box<Operand>),
    Literal(Literal),
    Nested(Box<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed predicate.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr(Node);

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Compare(Operand, Op, Operand),
    Holds(Operand),
}

impl Expr {
    /// Parses `text`; the error names the column.
    pub fn parse(text: &str) -> Result<Expr, String> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, at: 0, depth: 0 };
        let expr = parser.or()?;
        match parser.tokens.get(parser.at) {
            None => Ok(Expr(expr)),
            Some((column, token)) => Err(format!("unexpected {} at column {column}", token.describe())),
        }
    }

    /// Whether it holds for `record`.
    pub fn holds(&self, record: &dyn RecordFacts) -> bool {
        self.0.holds(record)
    }
}

impl Node {
    fn holds(&self, record: &dyn RecordFacts) -> bool {
        match self {
            Node::Or(all) => all.iter().any(|e| e.holds(record)),
            Node::And(all) => all.iter().all(|e| e.holds(record)),
            Node::Not(inner) => !inner.holds(record),
            Node::Holds(operand) => truthy(&operand.eval(record)),
            Node::Compare(left, op, right) => compare(&left.eval(record), *op, &right.eval(record)),
        }
    }
}

fn truthy(val: &Val<'_>) -> bool {
    !matches!(val, Val::Null | Val::Bool(false))
}

fn compare(left: &Val<'_>, op: Op, right: &Val<'_>) -> bool {
    use std::cmp::Ordering;
    let order = match (left, right) {
        (Val::Number(a), Val::Number(b)) => a.partial_cmp(b),
        (Val::Text(a), Val::Text(b)) => Some(a.cmp(b)),
        (Val::Bool(a), Val::Bool(b)) if matches!(op, Op::Eq | Op::Ne) => Some(a.cmp(b)),
        (Val::Null, Val::Null) if matches!(op, Op::Eq | Op::Ne) => Some(Ordering::Equal),
        _ => None,
    };
    match (op, order) {
        (Op::Ne, None) => true,
        (_, None) => false,
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Ne, Some(o)) => o != Ordering::Equal,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
    }
}

fn text(bytes: Option<&[u8]>) -> Val<'_> {
    bytes.map_or(Val::Null, |b| Val::Text(String::from_utf8_lossy(b)))
}

impl Operand {
    fn eval<'r>(&self, record: &'r dyn RecordFacts) -> Val<'r> {
        match self {
            Operand::Key => text(record.key()),
            Operand::Value => text(record.value()),
            Operand::Header(name) => text(record.header(name).flatten()),
            Operand::Json(path) => json_at(record.value(), path),
            Operand::StartsWith(whole, prefix) => match (whole.eval(record), prefix.eval(record)) {
                (Val::Text(whole), Val::Text(prefix)) => Val::Bool(whole.starts_with(prefix.as_ref())),
                _ => Val::Bool(false),
            },
            Operand::Literal(Literal::Null) => Val::Null,
            Operand::Literal(Literal::Bool(b)) => Val::Bool(*b),
            Operand::Literal(Literal::Number(n)) => Val::Number(*n),
            Operand::Literal(Literal::Text(t)) => Val::Text(Cow::Owned(t.clone())),
            Operand::Nested(expr) => Val::Bool(expr.holds(record)),
        }
    }
}

/// The value's field at `path`; a value in the schema registry's wire format (magic byte 0
/// and a schema id) is read after its five bytes.
fn json_at<'r>(value: Option<&'r [u8]>, path: &JsonPath) -> Val<'r> {
    let Some(doc) = value.map(super::json_document) else { return Val::Null };
    let Ok(Some(raw)) = find(doc, path) else { return Val::Null };
    match raw.first() {
        Some(b'{' | b'[') => Val::Composite,
        Some(b'"') => serde_json::from_slice::<String>(raw).map_or(Val::Null, |s| Val::Text(Cow::Owned(s))),
        Some(b't') => Val::Bool(true),
        Some(b'f') => Val::Bool(false),
        Some(b'n') | None => Val::Null,
        Some(_) => std::str::from_utf8(raw).ok().and_then(|n| n.parse().ok()).map_or(Val::Null, Val::Number),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Symbol(&'static str),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("`{w}`"),
            Token::Text(t) => format!("text {t:?}"),
            Token::Number(n) => format!("number {n}"),
            Token::Symbol(s) => format!("`{s}`"),
        }
    }
}

const SYMBOLS: [&str; 13] = ["==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", ",", "="];

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        let column = at + 1;
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut out = String::new();
            loop {
                match chars.next() {
                    None => return Err(format!("the text opened at column {column} is not closed")),
                    Some((_, '\\')) => match chars.next() {
                        Some((_, e)) if e == c || e == '\\' => out.push(e),
                        _ => return Err(format!("in the text at column {column}: `\\` escapes only a quote or `\\`")),
                    },
                    Some((_, q)) if q == c => break,
                    Some((_, other)) => out.push(other),
                }
            }
            tokens.push((column, Token::Text(out)));
        } else if c.is_ascii_digit() || (c == '-' && text[at + 1..].starts_with(|d: char| d.is_ascii_digit())) {
            let end = text[at + 1..]
                .find(|d: char| !(d.is_ascii_digit() || d == '.' || d == 'e' || d == 'E'))
                .map_or(text.len(), |e| at + 1 + e);
            let number = text[at..end]
                .parse()
                .map_err(|_| format!("`{}` at column {column} is not a number", &text[at..end]))?;
            tokens.push((column, Token::Number(number)));
            while chars.peek().is_some_and(|&(i, _)| i < end) {
                chars.next();
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let end =
                text[at..].find(|d: char| !(d.is_ascii_alphanumeric() || d == '_')).map_or(text.len(), |e| at + e);
            tokens.push((column, Token::Word(text[at..end].to_owned())));
            while chars.peek().is_some_and(|&(i, _)| i < end) {
                chars.next();
            }
        } else {
            let symbol = SYMBOLS
                .iter()
                .find(|s| text[at..].starts_with(**s))
                .ok_or_else(|| format!("unexpected `{c}` at column {column}"))?;
            if *symbol == "=" {
                return Err(format!("`=` at column {column}: compare with `==`"));
            }
            tokens.push((column, Token::Symbol(symbol)));
            for _ in 0..symbol.len() {
                chars.next();
            }
        }
    }
    Ok(tokens)
}

/// How deep parentheses and `!` may nest (the parser recurses).
const MAX_NESTING: usize = 32;

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn column(&self) -> String {
        self.tokens.get(self.at).map_or("the end".to_owned(), |(c, _)| format!("column {c}"))
    }

    fn eat(&mut self, symbol: &str, word: &str) -> bool {
        let hit = match self.peek() {
            Some(Token::Symbol(s)) => *s == symbol,
            Some(Token::Word(w)) => !word.is_empty() && w == word,
            _ => false,
        };
        if hit {
            self.at += 1;
        }
        hit
    }

    fn expect(&mut self, symbol: &str) -> Result<(), String> {
        if self.eat(symbol, "") {
            return Ok(());
        }
        Err(format!("expected `{symbol}` at {}", self.column()))
    }

    fn or(&mut self) -> Result<Node, String> {
        let mut all = vec![self.and()?];
        while self.eat("||", "or") {
            all.push(self.and()?);
        }
        Ok(if all.len() == 1 { all.remove(0) } else { Node::Or(all) })
    }

    fn and(&mut self) -> Result<Node, String> {
        let mut all = vec![self.unary()?];
        while self.eat("&&", "and") {
            all.push(self.unary()?);
        }
        Ok(if all.len() == 1 { all.remove(0) } else { Node::And(all) })
    }

    fn nest<T>(&mut self, inner: impl FnOnce(&mut Self) -> Result<T, String>) -> Result<T, String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!("nested deeper than {MAX_NESTING} at {}", self.column()));
        }
        let out = inner(self);
        self.depth -= 1;
        out
    }

    fn unary(&mut self) -> Result<Node, String> {
        if self.eat("!", "not") {
            return self.nest(|p| Ok(Node::Not(Box::new(p.unary()?))));
        }
        let left = self.operand()?;
        let op = match self.peek() {
            Some(Token::Symbol("==")) => Op::Eq,
            Some(Token::Symbol("!=")) => Op::Ne,
            Some(Token::Symbol("<")) => Op::Lt,
            Some(Token::Symbol("<=")) => Op::Le,
            Some(Token::Symbol(">")) => Op::Gt,
            Some(Token::Symbol(">=")) => Op::Ge,
            _ => return Ok(Node::Holds(left)),
        };
        self.at += 1;
        Ok(Node::Compare(left, op, self.operand()?))
    }

    fn text_argument(&mut self, function: &str) -> Result<String, String> {
        self.expect("(")?;
        let Some((_, Token::Text(arg))) = self.tokens.get(self.at).cloned() else {
            return Err(format!("{function}(..) takes a quoted text, at {}", self.column()));
        };
        self.at += 1;
        self.expect(")")?;
        Ok(arg)
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let column = self.column();
        let Some(token) = self.peek().cloned() else { return Err("an operand is missing at the end".into()) };
        self.at += 1;
        Ok(match token {
            Token::Symbol("(") => {
                let inner = self.nest(|p| p.or())?;
                self.expect(")")?;
                Operand::Nested(Box::new(inner))
            }
            Token::Text(t) => Operand::Literal(Literal::Text(t)),
            Token::Number(n) => Operand::Literal(Literal::Number(n)),
            Token::Word(word) => match word.as_str() {
                "key" => Operand::Key,
                "value" => Operand::Value,
                "true" => Operand::Literal(Literal::Bool(true)),
                "false" => Operand::Literal(Literal::Bool(false)),
                "null" => Operand::Literal(Literal::Null),
                "header" => Operand::Header(self.text_argument("header")?),
                "json" => {
                    let path = JsonPath::parse(&self.text_argument("json")?).map_err(|e| format!("in json(..) at {column}: {e}"))?;
                    if path.has_wildcard() {
                        return Err(format!("json(..) at {column} names one field: no `*`"));
                    }
                    Operand::Json(path)
                }
                "starts_with" => {
                    self.expect("(")?;
                    let whole = self.nest(|p| p.operand())?;
                    self.expect(",")?;
                    let prefix = self.nest(|p| p.operand())?;
                    self.expect(")")?;
                    Operand::StartsWith(Box::new(whole), Box::new(prefix))
                }
                other => {
                    return Err(format!(
                        "`{other}` at {column} is not known (key, value, header(..), json(..), starts_with(..), true, false, null)"
                    ))
                }
            },
            Token::Symbol(s) => return Err(format!("expected an operand at {column}, found `{s}`")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Record {
        key: Option<&'static [u8]>,
        value: Option<&'static [u8]>,
        headers: Vec<(&'static str, Option<&'static [u8]>)>,
    }

    impl RecordFacts for Record {
        fn key(&self) -> Option<&[u8]> {
            self.key
        }
        fn value(&self) -> Option<&[u8]> {
            self.value
        }
        fn header(&self, name: &str) -> Option<Option<&[u8]>> {
            self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        }
    }

    fn order() -> Record {
        Record {
            key: Some(b"eu-17"),
            value: Some(br#"{"amount": 250.5, "region": "eu", "test": false, "lines": [1, 2], "note": null}"#),
            headers: vec![("source", Some(b"web")), ("empty", None)],
        }
    }

    fn holds(text: &str) -> bool {
        Expr::parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).holds(&order())
    }

    #[test]
    fn predicates_read_keys_headers_and_json_fields() {
        assert!(holds(r#"json("$.amount") > 100 && json("$.region") == "eu""#));
        assert!(!holds(r#"json("$.amount") > 300 or json('$.region') != 'eu'"#));
        assert!(holds(r#"header("source") == "web" and not header("missing")"#));
        assert!(holds(r#"header("empty") == null && header("missing") == null"#));
        assert!(holds(r#"starts_with(key, "eu-") && !json("$.test")"#));
        assert!(holds(r#"json("$.lines") && json("$.lines") != 1 && json("$.nope") == null"#));
        assert!(holds(r#"(json("$.amount") >= 250.5) == true"#));
        // Kinds that differ are neither equal nor ordered.
        assert!(!holds(r#"json("$.amount") == "250.5""#) && !holds(r#"json("$.region") < 3"#));
        assert!(holds(r#"json("$.region") != 3"#));
        // A value that is not JSON has no fields; one in the registry's framing does.
        let mut raw = order();
        raw.value = Some(b"not json");
        assert!(Expr::parse(r#"json("$.amount") == null && value == "not json""#).unwrap().holds(&raw));
        raw.value = Some(b"\0\0\0\0\x07{\"amount\": 3}");
        assert!(Expr::parse(r#"json("$.amount") == 3"#).unwrap().holds(&raw));
    }

    #[test]
    fn bad_predicates_are_refused_with_the_column() {
        let err = |text: &str| Expr::parse(text).unwrap_err();
        assert_eq!(err(r#"header("a") = "b""#), "`=` at column 13: compare with `==`");
        assert_eq!(err("key == "), "an operand is missing at the end");
        assert!(err(r#"json("$.a[*]") == 1"#).contains("no `*`"));
        assert!(err(r#"json("a") == 1"#).contains("starts with `$`"));
        assert!(err("amount > 3").contains("`amount` at column 1 is not known"));
        assert!(err("(key == 'a'").contains("expected `)` at the end"));
        assert!(err("key == 'a' key").contains("unexpected `key` at column 12"));
        assert!(err("'open").contains("not closed"));
        assert!(err(&format!("{}key{}", "(".repeat(100), ")".repeat(100))).contains("nested deeper"));
        assert!(err(&"!".repeat(100)).contains("nested deeper"));
    }
}
