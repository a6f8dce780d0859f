fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=bookie.proto");
    println!("cargo:rerun-if-changed=pulsar_api.proto");
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&["bookie.proto"], &["."])?;
    // The Pulsar binary protocol: plain messages, no services.
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .bytes(".")
        .compile_protos(&["pulsar_api.proto"], &["."])?;
    Ok(())
}
