//! What judging one ~1 KiB JSON document costs, by step: `cargo run --release -p weir-schema
//! --example judge_cost`. The schema and documents are bench/schemas.sh's.

use std::time::Instant;

use weir_schema::json_schema::JsonSchema;

/// The schema bench/schemas.sh registers.
const SCHEMA: &str = include_str!("../../../bench/order-schema.json");

fn main() {
    let schema = JsonSchema::parse(SCHEMA).unwrap();
    let docs: Vec<Vec<u8>> = (0..1000)
        .map(|i| {
            let lines: Vec<String> = (0..2 + i % 4)
                .map(|j| format!(r#"{{"sku":"sku-{}","qty":{},"price":{}.{}}}"#, i * 7 + j, 1 + j, i % 100, j))
                .collect();
            let head = format!(
                r#"{{"id":{},"customer":"customer-{}","status":"PAID","lines":[{}],"note":""#,
                i + 1,
                i * 13,
                lines.join(",")
            );
            let pad = 1024usize.saturating_sub(head.len() + 2);
            format!("{head}{}\"}}", "n".repeat(pad)).into_bytes()
        })
        .collect();
    let rounds = 200;
    let time = |name: &str, f: &dyn Fn(&[u8])| {
        let started = Instant::now();
        for _ in 0..rounds {
            docs.iter().for_each(|d| f(d));
        }
        let per = started.elapsed().as_nanos() as f64 / (rounds * docs.len()) as f64;
        println!("{name}: {per:.0} ns per document");
    };
    time("syntax only (IgnoredAny)", &|d| {
        serde_json::from_slice::<serde::de::IgnoredAny>(d).unwrap();
    });
    time("parse to Value", &|d| {
        serde_json::from_slice::<serde_json::Value>(d).unwrap();
    });
    time("parse and validate", &|d| schema.validate_text(d).unwrap());
}
