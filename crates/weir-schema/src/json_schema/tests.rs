use serde_json::json;

use super::*;

fn schema(value: Value) -> JsonSchema {
    JsonSchema::parse(&value.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn fault(schema: &JsonSchema, document: Value) -> String {
    schema.validate(&document).unwrap_err().to_string()
}

fn order_schema() -> JsonSchema {
    schema(json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "required": ["id", "status", "lines"],
        "additionalProperties": false,
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "status": {"enum": ["NEW", "PAID"]},
            "customer": {"type": ["string", "null"], "maxLength": 8, "pattern": "^[a-z]+$"},
            "lines": {"type": "array", "minItems": 1, "uniqueItems": true, "items": {"$ref": "#/definitions/line"}},
            "total": {"type": "number", "exclusiveMaximum": 1000, "multipleOf": 0.01}
        },
        "definitions": {
            "line": {
                "type": "object",
                "required": ["sku", "qty"],
                "properties": {"sku": {"type": "string", "minLength": 1}, "qty": {"type": "integer", "maximum": 10}}
            }
        }
    }))
}

#[test]
fn a_document_is_judged_and_the_first_fault_named_where_it_is() {
    let s = order_schema();
    let good = json!({"id": 7, "status": "PAID", "customer": "ann", "lines": [{"sku": "a", "qty": 2}], "total": 12.5});
    assert_eq!(s.validate(&good), Ok(()));
    assert_eq!(
        s.validate(&json!({"id": 7.0, "status": "NEW", "lines": [{"sku": "a", "qty": 1}]})),
        Ok(()),
        "7.0 is an integer"
    );
    assert_eq!(
        fault(&s, json!({"id": 7, "status": "NEW"})),
        "the required property `lines` is missing at the document's root"
    );
    assert_eq!(
        fault(&s, json!({"id": 7, "status": "NEW", "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 11}]})),
        "11 is more than allowed (must be at most 10) at /lines/1/qty"
    );
    assert_eq!(
        fault(&s, json!({"id": 7, "status": "LOST", "lines": [{"sku": "a", "qty": 1}]})),
        "\"LOST\" is not one of the values allowed at /status"
    );
    assert_eq!(
        fault(&s, json!({"id": "7", "status": "NEW", "lines": [{"sku": "a", "qty": 1}]})),
        "a string where integer is wanted at /id"
    );
    let line = json!({"sku": "a", "qty": 1});
    assert_eq!(
        fault(&s, json!({"id": 7, "status": "NEW", "lines": [line, {"qty": 1.0, "sku": "a"}]})),
        "items 0 and 1 are equal; items must be unique at /lines"
    );
    assert_eq!(
        fault(&s, json!({"id": 7, "status": "NEW", "lines": [line], "extra": 1})),
        "the property `extra` is not allowed (additionalProperties) at /extra"
    );
    assert_eq!(
        fault(&s, json!({"id": 7, "status": "NEW", "lines": [line], "customer": "Ann"})),
        "\"Ann\" does not match the pattern ^[a-z]+$ at /customer"
    );
    assert_eq!(
        fault(&s, json!({"id": 7, "status": "NEW", "lines": [line], "total": 1000})),
        "1000 is more than allowed (must be less than 1000) at /total"
    );
    assert_eq!(
        fault(&s, json!({"id": 7, "status": "NEW", "lines": [line], "total": 1.005})),
        "1.005 is not a multiple of 0.01 at /total"
    );
    let cut = s.validate_text(b"{\"id\": 1,").unwrap_err();
    assert_eq!(cut.what, "not JSON: EOF while parsing a value at line 1 column 9");
}

#[test]
fn draft_2020_12_keywords_and_combinators() {
    let s = schema(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {"positive": {"type": "number", "exclusiveMinimum": 0}},
        "type": "object",
        "properties": {
            "point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "items": false},
            "size": {"$ref": "#/$defs/positive"},
            "kind": {"oneOf": [{"const": "a"}, {"const": "b"}]},
            "tags": {"type": "array", "contains": {"const": "x"}, "maxContains": 1}
        },
        "dependentRequired": {"card": ["cvv"]},
        "if": {"properties": {"kind": {"const": "a"}}, "required": ["kind"]},
        "then": {"required": ["size"]},
        "propertyNames": {"maxLength": 5}
    }));
    assert_eq!(s.validate(&json!({"point": [1, 2], "size": 3, "kind": "a", "tags": ["x", "y"]})), Ok(()));
    assert_eq!(fault(&s, json!({"point": [1, 2, 3]})), "no value is allowed here at /point/2");
    assert_eq!(fault(&s, json!({"size": 0})), "0 is less than allowed (must be more than 0) at /size");
    assert_eq!(fault(&s, json!({"kind": "c"})), "matches 0 of oneOf, not exactly one at /kind");
    assert_eq!(fault(&s, json!({"kind": "a"})), "the required property `size` is missing at the document's root");
    assert_eq!(
        fault(&s, json!({"card": 1})),
        "property `card` needs property `cvv`, which is missing at the document's root"
    );
    assert_eq!(fault(&s, json!({"tags": ["y"]})), "0 items match `contains`; at least 1 must at /tags");
    assert_eq!(fault(&s, json!({"tags": ["x", "x"]})), "2 items match `contains`; at most 1 may at /tags");
    assert_eq!(
        fault(&s, json!({"toolong": 1})),
        "the property name `toolong` is not allowed by propertyNames at the document's root"
    );
    // Draft 4: exclusiveMaximum is a boolean beside maximum; draft-07 tuples.
    let d4 = schema(
        json!({"type": "array", "items": [{"maximum": 5, "exclusiveMaximum": true}], "additionalItems": {"type": "string"}}),
    );
    assert_eq!(fault(&d4, json!([5])), "5 is more than allowed (must be less than 5) at /0");
    assert_eq!(fault(&d4, json!([4, 1])), "a number where string is wanted at /1");
    assert_eq!(schema(json!(true)).validate(&json!({"any": 1})), Ok(()));
    assert_eq!(
        fault(&schema(json!({"not": {"type": "null"}})), json!(null)),
        "matches the schema of `not` at the document's root"
    );
    assert_eq!(
        fault(&schema(json!({"anyOf": [{"type": "string"}, {"minimum": 3}]})), json!(1)),
        "matches none of anyOf at the document's root"
    );
}

#[test]
fn hostile_schemas_and_documents_are_errors_not_hangs() {
    let endless = schema(json!({"$ref": "#"}));
    assert_eq!(
        fault(&endless, json!(1)),
        format!("the schema refers to itself more than {MAX_DEPTH} deep at the document's root")
    );
    // A recursive schema judges a recursive document as deep as the document goes.
    let tree = schema(json!({"type": "object", "properties": {"child": {"$ref": "#"}}}));
    let mut deep = json!({});
    for _ in 0..100 {
        deep = json!({"child": deep});
    }
    assert_eq!(tree.validate(&deep), Ok(()));
    let nested = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    assert!(tree.validate_text(nested.as_bytes()).unwrap_err().what.contains("recursion limit exceeded"));
    // Ten thousand distinct items are found unique without comparing every pair.
    let unique = schema(json!({"uniqueItems": true}));
    let items: Vec<Value> = (0..10_000).map(|i| json!({"n": i})).collect();
    assert_eq!(unique.validate(&Value::Array(items.clone())), Ok(()));
    let mut repeated = items;
    repeated.push(json!({"n": 5.0}));
    assert_eq!(
        fault(&unique, Value::Array(repeated)),
        "items 5 and 10000 are equal; items must be unique at the document's root"
    );

    // References that double the work at each of 40 levels: exponential work ends, as an
    // error, within the document's step budget.
    for combinator in ["anyOf", "allOf"] {
        let mut defs = Map::new();
        defs.insert("d0".into(), json!({"type": "integer"}));
        for i in 1..40 {
            let previous = format!("#/$defs/d{}", i - 1);
            defs.insert(format!("d{i}"), json!({combinator: [{"$ref": previous}, {"$ref": previous}]}));
        }
        let costly = schema(json!({"$defs": defs, "$ref": "#/$defs/d39"}));
        let started = std::time::Instant::now();
        // A string fails every branch of anyOf (so each is tried); an integer passes every
        // branch of allOf (so each is checked).
        let document = if combinator == "anyOf" { b"\"x\"".to_vec() } else { b"1".to_vec() };
        let err = costly.validate_text(&document).unwrap_err();
        assert!(
            err.what.starts_with("judging took more than ") && err.what.contains("too costly"),
            "{combinator}: {err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{combinator}: {:?}", started.elapsed());
    }
    let many: Map<String, Value> =
        (0..MAX_PATTERNS + 1).map(|i| (format!("p{i}"), json!({"pattern": format!("a{i}")}))).collect();
    assert!(JsonSchema::parse(&json!({"properties": many}).to_string())
        .unwrap_err()
        .0
        .contains("more than 256 patterns"));

    let unusable = |value: Value| JsonSchema::parse(&value.to_string()).unwrap_err().0;
    assert!(
        unusable(json!({"pattern": "(a)\\1"})).starts_with("the pattern \"(a)\\\\1\" cannot be used: "),
        "{}",
        unusable(json!({"pattern": "(a)\\1"}))
    );
    assert_eq!(
        unusable(json!({"$ref": "https://example.com/other.json"})),
        "`$ref` to `https://example.com/other.json`: only references within the schema (`#…`) are supported (at #)"
    );
    assert_eq!(
        unusable(json!({"$ref": "#/$defs/missing"})),
        "`$ref` to `#/$defs/missing`, which the schema does not have"
    );
    assert_eq!(unusable(json!({"unevaluatedProperties": false})), "`unevaluatedProperties` is not supported (at #)");
    assert_eq!(unusable(json!({"type": "text"})), "`type` \"text\" names no JSON type (at #)");
    assert_eq!(unusable(json!({"multipleOf": 0})), "`multipleOf` must be more than 0 (at #)");
    assert_eq!(
        unusable(json!({"properties": {"a": {"minLength": -1}}})),
        "`minLength` must be a non-negative integer (at #/properties/a)"
    );
    assert!(
        unusable(json!({"pattern": "a{1000}{1000}"})).contains("cannot be used"),
        "a pattern beyond the size limit"
    );
}

/// The bench's schema: every keyword one the fast path judges while parsing.
fn streamable_schema() -> JsonSchema {
    schema(json!({
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "required": ["id", "customer", "status", "lines"], "additionalProperties": false,
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "customer": {"type": "string", "maxLength": 16, "pattern": "^[a-z0-9-]+$"},
            "status": {"enum": ["NEW", "PAID", null, 3]},
            "lines": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"$ref": "#/definitions/line"}},
            "point": {"type": "array", "items": [{"type": "number"}, {"const": "x"}]},
            "note": {"type": ["string", "null"]}
        },
        "patternProperties": {"^x-": {"type": "boolean"}},
        "definitions": {"line": {"type": "object", "required": ["sku", "qty"],
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "maximum": 10, "multipleOf": 1}}}}
    }))
}

