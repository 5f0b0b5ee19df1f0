//! One camera's count pipeline over real frames: detector → validator → tracker → counter.
//!
//! Used by `passage count` (calibration on the operator's machine, raw counts printed,
//! nothing published) and by benchmarks; the demo's agents run the same stages on simulated
//! detections.

use passage_vision::PersonDetector;
use passage_wire::{Id, IdError};

use super::detect::{DetectError, Detection, Detector, Frame, FrameValidator, Rejections, DEFAULT_CLASS};
use super::geometry::Point;
use super::track::{Tracker, TrackerConfig};
use super::{CameraCounter, Tallies};

impl Detector for PersonDetector {
    fn detect(&mut self, rgb: &[u8], w: u32, h: u32) -> Result<Vec<Detection>, DetectError> {
        let people = PersonDetector::detect(self, rgb, w, h).map_err(|e| DetectError::Backend(e.to_string()))?;
        Ok(people
            .into_iter()
            .map(|p| Detection { bbox: p.bbox, score: p.score, class: DEFAULT_CLASS.into() })
            .collect())
    }
}

/// A directed counting line given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSpec {
    /// Start point.
    pub from: Point,
    /// End point.
    pub to: Point,
}

impl std::str::FromStr for LineSpec {
    type Err = String;

    /// Parses `X1,Y1,X2,Y2` (pixels).
    fn from_str(s: &str) -> Result<LineSpec, String> {
        let parts: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>().map_err(|_| format!("`{p}` is not a number")))
            .collect::<Result<_, _>>()?;
        match parts[..] {
            [x1, y1, x2, y2] if parts.iter().all(|v| v.is_finite()) => {
                if (x1, y1) == (x2, y2) {
                    return Err("the two end points are the same".into());
                }
                Ok(LineSpec { from: [x1, y1], to: [x2, y2] })
            }
            _ => Err(format!("expected X1,Y1,X2,Y2, got {} value(s)", parts.len())),
        }
    }
}

/// Validator, tracker and counter of one camera, fed one frame of detections at a time.
pub struct LinePipeline {
    validator: FrameValidator,
    tracker: Tracker,
    counter: CameraCounter,
    rejected: Rejections,
    frames: u64,
}

impl std::fmt::Debug for LinePipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinePipeline").field("frames", &self.frames).finish_non_exhaustive()
    }
}

impl LinePipeline {
    /// A pipeline counting `lines` (named `line-1`, `line-2`, ...) with the given tracker
    /// settings.
    ///
    /// # Errors
    /// Only if a generated line name were not a valid id.
    pub fn new(lines: &[LineSpec], tracker: TrackerConfig) -> Result<LinePipeline, IdError> {
        let lines = lines
            .iter()
            .enumerate()
            .map(|(i, l)| Id::new(&format!("line-{}", i + 1)).map(|id| (id, l.from, l.to)))
            .collect::<Result<_, _>>()?;
        Ok(LinePipeline {
            validator: FrameValidator::default(),
            tracker: Tracker::new(tracker),
            counter: CameraCounter::from_lines(lines),
            rejected: Rejections::default(),
            frames: 0,
        })
    }

    /// Feeds one frame's raw detections. Returns the tracked `(track, foot point)` pairs of
    /// the frame (for tests and side-by-side runs; they stay in RAM).
    pub fn push(&mut self, frame: Frame) -> Vec<(u64, Point)> {
        self.frames += 1;
        let (detections, rejected) = self.validator.validate(frame);
        self.rejected.add(&rejected);
        let tracks = self.tracker.update(&detections);
        self.counter.next_frame(u64::from(self.tracker.config().max_age));
        for &(track, p) in &tracks {
            let class = self.tracker.class_of(track).unwrap_or(DEFAULT_CLASS);
            self.counter.observe_as(track, p, class);
        }
        tracks
    }

    /// Detections the validator dropped so far.
    pub fn rejected(&self) -> &Rejections {
        &self.rejected
    }

    /// Frames pushed so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Ends counting: the raw tallies since the start.
    pub fn finish(mut self) -> Tallies {
        self.counter.close_interval()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_specs_parse_and_bad_ones_say_why() {
        let l: LineSpec = "10,20.5,300,20.5".parse().expect("valid");
        assert_eq!(l, LineSpec { from: [10.0, 20.5], to: [300.0, 20.5] });
        for bad in ["", "1,2,3", "1,2,3,4,5", "a,2,3,4", "1,2,1,2", "1,2,inf,4", "NaN,1,2,3"] {
            assert!(bad.parse::<LineSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_person_walking_down_through_a_line_is_one_in() {
        let mut pipeline = LinePipeline::new(&["0,100,200,100".parse().expect("valid")], TrackerConfig::default())
            .expect("valid names");
        for step in 0..20 {
            let y = 40.0 + step as f64 * 8.0;
            let frame = Frame {
                t: f64::from(step),
                w: 320,
                h: 240,
                detections: vec![Detection { bbox: [90.0, y - 60.0, 110.0, y], score: 0.9, class: "person".into() }],
            };
            pipeline.push(frame);
        }
        assert_eq!(pipeline.frames(), 20);
        assert_eq!(pipeline.finish().line(0), (1, 0));
    }
}
