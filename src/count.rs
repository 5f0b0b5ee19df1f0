//! `passage count`: counts line crossings in a video with the real detector, tracker and
//! counter, for calibration on the operator's machine. It prints raw, un-noised counts and
//! publishes nothing. `passage bench count` runs the same and, in the same run, supervision's
//! LineZone (PyPI) on the same detections, and prints both errors against a ground truth.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use passage_edge::count::detect::{Detector, Frame, JsonLines};
use passage_edge::count::pipeline::{LinePipeline, LineSpec};
use passage_edge::count::track::TrackerConfig;
use passage_edge::frames::{self, FfmpegSource, FrameSource};
use passage_vision::person::PersonConfig;
use passage_vision::{inventory, PersonDetector};
use serde_json::{json, Value};

use crate::models::{self, DirArg};

/// Detector and tracker options shared by `count` and `bench count`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    #[command(flatten)]
    models: DirArg,
    /// Least person score a detection needs (those below --track-high only extend tracks).
    #[arg(long, default_value_t = 0.2)]
    min_score: f32,
    /// Least score for a detection to start or firmly extend a track (ByteTrack's high
    /// threshold).
    #[arg(long, default_value_t = 0.3)]
    track_high: f32,
}

impl DetectArgs {
    fn detector(&self) -> anyhow::Result<PersonDetector> {
        load_detector(&self.models, self.min_score)
    }

    fn tracker(&self) -> anyhow::Result<TrackerConfig> {
        tracker_config(self.track_high)
    }
}

/// Options of `passage count`.
#[derive(Debug, Args)]
pub struct CountArgs {
    /// Video file or stream URL (decoded by ffmpeg), run through the built-in person detector.
    #[arg(long, value_name = "FILE", required_unless_present = "detections", conflicts_with = "detections")]
    video: Option<String>,
    /// Instead of a video: an external detector's output, JSON lines (`-` for stdin), one
    /// frame per line: {"t":SECONDS,"w":W,"h":H,"detections":[{"box":[x1,y1,x2,y2],"score":S,"class":"person"}]}.
    #[arg(long, value_name = "FILE|-")]
    detections: Option<String>,
    /// A directed counting line X1,Y1,X2,Y2 in pixels; walking from its left to its right
    /// (looking from the first point to the second) is "in". Repeatable.
    #[arg(long = "line", value_name = "X1,Y1,X2,Y2", required = true)]
    lines: Vec<LineSpec>,
    #[command(flatten)]
    detect: DetectArgs,
    /// Stop after this many frames.
    #[arg(long)]
    max_frames: Option<u64>,
}

/// Options of `passage bench count`.
#[derive(Debug, Args)]
pub struct BenchCountArgs {
    /// Ground truth JSON (`tests/data/vtest-ground-truth.json`): video, lines and counts.
    #[arg(long, value_name = "FILE", default_value = "tests/data/vtest-ground-truth.json")]
    ground_truth: PathBuf,
    /// The video; defaults to `.cache/testdata/<video named in the ground truth>`
    /// (scripts/fetch-vtest).
    #[arg(long, value_name = "FILE")]
    video: Option<PathBuf>,
    #[command(flatten)]
    detect: DetectArgs,
    /// Python with supervision installed (scripts/peer-venv); `none` skips the peer.
    #[arg(long, default_value = ".cache/peer-venv/bin/python")]
    peer_python: String,
}

/// Per-line (in, out) counts and run facts.
struct Outcome {
    counts: Vec<(u32, u32)>,
    frames: u64,
    seconds: f64,
    detect_ms: f64,
}

/// Runs detection, tracking and counting over `video`; when `peer` is given, every frame's
/// detections are also written to it as one JSON line.
fn count_video(
    video: &str,
    lines: &[LineSpec],
    detector: &mut PersonDetector,
    tracker: TrackerConfig,
    max_frames: Option<u64>,
    mut peer: Option<&mut ChildStdin>,
) -> anyhow::Result<Outcome> {
    let mut source = FfmpegSource::open(video)?;
    let info = source.info().clone();
    let mut pipeline = LinePipeline::new(lines, tracker).context("invalid line names")?;
    let started = Instant::now();
    let mut detect_time = 0.0;
    let mut last_report = Instant::now();
    eprintln!(
        "counting {video}: {}x{} at {} fps, {} line(s)",
        info.w,
        info.h,
        info.fps.map_or("unknown".to_owned(), |f| format!("{f:.2}")),
        lines.len()
    );
    while max_frames.is_none_or(|max| pipeline.frames() < max) {
        let Some(frame) = source.next_frame()? else { break };
        let t0 = Instant::now();
        let detections = Detector::detect(detector, &frame.rgb, frame.w, frame.h)?;
        detect_time += t0.elapsed().as_secs_f64();
        if let Some(stdin) = peer.as_deref_mut() {
            let boxes: Vec<Value> = detections
                .iter()
                .map(|d| json!({"x1": d.bbox[0], "y1": d.bbox[1], "x2": d.bbox[2], "y2": d.bbox[3], "score": d.score}))
                .collect();
            let line = json!({"frame": frame.index, "width": frame.w, "height": frame.h, "detections": boxes});
            writeln!(stdin, "{line}").context("the peer process stopped reading")?;
        }
        pipeline.push(Frame { t: frame.t, w: frame.w, h: frame.h, detections });
        if last_report.elapsed().as_secs_f64() >= 5.0 {
            last_report = Instant::now();
            let n = pipeline.frames();
            eprintln!("  frame {n}: {:.1} frames/s", n as f64 / started.elapsed().as_secs_f64());
        }
    }
    let frames = pipeline.frames();
    let rejected = pipeline.rejected().total();
    if rejected > 0 {
        eprintln!("  {rejected} detection(s) rejected by the validator");
    }
    let tallies = pipeline.finish();
    let counts = (0..lines.len()).map(|i| tallies.line(i)).collect();
    Ok(Outcome {
        counts,
        frames,
        seconds: started.elapsed().as_secs_f64(),
        detect_ms: if frames == 0 { 0.0 } else { detect_time * 1000.0 / frames as f64 },
    })
}

