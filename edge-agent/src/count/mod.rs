//! The count path: tracked positions in, DP-noised interval records out.
//!
//! [`CameraCounter`] turns per-frame positions of tracked people (track ids live in this
//! process's RAM only) into crossings of directed lines and zone-to-zone transitions, with
//! hysteresis so that a person lingering on a line is counted once. At the end of every
//! interval, [`CameraCounter::close_interval`] hands the tallies to
//! [`release::VenueReleaser`], which feeds every cell (zero cells included, so the set of
//! released cells says nothing) to a continual-release mechanism with exact, CSPRNG-fed noise
//! and charges the venue's daily budget; only the noised `CountRecord` may leave the process.
//! The privacy unit and composition are documented in [`release`].

pub mod detect;
pub mod geometry;
pub mod ledger_file;
pub mod pipeline;
pub mod release;
pub mod track;

use std::collections::HashMap;

use passage_config::Venue;
use passage_wire::{dwell_bucket, Id, DWELL_BUCKETS};

use detect::DEFAULT_CLASS;
use geometry::{crossing, inside, Crossing, Point};

/// Distance in pixels a track must move away from a line before a new side is committed.
pub const DEFAULT_HYSTERESIS_PX: f64 = 8.0;

struct CountLine {
    id: Id,
    from: Point,
    to: Point,
    /// Detector classes this line counts.
    classes: Vec<String>,
}

struct CountZone {
    id: Id,
    polygon: Vec<Point>,
    /// Detector classes this zone counts.
    classes: Vec<String>,
}

#[derive(Default)]
struct TrackState {
    /// Per line: the last position that was at least the hysteresis distance from the line.
    anchor: Vec<Option<Point>>,
    /// Zone the track is in now (`None`: outside every zone).
    zone: Option<usize>,
    /// Last zone the track was in (for zone-to-zone transitions across gaps).
    last_zone: Option<usize>,
    /// Frame at which it entered that zone.
    entered: u64,
    /// Frame counter value when last seen.
    last_seen: u64,
}

/// Raw tallies of one interval. They never leave the process: [`release`] consumes them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tallies {
    /// Per line index: (in, out).
    crossings: Vec<(u32, u32)>,
    /// Per (from zone, to zone) index pair.
    transitions: HashMap<(usize, usize), u32>,
    /// Per zone: (entries, exits).
    flows: Vec<(u32, u32)>,
    /// Per zone: exits by dwell bucket ([`passage_wire::DWELL_BUCKET_SECS`]).
    dwell: Vec<[u32; DWELL_BUCKETS]>,
}

/// Counts one camera's lines and zones.
pub struct CameraCounter {
    venue: Id,
    camera: Id,
    lines: Vec<CountLine>,
    zones: Vec<CountZone>,
    hysteresis: f64,
    tracks: HashMap<u64, TrackState>,
    tallies: Tallies,
    frame: u64,
    /// Frames per second, to turn stays into dwell times.
    fps: f64,
}

/// Frame rate assumed until [`CameraCounter::set_frame_rate`] says otherwise.
pub const DEFAULT_FPS: f64 = 25.0;

impl std::fmt::Debug for CameraCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately omits tracks and tallies (invariant 1).
        f.debug_struct("CameraCounter")
            .field("venue", &self.venue)
            .field("camera", &self.camera)
            .finish_non_exhaustive()
    }
}

/// Why a counter could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CounterError {
    /// The camera is not in the venue's configuration.
    #[error("camera `{0}` is not configured for this venue")]
    UnknownCamera(Id),
}

