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
    use crate::count::CameraCounter;

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

        let mut counted: HashMap<(Id, Direction), u64> = HashMap::new();
        let mut moved: HashMap<(Id, Id), u64> = HashMap::new();
        for (c, counter) in venue.cameras.iter().zip(counters.iter_mut()) {
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
        counted.retain(|_, n| *n > 0);
        assert_eq!(counted, truth.crossings);
        assert_eq!(moved, truth.transitions);
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
