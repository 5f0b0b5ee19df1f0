//! `passage embed`, `passage anonymize` and `passage bench edge`: the face path of the edge
//! agent on the operator's own machine.
//!
//! `embed` prints embeddings: a debugging aid that exists only here, never in the services.
//! `anonymize` writes the only kind of image that may leave the edge: every face (found by
//! CenterFace or by the second detector) replaced by a coarse mosaic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use passage_edge::frames::{is_image_path, FfmpegSource, FrameSource};
use passage_fhe::{FheRng, Params, Quantizer, SecretKey};
use passage_policy::atomic_file::{self, Access};
use passage_vision::anonymize::{Anonymiser, AnonymizeConfig};
use passage_vision::decode::{self, OutputFormat};
use passage_vision::face::{CenterFaceConfig, FacePipeline, PipelineConfig, UltraFace, UltraFaceConfig};
use passage_vision::inventory;
use serde_json::{json, Value};

use crate::bench::{median, ms};
use crate::models::{self, DirArg};

/// Arguments of `passage embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// A JPEG or PNG image.
    pub image: PathBuf,
    #[command(flatten)]
    pub models: DirArg,
    /// Longest side of the detector's input (a deployment's `faces.detect_max_side`).
    #[arg(long, default_value_t = 640)]
    pub detect_max_side: u32,
}

/// Arguments of `passage anonymize`.
#[derive(Debug, Args)]
pub struct AnonymizeArgs {
    /// Input: a JPEG/PNG image, or a video file ffmpeg can read.
    pub input: PathBuf,
    /// Output: `.png`/`.jpg` for an image, a video file name (e.g. `.mp4`) for a video.
    pub output: PathBuf,
    #[command(flatten)]
    pub models: DirArg,
    /// Margin added around each face box, as a fraction of its size.
    #[arg(long, default_value_t = 0.3)]
    pub margin: f32,
    /// Mosaic cells across a face region.
    #[arg(long, default_value_t = 6)]
    pub blocks: u32,
}

/// Arguments of `passage bench edge`.
#[derive(Debug, Args)]
pub struct BenchEdgeArgs {
    #[command(flatten)]
    pub models: DirArg,
    /// Directory of JPEG/PNG test images (scripts/fetch-faces).
    #[arg(long, default_value = ".cache/testdata/faces")]
    pub images: PathBuf,
    /// Passes over the images.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Python with onnxruntime (scripts/peer-venv), or `none` to skip the side-by-side run.
    #[arg(long, default_value = ".cache/peer-venv/bin/python")]
    pub peer_python: String,
    /// Longest side of the detector's input (the deployment's `faces.detect_max_side`).
    #[arg(long, default_value_t = 640)]
    pub detect_max_side: u32,
    /// Also time each model per operator kind (tract's and ours), printed to stderr and
    /// added to the JSON as `per_op`.
    #[arg(long)]
    pub per_op: bool,
    /// Rounds of model-only timing, tract and onnxruntime taking turns; each side's figure is
    /// the median of its rounds' medians, so that a slow spell of a shared machine falls on
    /// both sides alike.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

fn read_image(path: &Path) -> anyhow::Result<decode::RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode::decode(&bytes).with_context(|| format!("cannot decode {}", path.display()))
}

/// Runs `passage embed`.
pub fn run_embed(args: &EmbedArgs) -> anyhow::Result<()> {
    let dir = args.models.resolve();
    require_face_models(&dir)?;
    let detector = CenterFaceConfig { max_side: args.detect_max_side, ..CenterFaceConfig::default() };
    let pipeline = FacePipeline::load(
        &dir,
        PipelineConfig { max_embedded: usize::MAX, min_face_px: 0.0, detector, ..PipelineConfig::default() },
    )?;
    let image = read_image(&args.image)?;
    let (faces, _) = pipeline.process(&image.rgb, image.w, image.h)?;
    for face in &faces {
        let mut line = json!({
            "box": face.face.bbox.iter().map(|v| (f64::from(*v) * 10.0).round() / 10.0).collect::<Vec<_>>(),
            "score": face.face.score,
            "landmarks": face.face.landmarks,
            "liveness": face.liveness,
        });
        if let Some(embedding) = &face.embedding {
            line["embedding"] = json!(embedding.as_slice());
        }
        println!("{line}");
    }
    eprintln!("{} face(s) in {} ({}x{})", faces.len(), args.image.display(), image.w, image.h);
    Ok(())
}

fn require_face_models(dir: &Path) -> anyhow::Result<()> {
    for spec in [&inventory::CENTERFACE, &inventory::SFACE, &inventory::FR_LIVENESS, &inventory::FR_DETECT] {
        models::require(dir, spec)?;
    }
    Ok(())
}

