//! Writes `crates/weir-wire/src/schema/generated.rs`: every Kafka request and response body as
//! static tables (fields, versions, nullability, tags, the resources they name), from the JSON
//! message specs Apache Kafka ships in its `kafka-clients` jar under `common/message/`.
//!
//! It owns the translation from spec JSON to tables and nothing else: it reads a directory of
//! specs (`scripts/regen-schema.sh` unpacks them from the jar Maven resolved) and writes one
//! file. `--check` writes nothing and fails when the checked-in file differs from what the specs
//! give, which is how CI notices a hand edit or a Kafka upgrade without a regeneration.
//!
//! Usage: `weir-wire-gen --specs DIR --kafka-version X.Y.Z --out FILE [--check]`

mod annotations;
mod spec;

use std::process::ExitCode;

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("weir-wire-gen: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<String, String> {
    let mut specs = None;
    let mut out = None;
    let mut kafka_version = None;
    let mut check = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--specs" => specs = args.next(),
            "--out" => out = args.next(),
            "--kafka-version" => kafka_version = args.next(),
            "--check" => check = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let usage = "usage: weir-wire-gen --specs DIR --kafka-version X.Y.Z --out FILE [--check]";
    let (specs, out, kafka_version) = match (specs, out, kafka_version) {
        (Some(s), Some(o), Some(k)) => (s, o, k),
        _ => return Err(usage.into()),
    };
    let messages = spec::read_dir(std::path::Path::new(&specs))?;
    let text = spec::emit(&messages, &kafka_version)?;
    if check {
        let current = std::fs::read_to_string(&out).map_err(|e| format!("{out}: {e}"))?;
        if current != text {
            return Err(format!(
                "{out} differs from what the Kafka {kafka_version} specs give: run scripts/regen-schema.sh and \
                 commit the result (do not edit the file by hand)"
            ));
        }
        return Ok(format!("{out} matches the Kafka {kafka_version} specs ({} messages)", messages.len()));
    }
    std::fs::write(&out, text).map_err(|e| format!("{out}: {e}"))?;
    Ok(format!("wrote {out} from the Kafka {kafka_version} specs ({} messages)", messages.len()))
}
