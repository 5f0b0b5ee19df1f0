//! Detections: what a person detector reports for one frame, how it is checked before the
//! tracker sees it, and how an external detector's JSON-lines output is decoded.
//!
//! Everything here is pure and I/O-free. Detections are positions of people: they stay in this
//! process's RAM, and the `Debug` impls of [`Detection`] and [`Frame`] print no boxes.
//!
//! The path of one frame is: a [`Detector`] (an in-process model) or the [`JsonLines`] decoder
//! (an external process) yields a [`Frame`]; [`FrameValidator::validate`] drops malformed boxes
//! and unwanted classes, clipping boxes that are partly outside the image; the survivors go to
//! [`crate::count::track::Tracker::update`].

use serde_json::{Map, Value};

/// Largest accepted JSON line of an external detector, in bytes (newline excluded).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Largest accepted frame width or height, in pixels.
pub const MAX_FRAME_SIDE: u32 = 1 << 16;

/// Longest accepted class name, in bytes.
pub const MAX_CLASS_BYTES: usize = 64;

/// The class counted when a camera or zone configures none.
pub const DEFAULT_CLASS: &str = "person";

/// One detected object.
#[derive(Clone, PartialEq)]
pub struct Detection {
    /// Bounding box `[x1, y1, x2, y2]` in pixels (top-left, bottom-right; y grows downwards).
    pub bbox: [f64; 4],
    /// Detector confidence, in `[0, 1]` once validated.
    pub score: f32,
    /// Class label, such as `person`.
    pub class: String,
}

impl std::fmt::Debug for Detection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The box is a person's position: omitted (privacy invariant 1).
        f.debug_struct("Detection").field("class", &self.class).field("score", &self.score).finish_non_exhaustive()
    }
}

impl Detection {
    /// The bottom-centre of the box: where the person stands, which counting lines and zones
    /// are drawn against.
    pub fn foot_point(&self) -> [f64; 2] {
        foot_point(&self.bbox)
    }
}

/// The bottom-centre of a box `[x1, y1, x2, y2]`.
pub fn foot_point(bbox: &[f64; 4]) -> [f64; 2] {
    [(bbox[0] + bbox[2]) / 2.0, bbox[3]]
}

/// The detections of one frame.
#[derive(Clone, PartialEq)]
pub struct Frame {
    /// Capture time, seconds (any epoch; only differences matter).
    pub t: f64,
    /// Image width, pixels.
    pub w: u32,
    /// Image height, pixels.
    pub h: u32,
    /// What the detector found.
    pub detections: Vec<Detection>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame").field("t", &self.t).field("w", &self.w).field("h", &self.h).finish_non_exhaustive()
    }
}

/// Why the validator dropped a detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// A coordinate or the score is NaN or infinite.
    NonFinite,
    /// The score is outside `[0, 1]`.
    Score,
    /// The box has zero or negative width or height.
    EmptyBox,
    /// The box does not overlap the image.
    OutsideFrame,
    /// The class is not one of those counted here.
    Class,
}

impl Reject {
    /// Every reason, in a fixed order.
    pub const ALL: [Reject; 5] =
        [Reject::NonFinite, Reject::Score, Reject::EmptyBox, Reject::OutsideFrame, Reject::Class];

    fn index(self) -> usize {
        match self {
            Reject::NonFinite => 0,
            Reject::Score => 1,
            Reject::EmptyBox => 2,
            Reject::OutsideFrame => 3,
            Reject::Class => 4,
        }
    }
}

/// How many detections were dropped, per [`Reject`] reason (detector health diagnostics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rejections {
    counts: [u64; 5],
}

impl Rejections {
    /// Detections dropped for `reason`.
    pub fn get(&self, reason: Reject) -> u64 {
        self.counts[reason.index()]
    }

    /// Detections dropped for any reason.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other`'s counts to these (to accumulate over frames).
    pub fn add(&mut self, other: &Rejections) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a = a.saturating_add(b);
        }
    }

    fn note(&mut self, reason: Reject) {
        let c = &mut self.counts[reason.index()];
        *c = c.saturating_add(1);
    }
}

/// Checks detections before they reach the tracker, and keeps only the configured classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameValidator {
    classes: Vec<String>,
}

impl Default for FrameValidator {
    /// Counts people only.
    fn default() -> FrameValidator {
        FrameValidator { classes: vec![DEFAULT_CLASS.to_string()] }
    }
}

