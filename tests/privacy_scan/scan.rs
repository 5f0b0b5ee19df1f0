//! The detectors of the privacy scan: given what went into the system (photos, embeddings,
//! names, contacts, ticket ids, access keys), find any of it in a blob of bytes (a file, a log,
//! an MQTT message).
//!
//! * Exact strings, ASCII case-insensitive: the planted names, emails, phone numbers (several
//!   spellings), ticket ids and codes, access keys; any ticket code (`PT1.` + base64url) or
//!   simulated ticket id (`SIM-0001-…`) at all; any email address at all (with a local part of
//!   four characters or more and a lowercase top-level domain, so that random bytes do not
//!   spell one).
//! * Image bytes: JPEG (start of image followed by a JFIF, Exif or quantisation-table header)
//!   and PNG signatures, as bytes and as base64; 64-byte chunks of every input photo's file
//!   and of its base64 encoding; 48-byte runs of its decoded pixels, as RGB and as BGR.
//! * Embeddings: every window of as many consecutive numbers as an embedding has, read as
//!   little-endian f32, f64, i8, i16, i32 and i64 at every alignment, as int64 plaintext
//!   polynomial coefficients scaled by Δ = 2^48, and as decimal numbers in text, whose cosine
//!   similarity with a test face's float or quantised embedding is 0.9 or more. A window is
//!   compared only when all its values are plausible for an embedding (finite, small; for
//!   integers within the quantised range), so random and encrypted bytes cost one range check
//!   per value.

use std::fmt;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::Regex;

/// What the scan looks for.
pub struct Needles {
    text: Vec<String>,
    text_automaton: AhoCorasick,
    binary: Vec<String>,
    binary_automaton: AhoCorasick,
    patterns: Vec<(&'static str, Regex)>,
    vectors: Vec<(String, Vec<f64>)>,
    dim: usize,
}

/// One thing found.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Where: a file path, `stderr`, `mqtt <topic>`.
    pub place: String,
    /// Byte offset in it.
    pub offset: usize,
    /// What was found.
    pub what: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} @ {}: {}", self.place, self.offset, self.what)
    }
}

/// Builds [`Needles`].
#[derive(Default)]
pub struct NeedlesBuilder {
    text: Vec<(String, Vec<u8>)>,
    binary: Vec<(String, Vec<u8>)>,
    vectors: Vec<(String, Vec<f64>)>,
}

/// Minimum cosine similarity that counts as the same embedding.
pub const SAME_VECTOR: f64 = 0.9;

impl NeedlesBuilder {
    /// A personal string (name, email, phone, ticket id, key), matched ASCII case-insensitively.
    pub fn text(&mut self, label: &str, value: &str) -> &mut Self {
        assert!(value.len() >= 6, "a needle of {} bytes would match by chance: {label}", value.len());
        self.text.push((label.to_owned(), value.as_bytes().to_vec()));
        self
    }

