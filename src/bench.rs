//! `passage bench match`: the packed external-product engine end to end, with exactness
//! checked against the plaintext integer computation.

use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use passage_fhe::{
    plain_score, DecisionKey, DecisionResult, EncryptedTemplate, FheRng, Gallery, Params, QuantizedVector, Quantizer,
    SecretKey, Target,
};
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
    /// Cosine threshold of a match (decision mode).
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Decision mode: draw every template's cosine to the probe within threshold ± SPREAD,
    /// to measure the precision of decisions near the threshold.
    #[arg(long)]
    spread: Option<f32>,
    /// Real embeddings: every face in the JPEG/PNG images of DIR (embedded with the models of
    /// `PASSAGE_MODELS` or `.cache/models`) is enrolled first and used as the probes, in turn;
    /// random unit vectors fill the rest of the gallery.
    #[arg(long, value_name = "DIR")]
    real_faces: Option<std::path::PathBuf>,
}

/// The median of `v`: the middle value, or the mean of the two middle ones (0 when empty).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[mid],
        _ => (v[mid - 1] + v[mid]) / 2.0,
    }
}

/// Milliseconds since `since`.
pub(crate) fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn unit_vector(r: &mut rand::rngs::StdRng, dim: usize) -> Vec<f32> {
    // Box–Muller normals, normalised: a uniformly random direction.
    let v: Vec<f64> = (0..dim)
        .map(|_| {
            let (u1, u2): (f64, f64) = (r.random_range(f64::EPSILON..1.0), r.random());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| (x / n) as f32).collect()
}

/// A unit vector at cosine `c` to the unit vector `u`.
fn at_cosine(r: &mut rand::rngs::StdRng, u: &[f32], c: f32) -> Vec<f32> {
    let mut w = unit_vector(r, u.len());
    let along: f32 = w.iter().zip(u).map(|(a, b)| a * b).sum();
    w.iter_mut().zip(u).for_each(|(a, b)| *a -= along * b);
    let n = w.iter().map(|x| x * x).sum::<f32>().sqrt();
    let s = (1.0 - c * c).max(0.0).sqrt();
    u.iter().zip(&w).map(|(a, b)| c * a + s * b / n).collect()
}

/// The gallery and probes of a run, as plaintext quantised vectors.
struct Workload {
    templates: Vec<QuantizedVector>,
    probes: Vec<QuantizedVector>,
    threshold: i32,
}

/// Score mode: uniformly random int4 vectors (the noise worst case is covered by the unit
/// tests). Decision mode: quantised unit vectors (the decision needs the score bound of
/// normalised embeddings); with `--spread`, every template's cosine to the probe is drawn
/// uniformly within `threshold ± spread`, to measure the precision near the threshold.
fn workload(args: &MatchArgs, params: &Params, r: &mut rand::rngs::StdRng, real: &[Vec<f32>]) -> Workload {
    let quantizer = Quantizer::new(params);
    let threshold = quantizer.score_threshold(args.threshold);
    let quantize =
        |v: &[f32]| quantizer.quantize(v).unwrap_or_else(|_| QuantizedVector::from_coefficients(vec![0; v.len()]));
    if !real.is_empty() {
        let templates = real
            .iter()
            .map(|v| quantize(v))
            .chain((real.len()..args.gallery).map(|_| quantize(&unit_vector(r, params.dim))))
            .collect();
        let probes = (0..args.probes).map(|i| quantize(&real[i % real.len()])).collect();
        return Workload { templates, probes, threshold };
    }
    match (args.mode, args.spread) {
        (Mode::Score, _) => {
            let random = |r: &mut rand::rngs::StdRng| {
                QuantizedVector::from_coefficients((0..params.dim).map(|_| r.random_range(-8i8..=7)).collect())
            };
            let templates = (0..args.gallery).map(|_| random(r)).collect();
            let probes = (0..args.probes).map(|_| random(r)).collect();
            Workload { templates, probes, threshold }
        }
        (Mode::Decision, None) => {
            let unit: Vec<Vec<f32>> = (0..args.gallery).map(|_| unit_vector(r, params.dim)).collect();
            // Half the probes are a noisy view of an enrolled template (cosine ≈ 0.8), half strangers.
            let probes = (0..args.probes)
                .map(|i| {
                    if i % 2 == 0 {
                        let k = r.random_range(0..unit.len());
                        quantize(&at_cosine(r, &unit[k], 0.8))
                    } else {
                        quantize(&unit_vector(r, params.dim))
                    }
                })
                .collect();
            Workload { templates: unit.iter().map(|v| quantize(v)).collect(), probes, threshold }
        }
        (Mode::Decision, Some(spread)) => {
            let u = unit_vector(r, params.dim);
            let c = args.threshold as f32;
            let templates = (0..args.gallery)
                .map(|_| {
                    let cosine = r.random_range(c - spread..=c + spread);
                    quantize(&at_cosine(r, &u, cosine))
                })
                .collect();
            Workload { templates, probes: vec![quantize(&u); args.probes], threshold }
        }
    }
}

/// Runs the benchmark and prints progress on stderr and one JSON line on stdout.
pub fn run_match(args: &MatchArgs) -> anyhow::Result<()> {
    if args.gallery == 0 || args.probes == 0 {
        bail!("--gallery and --probes must be at least 1");
    }
    if args.spread.is_some() && args.mode != Mode::Decision {
        bail!("--spread measures decision-mode precision; use it with --mode decision");
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
    let real = match &args.real_faces {
        Some(dir) => real_embeddings(dir, params.dim)?,
        None => Vec::new(),
    };
    if real.len() > args.gallery {
        bail!("{} real faces do not fit a gallery of {}", real.len(), args.gallery);
    }
    let work = workload(args, &params, &mut r, &real);
    let plain = &work.templates;

    let mut extra = serde_json::Map::new();
    let decision_key = if args.mode == Mode::Decision {
        eprintln!("making the decision key (key switching + bootstrapping keys)...");
        let t = Instant::now();
        let dk = pool.install(|| key.generate_decision_key(&mut fhe_rng));
        extra.insert("decision_key_ms".into(), ms(t).into());
        let bytes = dk.to_bytes();
        extra.insert("decision_key_bytes".into(), bytes.len().into());
        let t = Instant::now();
        let prepared = pool.install(|| DecisionKey::from_bytes(params, &bytes).map(|k| k.prepare()))?;
        extra.insert("decision_key_prepare_ms".into(), ms(t).into());
        Some(prepared)
    } else {
        None
    };

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
    let (mut decode, mut encode) = (Vec::new(), Vec::new());
    let mut exact = true;
    let mut max_noise: f64 = 0.0;
    let mut response_bytes = 0;
    let mut evaluated = 0;
    let mut matches_seen = 0usize;
    // Decision mode: (|score − threshold| bucket) -> (decisions, wrong decisions).
    let buckets = [(0, 5), (5, 10), (10, 20), (20, 40), (40, 80), (80, i32::MAX)];
    let mut near = vec![(0u64, 0u64); buckets.len()];
    for (i, probe) in work.probes.iter().enumerate() {
        let t = Instant::now();
        let encrypted_probe = key.encrypt_probe(probe, &mut fhe_rng).map_err(anyhow::Error::msg)?;
        let wire = encrypted_probe.to_bytes();
        encrypt.push(ms(t));

        let t = Instant::now();
        let prepared = passage_fhe::EncryptedProbe::from_bytes(params, &wire)?.prepare();
        prepare.push(ms(t));
        let t = Instant::now();
        let bytes = match &decision_key {
            None => {
                let result = pool.install(|| gallery.evaluate(&prepared, target))?;
                let evaluated = ms(t);
                let bytes = pool.install(|| result.to_bytes());
                encode.push(ms(t) - evaluated);
                bytes
            }
            Some(dk) => pool.install(|| gallery.evaluate_decisions(&prepared, target, dk, work.threshold))?.to_bytes(),
        };
        eval.push(ms(t));

        let t = Instant::now();
        let wrong = match decision_key {
            None => {
                let decoded = passage_fhe::ScoreResult::from_bytes(params, &bytes)?;
                decode.push(ms(t));
                let t = Instant::now();
                let scores = key.decrypt_scores(&decoded).map_err(anyhow::Error::msg)?;
                decrypt.push(ms(t));
                evaluated = scores.scores.len();
                max_noise = max_noise.max(scores.max_noise_fraction);
                scores
                    .scores
                    .iter()
                    .filter(|(slot, score)| *score != plain_score(&plain[*slot as usize], probe))
                    .count()
            }
            Some(_) => {
                let decoded = DecisionResult::from_bytes(params, &bytes)?;
                let decisions = key.decrypt_decisions(&decoded).map_err(anyhow::Error::msg)?;
                decrypt.push(ms(t));
                evaluated = decisions.evaluated;
                max_noise = max_noise.max(decisions.max_noise_fraction);
                matches_seen += decisions.matches.len();
                let slots: Vec<usize> = match target {
                    Target::All => (0..plain.len()).collect(),
                    Target::Slot(s) => vec![s as usize],
                };
                let mut wrong = 0;
                for slot in slots {
                    let score = plain_score(&plain[slot], probe);
                    let expected = score >= work.threshold;
                    let got = decisions.matches.binary_search(&(slot as u32)).is_ok();
                    let distance = (score - work.threshold).abs();
                    if let Some(b) = buckets.iter().position(|&(lo, hi)| distance >= lo && distance < hi) {
                        near[b].0 += 1;
                        near[b].1 += u64::from(got != expected);
                    }
                    wrong += usize::from(got != expected);
                }
                wrong
            }
        };
        response_bytes = bytes.len();
        exact &= wrong == 0;
        eprintln!(
            "  probe {}: eval {:.1} ms, {evaluated} evaluated, {wrong} wrong, exact so far: {exact}",
            i + 1,
            eval[i]
        );
    }
    if args.mode == Mode::Decision {
        extra.insert("threshold_score".into(), work.threshold.into());
        extra.insert("matches".into(), matches_seen.into());
        let table: Vec<serde_json::Value> = buckets
            .iter()
            .zip(&near)
            .filter(|(_, (n, _))| *n > 0)
            .map(|(&(lo, hi), &(n, w))| {
                serde_json::json!({ "distance": format!("{lo}..{}", if hi == i32::MAX { "".into() } else { hi.to_string() }), "decisions": n, "wrong": w })
            })
            .collect();
        extra.insert("by_distance_to_threshold".into(), table.into());
    }
    let eval_ms = median(eval);
    let per_template_us = eval_ms * 1e3 / evaluated as f64;
    let mut line = serde_json::json!({
        "mode": match args.mode { Mode::Score => "score", Mode::Decision => "decision" },
        "gallery": args.gallery,
        "evaluated": evaluated,
        "dim": params.dim,
        "threads": threads,
        "per_template_us": (per_template_us * 1000.0).round() / 1000.0,
        "probe_encrypt_ms": median(encrypt),
        "probe_prepare_ms": median(prepare),
        "eval_ms": eval_ms,
        "decrypt_ms": median(decrypt),
        "encode_ms": if encode.is_empty() { serde_json::Value::Null } else { median(encode).into() },
        "decode_ms": if decode.is_empty() { serde_json::Value::Null } else { median(decode).into() },
        "pack_ms": pack_ms,
        "response_bytes": response_bytes,
        "response_bytes_per_template": response_bytes as f64 / evaluated as f64,
        "probe_bytes": passage_fhe::EncryptedProbe::encoded_len(&params),
        "exact": exact,
        "max_noise_fraction": max_noise,
        "security": passage_fhe::SECURITY_NOTE,
    });
    if let Some(object) = line.as_object_mut() {
        object.extend(extra);
        if !real.is_empty() {
            object.insert("real_faces".into(), real.len().into());
        }
    }
    println!("{line}");
    Ok(())
}

/// The L2-normalised embedding of every face in the JPEG/PNG images of `dir`, in file order.
fn real_embeddings(dir: &std::path::Path, dim: usize) -> anyhow::Result<Vec<Vec<f32>>> {
    use passage_vision::face::{FacePipeline, PipelineConfig};
    let models = crate::models::models_dir(None);
    let config =
        PipelineConfig { liveness: false, max_embedded: usize::MAX, min_face_px: 0.0, ..PipelineConfig::default() };
    let pipeline = FacePipeline::load(&models, config)
        .with_context(|| format!("cannot load the face models from {} (passage models fetch)", models.display()))?;
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| passage_edge::frames::is_image_path(p))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in &paths {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let image =
            passage_vision::decode::decode(&bytes).with_context(|| format!("cannot decode {}", path.display()))?;
        let (faces, _) = pipeline.process(&image.rgb, image.w, image.h)?;
        out.extend(faces.into_iter().filter_map(|f| f.embedding).map(|e| e.as_slice().to_vec()));
    }
    if out.is_empty() {
        bail!("no face found in the images of {} (scripts/fetch-faces fetches the test photos)", dir.display());
    }
    if out.iter().any(|e| e.len() != dim) {
        bail!("the face models make {}-d embeddings; run with --dim {}", out[0].len(), out[0].len());
    }
    eprintln!("{} real faces embedded from {} images in {}", out.len(), paths.len(), dir.display());
    Ok(out)
}