fn load_anonymiser(dir: &Path, config: AnonymizeConfig) -> anyhow::Result<Anonymiser> {
    for spec in [&inventory::CENTERFACE, &inventory::FR_DETECT] {
        models::require(dir, spec)?;
    }
    Ok(Anonymiser::load(dir, config)?)
}

/// Runs `passage anonymize`.
pub fn run_anonymize(args: &AnonymizeArgs) -> anyhow::Result<()> {
    let config = AnonymizeConfig { margin: args.margin, blocks: args.blocks };
    let anonymiser = load_anonymiser(&args.models.resolve(), config)?;
    if is_image_path(&args.input) {
        let format = args
            .output
            .extension()
            .and_then(|e| e.to_str())
            .and_then(OutputFormat::from_extension)
            .context("an image's output must end in .png, .jpg or .jpeg")?;
        let mut image = read_image(&args.input)?;
        let regions = anonymiser.anonymize(&mut image.rgb, image.w, image.h)?;
        let bytes = decode::encode(&image.rgb, image.w, image.h, format)?;
        atomic_file::write(&args.output, &bytes, Access::Private)?;
        eprintln!("{regions} face region(s) anonymised; wrote {}", args.output.display());
        return Ok(());
    }
    anonymize_video(&anonymiser, &args.input, &args.output)
}