fn load_detector(dir: &DirArg, min_score: f32) -> anyhow::Result<PersonDetector> {
    if !(0.0..=1.0).contains(&min_score) {
        bail!("--min-score must be in [0, 1], got {min_score}");
    }
    let path = models::require(&dir.resolve(), &inventory::PEDESTRIAN_SSDLITE)?;
    let config = PersonConfig { min_score, ..PersonConfig::default() };
    PersonDetector::load(&path, config).with_context(|| format!("cannot load the person detector {}", path.display()))
}

fn tracker_config(high: f32) -> anyhow::Result<TrackerConfig> {
    if !(0.0..=1.0).contains(&high) {
        bail!("--track-high must be in [0, 1], got {high}");
    }
    let defaults = TrackerConfig::default();
    Ok(TrackerConfig { high, low: defaults.low.min(high), ..defaults })
}

/// Counts an external detector's JSON-lines output: bad lines are reported (line number and
/// reason, never their content) and skipped.
fn count_detections(
    path: &str,
    lines: &[LineSpec],
    tracker: TrackerConfig,
    max_frames: Option<u64>,
) -> anyhow::Result<Outcome> {
    use std::io::Read;
    let mut input: Box<dyn Read> = if path == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?)
    };
    let mut pipeline = LinePipeline::new(lines, tracker).context("invalid line names")?;
    let mut decoder = JsonLines::default();
    let (mut decoded, mut line_no, mut bad) = (Vec::new(), 0u64, 0u64);
    let mut buf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut feed = |decoded: &mut Vec<_>, pipeline: &mut LinePipeline| {
        for result in decoded.drain(..) {
            line_no += 1;
            match result {
                Ok(frame) if max_frames.is_none_or(|max| pipeline.frames() < max) => {
                    pipeline.push(frame);
                }
                Ok(_) => {}
                Err(error) => {
                    bad += 1;
                    eprintln!("  line {line_no} skipped: {error}");
                }
            }
        }
    };
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {path}")),
        };
        decoder.push(&buf[..n], &mut decoded);
        feed(&mut decoded, &mut pipeline);
    }
    decoder.finish(&mut decoded);
    feed(&mut decoded, &mut pipeline);
    if bad > 0 {
        eprintln!("  {bad} line(s) skipped");
    }
    let frames = pipeline.frames();
    let tallies = pipeline.finish();
    Ok(Outcome {
        counts: (0..lines.len()).map(|i| tallies.line(i)).collect(),
        frames,
        seconds: started.elapsed().as_secs_f64(),
        detect_ms: 0.0,
    })
}

/// `passage count`.
pub fn run_count(args: &CountArgs) -> anyhow::Result<()> {
    let tracker = args.detect.tracker()?;
    let outcome = match (&args.video, &args.detections) {
        (_, Some(path)) => count_detections(path, &args.lines, tracker, args.max_frames)?,
        (Some(video), None) => {
            let mut detector = args.detect.detector()?;
            count_video(video, &args.lines, &mut detector, tracker, args.max_frames, None)?
        }
        (None, None) => bail!("give --video or --detections"),
    };
    eprintln!(
        "{} frames in {:.1} s ({:.1} ms detection per frame); raw counts, for calibration only",
        outcome.frames, outcome.seconds, outcome.detect_ms
    );
    let lines: Vec<Value> = outcome.counts.iter().map(|(i, o)| json!({"in": i, "out": o})).collect();
    println!("{}", json!({"lines": lines, "frames": outcome.frames}));
    Ok(())
}

/// The ground truth file's content.
struct GroundTruth {
    video: String,
    lines: Vec<(LineSpec, u32, u32)>,
}