impl FrameValidator {
    /// A validator keeping the detections of `classes` (a camera's or zone's configured list).
    pub fn new(classes: Vec<String>) -> FrameValidator {
        FrameValidator { classes }
    }

    /// The classes kept.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Checks one detection against a `w` x `h` image: the clipped detection, or why it is
    /// dropped.
    pub fn check(&self, mut d: Detection, w: u32, h: u32) -> Result<Detection, Reject> {
        if d.bbox.iter().any(|x| !x.is_finite()) || !d.score.is_finite() {
            return Err(Reject::NonFinite);
        }
        if !(0.0..=1.0).contains(&d.score) {
            return Err(Reject::Score);
        }
        let [x1, y1, x2, y2] = d.bbox;
        if x2 <= x1 || y2 <= y1 {
            return Err(Reject::EmptyBox);
        }
        let (fw, fh) = (f64::from(w), f64::from(h));
        let clipped = [x1.clamp(0.0, fw), y1.clamp(0.0, fh), x2.clamp(0.0, fw), y2.clamp(0.0, fh)];
        if clipped[2] <= clipped[0] || clipped[3] <= clipped[1] {
            return Err(Reject::OutsideFrame);
        }
        if !self.classes.contains(&d.class) {
            return Err(Reject::Class);
        }
        d.bbox = clipped;
        Ok(d)
    }

    /// The valid detections of `frame` of the configured classes (clipped to the image), and
    /// how many were dropped for which reason. Never panics.
    pub fn validate(&self, frame: Frame) -> (Vec<Detection>, Rejections) {
        let mut rejected = Rejections::default();
        let mut kept = Vec::with_capacity(frame.detections.len());
        for d in frame.detections {
            match self.check(d, frame.w, frame.h) {
                Ok(d) => kept.push(d),
                Err(reason) => rejected.note(reason),
            }
        }
        (kept, rejected)
    }
}

/// Why a JSON line from an external detector was rejected. Messages never quote the input.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The line is longer than the limit.
    #[error("detector line of at least {len} bytes exceeds the limit of {limit} bytes")]
    TooLong {
        /// Bytes seen (at least).
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The line is empty or only whitespace.
    #[error("empty detector line")]
    Empty,
    /// The line is not valid JSON.
    #[error("detector line is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The line is JSON but not an object.
    #[error("detector line is not a JSON object")]
    NotAnObject,
    /// A frame field is missing or wrong.
    #[error("detector frame field `{field}`: {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A detection is malformed.
    #[error("detection {index}: {problem}")]
    Detection {
        /// Position in the `detections` array.
        index: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
}

fn field<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Result<&'a Value, DecodeError> {
    obj.get(name).ok_or(DecodeError::Field { field: name, problem: "missing" })
}

fn side(obj: &Map<String, Value>, name: &'static str) -> Result<u32, DecodeError> {
    let v =
        field(obj, name)?.as_u64().ok_or(DecodeError::Field { field: name, problem: "not a non-negative integer" })?;
    match u32::try_from(v) {
        Ok(v) if (1..=MAX_FRAME_SIDE).contains(&v) => Ok(v),
        _ => Err(DecodeError::Field { field: name, problem: "out of range" }),
    }
}

fn detection(index: usize, v: &Value) -> Result<Detection, DecodeError> {
    let bad = |problem| DecodeError::Detection { index, problem };
    let obj = v.as_object().ok_or(bad("not an object"))?;
    let coords = obj.get("box").ok_or(bad("missing `box`"))?.as_array().ok_or(bad("`box` is not an array"))?;
    if coords.len() != 4 {
        return Err(bad("`box` must have 4 numbers"));
    }
    let mut bbox = [0.0; 4];
    for (slot, c) in bbox.iter_mut().zip(coords) {
        *slot = c.as_f64().ok_or(bad("`box` must have 4 numbers"))?;
    }
    let score = obj.get("score").ok_or(bad("missing `score`"))?.as_f64().ok_or(bad("`score` is not a number"))?;
    let class = obj.get("class").ok_or(bad("missing `class`"))?.as_str().ok_or(bad("`class` is not a string"))?;
    if class.len() > MAX_CLASS_BYTES {
        return Err(bad("`class` is too long"));
    }
    // Out-of-range scores become infinite or stay outside [0, 1]; the validator drops them.
    Ok(Detection { bbox, score: score as f32, class: class.to_string() })
}

