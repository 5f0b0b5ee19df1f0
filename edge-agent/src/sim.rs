//! A scene simulator with ground truth: people walking through a venue's counting lines and
//! zones, and visitors (enrolled or not) approaching its gates.
//!
//! Used by `passage demo`, by tests and for load. Each person follows a continuous polyline:
//! from outside, across an entrance line, through one to three zones (dwelling in each), and
//! out across an exit line. Ground truth is computed from that continuous path (exact segment
//! intersections, and zone membership sampled every pixel), independently of the frame-sampled
//! positions the counter sees.

use std::collections::HashMap;

use passage_config::{Point, Venue};
use passage_wire::{Direction, Id};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::count::detect::{Detection, Frame, DEFAULT_CLASS};
use crate::count::geometry::{crossing, inside, Crossing};

/// Exact counts of what the simulated people did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GroundTruth {
    /// Crossings per (line, direction).
    pub crossings: HashMap<(Id, Direction), u64>,
    /// Moves per (from zone, to zone).
    pub transitions: HashMap<(Id, Id), u64>,
}

struct Walker {
    id: u64,
    path: Vec<Point>,
    /// Seconds to wait at each waypoint.
    dwell: Vec<f64>,
    segment: usize,
    along: f64,
    waiting: f64,
    speed: f64,
}

/// The simulated scene of one venue.
pub struct Scene {
    venue: Venue,
    rng: ChaCha8Rng,
    walkers: Vec<Walker>,
    next_id: u64,
    arrivals_per_s: f64,
    truth: GroundTruth,
    /// Position jitter (pixels, std) added to what cameras see.
    pub jitter_px: f64,
}

impl std::fmt::Debug for Scene {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scene").field("venue", &self.venue.id).field("people", &self.walkers.len()).finish()
    }
}

fn lerp(a: Point, b: Point, t: f64) -> Point {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t]
}

fn dist(a: Point, b: Point) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