    /// An input photo: chunks of its file bytes and of their base64 text, and runs of its
    /// decoded pixels (`rgb`, packed, `w` pixels a row).
    pub fn photo(&mut self, name: &str, file: &[u8], rgb: &[u8], w: usize) -> &mut Self {
        use base64::Engine;
        const CHUNK: usize = 64;
        // Every 64-byte chunk of the file at offsets 1 KiB apart (a copy of any part of the
        // photo longer than 1.1 KiB contains one).
        for (i, start) in (0..file.len().saturating_sub(CHUNK)).step_by(1024).enumerate() {
            self.binary.push((format!("{name}: file bytes {start}.."), file[start..start + CHUNK].to_vec()));
            if i % 4 == 0 {
                // The base64 of the same bytes, from a 3-byte boundary (any base64 of the file
                // made from its start lines up with that).
                let aligned = start / 3 * 3;
                // 63 bytes: a multiple of 3, so the text has no padding.
                let text = base64::engine::general_purpose::STANDARD.encode(&file[aligned..aligned + 63]);
                self.binary.push((format!("{name}: base64 of bytes {aligned}.."), text.into_bytes()));
            }
        }
        // Runs of 16 pixels from 64 places spread over the image, skipping flat ones (a run of
        // a few distinct values could be anything).
        let h = rgb.len() / (3 * w.max(1));
        for k in 0..64usize {
            let y = (k * 7919 + 13) % h.max(1);
            let x = (k * 104_729 + 31) % w.saturating_sub(16).max(1);
            let at = 3 * (y * w + x);
            let Some(run) = rgb.get(at..at + 48) else { continue };
            let mut distinct = run.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() < 16 {
                continue;
            }
            self.binary.push((format!("{name}: RGB pixels at ({x}, {y})"), run.to_vec()));
            let bgr: Vec<u8> = run.chunks(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
            self.binary.push((format!("{name}: BGR pixels at ({x}, {y})"), bgr));
        }
        self
    }

    /// An embedding (float, or quantised as integers): its exact little-endian bytes are
    /// searched, and windows of numbers are compared with it by cosine similarity.
    pub fn vector(&mut self, label: &str, values: &[f64], exact_f32: bool) -> &mut Self {
        if exact_f32 {
            let bytes: Vec<u8> = values.iter().take(8).flat_map(|v| (*v as f32).to_le_bytes()).collect();
            self.binary.push((format!("{label}: f32 bytes of the first 8 values"), bytes));
        } else {
            let bytes: Vec<u8> = values.iter().map(|v| *v as i8 as u8).collect();
            self.binary.push((format!("{label}: i8 bytes"), bytes));
        }
        self.vectors.push((label.to_owned(), values.to_vec()));
        self
    }

    /// The needles.
    pub fn build(&self) -> Needles {
        let dims: Vec<usize> = self.vectors.iter().map(|(_, v)| v.len()).collect();
        let dim = dims.first().copied().unwrap_or(0);
        assert!(dims.iter().all(|&d| d == dim), "all embeddings have one dimension");
        let automaton = |needles: &[(String, Vec<u8>)], fold: bool| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(fold)
                .match_kind(MatchKind::Standard)
                .build(needles.iter().map(|(_, n)| n))
                .expect("automaton")
        };
        let pattern = |s: &str| Regex::new(s).expect("pattern");
        Needles {
            text: self.text.iter().map(|(l, _)| l.clone()).collect(),
            text_automaton: automaton(&self.text, true),
            binary: self.binary.iter().map(|(l, _)| l.clone()).collect(),
            binary_automaton: automaton(&self.binary, false),
            patterns: vec![
                ("a JPEG image", pattern(r"(?-u)\xFF\xD8\xFF(?:\xE0..JFIF\x00|\xE1..Exif\x00|\xDB\x00[\x43\x84])")),
                ("a PNG image", pattern(r"(?-u)\x89PNG\r\n\x1A\n")),
                (
                    "a base64 JPEG or PNG",
                    pattern(r"/9j/4AAQSkZJRg|/9j/4[Q-T][A-Za-z0-9+/]{2}RXhpZg|iVBORw0KGgo|data:image/"),
                ),
                ("a ticket code", pattern(r"PT1\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}")),
                ("a simulated ticket id", pattern(r"SIM-[0-9]{4}-[0-9a-f]{8}")),
                // Any address at all, bounded so that random bytes do not spell one by chance
                // (about one in 10^10 positions; the planted addresses are matched exactly).
                ("an email address", pattern(r"[A-Za-z0-9._%+-]{4,}@[A-Za-z0-9-]{3,}(?:\.[A-Za-z0-9-]+)*\.[a-z]{2,}")),
            ],
            vectors: self.vectors.iter().map(|(l, v)| (l.clone(), unit(v))).collect(),
            dim,
        }
    }
}

fn unit(v: &[f64]) -> Vec<f64> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
    v.iter().map(|x| x / norm).collect()
}

/// How a window of bytes is read as numbers.
#[derive(Clone, Copy)]
enum Reading {
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    /// Int64 torus coefficients `m · 2^48` (an unencrypted plaintext polynomial).
    Delta48,
}

impl Reading {
    const ALL: [Reading; 7] =
        [Reading::F32, Reading::F64, Reading::I8, Reading::I16, Reading::I32, Reading::I64, Reading::Delta48];