/// Decodes one line of an external detector's output:
/// `{"t":sec,"w":W,"h":H,"detections":[{"box":[x1,y1,x2,y2],"score":s,"class":"person"}]}`.
///
/// A trailing `\n` or `\r\n` is ignored; unknown fields are ignored. The values inside boxes
/// are not checked here: [`FrameValidator`] does that. Never panics.
pub fn decode_line(line: &[u8]) -> Result<Frame, DecodeError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE_BYTES {
        return Err(DecodeError::TooLong { len: line.len(), limit: MAX_LINE_BYTES });
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    let value: Value = serde_json::from_slice(line).map_err(DecodeError::Json)?;
    let obj = value.as_object().ok_or(DecodeError::NotAnObject)?;
    let t = field(obj, "t")?.as_f64().ok_or(DecodeError::Field { field: "t", problem: "not a number" })?;
    if !t.is_finite() {
        return Err(DecodeError::Field { field: "t", problem: "not finite" });
    }
    let w = side(obj, "w")?;
    let h = side(obj, "h")?;
    let list = field(obj, "detections")?
        .as_array()
        .ok_or(DecodeError::Field { field: "detections", problem: "not an array" })?;
    let detections = list.iter().enumerate().map(|(i, d)| detection(i, d)).collect::<Result<Vec<_>, _>>()?;
    Ok(Frame { t, w, h, detections })
}

/// Splits an external detector's byte stream into lines and decodes them, holding at most
/// `limit` bytes: a longer line yields one [`DecodeError::TooLong`] and is skipped up to its
/// newline. Blank lines are skipped.
pub struct JsonLines {
    buf: Vec<u8>,
    limit: usize,
    skipping: bool,
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The buffer holds detections: only its length is shown.
        f.debug_struct("JsonLines").field("limit", &self.limit).field("buffered", &self.buf.len()).finish()
    }
}

impl Default for JsonLines {
    fn default() -> JsonLines {
        JsonLines::new(MAX_LINE_BYTES)
    }
}

impl JsonLines {
    /// A decoder accepting lines of at most `limit` bytes (capped at [`MAX_LINE_BYTES`]).
    pub fn new(limit: usize) -> JsonLines {
        JsonLines { buf: Vec::new(), limit: limit.min(MAX_LINE_BYTES), skipping: false }
    }

    /// Feeds `bytes` of the stream; appends one result per complete line to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Result<Frame, DecodeError>>) {
        let mut rest = bytes;
        loop {
            let (piece, complete) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            if !self.skipping {
                if self.buf.len() + piece.len() > self.limit {
                    out.push(Err(DecodeError::TooLong { len: self.buf.len() + piece.len(), limit: self.limit }));
                    self.buf.clear();
                    self.skipping = true;
                } else {
                    self.buf.extend_from_slice(piece);
                }
            }
            if !complete {
                return;
            }
            if self.skipping {
                self.skipping = false;
            } else {
                self.emit(out);
            }
            rest = &rest[piece.len() + 1..];
        }
    }

    /// Ends the stream: decodes a last line that had no newline, if any.
    pub fn finish(&mut self, out: &mut Vec<Result<Frame, DecodeError>>) {
        if !self.skipping {
            self.emit(out);
        }
        self.skipping = false;
        self.buf.clear();
    }

    fn emit(&mut self, out: &mut Vec<Result<Frame, DecodeError>>) {
        let line = std::mem::take(&mut self.buf);
        if !line.iter().all(u8::is_ascii_whitespace) {
            out.push(decode_line(&line));
        }
        // Reuse the allocation for the next line.
        self.buf = line;
        self.buf.clear();
    }
}

/// Why a detector failed on a frame.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The image buffer does not hold `w * h` RGB pixels.
    #[error("image buffer of {got} bytes does not match {w}x{h} RGB")]
    BadImage {
        /// Buffer length.
        got: usize,
        /// Claimed width.
        w: u32,
        /// Claimed height.
        h: u32,
    },
    /// The external detector's output could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The detector backend (a model runtime, an external process) failed.
    #[error("detector backend failed: {0}")]
    Backend(String),
}

/// Checks that `rgb` holds exactly `w * h` packed RGB pixels (the same check the in-process
/// models make, [`passage_vision::image::check_rgb`]).
pub fn check_rgb(rgb: &[u8], w: u32, h: u32) -> Result<(), DetectError> {
    passage_vision::image::check_rgb(rgb, w, h).map_err(|_| DetectError::BadImage { got: rgb.len(), w, h })
}

