//! `passage bench match`: the packed external-product engine end to end, with exactness
//! checked against the plaintext integer computation.

use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use passage_fhe::{plain_score, EncryptedTemplate, FheRng, Gallery, Params, QuantizedVector, SecretKey, Target};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Result mode to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Encrypted scores, decrypted and thresholded by the key holder.
    Score,
    /// Encrypted match bits (bootstrapped).
    Decision,
}

/// Options of `passage bench match`.
#[derive(Debug, Args)]
pub struct MatchArgs {
    /// Templates in the gallery.
    #[arg(long, default_value_t = 10_000)]
    gallery: usize,
    /// Result mode.
    #[arg(long, value_enum, default_value_t = Mode::Score)]
    mode: Mode,
    /// Embedding dimension (a power of two from 16 to 2048).
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Evaluation threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Probes to time (the median is reported).
    #[arg(long, default_value_t = 5)]
    probes: usize,
    /// 1:1 verification of one slot instead of 1:N.
    #[arg(long)]
    one_to_one: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Runs the benchmark and prints progress on stderr and one JSON line on stdout.
pub fn run_match(args: &MatchArgs) -> anyhow::Result<()> {
    if args.mode == Mode::Decision {
        bail!("decision mode is not implemented in this build; run --mode score");
    }
    if args.gallery == 0 || args.probes == 0 {
        bail!("--gallery and --probes must be at least 1");
    }
    let params = Params::with_dim(args.dim);
    params.validate().map_err(anyhow::Error::msg).context("invalid --dim")?;
    let threads =
        if args.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { args.threads };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("cannot build the thread pool")?;

    let mut seed = [0u8; 16];
    rand::rng().fill(&mut seed);
    let mut fhe_rng = FheRng::from_seed(seed);
    let key = SecretKey::generate(params, &mut fhe_rng).map_err(anyhow::Error::msg)?;
    let mut r = rand::rngs::StdRng::from_os_rng();
    let random_vector = |r: &mut rand::rngs::StdRng| {
        QuantizedVector::from_coefficients((0..params.dim).map(|_| r.random_range(-8i8..=7)).collect())
    };
    let plain: Vec<QuantizedVector> = (0..args.gallery).map(|_| random_vector(&mut r)).collect();

    eprintln!("encrypting {} templates (d = {}, {} threads)...", args.gallery, params.dim, threads);
    let started = Instant::now();
    let seeds: Vec<[u8; 16]> = (0..threads).map(|_| r.random()).collect();
    let chunk = args.gallery.div_ceil(threads);
    let encrypted: Vec<EncryptedTemplate> = pool
        .install(|| {
            plain
                .par_chunks(chunk)
                .zip(seeds.par_iter())
                .flat_map_iter(|(part, seed)| {
                    let mut rng = FheRng::from_seed(*seed);
                    let key = &key;
                    part.iter().map(move |t| key.encrypt_template(t, &mut rng)).collect::<Vec<_>>()
                })
                .collect::<Result<_, _>>()
        })
        .map_err(anyhow::Error::msg)?;
    eprintln!("  {:.1} s; packing and precomputing the gallery...", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let gallery = pool.install(|| Gallery::from_templates(params, encrypted)).context("cannot build the gallery")?;
    let pack_ms = ms(started);
    eprintln!("  {:.1} s; evaluating {} probe(s)...", pack_ms / 1e3, args.probes);

    let target = if args.one_to_one { Target::Slot((args.gallery / 2) as u32) } else { Target::All };
    let (mut encrypt, mut eval, mut decrypt, mut prepare) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut exact = true;
    let mut max_noise: f64 = 0.0;
    let mut response_bytes = 0;
    let mut evaluated = 0;
    for i in 0..args.probes {
        let probe = random_vector(&mut r);
        let t = Instant::now();
        let encrypted_probe = key.encrypt_probe(&probe, &mut fhe_rng).map_err(anyhow::Error::msg)?;
        let wire = encrypted_probe.to_bytes();
        encrypt.push(ms(t));

        let t = Instant::now();
        let prepared = passage_fhe::EncryptedProbe::from_bytes(params, &wire)?.prepare();
        prepare.push(ms(t));
        let t = Instant::now();
        let result = pool.install(|| gallery.evaluate(&prepared, target))?;
        let bytes = result.to_bytes();
        eval.push(ms(t));

        let t = Instant::now();
        let decoded = passage_fhe::ScoreResult::from_bytes(params, &bytes)?;
        let scores = key.decrypt_scores(&decoded).map_err(anyhow::Error::msg)?;
        decrypt.push(ms(t));

        response_bytes = bytes.len();
        evaluated = scores.scores.len();
        max_noise = max_noise.max(scores.max_noise_fraction);
        for (slot, score) in &scores.scores {
            if *score != plain_score(&plain[*slot as usize], &probe) {
                exact = false;
            }
        }
        eprintln!("  probe {}: eval {:.1} ms, {} scores, exact so far: {exact}", i + 1, eval[i], scores.scores.len());
    }
    let eval_ms = median(eval);
    let per_template_us = eval_ms * 1e3 / evaluated as f64;
    let line = serde_json::json!({
        "mode": "score",
        "gallery": args.gallery,
        "evaluated": evaluated,
        "dim": params.dim,
        "threads": threads,
        "per_template_us": (per_template_us * 1000.0).round() / 1000.0,
        "probe_encrypt_ms": median(encrypt),
        "probe_prepare_ms": median(prepare),
        "eval_ms": eval_ms,
        "decrypt_ms": median(decrypt),
        "pack_ms": pack_ms,
        "response_bytes": response_bytes,
        "response_bytes_per_template": response_bytes as f64 / evaluated as f64,
        "probe_bytes": passage_fhe::EncryptedProbe::encoded_len(&params),
        "exact": exact,
        "max_noise_fraction": max_noise,
        "security": passage_fhe::SECURITY_NOTE,
    });
    println!("{line}");
    Ok(())
}
