//! Fails early, with the fix, when the shared DuckDB library has not been fetched.

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_BUNDLED_DUCKDB").is_some() {
        return;
    }
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        let lib = std::path::Path::new(&dir).join("libduckdb.so");
        println!("cargo:rerun-if-changed={}", lib.display());
        if !lib.is_file() {
            println!("cargo:warning=DuckDB's shared library is missing at {}", lib.display());
            panic!("{} not found: run scripts/fetch-duckdb first (or build with --features passage-analytics/bundled-duckdb)", lib.display());
        }
    }
}
