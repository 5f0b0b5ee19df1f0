//! A multi-object tracker in RAM, after ByteTrack (Zhang et al., 2022): detections of one frame
//! in, `(track id, foot point)` of the confirmed tracks seen in that frame out — exactly what
//! [`crate::count::CameraCounter::observe`] takes.
//!
//! Each track carries a constant-velocity Kalman filter on its box centre and size (one
//! independent two-state filter per coordinate, noise scaled by the box height as ByteTrack
//! does). Per frame:
//!
//! 1. every track is predicted one frame ahead;
//! 2. confirmed tracks (also those unseen for a while) are matched to high-score detections
//!    (`score >= high`) by IoU with the predicted box;
//! 3. confirmed tracks still unmatched and seen in the previous frame are matched to the
//!    low-score detections (`low <= score < high`), which recovers people the detector is
//!    unsure of (partial occlusion) without letting low-score clutter start tracks;
//! 4. tentative tracks are matched to the high-score detections left; a tentative track that
//!    misses a frame is dropped;
//! 5. high-score detections left over start tentative tracks, confirmed after `min_hits` hits;
//!    confirmed tracks unseen for more than `max_age` frames are deleted.
//!
//! Matching is greedy by descending IoU. Track ids are process-local `u64`s that never repeat
//! and never leave the process; [`Tracker`]'s `Debug` prints neither ids nor positions.

use crate::count::detect::Detection;
use crate::count::geometry::Point;

/// Tracker settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// Detections at or above this score are matched first and may start tracks.
    pub high: f32,
    /// Detections below this score are ignored; those in `[low, high)` only extend tracks.
    pub low: f32,
    /// Least IoU for matching a high-score detection to a track.
    pub match_iou: f64,
    /// Least IoU for matching a low-score detection to a track (stricter: they are less sure).
    pub low_match_iou: f64,
    /// Least IoU for matching a tentative track.
    pub tentative_iou: f64,
    /// Hits (frames with a matched detection) before a track is confirmed and reported.
    pub min_hits: u32,
    /// Frames a confirmed track survives without a matched detection.
    pub max_age: u32,
}

impl Default for TrackerConfig {
    fn default() -> TrackerConfig {
        TrackerConfig {
            high: 0.5,
            low: 0.1,
            match_iou: 0.2,
            low_match_iou: 0.5,
            tentative_iou: 0.3,
            min_hits: 2,
            max_age: 30,
        }
    }
}

/// ByteTrack's noise weights, relative to the box height: position and velocity.
const STD_POSITION: f64 = 1.0 / 20.0;
const STD_VELOCITY: f64 = 1.0 / 160.0;

/// A constant-velocity Kalman filter on one coordinate (unit time step: one frame).
#[derive(Clone, Copy)]
struct Axis {
    x: f64,
    v: f64,
    /// Covariance [[p00, p01], [p01, p11]].
    p00: f64,
    p01: f64,
    p11: f64,
}

impl Axis {
    fn new(x: f64, scale: f64) -> Axis {
        let (sp, sv) = (2.0 * STD_POSITION * scale, 10.0 * STD_VELOCITY * scale);
        Axis { x, v: 0.0, p00: sp * sp, p01: 0.0, p11: sv * sv }
    }

    fn predict(&mut self, scale: f64) {
        let (qp, qv) = ((STD_POSITION * scale).powi(2), (STD_VELOCITY * scale).powi(2));
        self.x += self.v;
        self.p00 += 2.0 * self.p01 + self.p11 + qp;
        self.p01 += self.p11;
        self.p11 += qv;
    }

    fn update(&mut self, z: f64, scale: f64) {
        let r = (STD_POSITION * scale).powi(2);
        let s = self.p00 + r;
        if !(s.is_finite() && s > 0.0) {
            return;
        }
        let (k0, k1) = (self.p00 / s, self.p01 / s);
        let y = z - self.x;
        self.x += k0 * y;
        self.v += k1 * y;
        let (p00, p01, p11) = (self.p00, self.p01, self.p11);
        self.p00 = (1.0 - k0) * p00;
        self.p01 = (1.0 - k0) * p01;
        self.p11 = p11 - k1 * p01;
    }
}

/// Box as centre x, centre y, width, height.
type Cxcywh = [f64; 4];

fn to_cxcywh(b: &[f64; 4]) -> Cxcywh {
    [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, b[2] - b[0], b[3] - b[1]]
}

