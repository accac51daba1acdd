//! The generated code in src/generated/ is checked in (no protoc needed to build Weir); this
//! regenerates it from proto/ and fails if it differs, as linkerd2-proxy-api does. Needs
//! `protoc` (Debian: protobuf-compiler; `.ci/run` installs it). To regenerate after changing
//! the .proto: `WEIR_REGENERATE=1 cargo test -p weir-control-api --test generated`.

use std::path::Path;

#[test]
fn generated_code_is_what_the_proto_gives() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("weir-control-api-gen-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let generated = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::MeshCodec")
        .out_dir(&out)
        .compile_protos(&[root.join("proto/weir/mesh/v1/mesh.proto")], &[root.join("proto")]);
    if let Err(err) = generated {
        panic!("cannot run protoc (install Debian's protobuf-compiler, or set PROTOC): {err}");
    }
    let fresh = std::fs::read_to_string(out.join("weir.mesh.v1.rs")).unwrap();
    let checked_in_path = root.join("src/generated/weir.mesh.v1.rs");
    if std::env::var_os("WEIR_REGENERATE").is_some() {
        std::fs::write(&checked_in_path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    std::fs::remove_dir_all(&out).ok();
    assert!(
        checked_in == fresh,
        "src/generated/weir.mesh.v1.rs is not what proto/ gives; regenerate with \
         WEIR_REGENERATE=1 cargo test -p weir-control-api --test generated"
    );
}