fn read_ground_truth(path: &Path) -> anyhow::Result<GroundTruth> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let video = value.get("video").and_then(Value::as_str).context("ground truth has no `video`")?.to_owned();
    let lines = value
        .get("lines")
        .and_then(Value::as_array)
        .context("ground truth has no `lines`")?
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let point = |key: &str| -> Option<[f64; 2]> {
                let p = line.get(key)?.as_array()?;
                Some([p.first()?.as_f64()?, p.get(1)?.as_f64()?])
            };
            let count = |key: &str| line.get(key).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok());
            match (point("from"), point("to"), count("in"), count("out")) {
                (Some(from), Some(to), Some(n_in), Some(n_out)) => Ok((LineSpec { from, to }, n_in, n_out)),
                _ => bail!("ground truth line {} needs from, to, in and out", i + 1),
            }
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(GroundTruth { video, lines })
}

/// Relative error of the counts against the truth: sum of absolute errors over every line and
/// direction, divided by the true total.
fn relative_error(counts: &[(u32, u32)], truth: &[(LineSpec, u32, u32)]) -> f64 {
    let (mut err, mut total) = (0u64, 0u64);
    for ((i, o), (_, ti, to)) in counts.iter().zip(truth) {
        err += u64::from(i.abs_diff(*ti)) + u64::from(o.abs_diff(*to));
        total += u64::from(*ti) + u64::from(*to);
    }
    if total == 0 {
        0.0
    } else {
        err as f64 / total as f64
    }
}

fn spawn_peer(python: &str, lines: &[LineSpec], fps: Option<f64>) -> anyhow::Result<Child> {
    let script = Path::new("benches/peer/supervision_linezone.py");
    if !script.is_file() {
        bail!("{} not found: run from the repository root", script.display());
    }
    let mut command = Command::new(python);
    command.arg(script);
    for l in lines {
        command.arg("--line").arg(format!("{},{},{},{}", l.from[0], l.from[1], l.to[0], l.to[1]));
    }
    if let Some(fps) = fps {
        command.arg("--fps").arg(format!("{fps}"));
    }
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().with_context(|| {
        format!("cannot start {python} (create it with scripts/peer-venv, or pass --peer-python none)")
    })
}

/// `passage bench count`.
pub fn run_bench_count(args: &BenchCountArgs) -> anyhow::Result<()> {
    let truth = read_ground_truth(&args.ground_truth)?;
    let video = args.video.clone().unwrap_or_else(|| Path::new(".cache/testdata").join(&truth.video));
    if !video.is_file() {
        bail!("{} not found (run scripts/fetch-vtest)", video.display());
    }
    let video = video.to_string_lossy().into_owned();
    let lines: Vec<LineSpec> = truth.lines.iter().map(|(l, _, _)| l.clone()).collect();
    let mut detector = args.detect.detector()?;
    let fps = frames::probe(&video)?.fps;
    let mut peer = match args.peer_python.as_str() {
        "none" => None,
        python => Some(spawn_peer(python, &lines, fps)?),
    };
    let mut peer_stdin = peer.as_mut().and_then(|p| p.stdin.take());
    let outcome = count_video(&video, &lines, &mut detector, args.detect.tracker()?, None, peer_stdin.as_mut())?;
    drop(peer_stdin);
    let ours_error = relative_error(&outcome.counts, &truth.lines);
    let mut result = json!({
        "video": truth.video,
        "frames": outcome.frames,
        "detect_ms_per_frame": outcome.detect_ms,
        "truth": truth.lines.iter().map(|(_, i, o)| json!({"in": i, "out": o})).collect::<Vec<_>>(),
        "passage": outcome.counts.iter().map(|(i, o)| json!({"in": i, "out": o})).collect::<Vec<_>>(),
        "passage_error": ours_error,
    });
    if let Some(peer) = peer {
        let output = peer.wait_with_output().context("the supervision peer failed")?;
        if !output.status.success() {
            bail!("the supervision peer exited with {}", output.status);
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().last().context("the supervision peer printed nothing")?;
        let peer: Value = serde_json::from_str(last).context("the supervision peer's last line is not JSON")?;
        let counts: Vec<(u32, u32)> = peer
            .get("lines")
            .and_then(Value::as_array)
            .context("peer output has no lines")?
            .iter()
            .map(|l| {
                let get = |k: &str| l.get(k).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
                (get("in"), get("out"))
            })
            .collect();
        let peer_error = relative_error(&counts, &truth.lines);
        result["supervision"] = json!(counts.iter().map(|(i, o)| json!({"in": i, "out": o})).collect::<Vec<_>>());
        result["supervision_version"] = peer.get("supervision").cloned().unwrap_or(Value::Null);
        result["supervision_error"] = json!(peer_error);
    }
    eprintln!("{} frames in {:.1} s", outcome.frames, outcome.seconds);
    println!("{result}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_error_sums_both_directions_over_the_truth() {
        let line = LineSpec { from: [0.0, 0.0], to: [1.0, 0.0] };
        let truth = vec![(line.clone(), 10, 5), (line, 5, 0)];
        assert_eq!(relative_error(&[(10, 5), (5, 0)], &truth), 0.0);
        assert!((relative_error(&[(9, 6), (5, 1)], &truth) - 3.0 / 20.0).abs() < 1e-12);
        assert_eq!(relative_error(&[], &[]), 0.0);
    }
}
