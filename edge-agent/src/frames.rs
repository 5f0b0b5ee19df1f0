//! Frame sources: where pixels come from.
//!
//! * [`ImageSource`]: a still image, or a directory of images (JPEG/PNG, sorted by name),
//!   decoded in this process with bounds ([`passage_vision::decode`]).
//! * [`FfmpegSource`]: a video file or an RTSP/HTTP stream (MJPEG over HTTP included, through
//!   ffmpeg's `mpjpeg` demuxer) decoded by an `ffmpeg` child process into raw RGB frames on
//!   its stdout.
//! * [`open`] picks one from a path or URL.
//!
//! A bad frame (a corrupt or oversize image) is an error for that frame only: the next call
//! goes on with the next one.
//!
//! Frames exist in this process's RAM only: [`RgbFrame`] holds its pixels in a
//! [`Zeroizing`] buffer, wiped when the frame is dropped, and nothing here writes or logs them
//! (privacy invariant 1). ffmpeg writes nothing to disk either: it reads the input and pipes
//! raw frames to us.

use std::io::Read;
use std::process::{Child, ChildStdout, Command, Stdio};

use zeroize::Zeroizing;

/// Largest accepted frame side, in pixels.
pub const MAX_SIDE: u32 = 8192;

/// One decoded frame: packed 8-bit RGB, row-major, wiped on drop.
pub struct RgbFrame {
    /// Width in pixels.
    pub w: u32,
    /// Height in pixels.
    pub h: u32,
    /// Frame number from the start of the source, 0-based.
    pub index: u64,
    /// Presentation time in seconds from the start of the source.
    pub t: f64,
    /// The pixels (`w * h * 3` bytes).
    pub rgb: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for RgbFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RgbFrame")
            .field("w", &self.w)
            .field("h", &self.h)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Why a source failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// ffmpeg or ffprobe is not installed.
    #[error("`{program}` is not installed or not on PATH ({source}); Debian: apt-get install ffmpeg")]
    Missing {
        /// The program.
        program: &'static str,
        /// The spawn error.
        source: std::io::Error,
    },
    /// ffprobe could not read the input.
    #[error("ffprobe cannot read `{input}`: {reason}")]
    Probe {
        /// The input.
        input: String,
        /// ffprobe's message.
        reason: String,
    },
    /// The stream's size is unusable.
    #[error("video size {w}x{h} is outside 1..={MAX_SIDE}")]
    BadSize {
        /// Width.
        w: u32,
        /// Height.
        h: u32,
    },
    /// Reading frames failed or ffmpeg ended mid-frame.
    #[error("reading frames from ffmpeg: {0}")]
    Read(String),
}

/// Anything that yields frames.
pub trait FrameSource {
    /// The next frame, or `None` at the end of the source.
    ///
    /// # Errors
    /// [`SourceError`] when the source fails mid-stream.
    fn next_frame(&mut self) -> Result<Option<RgbFrame>, SourceError>;
}

/// A still image or a directory of images.
pub struct ImageSource {
    files: Vec<std::path::PathBuf>,
    next: usize,
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSource").field("files", &self.files.len()).field("next", &self.next).finish()
    }
}

/// Whether a path names a still image by its extension.
pub fn is_image_path(path: &std::path::Path) -> bool {
    path.extension().and_then(|e| e.to_str()).and_then(passage_vision::decode::OutputFormat::from_extension).is_some()
}