#[test]
fn judging_while_parsing_passes_only_what_the_value_path_passes() {
    let s = streamable_schema();
    assert!(s.streamable[0], "the bench's kind of schema is judged while parsed");
    assert!(!order_schema().streamable[0], "uniqueItems needs the whole value");
    let valid = br#"{"id": 7, "customer": "ann-1", "status": "PAID", "lines": [{"sku": "a", "qty": 2}], "point": [1.5, "x"], "note": null, "x-flag": true, "other\u0041": 1}"#;
    // (`otherA` is not allowed: additionalProperties false; the escaped name must be read.)
    assert!(!streaming::passes(&s, valid));
    let valid = br#"{"id": 7, "customer": "ann-1", "status": "PAID", "lines": [{"sku": "a", "qty": 2}], "point": [1.5, "x"], "note": null, "x-flag": true}"#;
    assert!(streaming::passes(&s, valid), "a valid document passes without building a value");
    // Mutations of the valid document, each byte changed to each of a few characters and
    // pieces cut out: whatever the fast path passes, the value path must pass too.
    let mut passed = 0;
    let text = valid.to_vec();
    let replacements = [b'0', b'9', b'"', b'x', b'-', b'{', b']', b' ', b'.', b'e'];
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for at in 0..text.len() {
        for r in replacements {
            let mut m = text.clone();
            m[at] = r;
            candidates.push(m);
        }
        let mut cut = text.clone();
        cut.remove(at);
        candidates.push(cut);
    }
    for (document, expected_valid) in [
        (&br#"{"id": 0, "customer": "a", "status": "NEW", "lines": [{"sku": "a", "qty": 1}]}"#[..], false),
        (br#"{"id": 1, "customer": "A", "status": "NEW", "lines": [{"sku": "a", "qty": 1}]}"#, false),
        (br#"{"id": 1, "customer": "a", "status": "LOST", "lines": [{"sku": "a", "qty": 1}]}"#, false),
        (br#"{"id": 1, "customer": "a", "status": 3.0, "lines": [{"sku": "a", "qty": 1}]}"#, true),
        (br#"{"id": 1, "customer": "a", "status": null, "lines": []}"#, false),
        (br#"{"id": 1, "customer": "a", "status": null, "lines": [{"sku": "a", "qty": 11}]}"#, false),
        (br#"{"id": 1, "customer": "a", "status": null, "lines": [{"sku": "a", "qty": 1.5}]}"#, false),
        (br#"{"id": 1, "customer": "a", "status": null, "lines": [{"sku": "a"}]}"#, false),
        (br#"{"id": 1, "customer": "a", "status": null, "lines": [{"sku": "a", "qty": 1}], "x-a": 1}"#, false),
        (br#"{"id": 1, "customer": "a", "status": null, "lines": [{"sku": "a", "qty": 1}], "point": [1, "y"]}"#, false),
        (br#"{"id": 1, "customer": "abcdefghijklmnopq", "status": null, "lines": [{"sku": "a", "qty": 1}]}"#, false),
        (br#"{"id": 1, "customer": "a", "status": null, "lines": [{"sku": "a", "qty": 1}]} x"#, false),
    ] {
        let value_path = serde_json::from_slice::<Value>(document).is_ok_and(|v| s.validate(&v).is_ok());
        assert_eq!(value_path, expected_valid, "{}", String::from_utf8_lossy(document));
        assert_eq!(streaming::passes(&s, document), expected_valid, "{}", String::from_utf8_lossy(document));
        candidates.push(document.to_vec());
    }
    for document in &candidates {
        if streaming::passes(&s, document) {
            passed += 1;
            let value: Value = serde_json::from_slice(document).expect("passed, so it is JSON");
            assert_eq!(s.validate(&value), Ok(()), "{}", String::from_utf8_lossy(document));
        }
    }
    assert!(passed > 50, "the mutations include valid documents too ({passed})");
}