impl Scene {
    /// A scene for `venue`, deterministic for a `seed`, with people arriving at
    /// `arrivals_per_s` on average.
    pub fn new(venue: &Venue, seed: u64, arrivals_per_s: f64) -> Scene {
        Scene {
            venue: venue.clone(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            walkers: Vec::new(),
            next_id: 1,
            arrivals_per_s,
            truth: GroundTruth::default(),
            jitter_px: 0.0,
        }
    }

    /// What the simulated people have done so far (complete paths are counted when planned).
    pub fn truth(&self) -> &GroundTruth {
        &self.truth
    }

    /// People currently in the scene.
    pub fn population(&self) -> usize {
        self.walkers.len()
    }

    fn random_point_in(&mut self, polygon: &[Point]) -> Option<Point> {
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for p in polygon {
            x0 = x0.min(p[0]);
            y0 = y0.min(p[1]);
            x1 = x1.max(p[0]);
            y1 = y1.max(p[1]);
        }
        for _ in 0..100 {
            let p = [self.rng.random_range(x0..=x1), self.rng.random_range(y0..=y1)];
            // Keep away from the edges so jitter does not flip membership.
            let margin = 15.0;
            if [[0.0, 0.0], [margin, 0.0], [-margin, 0.0], [0.0, margin], [0.0, -margin]]
                .iter()
                .all(|d| inside(polygon, [p[0] + d[0], p[1] + d[1]]))
            {
                return Some(p);
            }
        }
        None
    }

    /// A point `offset` pixels from a random point of the line, on its left (negative offset)
    /// or right (positive) side, and the point on the line.
    fn across(&mut self, line: usize, offset: f64) -> (Point, Point) {
        let l = &self.venue.lines[line];
        let t = self.rng.random_range(0.2..0.8);
        let on = lerp(l.from, l.to, t);
        let (dx, dy) = (l.to[0] - l.from[0], l.to[1] - l.from[1]);
        let len = (dx * dx + dy * dy).sqrt().max(1e-9);
        // In image coordinates (y down) the right-hand normal of (dx, dy) is (-dy, dx).
        let normal = [-dy / len, dx / len];
        ([on[0] + normal[0] * offset, on[1] + normal[1] * offset], on)
    }

    fn spawn(&mut self) {
        if self.venue.lines.is_empty() || self.venue.zones.is_empty() {
            return;
        }
        let entry = self.rng.random_range(0..self.venue.lines.len());
        let exit = self.rng.random_range(0..self.venue.lines.len());
        let (start, _) = self.across(entry, -80.0);
        let (inside_entry, _) = self.across(entry, 80.0);
        let first_zone = self
            .venue
            .zones
            .iter()
            .position(|z| inside(&z.polygon, [inside_entry[0], inside_entry[1] + 60.0]))
            .unwrap_or(0);
        let mut zones = vec![first_zone];
        let extra = self.rng.random_range(0..=2);
        for _ in 0..extra {
            let z = self.rng.random_range(0..self.venue.zones.len());
            zones.push(z);
            zones.push(first_zone);
        }
        let mut path = vec![start, inside_entry];
        let mut dwell = vec![0.0, 0.0];
        for z in zones {
            let polygon = self.venue.zones[z].polygon.clone();
            if let Some(p) = self.random_point_in(&polygon) {
                path.push(p);
                dwell.push(self.rng.random_range(2.0..12.0));
            }
        }
        let (inside_exit, _) = self.across(exit, 80.0);
        let (outside_exit, _) = self.across(exit, -80.0);
        path.push(inside_exit);
        dwell.push(0.0);
        path.push(outside_exit);
        dwell.push(0.0);
        self.record_truth(&path);
        let speed = self.rng.random_range(70.0..140.0);
        self.walkers.push(Walker { id: self.next_id, path, dwell, segment: 0, along: 0.0, waiting: 0.0, speed });
        self.next_id += 1;
    }

    fn record_truth(&mut self, path: &[Point]) {
        for w in path.windows(2) {
            for line in &self.venue.lines {
                if let Some(c) = crossing(line.from, line.to, w[0], w[1]) {
                    let dir = if c == Crossing::In { Direction::In } else { Direction::Out };
                    *self.truth.crossings.entry((line.id.clone(), dir)).or_insert(0) += 1;
                }
            }
        }
        let mut last: Option<usize> = None;
        for w in path.windows(2) {
            let steps = dist(w[0], w[1]).ceil().max(1.0) as usize;
            for s in 0..=steps {
                let p = lerp(w[0], w[1], s as f64 / steps as f64);
                if let Some(z) = self.venue.zones.iter().position(|z| inside(&z.polygon, p)) {
                    if let Some(before) = last {
                        if before != z {
                            let key = (self.venue.zones[before].id.clone(), self.venue.zones[z].id.clone());
                            *self.truth.transitions.entry(key).or_insert(0) += 1;
                        }
                    }
                    last = Some(z);
                }
            }
        }
    }

    /// Advances the scene by `dt` seconds; returns every person's (track id, position) as a
    /// camera would see it (with jitter, if set).
    pub fn step(&mut self, dt: f64) -> Vec<(u64, Point)> {
        let arrivals = poisson(&mut self.rng, self.arrivals_per_s * dt);
        for _ in 0..arrivals {
            self.spawn();
        }
        let mut seen = Vec::with_capacity(self.walkers.len());
        for w in &mut self.walkers {
            let mut budget = dt;
            while budget > 0.0 && w.segment + 1 < w.path.len() {
                if w.waiting > 0.0 {
                    let wait = w.waiting.min(budget);
                    w.waiting -= wait;
                    budget -= wait;
                    continue;
                }
                let (a, b) = (w.path[w.segment], w.path[w.segment + 1]);
                let len = dist(a, b);
                let step = (w.speed * budget).min(len - w.along);
                w.along += step;
                budget -= step / w.speed;
                if w.along >= len - 1e-9 {
                    w.segment += 1;
                    w.along = 0.0;
                    w.waiting = w.dwell.get(w.segment).copied().unwrap_or(0.0);
                }
            }
        }
        self.walkers.retain(|w| w.segment + 1 < w.path.len());
        for w in &self.walkers {
            let (a, b) = (w.path[w.segment], w.path[w.segment + 1]);
            let len = dist(a, b).max(1e-9);
            let mut p = lerp(a, b, w.along / len);
            if self.jitter_px > 0.0 {
                p[0] += gaussian(&mut self.rng) * self.jitter_px;
                p[1] += gaussian(&mut self.rng) * self.jitter_px;
            }
            seen.push((w.id, p));
        }
        seen
    }

    /// Runs until every person who has arrived has left (no new arrivals).
    pub fn drain(&mut self, dt: f64, mut on_frame: impl FnMut(&[(u64, Point)])) {
        let rate = self.arrivals_per_s;
        self.arrivals_per_s = 0.0;
        while !self.walkers.is_empty() {
            let frame = self.step(dt);
            on_frame(&frame);
        }
        on_frame(&[]);
        self.arrivals_per_s = rate;
    }
}

/// A person detector's errors, for driving the tracker from a [`Scene`]: turns the people of a
/// frame (foot points, as [`Scene::step`] returns them) into a [`Frame`] of person boxes with
/// misses, false positives, jitter and realistic scores. Deterministic for a seed.
pub struct DetectorNoise {
    /// Probability that a person is not detected in a frame.
    pub miss_prob: f64,
    /// Mean number of false positives per frame (Poisson), placed uniformly in the image.
    pub false_positives_per_frame: f64,
    /// Standard deviation of each box edge's error, pixels.
    pub jitter_px: f64,
    /// Probability that a detected person gets a low score (`0.2..0.5`: partial occlusion);
    /// otherwise the score is drawn from `0.5..0.95`.
    pub low_score_prob: f64,
    /// Nominal person box (width, height) in pixels; each person's own size is within ±10%.
    pub box_size: (f64, f64),
    /// Image size (width, height) in pixels.
    pub frame_size: (u32, u32),
    rng: ChaCha8Rng,
}

impl std::fmt::Debug for DetectorNoise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectorNoise")
            .field("miss_prob", &self.miss_prob)
            .field("false_positives_per_frame", &self.false_positives_per_frame)
            .field("jitter_px", &self.jitter_px)
            .field("low_score_prob", &self.low_score_prob)
            .field("box_size", &self.box_size)
            .field("frame_size", &self.frame_size)
            .finish_non_exhaustive()
    }
}