fn to_xyxy(c: &Cxcywh) -> [f64; 4] {
    let (hw, hh) = (c[2].max(0.0) / 2.0, c[3].max(0.0) / 2.0);
    [c[0] - hw, c[1] - hh, c[0] + hw, c[1] + hh]
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (0 for degenerate or non-finite
/// ones).
pub fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    if !a.iter().chain(b).all(|x| x.is_finite()) {
        return 0.0;
    }
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f64; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 && union.is_finite() {
        inter / union
    } else {
        0.0
    }
}

struct Track {
    id: u64,
    axes: [Axis; 4],
    hits: u32,
    /// Frames since the last matched detection (0: matched in the current frame).
    missed: u32,
    confirmed: bool,
    /// Class of the detection that started it; only detections of this class extend it.
    class: String,
}

impl Track {
    fn new(id: u64, bbox: &[f64; 4], class: &str) -> Track {
        let c = to_cxcywh(bbox);
        let scale = c[3];
        Track {
            id,
            axes: [Axis::new(c[0], scale), Axis::new(c[1], scale), Axis::new(c[2], scale), Axis::new(c[3], scale)],
            hits: 1,
            missed: 0,
            confirmed: false,
            class: class.to_owned(),
        }
    }

    fn scale(&self) -> f64 {
        self.axes[3].x.max(1.0)
    }

    fn bbox(&self) -> [f64; 4] {
        to_xyxy(&[self.axes[0].x, self.axes[1].x, self.axes[2].x, self.axes[3].x])
    }

    fn predict(&mut self) {
        let scale = self.scale();
        for axis in &mut self.axes {
            axis.predict(scale);
        }
        // A box cannot shrink below a pixel, however its size velocity extrapolates.
        for i in [2, 3] {
            if self.axes[i].x < 1.0 {
                self.axes[i].x = 1.0;
                self.axes[i].v = 0.0;
            }
        }
        self.missed += 1;
    }

    fn update(&mut self, bbox: &[f64; 4], min_hits: u32) {
        let c = to_cxcywh(bbox);
        let scale = self.scale();
        for (axis, z) in self.axes.iter_mut().zip(c) {
            axis.update(z, scale);
        }
        self.hits = self.hits.saturating_add(1);
        self.missed = 0;
        if self.hits >= min_hits {
            self.confirmed = true;
        }
    }
}

/// Tracks people across frames of one camera. See the module documentation.
pub struct Tracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately omits tracks: ids and positions stay unprinted (privacy invariant 1).
        f.debug_struct("Tracker").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Default for Tracker {
    fn default() -> Tracker {
        Tracker::new(TrackerConfig::default())
    }
}

/// Greedy IoU assignment of `tracks` to `dets` (indices into the tracker's tracks and the
/// frame's detections): pairs of the same class with IoU at least `min_iou`, best first, each
/// side used once.
fn greedy(
    tracks: &[usize],
    boxes: &[([f64; 4], &str)],
    dets: &[usize],
    all: &[&Detection],
    min_iou: f64,
) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for &t in tracks {
        for &d in dets {
            if all[d].class != boxes[t].1 {
                continue;
            }
            let overlap = iou(&boxes[t].0, &all[d].bbox);
            if overlap >= min_iou && overlap > 0.0 {
                pairs.push((overlap, t, d));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut used_t, mut used_d) = (Vec::new(), Vec::new());
    let mut matches = Vec::new();
    for (_, t, d) in pairs {
        if !used_t.contains(&t) && !used_d.contains(&d) {
            used_t.push(t);
            used_d.push(d);
            matches.push((t, d));
        }
    }
    matches
}

impl Tracker {
    /// A tracker with `config`.
    pub fn new(config: TrackerConfig) -> Tracker {
        Tracker { config, tracks: Vec::new(), next_id: 1 }
    }

    /// Its settings.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// The class of track `id` (as its first detection said), while it is tracked.
    pub fn class_of(&self, id: u64) -> Option<&str> {
        self.tracks.iter().find(|t| t.id == id).map(|t| t.class.as_str())
    }

    /// Forgets every track (ids are not reused).
    pub fn clear(&mut self) {
        self.tracks.clear();
    }

    /// Takes the (validated) detections of the next frame; returns `(track id, foot point)`
    /// for every confirmed track matched in this frame. Detections with non-finite or empty
    /// boxes, or a score below `low`, are ignored.
    pub fn update(&mut self, detections: &[Detection]) -> Vec<(u64, Point)> {
        let cfg = &self.config;
        let usable: Vec<&Detection> = detections
            .iter()
            .filter(|d| d.score.is_finite() && d.score >= cfg.low)
            .filter(|d| d.bbox.iter().all(|x| x.is_finite()) && d.bbox[2] > d.bbox[0] && d.bbox[3] > d.bbox[1])
            .collect();
        let high: Vec<usize> = (0..usable.len()).filter(|&i| usable[i].score >= cfg.high).collect();
        let low: Vec<usize> = (0..usable.len()).filter(|&i| usable[i].score < cfg.high).collect();

        for track in &mut self.tracks {
            track.predict();
        }
        let boxes: Vec<([f64; 4], &str)> = self.tracks.iter().map(|t| (t.bbox(), t.class.as_str())).collect();
        let mut assigned: Vec<Option<usize>> = vec![None; self.tracks.len()];
        let mut det_used = vec![false; usable.len()];

        // 1. Confirmed tracks with high-score detections.
        let confirmed: Vec<usize> = (0..self.tracks.len()).filter(|&t| self.tracks[t].confirmed).collect();
        for (t, d) in greedy(&confirmed, &boxes, &high, &usable, cfg.match_iou) {
            assigned[t] = Some(d);
            det_used[d] = true;
        }
        // 2. Confirmed tracks seen in the previous frame, still unmatched, with low-score ones.
        let recent: Vec<usize> =
            confirmed.iter().copied().filter(|&t| assigned[t].is_none() && self.tracks[t].missed == 1).collect();
        for (t, d) in greedy(&recent, &boxes, &low, &usable, cfg.low_match_iou) {
            assigned[t] = Some(d);
            det_used[d] = true;
        }
        // 3. Tentative tracks with the high-score detections left.
        let tentative: Vec<usize> = (0..self.tracks.len()).filter(|&t| !self.tracks[t].confirmed).collect();
        let high_left: Vec<usize> = high.iter().copied().filter(|&d| !det_used[d]).collect();
        for (t, d) in greedy(&tentative, &boxes, &high_left, &usable, cfg.tentative_iou) {
            assigned[t] = Some(d);
            det_used[d] = true;
        }

        for (track, d) in self.tracks.iter_mut().zip(&assigned) {
            if let Some(d) = d {
                track.update(&usable[*d].bbox, cfg.min_hits);
            }
        }
        let max_age = cfg.max_age;
        self.tracks.retain(|t| t.missed == 0 || (t.confirmed && t.missed <= max_age));

        let mut out = Vec::new();
        for track in &self.tracks {
            if track.confirmed && track.missed == 0 {
                let b = track.bbox();
                out.push((track.id, [(b[0] + b[2]) / 2.0, b[3]]));
            }
        }
        // 4. New tentative tracks from the high-score detections nobody took.
        for d in high {
            if !det_used[d] {
                let mut track = Track::new(self.next_id, &usable[d].bbox, &usable[d].class);
                self.next_id += 1;
                if self.config.min_hits <= 1 {
                    track.confirmed = true;
                    out.push((track.id, usable[d].foot_point()));
                }
                self.tracks.push(track);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(foot: Point, score: f32) -> Detection {
        Detection { bbox: [foot[0] - 20.0, foot[1] - 100.0, foot[0] + 20.0, foot[1]], score, class: "person".into() }
    }

    /// Deterministic jitter in [-amp, amp].
    fn wobble(i: usize, amp: f64) -> f64 {
        ((i as f64 * 12.9898).sin() * 43758.5453).fract() * amp
    }

    #[test]
    fn tracks_never_jump_between_classes() {
        let mut tracker = Tracker::default();
        let foot = [200.0, 300.0];
        let mut ids = Vec::new();
        for i in 0..6 {
            let mut d = person(foot, 0.9);
            if i >= 3 {
                d.class = "car".into();
            }
            ids.extend(tracker.update(&[d]).into_iter().map(|(id, _)| id));
        }
        ids.dedup();
        assert_eq!(ids.len(), 2, "the car starts its own track: {ids:?}");
        assert_eq!(tracker.class_of(ids[0]), Some("person"));
        assert_eq!(tracker.class_of(ids[1]), Some("car"));
    }

    #[test]
    fn a_smoothly_moving_box_keeps_one_id() {
        let mut tracker = Tracker::default();
        let mut ids = Vec::new();
        for i in 0..200 {
            let foot = [100.0 + 4.0 * i as f64 + wobble(i, 2.0), 300.0 + 1.5 * i as f64 + wobble(i + 7, 2.0)];
            let out = tracker.update(&[person(foot, 0.8)]);
            if i == 0 {
                assert!(out.is_empty(), "tentative tracks are not reported");
                continue;
            }
            assert_eq!(out.len(), 1, "frame {i}");
            assert!((out[0].1[0] - foot[0]).abs() < 8.0 && (out[0].1[1] - foot[1]).abs() < 8.0, "frame {i}");
            ids.push(out[0].0);
        }
        ids.dedup();
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn a_track_survives_missed_frames_and_low_scores() {
        let mut tracker = Tracker::default();
        let mut ids = Vec::new();
        for i in 0..80 {
            let foot = [200.0 + 5.0 * i as f64, 400.0];
            let dets = match i {
                20..=25 => vec![],                  // six frames unseen
                40..=45 => vec![person(foot, 0.3)], // partially occluded
                _ => vec![person(foot, 0.9)],
            };
            let out = tracker.update(&dets);
            ids.extend(out.iter().map(|o| o.0));
        }
        ids.dedup();
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn tracks_are_dropped_after_max_age() {
        let config = TrackerConfig { max_age: 5, ..TrackerConfig::default() };
        let mut tracker = Tracker::new(config);
        for _ in 0..3 {
            tracker.update(&[person([100.0, 300.0], 0.9)]);
        }
        for _ in 0..6 {
            assert!(tracker.update(&[]).is_empty());
        }
        assert!(tracker.tracks.is_empty());
    }

    #[test]
    fn low_scores_and_single_flickers_start_no_reported_track() {
        let mut tracker = Tracker::default();
        for i in 0..50 {
            // A low-score blob that never leaves, and a high-score flicker in a new place each frame.
            let flicker = person([(i * 97 % 1200) as f64 + 40.0, (i * 53 % 600) as f64 + 110.0], 0.7);
            assert!(tracker.update(&[person([600.0, 600.0], 0.4), flicker]).is_empty(), "frame {i}");
        }
    }

    #[test]
    fn two_crossing_people_keep_their_ids() {
        let mut tracker = Tracker::default();
        let mut first: Option<(u64, u64)> = None;
        for i in 0..100 {
            // A walks right, B walks left, 20 px lower: their boxes overlap for a while.
            let a = [100.0 + 5.0 * i as f64 + wobble(i, 1.5), 300.0 + wobble(i + 3, 1.5)];
            let b = [600.0 - 5.0 * i as f64 + wobble(i + 5, 1.5), 320.0 + wobble(i + 9, 1.5)];
            let out = tracker.update(&[person(a, 0.9), person(b, 0.85)]);
            if i == 0 {
                continue;
            }
            assert_eq!(out.len(), 2, "frame {i}");
            // Which id is at A's position.
            let near = |p: Point| out.iter().min_by(|x, y| dist(x.1, p).total_cmp(&dist(y.1, p))).map(|x| x.0);
            let ids = (near(a).expect("a"), near(b).expect("b"));
            assert_ne!(ids.0, ids.1);
            match first {
                None => first = Some(ids),
                Some(f) => assert_eq!(f, ids, "frame {i}: ids swapped"),
            }
        }
    }

    fn dist(a: Point, b: Point) -> f64 {
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
    }

    #[test]
    fn garbage_detections_do_not_panic_or_poison_tracks() {
        let mut tracker = Tracker::default();
        let bad = [
            Detection { bbox: [f64::NAN, 0.0, 1.0, 1.0], score: 0.9, class: "person".into() },
            Detection { bbox: [5.0, 5.0, 1.0, 1.0], score: 0.9, class: "person".into() },
            Detection { bbox: [0.0, 0.0, 1.0, 1.0], score: f32::NAN, class: "person".into() },
        ];
        for _ in 0..5 {
            assert!(tracker.update(&bad).is_empty());
        }
        assert!(tracker.tracks.is_empty());
    }

    #[test]
    fn debug_prints_no_ids_or_positions() {
        let mut tracker = Tracker::default();
        let mut out = Vec::new();
        for _ in 0..3 {
            out = tracker.update(&[person([123.25, 456.75], 0.9)]);
        }
        assert_eq!(out.len(), 1);
        let text = format!("{tracker:?}");
        assert!(!text.contains("123.") && !text.contains("456.") && !text.contains("id"), "{text}");
    }

    #[test]
    fn iou_is_sane() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[10.0, 0.0, 20.0, 10.0]), 0.0);
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(iou(&a, &[f64::NAN, 0.0, 1.0, 1.0]), 0.0);
    }
}