impl ImageSource {
    /// One image file, or every JPEG/PNG file of a directory in name order.
    ///
    /// # Errors
    /// [`SourceError::Read`] when the path cannot be listed or holds no image.
    pub fn open(path: &std::path::Path) -> Result<ImageSource, SourceError> {
        let files = if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(path)
                .map_err(|e| SourceError::Read(format!("cannot list {}: {e}", path.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_image_path(p))
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        if files.is_empty() {
            return Err(SourceError::Read(format!("no JPEG or PNG image in {}", path.display())));
        }
        Ok(ImageSource { files, next: 0 })
    }
}

impl FrameSource for ImageSource {
    fn next_frame(&mut self) -> Result<Option<RgbFrame>, SourceError> {
        let Some(path) = self.files.get(self.next) else {
            return Ok(None);
        };
        let index = self.next as u64;
        self.next += 1;
        let bytes = Zeroizing::new(
            std::fs::read(path).map_err(|e| SourceError::Read(format!("cannot read {}: {e}", path.display())))?,
        );
        let image = passage_vision::decode::decode(&bytes)
            .map_err(|e| SourceError::Read(format!("{}: {e}", path.display())))?;
        Ok(Some(RgbFrame { w: image.w, h: image.h, index, t: index as f64, rgb: image.rgb }))
    }
}

/// Opens a source: a directory or a `.jpg`/`.jpeg`/`.png` file as an [`ImageSource`], anything
/// else (a video file, `rtsp://`, `http://` including MJPEG streams) through ffmpeg.
///
/// # Errors
/// As [`ImageSource::open`] or [`FfmpegSource::open`].
pub fn open(input: &str) -> Result<Box<dyn FrameSource + Send>, SourceError> {
    let path = std::path::Path::new(input);
    if path.is_dir() || (is_image_path(path) && !input.contains("://")) {
        Ok(Box::new(ImageSource::open(path)?))
    } else {
        Ok(Box::new(FfmpegSource::open(input)?))
    }
}

/// What ffprobe says about the first video stream.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
    /// Frames per second (average), when known.
    pub fps: Option<f64>,
}

/// Parses ffprobe's `-of json` output for `stream=width,height,avg_frame_rate`.
pub fn parse_probe(json: &[u8]) -> Result<VideoInfo, String> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("unreadable ffprobe output: {e}"))?;
    let stream = value
        .get("streams")
        .and_then(|s| s.as_array())
        .and_then(|s| s.first())
        .ok_or_else(|| "no video stream".to_owned())?;
    let dim = |key: &str| {
        stream
            .get(key)
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| format!("no {key}"))
    };
    let fps = stream.get("avg_frame_rate").and_then(|r| r.as_str()).and_then(|r| {
        let (num, den) = r.split_once('/')?;
        let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
        (den > 0.0 && num > 0.0).then(|| num / den)
    });
    Ok(VideoInfo { w: dim("width")?, h: dim("height")?, fps })
}

/// Asks ffprobe for `input`'s first video stream: size and frame rate.
///
/// # Errors
/// [`SourceError::Missing`], [`SourceError::Probe`] or [`SourceError::BadSize`].
pub fn probe(input: &str) -> Result<VideoInfo, SourceError> {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height,avg_frame_rate",
            "-of",
            "json",
            "--",
        ])
        .arg(input)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| SourceError::Missing { program: "ffprobe", source })?;
    if !probe.status.success() {
        let reason = String::from_utf8_lossy(&probe.stderr).trim().chars().take(300).collect();
        return Err(SourceError::Probe { input: input.to_owned(), reason });
    }
    let info = parse_probe(&probe.stdout).map_err(|reason| SourceError::Probe { input: input.to_owned(), reason })?;
    if info.w == 0 || info.h == 0 || info.w > MAX_SIDE || info.h > MAX_SIDE {
        return Err(SourceError::BadSize { w: info.w, h: info.h });
    }
    Ok(info)
}

/// A video file or stream decoded by `ffmpeg` (RGB frames on a pipe).
pub struct FfmpegSource {
    child: Child,
    stdout: ChildStdout,
    info: VideoInfo,
    index: u64,
}

impl std::fmt::Debug for FfmpegSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FfmpegSource").field("info", &self.info).field("index", &self.index).finish_non_exhaustive()
    }
}

