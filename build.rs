//! Lets the `passage` binary and the integration tests find the shared DuckDB library at run
//! time wherever they are started from (an rpath to DUCKDB_LIB_DIR, set by .cargo/config.toml).

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