/// A person detector run on each frame in this process (for example a tract model). Its
/// output still goes through [`FrameValidator`].
pub trait Detector {
    /// Detects objects in a `w` x `h` image of packed 8-bit RGB pixels, row-major.
    fn detect(&mut self, rgb: &[u8], w: u32, h: u32) -> Result<Vec<Detection>, DetectError>;
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn det(bbox: [f64; 4], score: f32, class: &str) -> Detection {
        Detection { bbox, score, class: class.into() }
    }

    #[test]
    fn decodes_a_well_formed_line() {
        let line = br#"{"t":1.5,"w":1280,"h":720,"detections":[{"box":[10,20,50,120],"score":0.9,"class":"person"}],"extra":1}"#;
        let frame = decode_line(line).expect("valid line");
        assert_eq!((frame.t, frame.w, frame.h), (1.5, 1280, 720));
        assert_eq!(frame.detections, vec![det([10.0, 20.0, 50.0, 120.0], 0.9, "person")]);
        assert_eq!(frame.detections[0].foot_point(), [30.0, 120.0]);
        let empty = decode_line(b"{\"t\":0,\"w\":1,\"h\":1,\"detections\":[]}\r\n").expect("valid line");
        assert!(empty.detections.is_empty());
    }

    #[test]
    fn rejects_malformed_lines_without_panicking() {
        let cases: [&[u8]; 16] = [
            b"",
            b"   ",
            b"{",
            b"[1,2]",
            b"\xff\xfe",
            br#"{"t":NaN,"w":1,"h":1,"detections":[]}"#,
            br#"{"t":1e400,"w":1,"h":1,"detections":[]}"#,
            br#"{"w":1,"h":1,"detections":[]}"#,
            br#"{"t":0,"w":0,"h":1,"detections":[]}"#,
            br#"{"t":0,"w":1,"h":-3,"detections":[]}"#,
            br#"{"t":0,"w":99999999999,"h":1,"detections":[]}"#,
            br#"{"t":0,"w":1,"h":1,"detections":{}}"#,
            br#"{"t":0,"w":1,"h":1,"detections":[{"box":[1,2,3],"score":0.5,"class":"person"}]}"#,
            br#"{"t":0,"w":1,"h":1,"detections":[{"box":[1,2,3,"4"],"score":0.5,"class":"person"}]}"#,
            br#"{"t":0,"w":1,"h":1,"detections":[{"box":[1,2,3,4],"score":"high","class":"person"}]}"#,
            br#"{"t":0,"w":1,"h":1,"detections":[{"box":[1,2,3,4],"score":0.5}]}"#,
        ];
        for case in cases {
            assert!(decode_line(case).is_err(), "accepted {:?}", String::from_utf8_lossy(case));
        }
        assert!(matches!(decode_line(b"{\"t\":NaN}"), Err(DecodeError::Json(_))));
        assert!(matches!(decode_line(b"7"), Err(DecodeError::NotAnObject)));
        assert!(matches!(decode_line(b" \n"), Err(DecodeError::Empty)));
        let deep = "[".repeat(10_000);
        assert!(matches!(decode_line(deep.as_bytes()), Err(DecodeError::Json(_))));
    }

