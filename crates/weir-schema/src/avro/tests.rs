use super::*;

/// Avro's zigzag varint of a long.
fn long(v: i64) -> Vec<u8> {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let byte = (raw & 0x7f) as u8;
        raw >>= 7;
        if raw == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn string(s: &str) -> Vec<u8> {
    [long(s.len() as i64), s.as_bytes().to_vec()].concat()
}

const ORDER: &str = r#"{
  "type": "record", "name": "Order", "namespace": "shop",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "customer", "type": ["null", "string"], "default": null},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}},
    {"name": "lines", "type": {"type": "array", "items": {
      "type": "record", "name": "Line",
      "fields": [{"name": "sku", "type": "string"}, {"name": "price", "type": "double"}]}}},
    {"name": "tags", "type": {"type": "map", "values": "Status"}},
    {"name": "digest", "type": {"type": "fixed", "name": "Md5", "size": 4}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "next", "type": ["null", "Order"]}
  ]
}"#;

/// An Order: id 7, customer "ann", PAID, two lines, one tag, a digest, a time, no next.
fn order() -> Vec<u8> {
    [
        long(7),
        long(1),
        string("ann"),
        long(1),
        long(2),
        string("a"),
        1.5f64.to_le_bytes().to_vec(),
        string("b"),
        2.5f64.to_le_bytes().to_vec(),
        long(0),
        long(1),
        string("t"),
        long(2),
        long(0),
        b"abcd".to_vec(),
        long(1_700_000_000_000),
        long(0),
    ]
    .concat()
}

#[test]
fn a_value_as_avro_writes_it_is_valid_and_each_fault_is_named_where_it_is() {
    let schema = AvroSchema::parse(ORDER).unwrap();
    assert_eq!(schema.validate(&order()), Ok(()));

    let mut wrong_enum = order();
    wrong_enum[6] = 6; // status: symbol 3 (zigzag 6) of three
    let err = schema.validate(&wrong_enum).unwrap_err();
    assert_eq!(err.to_string(), "symbol 3 of enum shop.Status, which has 3 at shop.Order.status (byte 7)");

    let cut = &order()[..20];
    let err = schema.validate(cut).unwrap_err();
    assert_eq!(err.path, "shop.Order.lines[1].price");
    assert_eq!(err.what, "8 bytes wanted, 0 left");

    let mut longer = order();
    longer.push(0);
    assert_eq!(schema.validate(&longer).unwrap_err().what, "1 bytes after the value");

    let mut bad_union = order();
    bad_union[1] = 4; // customer: branch 2 of 2
    assert_eq!(schema.validate(&bad_union).unwrap_err().what, "union branch 2 of 2");

    let mut not_utf8 = order();
    not_utf8[3] = 0xff; // "ann" → "\xffnn"
    assert_eq!(schema.validate(&not_utf8).unwrap_err().what, "a string that is not UTF-8");
}

#[test]
fn recursive_schemas_and_negative_block_counts_are_read() {
    let schema = AvroSchema::parse(ORDER).unwrap();
    // An order whose `next` is an order (branch 1).
    let mut nested = order();
    nested.truncate(nested.len() - 1);
    nested.extend(long(1));
    nested.extend(order());
    assert_eq!(schema.validate(&nested), Ok(()));

    // An array block with a negative count is followed by its size in bytes.
    let ints = AvroSchema::parse(r#"{"type": "array", "items": "int"}"#).unwrap();
    let block = [long(-2), long(2), long(5), long(6), long(0)].concat();
    assert_eq!(ints.validate(&block), Ok(()));
}

#[test]
fn hostile_payloads_are_errors_not_loops_or_allocations() {
    let nulls = AvroSchema::parse(r#"{"type": "array", "items": "null"}"#).unwrap();
    // 2^62 nulls claimed in ten bytes.
    let err = nulls.validate(&long(1 << 62)).unwrap_err();
    assert_eq!(err.what, "more values than a payload of this size can hold");
    let strings = AvroSchema::parse(r#"{"type": "array", "items": "string"}"#).unwrap();
    let huge = strings.validate(&[long(1), long(i64::MAX)].concat()).unwrap_err();
    assert_eq!(huge.what, "9223372036854775807 bytes wanted, 0 left");
    assert_eq!(strings.validate(&[long(1), long(-5)].concat()).unwrap_err().what, "a length of -5");
    let int = AvroSchema::parse(r#""int""#).unwrap();
    assert_eq!(int.validate(&long(1 << 40)).unwrap_err().what, "an int of 1099511627776, beyond 32 bits");
    assert_eq!(int.validate(&[0xff; 11]).unwrap_err().what, "a varint longer than a long");

    // A list that nests without end: each level a union branch and a record.
    let list = AvroSchema::parse(
        r#"{"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}"#,
    )
    .unwrap();
    let deep: Vec<u8> = std::iter::repeat_n(2u8, 10_000).chain([0]).collect();
    assert_eq!(list.validate(&deep).unwrap_err().what, format!("values nested deeper than {MAX_DEPTH}"));
    let shallow: Vec<u8> = std::iter::repeat_n(2u8, 10).chain([0]).collect();
    assert_eq!(list.validate(&shallow), Ok(()));

    // Records of two records of the previous level, 30 levels deep, their leaves empty
    // records: 2^30 values in zero bytes. An error within the step budget, at once.
    let mut fields = String::from(r#"{"type": "record", "name": "L0", "fields": []}"#);
    for i in 1..30 {
        fields = format!(
            r#"{{"type": "record", "name": "L{i}", "fields": [{{"name": "a", "type": {fields}}}, {{"name": "b", "type": "L{}"}}]}}"#,
            i - 1
        );
    }
    let doubling = AvroSchema::parse(&fields).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(doubling.validate(&[]).unwrap_err().what, "more values than a payload of this size can hold");
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
}

#[test]
fn schemas_that_cannot_be_used_are_named() {
    let err = |text: &str| AvroSchema::parse(text).unwrap_err().0;
    assert_eq!(err(r#""Missing""#), "unknown type `Missing`");
    assert_eq!(
        err(r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "Nope"}]}"#),
        "unknown type `Nope`"
    );
    assert_eq!(err(r#"["null", ["int"]]"#), "a union directly inside a union");
    assert_eq!(
        err(
            r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": {"type": "enum", "name": "R", "symbols": []}}]}"#
        ),
        "type R is defined twice"
    );
    assert!(err("{").starts_with("not JSON"));
    assert_eq!(err(r#"{"type": "array"}"#), "an array without items");
    // Short names resolve in the enclosing namespace first, then without one.
    let ok = r#"{"type": "record", "name": "a.R", "fields": [
        {"name": "x", "type": {"type": "fixed", "name": "F", "size": 1}},
        {"name": "y", "type": "F"}, {"name": "z", "type": "a.F"}]}"#;
    assert_eq!(AvroSchema::parse(ok).unwrap().validate(b"xy\x7a"), Ok(()));
}
