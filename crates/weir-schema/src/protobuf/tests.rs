use super::*;

const ORDERS: &str = r#"
syntax = "proto3";
package shop;

import "google/protobuf/timestamp.proto";

// An order.
message Order {
  int64 id = 1;
  string customer = 2;
  repeated Line lines = 3;
  map<string, string> tags = 4;
  google.protobuf.Timestamp at = 5;
  Status status = 6;

  message Line {
    string sku = 1;
    int32 qty = 2;
  }
  enum Status { NEW = 0; PAID = 1; }
}

message Refund { int64 order = 1; }
"#;

/// A varint.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A field's key: its number and wire type.
fn key(field: u64, wire: u64) -> Vec<u8> {
    varint(field << 3 | wire)
}

fn bytes_field(field: u64, bytes: &[u8]) -> Vec<u8> {
    [key(field, 2), varint(bytes.len() as u64), bytes.to_vec()].concat()
}

fn order() -> Vec<u8> {
    let line = [bytes_field(1, b"a"), key(2, 0), varint(3)].concat();
    [key(1, 0), varint(7), bytes_field(2, b"ann"), bytes_field(3, &line), key(6, 0), varint(1)].concat()
}

#[test]
fn a_message_the_indexes_name_is_decoded_and_faults_named() {
    let schema = ProtobufSchema::parse(ORDERS).unwrap();
    assert_eq!(schema.validate(&[0], &order()), Ok(()));
    assert_eq!(schema.validate(&[1], &[key(1, 0), varint(7)].concat()), Ok(()), "Refund");
    // Order's nested types as protoc orders them: the map's entry (declared with `tags`,
    // before Line), then Line.
    assert_eq!(schema.validate(&[0, 1], &[bytes_field(1, b"a"), key(2, 0), varint(3)].concat()), Ok(()), "Line");
    assert_eq!(schema.validate(&[0, 0], &[bytes_field(1, b"k"), bytes_field(2, b"v")].concat()), Ok(()), "TagsEntry");
    assert_eq!(schema.validate(&[0, 5], b"").unwrap_err().0, "the schema has no message at indexes [0, 5]");
    assert_eq!(schema.validate(&[2], b"").unwrap_err().0, "the schema has no message at indexes [2]");

    let wrong_wire_type = [key(1, 2), varint(1), b"x".to_vec()].concat(); // id as bytes
    let err = schema.validate(&[0], &wrong_wire_type).unwrap_err().0;
    assert!(err.starts_with("not a shop.Order message: "), "{err}");
    let not_utf8 = bytes_field(2, &[0xff, 0xfe]);
    assert!(schema.validate(&[0], &not_utf8).is_err());
    let cut = &order()[..order().len() - 3];
    assert!(schema.validate(&[0], cut).is_err());
    // Unknown fields are Protobuf's, and allowed.
    assert_eq!(schema.validate(&[0], &[key(99, 0), varint(1)].concat()), Ok(()));
}

#[test]
fn a_schema_registered_as_a_base64_descriptor_is_read() {
    use base64::Engine;
    use prost::Message;
    // What Confluent's Python serializer registers for `message Rec { int64 id = 1; }`.
    let descriptor = prost_types::FileDescriptorProto {
        name: Some("rec.proto".into()),
        package: Some("weir.test".into()),
        syntax: Some("proto3".into()),
        message_type: vec![prost_types::DescriptorProto {
            name: Some("Rec".into()),
            field: vec![prost_types::FieldDescriptorProto {
                name: Some("id".into()),
                number: Some(1),
                label: Some(1),
                r#type: Some(3),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let text = base64::engine::general_purpose::STANDARD.encode(descriptor.encode_to_vec());
    let schema = ProtobufSchema::parse(&text).unwrap();
    assert_eq!(schema.validate(&[0], &[key(1, 0), varint(7)].concat()), Ok(()));
    assert!(schema.validate(&[0], &[key(1, 2), varint(1), vec![0]].concat()).is_err());
    // Options still to be interpreted (text prost-reflect would parse) are refused.
    let mut uninterpreted = descriptor.clone();
    uninterpreted.message_type[0].field[0].options = Some(prost_types::FieldOptions {
        uninterpreted_option: vec![prost_types::UninterpretedOption {
            aggregate_value: Some("a: <".repeat(5000)),
            ..Default::default()
        }],
        ..Default::default()
    });
    let text = base64::engine::general_purpose::STANDARD.encode(uninterpreted.encode_to_vec());
    assert!(ProtobufSchema::parse(&text).unwrap_err().0.contains("uninterpreted_option"));
    let garbage = base64::engine::general_purpose::STANDARD.encode([0xff; 7]);
    assert!(ProtobufSchema::parse(&garbage).unwrap_err().0.starts_with("base64 that is not a FileDescriptorProto"));
}

#[test]
fn hostile_schemas_and_payloads_are_errors() {
    let deep = format!("syntax = \"proto3\"; {} {}", "message M { ".repeat(100), "}".repeat(100));
    assert_eq!(ProtobufSchema::parse(&deep).unwrap_err().0, format!("brackets nest deeper than {MAX_NESTING}"));
    // An option value nested in the text format's angle brackets, deep enough to exhaust the
    // option parser's stack were it reached.
    let option = format!(
        "syntax = \"proto3\"; import \"google/protobuf/descriptor.proto\"; message M {{ int32 a = 1 [(x) = {}{}]; }}",
        "a: <".repeat(5000),
        ">".repeat(5000)
    );
    assert_eq!(ProtobufSchema::parse(&option).unwrap_err().0, format!("brackets nest deeper than {MAX_NESTING}"));
    let comment = format!("syntax = \"proto3\"; // {}\nmessage M {{ int32 a = 1; }}", "{".repeat(100));
    assert!(ProtobufSchema::parse(&comment).is_ok(), "braces in comments do not count");
    assert!(ProtobufSchema::parse("syntax = \"proto3\"; message {").is_err());
    assert_eq!(ProtobufSchema::parse("syntax = \"proto3\";").unwrap_err().0, "it defines no message");
    let imports = "syntax = \"proto3\"; import \"other.proto\"; message M { int32 a = 1; }";
    assert!(ProtobufSchema::parse(imports).unwrap_err().0.contains("other.proto"));

    // A message nested in itself far past prost's recursion limit.
    let tree = ProtobufSchema::parse("syntax = \"proto3\"; message T { T child = 1; }").unwrap();
    let mut payload = Vec::new();
    for _ in 0..200 {
        payload = bytes_field(1, &payload);
    }
    let err = tree.validate(&[0], &payload).unwrap_err().0;
    assert!(err.contains("recursion limit"), "{err}");
    // A length far beyond the bytes.
    let lying = [key(1, 2), varint(u64::from(u32::MAX))].concat();
    assert!(tree.validate(&[0], &lying).is_err());
}
