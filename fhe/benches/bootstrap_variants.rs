//! Decision mode's bootstrap, classic against tfhe's multi-bit variants, at the engine's
//! parameters (small LWE n = 918, GLWE k = 1, N = 2048, base 2^23 x 1 level, the venue GLWE
//! noise 2^17): is there a cheaper bootstrap on the CPU? Each variant decides the sign of
//! encrypted phases (1/8 or 5/8 of the torus) and is checked after decryption.
//!
//! `cargo bench --profile dev -p passage-fhe --bench bootstrap_variants` times 16 bootstraps
//! per variant (`PASSAGE_BENCH_PBS_REPS`); `cargo test --all-targets` runs it with 2.

use std::time::Instant;

use passage_fhe::SMALL_LWE_DIMENSION;
use tfhe::core_crypto::commons::generators::DeterministicSeeder;
use tfhe::core_crypto::commons::math::random::Seed;
use tfhe::core_crypto::prelude::*;

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let reps = std::env::var("PASSAGE_BENCH_PBS_REPS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(if benching { 16 } else { 2 })
        .max(2)
        / 2
        * 2;
    let n = LweDimension(SMALL_LWE_DIMENSION);
    let k = GlweDimension(1);
    let poly = PolynomialSize(2048);
    let base = DecompositionBaseLog(23);
    let level = DecompositionLevelCount(1);
    let cm = CiphertextModulus::new_native();
    let glwe_noise = DynamicDistribution::<u64>::new_t_uniform(17);
    let lwe_noise = DynamicDistribution::<u64>::new_t_uniform(45);
    let mut seeder = DeterministicSeeder::<DefaultRandomGenerator>::new(Seed(7));
    let mut secret = SecretRandomGenerator::<DefaultRandomGenerator>::new(Seed(3));
    let mut enc = EncryptionRandomGenerator::<DefaultRandomGenerator>::new(Seed(5), &mut seeder);
    let small = LweSecretKey::generate_new_binary(n, &mut secret);
    let glwe = GlweSecretKey::generate_new_binary(k, poly, &mut secret);
    let big = glwe.clone().into_lwe_secret_key();
    let big_size = big.lwe_dimension().to_lwe_size();
    // Inputs: sign tests, phase +1/8 or 5/8.
    let inputs: Vec<(LweCiphertextOwned<u64>, bool)> = (0..reps)
        .map(|i| {
            let up = i % 2 == 0;
            let m = if up { 1u64 << 61 } else { (1u64 << 63) + (1u64 << 61) };
            (allocate_and_encrypt_new_lwe_ciphertext(&small, Plaintext(m), lwe_noise, cm, &mut enc), up)
        })
        .collect();
    let mut acc = GlweCiphertext::new(0u64, k.to_glwe_size(), poly, cm);
    acc.get_mut_body().as_mut().fill(1u64 << 60);
    let check = |out: &LweCiphertextOwned<u64>, up: bool| {
        let p = decrypt_lwe_ciphertext(&big, out).0 as i64;
        (p > 0) == up
    };
    let report = |variant: &str, ms: f64, right: Option<usize>| {
        let right = right.map_or(String::new(), |r| format!(", \"right\": {r}, \"of\": {reps}"));
        println!("{{\"variant\": \"{variant}\", \"ms_per_bootstrap\": {ms:.2}{right}}}");
    };

    // Classic.
    let mut bsk = LweBootstrapKey::new(0u64, k.to_glwe_size(), poly, base, level, n, cm);
    par_generate_lwe_bootstrap_key(&small, &glwe, &mut bsk, glwe_noise, &mut enc);
    let mut fbsk = FourierLweBootstrapKey::new(n, k.to_glwe_size(), poly, base, level);
    par_convert_standard_lwe_bootstrap_key_to_fourier(&bsk, &mut fbsk);
    drop(bsk);
    let mut out = LweCiphertext::new(0u64, big.lwe_dimension().to_lwe_size(), cm);
    let t = Instant::now();
    let mut ok = 0;
    for (ct, up) in &inputs {
        programmable_bootstrap_lwe_ciphertext(ct, &mut out, &acc, &fbsk);
        ok += check(&out, *up) as usize;
    }
    report("classic, 1 thread", t.elapsed().as_secs_f64() * 1e3 / reps as f64, Some(ok));
    assert_eq!(ok, reps, "classic bootstrap decided wrongly");
    // Two bootstraps at once, one per core: wall time per bootstrap.
    let two_at_once = |bootstrap: &(dyn Fn(&LweCiphertextOwned<u64>, &mut LweCiphertextOwned<u64>) + Sync)| {
        let t = Instant::now();
        std::thread::scope(|s| {
            for half in inputs.chunks(reps / 2) {
                s.spawn(move || {
                    let mut out = LweCiphertext::new(0u64, big_size, cm);
                    for (ct, _) in half {
                        bootstrap(ct, &mut out);
                    }
                });
            }
        });
        t.elapsed().as_secs_f64() * 1e3 / reps as f64
    };
    let wall = two_at_once(&|ct, out| programmable_bootstrap_lwe_ciphertext(ct, out, &acc, &fbsk));
    report("classic, 2 at once (wall)", wall, None);
    drop(fbsk);

    for g in [2usize, 3] {
        let gf = LweBskGroupingFactor(g);
        let mut bsk = LweMultiBitBootstrapKey::new(0u64, k.to_glwe_size(), poly, base, level, n, gf, cm);
        par_generate_lwe_multi_bit_bootstrap_key(&small, &glwe, &mut bsk, glwe_noise, &mut enc);
        let mut fbsk = FourierLweMultiBitBootstrapKey::new(
            bsk.input_lwe_dimension(),
            bsk.glwe_size(),
            bsk.polynomial_size(),
            bsk.decomposition_base_log(),
            bsk.decomposition_level_count(),
            bsk.grouping_factor(),
        );
        par_convert_standard_lwe_multi_bit_bootstrap_key_to_fourier(&bsk, &mut fbsk);
        drop(bsk);
        for threads in [1usize, 2] {
            let t = Instant::now();
            let mut ok = 0;
            for (ct, up) in &inputs {
                multi_bit_programmable_bootstrap_lwe_ciphertext(ct, &mut out, &acc, &fbsk, ThreadCount(threads), true);
                ok += check(&out, *up) as usize;
            }
            let variant = format!("multi-bit g={g}, thread_count {threads}");
            report(&variant, t.elapsed().as_secs_f64() * 1e3 / reps as f64, Some(ok));
            assert_eq!(ok, reps, "{variant} decided wrongly");
        }
        let wall = two_at_once(&|ct, out| {
            multi_bit_programmable_bootstrap_lwe_ciphertext(ct, out, &acc, &fbsk, ThreadCount(1), true);
        });
        report(&format!("multi-bit g={g}, 2 at once with thread_count 1 (wall)"), wall, None);
    }
}
