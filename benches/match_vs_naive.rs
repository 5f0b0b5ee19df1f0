//! Side by side, in one run on one machine: Passage's packed external-product engine against
//! the approach any user of `tfhe`'s high-level API would write first (one encrypted
//! multiplication per coefficient, summed: `Σ FheInt16(t_i) * FheInt16(p_i)`).
//!
//! A third side is TenSEAL (CKKS, encrypted probe times encrypted gallery, SIMD across
//! templates: `benches/peer/tenseal_match.py`), run through the peer venv's Python
//! (`scripts/peer-venv`; `PASSAGE_PEER_PYTHON` overrides it, `none` skips it).
//!
//! `cargo bench --bench match_vs_naive --features naive-peer` prints one JSON line per side and
//! the per-template ratios (without the feature, which builds tfhe's integer layer, the naive
//! side is skipped: that is how `cargo test --all-targets` runs it). Every side computes the same integer inner products of int4 vectors and is checked
//! against the plaintext result. Options through the environment:
//! `PASSAGE_BENCH_GALLERY` (engine gallery size, default 16384), `PASSAGE_BENCH_NAIVE_DIM`
//! (coefficients the naive side computes, default 8; its per-template time is for the
//! full dimension either way, scaled linearly when smaller).

use std::time::Instant;

use passage_fhe::{plain_score, FheRng, Gallery, Params, QuantizedVector, SecretKey, Target};
use rand::{Rng, SeedableRng};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn random(r: &mut rand::rngs::StdRng, n: usize) -> Vec<i8> {
    (0..n).map(|_| r.random_range(-8i8..=7)).collect()
}

fn main() {
    let params = Params::DEFAULT;
    let d = params.dim;
    let mut r = rand::rngs::StdRng::seed_from_u64(2026);

    // Engine, single-threaded.
    let n = env_usize("PASSAGE_BENCH_GALLERY", 16_384);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let mut fhe_rng = FheRng::from_seed(r.random());
    let key = SecretKey::generate(params, &mut fhe_rng).expect("params");
    let templates: Vec<QuantizedVector> =
        (0..n).map(|_| QuantizedVector::from_coefficients(random(&mut r, d))).collect();
    let encrypted: Vec<_> = templates.iter().map(|t| key.encrypt_template(t, &mut fhe_rng).expect("dim")).collect();
    let gallery = Gallery::from_templates(params, encrypted).expect("gallery");
    let probe = QuantizedVector::from_coefficients(random(&mut r, d));
    let prepared = key.encrypt_probe(&probe, &mut fhe_rng).expect("dim").prepare();
    let mut best = f64::MAX;
    let mut exact = true;
    for _ in 0..5 {
        let t = Instant::now();
        let result = pool.install(|| gallery.evaluate(&prepared, Target::All)).expect("evaluate");
        best = best.min(t.elapsed().as_secs_f64());
        let scores = key.decrypt_scores(&result).expect("decrypt");
        exact &= scores.scores.iter().all(|(slot, s)| *s == plain_score(&templates[*slot as usize], &probe));
    }
    let engine_us = best * 1e6 / n as f64;
    println!(
        "{}",
        serde_json::json!({"side": "passage packed external product", "threads": 1, "gallery": n, "dim": d, "per_template_us": engine_us, "exact": exact})
    );

    // Naive tfhe high-level API on one template.
    naive_side(&mut r, d, engine_us);

    // TenSEAL, in the peer venv, one batch of 4,096 templates (its SIMD width at N = 8192).
    let python = std::env::var("PASSAGE_PEER_PYTHON").unwrap_or_else(|_| ".cache/peer-venv/bin/python".into());
    if python == "none" {
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer/tenseal_match.py");
    let output = std::process::Command::new(&python).arg(&script).args(["--dim", &d.to_string()]).output();
    let line = match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_owned(),
        Ok(out) => {
            eprintln!("TenSEAL side failed: {}", String::from_utf8_lossy(&out.stderr));
            return;
        }
        Err(error) => {
            eprintln!("TenSEAL side skipped: cannot run {python} ({error}); make it with scripts/peer-venv");
            return;
        }
    };
    println!("{line}");
    let peer: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
    match (peer["per_template_us"].as_f64(), peer["exact"].as_bool()) {
        (Some(peer_us), Some(true)) => {
            println!("{}", serde_json::json!({"ratio_tenseal_over_passage": peer_us / engine_us}));
        }
        _ => eprintln!("TenSEAL's scores did not all round to the plaintext ones: no ratio"),
    }
}

/// The naive side: tfhe's high-level `FheInt16` products over `PASSAGE_BENCH_NAIVE_DIM`
/// coefficients of one template, scaled to the full dimension.
#[cfg(feature = "naive-peer")]
fn naive_side(r: &mut rand::rngs::StdRng, d: usize, engine_us: f64) {
    use tfhe::prelude::*;
    use tfhe::{generate_keys, set_server_key, ConfigBuilder, FheInt16};
    let naive_dim = env_usize("PASSAGE_BENCH_NAIVE_DIM", 8).clamp(1, d);
    let config = ConfigBuilder::default().build();
    let (client_key, server_key) = generate_keys(config);
    rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool").install(|| {
        set_server_key(server_key);
        let t = random(r, naive_dim);
        let p = random(r, naive_dim);
        let et: Vec<FheInt16> = t.iter().map(|&x| FheInt16::encrypt(i16::from(x), &client_key)).collect();
        let ep: Vec<FheInt16> = p.iter().map(|&x| FheInt16::encrypt(i16::from(x), &client_key)).collect();
        let started = Instant::now();
        let mut acc = &et[0] * &ep[0];
        for i in 1..naive_dim {
            acc += &et[i] * &ep[i];
        }
        let elapsed = started.elapsed().as_secs_f64();
        let got: i16 = acc.decrypt(&client_key);
        let want: i32 = t.iter().zip(&p).map(|(a, b)| i32::from(*a) * i32::from(*b)).sum();
        let naive_us = elapsed * 1e6 * d as f64 / naive_dim as f64;
        println!(
            "{}",
            serde_json::json!({"side": "tfhe high-level FheInt16 products summed", "threads": 1, "gallery": 1, "dim": d, "computed_dim": naive_dim, "per_template_us": naive_us, "exact": i32::from(got) == want})
        );
        println!("{}", serde_json::json!({"ratio_naive_over_passage": naive_us / engine_us}));
    });
}

#[cfg(not(feature = "naive-peer"))]
fn naive_side(_: &mut rand::rngs::StdRng, _: usize, _: f64) {
    eprintln!("naive tfhe side skipped: it needs tfhe's integer layer, `--features naive-peer`");
}