impl CameraCounter {
    /// A counter for `camera` of `venue`, with the lines and zones the configuration gives it.
    pub fn new(venue: &Venue, camera: &Id) -> Result<CameraCounter, CounterError> {
        let cam = venue
            .cameras
            .iter()
            .find(|c| &c.id == camera)
            .ok_or_else(|| CounterError::UnknownCamera(camera.clone()))?;
        let lines = venue
            .lines
            .iter()
            .filter(|l| cam.lines.contains(&l.id))
            .map(|l| CountLine { id: l.id.clone(), from: l.from, to: l.to, classes: l.classes.clone() })
            .collect();
        let zones = venue
            .zones
            .iter()
            .filter(|z| cam.zones.contains(&z.id))
            .map(|z| CountZone { id: z.id.clone(), polygon: z.polygon.clone(), classes: z.classes.clone() })
            .collect();
        let mut counter = CameraCounter {
            venue: venue.id.clone(),
            camera: camera.clone(),
            lines,
            zones,
            hysteresis: DEFAULT_HYSTERESIS_PX,
            tracks: HashMap::new(),
            tallies: Tallies::default(),
            frame: 0,
            fps: DEFAULT_FPS,
        };
        counter.tallies = counter.empty_tallies();
        Ok(counter)
    }

    /// A counter for ad-hoc `lines` (id, from, to) and no zones, outside any venue: for
    /// calibration runs such as `passage count`.
    pub fn from_lines(lines: Vec<(Id, Point, Point)>) -> CameraCounter {
        let lines: Vec<CountLine> = lines
            .into_iter()
            .map(|(id, from, to)| CountLine { id, from, to, classes: vec![DEFAULT_CLASS.to_owned()] })
            .collect();
        let tallies = Tallies {
            crossings: vec![(0, 0); lines.len()],
            transitions: HashMap::new(),
            flows: Vec::new(),
            dwell: Vec::new(),
        };
        CameraCounter {
            venue: Id::new("calibration").unwrap_or_else(|_| unreachable!("a valid id")),
            camera: Id::new("camera").unwrap_or_else(|_| unreachable!("a valid id")),
            lines,
            zones: Vec::new(),
            hysteresis: DEFAULT_HYSTERESIS_PX,
            tracks: HashMap::new(),
            tallies,
            frame: 0,
            fps: DEFAULT_FPS,
        }
    }

    /// Sets the frame rate used to measure dwell times (ignored unless finite and positive).
    pub fn set_frame_rate(&mut self, fps: f64) {
        if fps.is_finite() && fps > 0.0 {
            self.fps = fps;
        }
    }

    fn empty_tallies(&self) -> Tallies {
        Tallies {
            crossings: vec![(0, 0); self.lines.len()],
            transitions: HashMap::new(),
            flows: vec![(0, 0); self.zones.len()],
            dwell: vec![[0; DWELL_BUCKETS]; self.zones.len()],
        }
    }

    /// Starts a new frame; tracks not seen for `max_age` frames are forgotten. A forgotten
    /// track that was in a zone has left it, after its dwell time up to when it was last seen.
    pub fn next_frame(&mut self, max_age: u64) {
        self.frame += 1;
        let frame = self.frame;
        let mut left = Vec::new();
        self.tracks.retain(|_, t| {
            let keep = frame - t.last_seen <= max_age;
            if !keep {
                if let Some(zone) = t.zone {
                    left.push((zone, t.last_seen.saturating_sub(t.entered)));
                }
            }
            keep
        });
        for (zone, frames) in left {
            self.leave(zone, frames);
        }
    }

    /// Tallies an exit from `zone` after `frames` in it.
    fn leave(&mut self, zone: usize, frames: u64) {
        if let Some(flow) = self.tallies.flows.get_mut(zone) {
            flow.1 += 1;
        }
        let bucket = usize::from(dwell_bucket(frames as f64 / self.fps));
        if let Some(row) = self.tallies.dwell.get_mut(zone) {
            row[bucket.min(DWELL_BUCKETS - 1)] += 1;
        }
    }

    /// Records the position of a track of a person in the current frame. Non-finite
    /// positions are ignored.
    pub fn observe(&mut self, track: u64, p: Point) {
        self.observe_as(track, p, DEFAULT_CLASS);
    }

