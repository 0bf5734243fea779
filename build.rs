//! Compiles `proto/` with protox (no protoc needed), generating prost messages, tonic services
//! and the proto3 JSON mapping (pbjson, snake_case names), and writes the descriptor set that
//! gRPC reflection and the dynamic gRPC connector read.

use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "lienthong/v1/records.proto",
    "lienthong/v1/lookup.proto",
    "lienthong/v1/dossiers.proto",
    "lienthong/v1/admin.proto",
    "providers/cadastre/v1/cadastre.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["proto"])?;
    let descriptor_path = out_dir.join("descriptor.bin");
    std::fs::write(&descriptor_path, fds.encode_to_vec())?;
    // What the gateway's reflection service describes: its own API, not the providers'.
    let lookup_api = protox::compile(&PROTOS[..3], ["proto"])?;
    std::fs::write(
        out_dir.join("lookup_descriptor.bin"),
        lookup_api.encode_to_vec(),
    )?;

    let admin_api = protox::compile(&PROTOS[3..4], ["proto"])?;
    std::fs::write(
        out_dir.join("admin_descriptor.bin"),
        admin_api.encode_to_vec(),
    )?;

    // What the land registry's simulator describes through its own reflection service.
    let cadastre = protox::compile(&PROTOS[4..5], ["proto"])?;
    std::fs::write(
        out_dir.join("cadastre_descriptor.bin"),
        cadastre.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;

    // The vehicle registry's simulator: its own code and descriptors, kept out of the
    // gateway's (`descriptor.bin`), which learns them only by upload or reflection.
    let vehicles = protox::compile(["providers/vehicles/v1/vehicles.proto"], ["proto"])?;
    std::fs::write(
        out_dir.join("vehicles_descriptor.bin"),
        vehicles.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(vehicles)?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .build(&[".lienthong.v1", ".cadastre.v1"])?;
    Ok(())
}