    #[test]
    fn oversize_lines_are_rejected() {
        let mut line = br#"{"t":0,"w":1,"h":1,"detections":[],"pad":""#.to_vec();
        line.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES));
        line.extend_from_slice(b"\"}");
        assert!(matches!(decode_line(&line), Err(DecodeError::TooLong { limit: MAX_LINE_BYTES, .. })));
    }

    #[test]
    fn the_stream_decoder_splits_lines_and_skips_oversize_ones() {
        let good = br#"{"t":1,"w":10,"h":10,"detections":[{"box":[1,1,3,5],"score":0.7,"class":"person"}]}"#;
        let mut stream = good.to_vec();
        stream.extend_from_slice(b"\n\n");
        stream.extend(std::iter::repeat_n(b'x', 300));
        stream.push(b'\n');
        stream.extend_from_slice(good);
        let mut decoder = JsonLines::new(good.len());
        let mut out = Vec::new();
        for chunk in stream.chunks(7) {
            decoder.push(chunk, &mut out);
        }
        decoder.finish(&mut out);
        assert_eq!(out.len(), 3, "good, oversize, good (blank line skipped)");
        assert!(out[0].is_ok() && out[2].is_ok());
        assert!(matches!(out[1], Err(DecodeError::TooLong { .. })));
        assert!(decoder.buf.is_empty());
    }

    #[test]
    fn the_validator_drops_bad_boxes_and_counts_why() {
        let frame = Frame {
            t: 0.0,
            w: 100,
            h: 100,
            detections: vec![
                det([10.0, 10.0, 20.0, 40.0], 0.9, "person"),
                det([f64::NAN, 10.0, 20.0, 40.0], 0.9, "person"),
                det([10.0, 10.0, f64::INFINITY, 40.0], 0.9, "person"),
                det([10.0, 10.0, 20.0, 40.0], f32::NAN, "person"),
                det([10.0, 10.0, 20.0, 40.0], 1.5, "person"),
                det([10.0, 10.0, 20.0, 40.0], -0.1, "person"),
                det([20.0, 10.0, 10.0, 40.0], 0.9, "person"),
                det([10.0, 40.0, 20.0, 40.0], 0.9, "person"),
                det([150.0, 10.0, 170.0, 40.0], 0.9, "person"),
                det([10.0, -50.0, 20.0, -1.0], 0.9, "person"),
                det([10.0, 10.0, 20.0, 40.0], 0.9, "car"),
                det([-10.0, 80.0, 10.0, 130.0], 0.4, "person"),
            ],
        };
        let (kept, rejected) = FrameValidator::default().validate(frame);
        assert_eq!(
            kept,
            vec![det([10.0, 10.0, 20.0, 40.0], 0.9, "person"), det([0.0, 80.0, 10.0, 100.0], 0.4, "person")]
        );
        assert_eq!(rejected.get(Reject::NonFinite), 3);
        assert_eq!(rejected.get(Reject::Score), 2);
        assert_eq!(rejected.get(Reject::EmptyBox), 2);
        assert_eq!(rejected.get(Reject::OutsideFrame), 2);
        assert_eq!(rejected.get(Reject::Class), 1);
        assert_eq!(rejected.total(), 10);
        let cars = FrameValidator::new(vec!["car".into()]);
        assert!(cars.check(det([1.0, 1.0, 2.0, 2.0], 0.5, "car"), 10, 10).is_ok());
        assert_eq!(cars.check(det([1.0, 1.0, 2.0, 2.0], 0.5, "person"), 10, 10), Err(Reject::Class));
    }

    #[test]
    fn debug_output_shows_no_boxes() {
        let d = det([12.5, 34.5, 56.5, 78.5], 0.9, "person");
        let text = format!("{d:?} {:?}", Frame { t: 1.0, w: 2, h: 3, detections: vec![d.clone()] });
        for n in ["12.5", "34.5", "56.5", "78.5"] {
            assert!(!text.contains(n), "{text}");
        }
    }

    #[test]
    fn rgb_buffers_are_checked() {
        assert!(check_rgb(&[0; 12], 2, 2).is_ok());
        assert!(check_rgb(&[0; 11], 2, 2).is_err());
        assert!(check_rgb(&[], 0, 0).is_err());
        assert!(check_rgb(&[0; 3], u32::MAX, u32::MAX).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_line(&bytes);
            let mut decoder = JsonLines::new(64);
            let mut out = Vec::new();
            decoder.push(&bytes, &mut out);
            decoder.finish(&mut out);
            for frame in out.into_iter().flatten() {
                let _ = FrameValidator::default().validate(frame);
            }
        }

        #[test]
        fn arbitrary_json_shaped_lines_never_panic(
            t in any::<f64>(), w in any::<i64>(), h in any::<u32>(),
            bbox in proptest::array::uniform4(any::<f64>()), score in any::<f64>(), class in ".{0,80}",
        ) {
            let line = format!(
                r#"{{"t":{t},"w":{w},"h":{h},"detections":[{{"box":[{},{},{},{}],"score":{score},"class":{}}}]}}"#,
                bbox[0], bbox[1], bbox[2], bbox[3], serde_json::Value::String(class),
            );
            if let Ok(frame) = decode_line(line.as_bytes()) {
                let (kept, _) = FrameValidator::default().validate(frame.clone());
                for d in kept {
                    prop_assert!(d.bbox.iter().all(|x| x.is_finite()));
                    prop_assert!(d.bbox[0] >= 0.0 && d.bbox[2] <= f64::from(frame.w) && d.bbox[0] < d.bbox[2]);
                    prop_assert!(d.bbox[1] >= 0.0 && d.bbox[3] <= f64::from(frame.h) && d.bbox[1] < d.bbox[3]);
                    prop_assert!((0.0..=1.0).contains(&d.score));
                }
            }
        }
    }
}