    /// Records the position of a track of class `class`: only the lines and zones configured
    /// for that class count it. Non-finite positions are ignored.
    pub fn observe_as(&mut self, track: u64, p: Point, class: &str) {
        if !(p[0].is_finite() && p[1].is_finite()) {
            return;
        }
        let n_lines = self.lines.len();
        let frame = self.frame;
        let state = self.tracks.entry(track).or_insert_with(|| TrackState {
            anchor: vec![None; n_lines],
            zone: None,
            last_zone: None,
            entered: frame,
            last_seen: frame,
        });
        state.last_seen = frame;
        for (i, line) in self.lines.iter().enumerate() {
            if !line.classes.iter().any(|c| c == class) {
                continue;
            }
            if distance_to_line(line.from, line.to, p) < self.hysteresis {
                continue;
            }
            if let Some(anchor) = state.anchor[i] {
                match crossing(line.from, line.to, anchor, p) {
                    Some(Crossing::In) => self.tallies.crossings[i].0 += 1,
                    Some(Crossing::Out) => self.tallies.crossings[i].1 += 1,
                    None => {}
                }
            }
            state.anchor[i] = Some(p);
        }
        let now = self.zones.iter().position(|z| z.classes.iter().any(|c| c == class) && inside(&z.polygon, p));
        let before = state.zone;
        if now == before {
            return;
        }
        let (entered, last_zone) = (state.entered, state.last_zone);
        state.zone = now;
        state.entered = frame;
        if now.is_some() {
            state.last_zone = now;
        }
        if let Some(a) = before {
            self.leave(a, frame.saturating_sub(entered));
        }
        if let Some(b) = now {
            if let Some(flow) = self.tallies.flows.get_mut(b) {
                flow.0 += 1;
            }
            if let Some(a) = last_zone.filter(|&a| a != b) {
                *self.tallies.transitions.entry((a, b)).or_insert(0) += 1;
            }
        }
    }

    /// Ends the interval: returns its tallies and starts fresh ones.
    pub fn close_interval(&mut self) -> Tallies {
        let fresh = self.empty_tallies();
        std::mem::replace(&mut self.tallies, fresh)
    }
}

impl Tallies {
    /// Crossings of line `i` as (in, out); for tests and calibration on the operator's machine.
    pub fn line(&self, i: usize) -> (u32, u32) {
        self.crossings.get(i).copied().unwrap_or((0, 0))
    }

    /// Transitions from zone `a` to zone `b` (indices into the camera's zones).
    pub fn transition(&self, a: usize, b: usize) -> u32 {
        self.transitions.get(&(a, b)).copied().unwrap_or(0)
    }

    /// Entries into and exits from zone `zone`.
    pub fn flow(&self, zone: usize) -> (u32, u32) {
        self.flows.get(zone).copied().unwrap_or((0, 0))
    }

    /// Exits from zone `zone` whose stay fell in dwell bucket `bucket`.
    pub fn dwell(&self, zone: usize, bucket: usize) -> u32 {
        self.dwell.get(zone).and_then(|row| row.get(bucket)).copied().unwrap_or(0)
    }
}

/// Distance from `p` to the infinite line through `a` and `b`.
fn distance_to_line(a: Point, b: Point, p: Point) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len = (dx * dx + dy * dy).sqrt();
    if len == 0.0 {
        return ((p[0] - a[0]).powi(2) + (p[1] - a[1]).powi(2)).sqrt();
    }
    ((p[0] - a[0]) * dy - (p[1] - a[1]) * dx).abs() / len
}

#[cfg(test)]
mod tests {
    use passage_config::Config;

    use super::*;

    fn id(s: &str) -> Id {
        Id::new(s).expect("valid id")
    }

    fn north_counter() -> CameraCounter {
        let config = Config::default();
        CameraCounter::new(&config.venues[0], &id("cam-north")).expect("configured camera")
    }