    fn width(self) -> usize {
        match self {
            Reading::I8 => 1,
            Reading::I16 => 2,
            Reading::F32 | Reading::I32 => 4,
            Reading::F64 | Reading::I64 | Reading::Delta48 => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Reading::F32 => "f32",
            Reading::F64 => "f64",
            Reading::I8 => "i8",
            Reading::I16 => "i16",
            Reading::I32 => "i32",
            Reading::I64 => "i64",
            Reading::Delta48 => "i64 · 2^48",
        }
    }

    /// The value at `b` (exactly `width` bytes) if it is plausible as an embedding coordinate.
    fn read(self, b: &[u8]) -> Option<f64> {
        let plausible_float = |x: f64| x.is_finite() && (x == 0.0 || (1e-6..=1e3).contains(&x.abs()));
        let small = |x: i64, limit: u64| (x.unsigned_abs() <= limit).then_some(x as f64);
        match self {
            Reading::F32 => {
                let x = f64::from(f32::from_le_bytes(b.try_into().ok()?));
                plausible_float(x).then_some(x)
            }
            Reading::F64 => {
                let x = f64::from_le_bytes(b.try_into().ok()?);
                plausible_float(x).then_some(x)
            }
            Reading::I8 => small(i64::from(b[0] as i8), 16),
            Reading::I16 => small(i64::from(i16::from_le_bytes(b.try_into().ok()?)), 127),
            Reading::I32 => small(i64::from(i32::from_le_bytes(b.try_into().ok()?)), 127),
            Reading::I64 => small(i64::from_le_bytes(b.try_into().ok()?), 127),
            Reading::Delta48 => {
                let x = i64::from_le_bytes(b.try_into().ok()?);
                if x & ((1 << 48) - 1) != 0 {
                    return None;
                }
                small(x >> 48, 16)
            }
        }
    }
}