impl Default for DetectorNoise {
    /// Realistic noise for a 1280x720 scene, seed 0.
    fn default() -> DetectorNoise {
        DetectorNoise::new(0)
    }
}

/// A number in `[0, 1)` fixed for `id` (splitmix64), so that each person keeps a box size.
fn unit_hash(id: u64) -> f64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl DetectorNoise {
    /// Realistic noise (5% misses, 0.2 false positives per frame, 3 px jitter, 10% low
    /// scores, 40x100 px people in a 1280x720 image), deterministic for `seed`.
    pub fn new(seed: u64) -> DetectorNoise {
        DetectorNoise {
            miss_prob: 0.05,
            false_positives_per_frame: 0.2,
            jitter_px: 3.0,
            low_score_prob: 0.1,
            box_size: (40.0, 100.0),
            frame_size: (1280, 720),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// A detector without errors: every person found, exact boxes, high scores.
    pub fn perfect(seed: u64) -> DetectorNoise {
        DetectorNoise {
            miss_prob: 0.0,
            false_positives_per_frame: 0.0,
            jitter_px: 0.0,
            low_score_prob: 0.0,
            ..Self::new(seed)
        }
    }

    fn jitter(&mut self) -> f64 {
        if self.jitter_px > 0.0 && self.jitter_px.is_finite() {
            gaussian(&mut self.rng) * self.jitter_px
        } else {
            0.0
        }
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.rng.random::<f64>()
    }

    /// What the detector reports at time `t` for `people` (track id, foot point). The ids
    /// only fix each person's box size; detections carry none. Boxes may reach outside the
    /// image, as real detectors' do; the validator clips them.
    pub fn detect(&mut self, t: f64, people: &[(u64, Point)]) -> Frame {
        let (bw, bh) = self.box_size;
        let (fw, fh) = (f64::from(self.frame_size.0), f64::from(self.frame_size.1));
        let miss = if self.miss_prob.is_finite() { self.miss_prob.clamp(0.0, 1.0) } else { 0.0 };
        let low = if self.low_score_prob.is_finite() { self.low_score_prob.clamp(0.0, 1.0) } else { 0.0 };
        let mut detections = Vec::with_capacity(people.len() + 2);
        for &(id, foot) in people {
            if self.rng.random_bool(miss) {
                continue;
            }
            let scale = 0.9 + 0.2 * unit_hash(id);
            let (w, h) = (bw * scale, bh * scale);
            let bbox = [
                foot[0] - w / 2.0 + self.jitter(),
                foot[1] - h + self.jitter(),
                foot[0] + w / 2.0 + self.jitter(),
                foot[1] + self.jitter(),
            ];
            let score = if self.rng.random_bool(low) { self.uniform(0.2, 0.5) } else { self.uniform(0.5, 0.95) };
            detections.push(Detection { bbox, score: score as f32, class: DEFAULT_CLASS.to_string() });
        }
        let mean =
            if self.false_positives_per_frame.is_finite() { self.false_positives_per_frame.max(0.0) } else { 0.0 };
        for _ in 0..poisson(&mut self.rng, mean) {
            let scale = self.uniform(0.6, 1.2);
            let (w, h) = (bw * scale, bh * scale);
            let x = self.uniform(0.0, fw);
            let y = self.uniform(h.min(fh), fh);
            let score = self.uniform(0.1, 0.55);
            detections.push(Detection {
                bbox: [x - w / 2.0, y - h, x + w / 2.0, y],
                score: score as f32,
                class: DEFAULT_CLASS.to_string(),
            });
        }
        Frame { t, w: self.frame_size.0, h: self.frame_size.1, detections }
    }
}

fn poisson(rng: &mut impl Rng, mean: f64) -> usize {
    // Knuth's method; means here are small (< 10).
    let limit = (-mean).exp();
    let mut product: f64 = rng.random();
    let mut k = 0;
    while product > limit {
        k += 1;
        product *= rng.random::<f64>();
    }
    k
}

fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Simulated face embeddings: each visitor has a random unit "identity" direction and every
/// approach yields that direction plus Gaussian noise, renormalised. With `noise` 0.045 per
/// coordinate at d = 128, two approaches of the same visitor have cosine about 0.8 and two
/// visitors about 0 — roughly the genuine/impostor separation of real aligned faces (see
/// shared/models.md). Real faces replace this when the face path lands.
#[derive(Debug)]
pub struct FaceSimulator {
    rng: ChaCha8Rng,
    dim: usize,
    noise: f64,
}

impl FaceSimulator {
    /// A simulator of `dim`-dimensional embeddings.
    pub fn new(seed: u64, dim: usize) -> FaceSimulator {
        FaceSimulator { rng: ChaCha8Rng::seed_from_u64(seed), dim, noise: 0.045 }
    }

    /// A new identity.
    pub fn identity(&mut self) -> Vec<f32> {
        let v: Vec<f64> = (0..self.dim).map(|_| gaussian(&mut self.rng)).collect();
        normalise(&v)
    }

    /// One observation of `identity`.
    pub fn observe(&mut self, identity: &[f32]) -> Vec<f32> {
        let v: Vec<f64> = identity.iter().map(|&x| f64::from(x) + gaussian(&mut self.rng) * self.noise).collect();
        normalise(&v)
    }
}

fn normalise(v: &[f64]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.iter().map(|x| (x / n) as f32).collect()
}

#[cfg(test)]
mod tests {
    use passage_config::Config;

    use super::*;
    use crate::count::detect::FrameValidator;
    use crate::count::track::Tracker;
    use crate::count::CameraCounter;

    type Crossings = HashMap<(Id, Direction), u64>;
    type Moves = HashMap<(Id, Id), u64>;

    /// Closes every camera's interval and adds up its tallies by (line, direction) and by
    /// (zone, zone), keeping only non-zero moves.
    fn close_all<'a>(venue: &Venue, counters: impl Iterator<Item = &'a mut CameraCounter>) -> (Crossings, Moves) {
        let mut counted = Crossings::new();
        let mut moved = Moves::new();
        for (c, counter) in venue.cameras.iter().zip(counters) {
            let tallies = counter.close_interval();
            for (i, line) in c.lines.iter().enumerate() {
                let (n_in, n_out) = tallies.line(i);
                *counted.entry((line.clone(), Direction::In)).or_insert(0) += u64::from(n_in);
                *counted.entry((line.clone(), Direction::Out)).or_insert(0) += u64::from(n_out);
            }
            for (a, za) in c.zones.iter().enumerate() {
                for (b, zb) in c.zones.iter().enumerate() {
                    let n = tallies.transition(a, b);
                    if n > 0 {
                        *moved.entry((za.clone(), zb.clone())).or_insert(0) += u64::from(n);
                    }
                }
            }
        }
        (counted, moved)
    }

    #[test]
    fn noiseless_counting_matches_ground_truth_exactly() {
        let config = Config::default();
        let venue = &config.venues[0];
        let mut scene = Scene::new(venue, 42, 2.0);
        let mut counters: Vec<CameraCounter> =
            venue.cameras.iter().map(|c| CameraCounter::new(venue, &c.id).expect("configured")).collect();
        let feed = |frame: &[(u64, Point)], counters: &mut Vec<CameraCounter>| {
            for counter in counters.iter_mut() {
                counter.next_frame(25);
                for (track, p) in frame {
                    counter.observe(*track, *p);
                }
            }
        };
        // 25 frames per second, as the counter is told: at 0.2 s per frame a walker moves up to
        // 28 px between frames and can clip a zone corner unseen by the camera.
        for _ in 0..3000 {
            let frame = scene.step(0.04);
            feed(&frame, &mut counters);
        }
        scene.drain(0.04, |frame| feed(frame, &mut counters));
        let truth = scene.truth().clone();
        assert!(truth.crossings.values().sum::<u64>() > 200, "the scene must be busy: {truth:?}");

        let (mut counted, moved) = close_all(venue, counters.iter_mut());
        counted.retain(|_, n| *n > 0);
        assert_eq!(counted, truth.crossings);
        assert_eq!(moved, truth.transitions);
    }

    /// One camera of the noisy pipeline: simulated detector, validator, tracker, counter.
    struct NoisyCamera {
        noise: DetectorNoise,
        validator: FrameValidator,
        tracker: Tracker,
        counter: CameraCounter,
    }

    struct NoisyPipeline {
        cameras: Vec<NoisyCamera>,
        t: f64,
        dt: f64,
    }

    impl NoisyPipeline {
        fn feed(&mut self, people: &[(u64, Point)]) {
            self.t += self.dt;
            for cam in &mut self.cameras {
                let frame = cam.noise.detect(self.t, people);
                let (detections, _) = cam.validator.validate(frame);
                let tracks = cam.tracker.update(&detections);
                cam.counter.next_frame(u64::from(cam.tracker.config().max_age));
                for (track, p) in tracks {
                    cam.counter.observe(track, p);
                }
            }
        }
    }

    /// Sum over keys of |counted - truth|, divided by the truth's total.
    fn relative_error<K: std::hash::Hash + Eq>(counted: &HashMap<K, u64>, truth: &HashMap<K, u64>) -> f64 {
        let keys: std::collections::HashSet<&K> = counted.keys().chain(truth.keys()).collect();
        let off: u64 = keys
            .into_iter()
            .map(|k| counted.get(k).copied().unwrap_or(0).abs_diff(truth.get(k).copied().unwrap_or(0)))
            .sum();
        off as f64 / truth.values().sum::<u64>().max(1) as f64
    }

    #[test]
    fn noisy_detections_tracked_count_crossings_within_five_percent() {
        let config = Config::default();
        let venue = &config.venues[0];
        let mut scene = Scene::new(venue, 42, 2.0);
        let cameras = venue
            .cameras
            .iter()
            .enumerate()
            .map(|(i, c)| NoisyCamera {
                noise: DetectorNoise::new(1000 + i as u64),
                validator: FrameValidator::default(),
                tracker: Tracker::default(),
                counter: CameraCounter::new(venue, &c.id).expect("configured"),
            })
            .collect();
        let mut pipeline = NoisyPipeline { cameras, t: 0.0, dt: 0.04 };
        for _ in 0..3000 {
            let people = scene.step(0.04);
            pipeline.feed(&people);
        }
        scene.drain(0.04, |people| pipeline.feed(people));
        let truth = scene.truth().clone();
        let total: u64 = truth.crossings.values().sum();
        assert!(total > 200, "the scene must be busy: {truth:?}");

        let (counted, moved) = close_all(venue, pipeline.cameras.iter_mut().map(|cam| &mut cam.counter));
        let error = relative_error(&counted, &truth.crossings);
        let zone_error = relative_error(&moved, &truth.transitions);
        println!(
            "noisy pipeline: {total} true crossings, crossing error {:.2}%, zone transition error {:.2}%",
            error * 100.0,
            zone_error * 100.0
        );
        assert!(
            error <= 0.05,
            "crossing count error {:.2}% exceeds 5%: counted {counted:?}, truth {:?}",
            error * 100.0,
            truth.crossings
        );
    }

    #[test]
    fn detector_noise_is_deterministic_and_realistic() {
        let people: Vec<(u64, Point)> = (0..50).map(|i| (i, [20.0 + 25.0 * i as f64, 400.0])).collect();
        let run = |seed| {
            let mut noise = DetectorNoise::new(seed);
            (0..200).map(|i| noise.detect(f64::from(i) * 0.04, &people)).collect::<Vec<_>>()
        };
        let frames = run(7);
        assert_eq!(frames, run(7));
        assert_ne!(frames, run(8));
        let detections: Vec<&Detection> = frames.iter().flat_map(|f| &f.detections).collect();
        let n = detections.len() as f64;
        // 50 people * 200 frames * 0.95, plus about 40 false positives.
        assert!((9300.0..9800.0).contains(&n), "{n} detections");
        assert!(detections.iter().all(|d| (0.0..=1.0).contains(&d.score) && d.class == "person"));
        let low = detections.iter().filter(|d| d.score < 0.5).count() as f64 / n;
        assert!((0.05..0.15).contains(&low), "low-score share {low}");
        let perfect = DetectorNoise::perfect(1).detect(0.0, &people);
        assert_eq!(perfect.detections.len(), 50);
        let foot = perfect.detections[3].foot_point();
        assert!((foot[0] - people[3].1[0]).abs() < 1e-9 && foot[1] == people[3].1[1]);
    }

    #[test]
    fn simulated_faces_separate_genuine_from_impostor() {
        let mut faces = FaceSimulator::new(1, 128);
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let (a, b) = (faces.identity(), faces.identity());
        let (a1, a2, b1) = (faces.observe(&a), faces.observe(&a), faces.observe(&b));
        assert!(cos(&a1, &a2) > 0.7, "genuine {}", cos(&a1, &a2));
        assert!(cos(&a1, &b1).abs() < 0.4, "impostor {}", cos(&a1, &b1));
    }
}