fn anonymize_video(anonymiser: &Anonymiser, input: &Path, output: &Path) -> anyhow::Result<()> {
    let input_text = input.to_str().context("the input path is not UTF-8")?;
    let mut source = FfmpegSource::open(input_text)?;
    let info = source.info().clone();
    let fps = info.fps.unwrap_or(25.0);
    // Write next to the output and rename at the end: a failed run leaves no partial video.
    let partial =
        output.with_extension(format!("partial.{}", output.extension().and_then(|e| e.to_str()).unwrap_or("mp4")));
    let mut encoder = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s"])
        .arg(format!("{}x{}", info.w, info.h))
        .args(["-r", &format!("{fps}"), "-i", "-", "-an", "-pix_fmt", "yuv420p"])
        .arg(&partial)
        .stdin(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start ffmpeg to encode the output (Debian: apt-get install ffmpeg)")?;
    let result = (|| -> anyhow::Result<(u64, usize)> {
        let stdin = encoder.stdin.as_mut().context("ffmpeg has no stdin")?;
        let (mut frames, mut regions) = (0u64, 0usize);
        let started = Instant::now();
        while let Some(mut frame) = source.next_frame()? {
            regions += anonymiser.anonymize(&mut frame.rgb, frame.w, frame.h)?;
            stdin.write_all(&frame.rgb).context("ffmpeg stopped taking frames")?;
            frames += 1;
            if frames % 50 == 0 {
                eprintln!("  {frames} frames ({:.1} frames/s)", frames as f64 / started.elapsed().as_secs_f64());
            }
        }
        Ok((frames, regions))
    })();
    drop(encoder.stdin.take());
    let status = encoder.wait().context("ffmpeg did not finish")?;
    match result {
        Ok((frames, regions)) if status.success() && frames > 0 => {
            std::fs::rename(&partial, output)
                .with_context(|| format!("cannot move the video to {}", output.display()))?;
            eprintln!("{frames} frames, {regions} face region(s) anonymised; wrote {}", output.display());
            Ok(())
        }
        Ok((0, _)) => {
            let _ = std::fs::remove_file(&partial);
            bail!("{} has no frames", input.display())
        }
        Ok(_) => {
            let _ = std::fs::remove_file(&partial);
            bail!("ffmpeg could not encode {} ({status})", output.display())
        }
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

/// Runs `passage bench edge`.
pub fn run_bench_edge(args: &BenchEdgeArgs) -> anyhow::Result<()> {
    let dir = args.models.resolve();
    require_face_models(&dir)?;
    let detector = CenterFaceConfig { max_side: args.detect_max_side, ..CenterFaceConfig::default() };
    let pipeline = FacePipeline::load(&dir, PipelineConfig { detector, ..PipelineConfig::default() })?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&args.images)
        .with_context(|| format!("cannot list {} (run scripts/fetch-faces)", args.images.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_image_path(p))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("no JPEG/PNG images in {} (run scripts/fetch-faces)", args.images.display());
    }
    let files: Vec<(PathBuf, Vec<u8>)> = paths
        .iter()
        .map(|p| std::fs::read(p).map(|b| (p.clone(), b)).with_context(|| format!("cannot read {}", p.display())))
        .collect::<anyhow::Result<_>>()?;
    let params = Params::DEFAULT;
    let quantizer = Quantizer::new(&params);
    let mut rng = FheRng::from_seed(rand::random());
    let key = SecretKey::generate(params, &mut rng).map_err(anyhow::Error::msg)?;
    let (mut decode_ms, mut encrypt_ms, mut faces, mut frames) = (0.0, 0.0, 0usize, 0usize);
    let mut stages = passage_vision::face::StageTimes::default();
    let started = Instant::now();
    for run in 0..args.runs.max(1) {
        for (path, bytes) in &files {
            let t = Instant::now();
            let image = decode::decode(bytes).with_context(|| format!("cannot decode {}", path.display()))?;
            decode_ms += ms(t);
            let (found, times) = pipeline.process(&image.rgb, image.w, image.h)?;
            stages.detect_ms += times.detect_ms;
            stages.liveness_ms += times.liveness_ms;
            stages.align_ms += times.align_ms;
            stages.embed_ms += times.embed_ms;
            for embedding in found.iter().filter_map(|f| f.embedding.as_ref()) {
                let t = Instant::now();
                let quantized = quantizer.quantize(embedding.as_slice()).map_err(anyhow::Error::msg)?;
                let probe = key.encrypt_probe(&quantized, &mut rng).map_err(anyhow::Error::msg)?;
                std::hint::black_box(probe.prepare());
                encrypt_ms += ms(t);
                faces += 1;
            }
            frames += 1;
        }
        eprintln!("  pass {}/{}: {frames} frames, {faces} faces embedded so far", run + 1, args.runs.max(1));
    }
    let total_s = started.elapsed().as_secs_f64();
    if faces == 0 {
        bail!("no face was embedded in {}", args.images.display());
    }
    let per_face = |v: f64| (v / faces as f64 * 1000.0).round() / 1000.0;
    let per_frame = |v: f64| (v / frames as f64 * 1000.0).round() / 1000.0;
    let mut result = json!({
        "bench": "edge",
        "threads": 1,
        "detect_max_side": args.detect_max_side,
        "frames": frames,
        "faces": faces,
        "images": files.len(),
        "decode_ms": per_frame(decode_ms),
        "detect_ms": per_frame(stages.detect_ms),
        "liveness_ms": per_face(stages.liveness_ms),
        "align_ms": per_face(stages.align_ms),
        "embed_ms": per_face(stages.embed_ms),
        "encrypt_ms": per_face(encrypt_ms),
        "per_face_ms": per_face(stages.liveness_ms + stages.align_ms + stages.embed_ms + encrypt_ms),
        "faces_per_s": (faces as f64 / total_s * 100.0).round() / 100.0,
    });
    let peer_on = args.peer_python != "none";
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let rounds = args.rounds.max(1);
    let ultraface = UltraFace::load(&models::model_path(&dir, &inventory::FR_DETECT), UltraFaceConfig::default())?;
    for round in 0..rounds {
        eprintln!("  model timing, round {}/{rounds}", round + 1);
        ours.push(model_times(&pipeline, &ultraface, 20, 3, args.per_op && round == 0)?);
        if peer_on {
            theirs.push(run_peer(&args.peer_python, &dir)?);
        }
    }
    let models = median_of_rounds(&ours);
    result["tract"] = models.clone();
    if peer_on {
        let peer = median_of_rounds(&theirs);
        let ratio = |key: &str| -> Option<f64> {
            let ours = models.get(key)?.as_f64()?;
            let theirs = peer.get(key)?.as_f64()?;
            (theirs > 0.0).then(|| (ours / theirs * 100.0).round() / 100.0)
        };
        let ratios = json!({
            "centerface": ratio("centerface_ms"),
            "sface": ratio("sface_ms"),
            "liveness": ratio("liveness_ms"),
            "ultraface": ratio("ultraface_ms"),
        });
        let worst = MODEL_KEYS.iter().filter_map(|k| ratio(k)).fold(0.0, f64::max);
        result["onnxruntime"] = peer;
        result["ratio_by_model"] = ratios;
        result["ratio_vs_onnxruntime"] = json!(worst);
    }
    println!("{result}");
    Ok(())
}

const MODEL_KEYS: [&str; 4] = ["centerface_ms", "sface_ms", "liveness_ms", "ultraface_ms"];

/// The first round's object with each model's figure replaced by the median over the rounds,
/// and every round's figures under `rounds`.
fn median_of_rounds(rounds: &[Value]) -> Value {
    let mut out = rounds.first().cloned().unwrap_or_else(|| json!({}));
    let mut per_round = serde_json::Map::new();
    for key in MODEL_KEYS {
        let values: Vec<f64> = rounds.iter().filter_map(|r| r.get(key)?.as_f64()).collect();
        if values.is_empty() {
            continue;
        }
        out[key] = json!((median(values.clone()) * 1000.0).round() / 1000.0);
        per_round.insert(key.into(), json!(values));
    }
    out["rounds"] = Value::Object(per_round);
    out
}

/// Model-only latency in tract (median of `runs` after `warmup`), on the same input sizes
/// as the Python peer: CenterFace at 640x480, SFace 112x112, liveness 128x128, UltraFace
/// 320x240. Inputs are fixed pseudo-random pixels, generated before the clock starts (the
/// peer times `session.run` on a prepared array); a timed run copies them into the model's
/// input tensor, runs the plan and wipes the input, as every run in the pipeline does.
///
/// With `per_op`, each model is then profiled over `runs` more runs
/// ([`passage_vision::onnx::Plan::profile`]).
fn model_times(
    pipeline: &FacePipeline,
    ultraface: &UltraFace,
    runs: usize,
    warmup: usize,
    per_op: bool,
) -> anyhow::Result<Value> {
    let plans = [
        ("centerface_ms", pipeline.detector().plan_for(640, 480)?),
        ("sface_ms", pipeline.embedder().plan().clone()),
        ("liveness_ms", pipeline.liveness().context("liveness is off")?.plan().clone()),
        ("ultraface_ms", ultraface.plan().clone()),
    ];
    let mut out = serde_json::Map::new();
    let mut profiles = serde_json::Map::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut pixel = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % 256) as f32
    };
    for (key, plan) in &plans {
        let pixels: Vec<f32> = (0..plan.input_shape().iter().product::<usize>()).map(|_| pixel()).collect();
        let mut samples = Vec::with_capacity(runs);
        for i in 0..runs + warmup {
            let t = Instant::now();
            plan.run(|input| {
                input.copy_from_slice(&pixels);
                Ok(())
            })?;
            if i >= warmup {
                samples.push(ms(t));
            }
        }
        out.insert((*key).into(), json!((median(samples) * 1000.0).round() / 1000.0));
        if per_op {
            let model = key.trim_end_matches("_ms");
            let times = plan.profile(runs, |input| {
                input.copy_from_slice(&pixels);
                Ok(())
            })?;
            eprintln!("  {model} per operator ({runs} runs, ms per run):");
            for t in &times {
                eprintln!("    {:>8.3}  {:>3} x {}", t.ms, t.nodes, t.op);
            }
            let rows: Vec<Value> = times
                .iter()
                .map(|t| json!({"op": t.op, "nodes": t.nodes, "ms": (t.ms * 1000.0).round() / 1000.0}))
                .collect();
            profiles.insert(model.into(), Value::Array(rows));
        }
    }
    if per_op {
        out.insert("per_op".into(), Value::Object(profiles));
    }
    Ok(Value::Object(out))
}