impl FfmpegSource {
    /// Probes `input` (a path or a URL ffmpeg understands) and starts decoding it.
    ///
    /// # Errors
    /// [`SourceError::Missing`], [`SourceError::Probe`] or [`SourceError::BadSize`].
    pub fn open(input: &str) -> Result<FfmpegSource, SourceError> {
        let info = probe(input)?;
        let mut child = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(input)
            .args(["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| SourceError::Missing { program: "ffmpeg", source })?;
        let stdout = child.stdout.take().ok_or_else(|| SourceError::Read("ffmpeg has no stdout".into()))?;
        Ok(FfmpegSource { child, stdout, info, index: 0 })
    }

    /// The stream's size and frame rate.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }
}

impl FrameSource for FfmpegSource {
    fn next_frame(&mut self) -> Result<Option<RgbFrame>, SourceError> {
        let len = self.info.w as usize * self.info.h as usize * 3;
        let mut rgb = Zeroizing::new(vec![0u8; len]);
        let mut filled = 0;
        while filled < len {
            match self.stdout.read(&mut rgb[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SourceError::Read(e.to_string())),
            }
        }
        if filled == 0 {
            return match self.child.wait() {
                Ok(status) if status.success() => Ok(None),
                Ok(status) => Err(SourceError::Read(format!("ffmpeg exited with {status}"))),
                Err(e) => Err(SourceError::Read(e.to_string())),
            };
        }
        if filled < len {
            return Err(SourceError::Read(format!("ffmpeg ended mid-frame ({filled} of {len} bytes)")));
        }
        let index = self.index;
        self.index += 1;
        let t = self.info.fps.map_or(index as f64, |fps| index as f64 / fps);
        Ok(Some(RgbFrame { w: self.info.w, h: self.info.h, index, t, rgb }))
    }
}

impl Drop for FfmpegSource {
    fn drop(&mut self) {
        // Stopping early (an error, --max-frames): do not leave ffmpeg running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_is_parsed() {
        let json = br#"{"programs":[],"streams":[{"width":768,"height":576,"avg_frame_rate":"10/1"}]}"#;
        assert_eq!(parse_probe(json), Ok(VideoInfo { w: 768, h: 576, fps: Some(10.0) }));
        let no_rate = br#"{"streams":[{"width":2,"height":3,"avg_frame_rate":"0/0"}]}"#;
        assert_eq!(parse_probe(no_rate).map(|i| i.fps), Ok(None));
        assert!(parse_probe(br#"{"streams":[]}"#).is_err());
        assert!(parse_probe(br#"{"streams":[{"width":-1,"height":3}]}"#).is_err());
        assert!(parse_probe(b"not json").is_err());
    }

    #[test]
    fn a_directory_of_images_yields_each_and_survives_a_corrupt_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let png = |v: u8| {
            passage_vision::decode::encode(&[v; 4 * 3 * 3], 4, 3, passage_vision::decode::OutputFormat::Png)
                .expect("png")
        };
        std::fs::write(dir.path().join("a.png"), png(10)).expect("write");
        std::fs::write(dir.path().join("b.jpg"), b"\xff\xd8\xff not really a jpeg").expect("write");
        std::fs::write(dir.path().join("c.png"), png(200)).expect("write");
        std::fs::write(dir.path().join("notes.txt"), b"ignored").expect("write");
        let mut source = open(dir.path().to_str().expect("utf-8")).expect("opens");
        let first = source.next_frame().expect("decodes").expect("a frame");
        assert_eq!((first.w, first.h, first.rgb[0]), (4, 3, 10));
        assert!(matches!(source.next_frame(), Err(SourceError::Read(reason)) if reason.contains("b.jpg")));
        let third = source.next_frame().expect("goes on").expect("a frame");
        assert_eq!((third.index, third.rgb[0]), (2, 200));
        assert!(source.next_frame().expect("ends").is_none());
        assert!(ImageSource::open(&dir.path().join("missing")).is_ok_and(|mut s| s.next_frame().is_err()));
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(ImageSource::open(empty.path()).is_err());
    }

    #[test]
    fn a_missing_input_is_a_clear_error() {
        // Needs ffprobe; where it is not installed the error says so, which is also correct.
        match FfmpegSource::open("/nonexistent/video.avi") {
            Err(SourceError::Probe { input, .. }) => assert_eq!(input, "/nonexistent/video.avi"),
            Err(SourceError::Missing { program, .. }) => assert_eq!(program, "ffprobe"),
            other => panic!("unexpected: {other:?}"),
        }
    }
}