    #[test]
    fn a_walk_through_the_line_counts_once_even_when_jittering_on_it() {
        let mut counter = north_counter();
        // North gate runs from (100,180) to (600,180): walking down (increasing y) is "in".
        let path = [150.0, 170.0, 176.0, 183.0, 177.0, 184.0, 179.0, 195.0, 230.0];
        for y in path {
            counter.next_frame(30);
            counter.observe(1, [300.0, y]);
        }
        assert_eq!(counter.close_interval().line(0), (1, 0));
    }

    #[test]
    fn in_and_out_are_told_apart_and_intervals_reset() {
        let mut counter = north_counter();
        for y in [150.0, 220.0, 150.0] {
            counter.next_frame(30);
            counter.observe(7, [400.0, y]);
        }
        assert_eq!(counter.close_interval().line(0), (1, 1));
        assert_eq!(counter.close_interval().line(0), (0, 0));
    }

    #[test]
    fn forgotten_tracks_do_not_count_on_return() {
        let mut counter = north_counter();
        counter.next_frame(2);
        counter.observe(3, [300.0, 150.0]);
        for _ in 0..5 {
            counter.next_frame(2);
        }
        counter.observe(3, [300.0, 220.0]);
        assert_eq!(counter.close_interval().line(0), (0, 0));
    }

    #[test]
    fn zone_entries_exits_and_dwell_are_counted() {
        let config = Config::default();
        let mut counter = CameraCounter::new(&config.venues[0], &id("cam-bowl")).expect("configured");
        counter.set_frame_rate(1.0);
        // Track 1 appears in zone 0, stays 90 frames (90 s), moves to zone 1 for 10 s, then
        // is lost and forgotten.
        for _ in 0..90 {
            counter.next_frame(5);
            counter.observe(1, [100.0, 300.0]);
        }
        for _ in 0..10 {
            counter.next_frame(5);
            counter.observe(1, [100.0, 500.0]);
        }
        for _ in 0..10 {
            counter.next_frame(5);
        }
        let tallies = counter.close_interval();
        assert_eq!((tallies.flow(0), tallies.flow(1)), ((1, 1), (1, 1)));
        assert_eq!(tallies.transition(0, 1), 1);
        assert_eq!(tallies.transition(1, 0), 0);
        assert_eq!(tallies.dwell(0, 1), 1, "90 s in zone 0: the 1-5 min bucket");
        assert_eq!(tallies.dwell(1, 0), 1, "about 10 s in zone 1: under a minute");
        let exits: u32 = (0..DWELL_BUCKETS).map(|b| tallies.dwell(0, b) + tallies.dwell(1, b)).sum();
        assert_eq!(exits, 2);
    }

    #[test]
    fn lines_and_zones_count_only_their_classes() {
        let mut config = Config::default();
        config.venues[0].zones[0].classes = vec!["car".into()];
        let mut counter = CameraCounter::new(&config.venues[0], &id("cam-bowl")).expect("configured");
        // A person walks into the car-only zone, a car drives into it.
        for _ in 0..3 {
            counter.next_frame(30);
            counter.observe_as(1, [100.0, 300.0], "person");
            counter.observe_as(2, [200.0, 300.0], "car");
        }
        let tallies = counter.close_interval();
        assert_eq!(tallies.flow(0), (1, 0), "only the car entered the concourse");
        let mut north = CameraCounter::new(&config.venues[0], &id("cam-north")).expect("configured");
        for y in [150.0, 220.0] {
            north.next_frame(30);
            north.observe_as(3, [300.0, y], "car");
            north.observe_as(4, [400.0, y], "person");
        }
        assert_eq!(north.close_interval().line(0), (1, 0), "the entrance line counts people only");
    }

    #[test]
    fn zone_transitions_are_counted() {
        let config = Config::default();
        let mut counter = CameraCounter::new(&config.venues[0], &id("cam-bowl")).expect("configured");
        for y in [300.0, 500.0, 600.0, 300.0] {
            counter.next_frame(30);
            counter.observe(1, [100.0, y]);
        }
        let tallies = counter.close_interval();
        assert_eq!((tallies.transition(0, 1), tallies.transition(1, 0)), (1, 1));
    }
}