impl Needles {
    /// The embedding dimension compared (0 without embeddings).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Every finding in `data`, found at `place`.
    pub fn scan(&self, place: &str, data: &[u8]) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut found = |offset: usize, what: String| {
            // One finding per kind per place is enough to locate a leak; cap the report.
            if out.len() < 20 {
                out.push(Finding { place: place.to_owned(), offset, what });
            }
        };
        for m in self.text_automaton.find_overlapping_iter(data) {
            found(m.start(), self.text[m.pattern().as_usize()].clone());
        }
        for m in self.binary_automaton.find_overlapping_iter(data) {
            found(m.start(), self.binary[m.pattern().as_usize()].clone());
        }
        for (what, pattern) in &self.patterns {
            // Kind and offset only: the report must not repeat what it found.
            if let Some(m) = pattern.find(data) {
                found(m.start(), format!("{what} ({} bytes)", m.end() - m.start()));
            }
        }
        if self.dim > 0 {
            for reading in Reading::ALL {
                for align in 0..reading.width() {
                    if let Some((offset, what)) = self.binary_windows(data, reading, align) {
                        found(offset, what);
                    }
                }
            }
            if let Some((offset, what)) = self.text_windows(data) {
                found(offset, what);
            }
        }
        out
    }

    /// The best cosine of `window` with a needle vector, if it is at least [`SAME_VECTOR`].
    fn similar(&self, window: &[f64]) -> Option<(f64, &str)> {
        let nonzero = window.iter().filter(|x| **x != 0.0).count();
        if nonzero * 2 < window.len() {
            return None;
        }
        let norm = window.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            return None;
        }
        self.vectors
            .iter()
            .map(|(label, v)| (v.iter().zip(window).map(|(a, b)| a * b).sum::<f64>() / norm, label.as_str()))
            .filter(|(cos, _)| *cos >= SAME_VECTOR)
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// The first window of `dim` consecutive plausible values read as `reading` from byte
    /// `align` on that is close to a needle vector.
    fn binary_windows(&self, data: &[u8], reading: Reading, align: usize) -> Option<(usize, String)> {
        let width = reading.width();
        let mut window: std::collections::VecDeque<f64> = std::collections::VecDeque::with_capacity(self.dim);
        let mut values = Vec::with_capacity(self.dim);
        let mut at = align;
        while at + width <= data.len() {
            match reading.read(&data[at..at + width]) {
                Some(x) => {
                    window.push_back(x);
                    if window.len() > self.dim {
                        window.pop_front();
                    }
                    if window.len() == self.dim {
                        values.clear();
                        values.extend(window.iter().copied());
                        if let Some((cos, label)) = self.similar(&values) {
                            let start = at + width - self.dim * width;
                            return Some((start, format!("{label} as {} (cosine {cos:.3})", reading.name())));
                        }
                    }
                }
                None => window.clear(),
            }
            at += width;
        }
        None
    }

    /// The first run of `dim` decimal numbers in text (separated by spaces, commas,
    /// semicolons, brackets or quotes) close to a needle vector.
    fn text_windows(&self, data: &[u8]) -> Option<(usize, String)> {
        let mut run: Vec<(usize, f64)> = Vec::new();
        let mut i = 0;
        while i < data.len() {
            let c = data[i];
            let starts_number = c.is_ascii_digit()
                || ((c == b'-' || c == b'+' || c == b'.') && data.get(i + 1).is_some_and(|d| d.is_ascii_digit()));
            if starts_number {
                let start = i;
                i += 1;
                while i < data.len()
                    && (data[i].is_ascii_digit()
                        || matches!(data[i], b'.' | b'e' | b'E')
                        || (matches!(data[i], b'-' | b'+') && matches!(data[i - 1], b'e' | b'E')))
                {
                    i += 1;
                }
                match std::str::from_utf8(&data[start..i]).ok().and_then(|s| s.parse::<f64>().ok()) {
                    Some(x) if x.is_finite() => run.push((start, x)),
                    _ => run.clear(),
                }
                if run.len() >= self.dim {
                    let values: Vec<f64> = run[run.len() - self.dim..].iter().map(|(_, x)| *x).collect();
                    if let Some((cos, label)) = self.similar(&values) {
                        return Some((
                            run[run.len() - self.dim].0,
                            format!("{label} as decimal text (cosine {cos:.3})"),
                        ));
                    }
                }
                continue;
            }
            if !matches!(c, b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' | b'[' | b']' | b'(' | b')' | b'"' | b'\'') {
                run.clear();
            }
            i += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn face(seed: u64) -> Vec<f64> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        unit(&(0..128).map(|_| rng.random_range(-1.0..1.0)).collect::<Vec<f64>>())
    }

    fn quantised(v: &[f64]) -> Vec<f64> {
        v.iter().map(|x| (x * 2.2 * 128f64.sqrt()).round().clamp(-8.0, 7.0)).collect()
    }

    fn needles() -> Needles {
        let (a, b) = (face(1), face(2));
        let photo: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let rgb: Vec<u8> = (0..300 * 200 * 3u32).map(|i| (i.wrapping_mul(40_503) >> 7) as u8).collect();
        let mut builder = NeedlesBuilder::default();
        builder
            .text("name", "Amelie Quastenberg")
            .text("ticket id", "PRIVSCAN-TKT-0001")
            .photo("photo.jpg", &photo, &rgb, 300)
            .vector("face a", &a, true)
            .vector("face b", &b, true)
            .vector("face a quantised", &quantised(&a), false);
        builder.build()
    }

    fn random(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random()).collect()
    }

    /// `inner` inside random bytes at an odd offset.
    fn planted(inner: &[u8]) -> Vec<u8> {
        let mut data = random(10_001, 7);
        data.extend_from_slice(inner);
        data.extend(random(5_003, 8));
        data
    }

    fn assert_found(needles: &Needles, data: &[u8], expect: &str) {
        let found = needles.scan("test", data);
        assert!(found.iter().any(|f| f.what.contains(expect)), "{expect:?} not in {found:?}");
    }

    #[test]
    fn random_bytes_text_and_zeros_are_clean() {
        let needles = needles();
        for seed in 0..4 {
            let found = needles.scan("random", &random(1 << 20, seed));
            assert!(found.is_empty(), "{found:?}");
        }
        assert!(needles.scan("zeros", &vec![0u8; 100_000]).is_empty());
        let counts: String = (0..2000).map(|i| format!("{},", i % 37)).collect();
        assert!(needles.scan("numbers", counts.as_bytes()).is_empty());
        let small: Vec<u8> = (0..20_000u32).map(|i| (i % 5) as u8).collect();
        assert!(needles.scan("small ints", &small).is_empty());
    }

    #[test]
    fn every_kind_of_leak_is_found() {
        let needles = needles();
        let a = face(1);
        assert_found(&needles, &planted(b"visitor amelie QUASTENBERG"), "name");
        assert_found(&needles, &planted(b"id=PRIVSCAN-TKT-0001"), "ticket id");
        assert_found(&needles, &planted(b"write to someone@example.org"), "email address");
        assert_found(
            &needles,
            &planted(b"code PT1.eyJpZCI6IlQxIiwidmVudWUiOiJhIn0.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"),
            "ticket code",
        );
        assert_found(&needles, &planted(b"SIM-0003-0badcafe"), "simulated ticket id");
        assert_found(&needles, &planted(b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01"), "JPEG");
        assert_found(&needles, &planted(b"\x89PNG\r\n\x1A\n\x00\x00"), "PNG");
        assert_found(&needles, &planted(b"{\"photo\":\"/9j/4AAQSkZJRgABAQ\"}"), "base64 JPEG");
        let photo: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        assert_found(&needles, &planted(&photo[1000..2200]), "photo.jpg: file bytes");
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&photo);
        assert_found(&needles, &planted(b64.as_bytes()), "photo.jpg: base64");
        let rgb: Vec<u8> = (0..300 * 200 * 3u32).map(|i| (i.wrapping_mul(40_503) >> 7) as u8).collect();
        assert_found(&needles, &planted(&rgb[30_000..90_000]), "photo.jpg: RGB pixels");
        // A slightly different copy of the embedding (another thread order, another run).
        let noisy: Vec<f64> = a.iter().enumerate().map(|(i, x)| x + if i % 2 == 0 { 0.01 } else { -0.01 }).collect();
        let f32s: Vec<u8> = noisy.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
        assert_found(&needles, &planted(&f32s), "face a as f32");
        let f64s: Vec<u8> = noisy.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_found(&needles, &planted(&f64s), "face a as f64");
        let text = format!(
            "DEBUG planted leak: probe embedding embedding={:?}",
            noisy.iter().map(|x| *x as f32).collect::<Vec<_>>()
        );
        assert_found(&needles, &planted(text.as_bytes()), "face a as decimal text");
        let json = serde_json::to_vec(&serde_json::json!({ "v": noisy })).expect("json");
        assert_found(&needles, &planted(&json), "face a as decimal text");
        // The quantised template: as bytes, wider integers, and an unencrypted plaintext.
        let q = quantised(&a);
        assert_found(&needles, &planted(&q.iter().map(|x| *x as i8 as u8).collect::<Vec<_>>()), "face a quantised");
        let q32: Vec<u8> = q.iter().flat_map(|x| (*x as i32).to_le_bytes()).collect();
        assert_found(&needles, &planted(&q32), "as i32");
        let q16: Vec<u8> = q.iter().flat_map(|x| (*x as i16).to_le_bytes()).collect();
        assert_found(&needles, &planted(&q16), "as i16");
        let plain: Vec<u8> = q.iter().flat_map(|x| ((*x as i64) << 48).to_le_bytes()).collect();
        assert_found(&needles, &planted(&plain), "as i64 · 2^48");
        let q_text = format!("{:?}", q.iter().map(|x| *x as i8).collect::<Vec<_>>());
        assert_found(&needles, &planted(q_text.as_bytes()), "quantised as decimal text");
    }

    #[test]
    fn another_face_is_not_found() {
        let needles = needles();
        let other = face(99);
        let f32s: Vec<u8> = other.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
        assert!(needles.scan("other", &planted(&f32s)).is_empty());
        let text = format!("{other:?}");
        assert!(needles.scan("other", text.as_bytes()).is_empty());
    }
}