fn run_peer(python: &str, models_dir: &Path) -> anyhow::Result<Value> {
    eprintln!("  onnxruntime side ({python} benches/peer/face_ort.py)");
    let output = Command::new(python)
        .arg("benches/peer/face_ort.py")
        .arg("--models")
        .arg(models_dir)
        .args(["--centerface-size", "640x480", "--runs", "20", "--warmup", "3", "--threads", "1"])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| {
            format!("cannot start {python} (create it with scripts/peer-venv, or pass --peer-python none)")
        })?;
    if !output.status.success() {
        bail!("benches/peer/face_ort.py failed ({})", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).context("the peer printed no JSON line")?;
    serde_json::from_str(line).context("the peer's JSON line is unreadable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_side_is_the_median_of_its_rounds_and_keeps_every_round() {
        let rounds = [
            json!({"runtime": "onnxruntime", "sface_ms": 30.0, "ultraface_ms": 2.5}),
            json!({"runtime": "onnxruntime", "sface_ms": 28.0, "ultraface_ms": 4.0}),
            json!({"runtime": "onnxruntime", "sface_ms": 29.0, "ultraface_ms": 2.4}),
        ];
        let m = median_of_rounds(&rounds);
        assert_eq!(m["sface_ms"], json!(29.0));
        assert_eq!(m["ultraface_ms"], json!(2.5));
        assert_eq!(m["runtime"], json!("onnxruntime"));
        assert_eq!(m["rounds"]["ultraface_ms"], json!([2.5, 4.0, 2.4]));
        assert!(m["rounds"].get("centerface_ms").is_none());
        let two = median_of_rounds(&rounds[..2]);
        assert_eq!(two["sface_ms"], json!(29.0));
    }
}
