fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=bookie.proto");
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&["bookie.proto"], &["."])?;
    Ok(())
}
