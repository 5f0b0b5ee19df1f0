//! Parsing and checking a configuration file, collecting every error with its location.

use std::collections::HashSet;
use std::fmt;

use passage_wire::Id;
use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::model::*;
use crate::register::Register;
use crate::spans::{line_col, locate, render, Seg};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Path of the offending value (`venues[0].cameras[1].lines`), empty for syntax errors.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}:{}: {}", self.line, self.column, self.message)
        } else {
            write!(f, "{}:{}: {}: {}", self.line, self.column, self.path, self.message)
        }
    }
}

/// Every problem found in a configuration file, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

struct Collector<'a, 'i> {
    src: &'a str,
    root: &'a Spanned<DeTable<'i>>,
    errors: Vec<ConfigError>,
}

impl Collector<'_, '_> {
    fn at_span(&mut self, span: std::ops::Range<usize>, path: &[Seg], message: String) {
        let (line, column) = line_col(self.src, span.start);
        self.errors.push(ConfigError { line, column, path: render(path), message });
    }

    fn at_path(&mut self, path: &[Seg], message: String) {
        let span = locate(self.root, path);
        self.at_span(span, path, message);
    }

    fn section<T: DeserializeOwned + Default>(&mut self, key: &'static str) -> T {
        self.item(key).unwrap_or_default()
    }

    fn item<T: DeserializeOwned>(&mut self, key: &'static str) -> Option<T> {
        let value = self.root.get_ref().iter().find(|(k, _)| k.get_ref().as_ref() == key)?.1.clone();
        self.deserialize(value, &[Seg::Key(key)])
    }

    fn deserialize<T: DeserializeOwned>(&mut self, value: Spanned<DeValue<'_>>, path: &[Seg]) -> Option<T> {
        let fallback = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(t) => Some(t),
            Err(error) => {
                let span = error.span().unwrap_or(fallback);
                self.at_span(span, path, error.message().trim().to_owned());
                None
            }
        }
    }

    /// An array of tables, deserialized element by element so one bad element does not hide
    /// the errors of the next.
    fn list<T: DeserializeOwned>(&mut self, key: &'static str) -> Option<Vec<T>> {
        let value = self.root.get_ref().iter().find(|(k, _)| k.get_ref().as_ref() == key)?.1.clone();
        let DeValue::Array(items) = value.get_ref() else {
            self.at_span(value.span(), &[Seg::Key(key)], "expected an array of tables".into());
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(t) = self.deserialize(item.clone(), &[Seg::Key(key), Seg::Index(i)]) {
                out.push(t);
            }
        }
        Some(out)
    }
}

const SECTIONS: [&str; 11] = [
    "deployment",
    "broker",
    "http",
    "privacy",
    "matching",
    "faces",
    "spool",
    "analytics",
    "purposes",
    "venues",
    "register",
];

impl Config {
    /// Parses and checks a TOML configuration. Missing sections take their defaults.
    ///
    /// # Errors
    /// Every syntax, type and consistency error found, each with its line and column.
    pub fn from_toml(src: &str) -> Result<Config, ConfigErrors> {
        let (root, syntax) = DeTable::parse_recoverable(src);
        if !syntax.is_empty() {
            let errors = syntax
                .iter()
                .map(|error| {
                    let (line, column) = line_col(src, error.span().map_or(0, |s| s.start));
                    ConfigError { line, column, path: String::new(), message: error.message().trim().to_owned() }
                })
                .collect();
            return Err(ConfigErrors(errors));
        }
        let mut c = Collector { src, root: &root, errors: Vec::new() };
        for (key, value) in root.get_ref().iter() {
            if !SECTIONS.contains(&key.get_ref().as_ref()) {
                let message = format!("unknown section `{}`; expected one of {}", key.get_ref(), SECTIONS.join(", "));
                c.at_span(value.span(), &[], message);
            }
        }
        let mut config = Config {
            deployment: c.section("deployment"),
            broker: c.section("broker"),
            http: c.section("http"),
            privacy: c.section("privacy"),
            matching: c.section("matching"),
            faces: c.section("faces"),
            spool: c.section("spool"),
            analytics: c.section("analytics"),
            purposes: c.list("purposes").unwrap_or_else(|| Config::default().purposes),
            venues: c.list("venues").unwrap_or_else(|| Config::default().venues),
            register: c.section("register"),
        };
        // The built-in activities describe the built-in purposes; a file that defines its own
        // purposes keeps only those that still apply (the others would name unknown purposes).
        if config.register.activities == Register::default().activities {
            let purposes = &config.purposes;
            config.register.activities.retain(|a| purposes.iter().any(|p| p.id == a.purpose));
        }
        if c.errors.is_empty() {
            for (path, message) in config.problems() {
                c.at_path(&path, message);
            }
        }
        if c.errors.is_empty() {
            Ok(config)
        } else {
            c.errors.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(c.errors))
        }
    }

    /// Consistency problems of an already-typed configuration, as (path, message) pairs.
    /// [`Config::default`] has none (tested).
    pub(crate) fn problems(&self) -> Vec<(Vec<Seg>, String)> {
        let mut out: Vec<(Vec<Seg>, String)> = Vec::new();
        let mut say = |path: Vec<Seg>, message: String| out.push((path, message));

        if !self.broker.embedded && self.broker.host.trim().is_empty() {
            say(vec![Seg::Key("broker"), Seg::Key("host")], "an external broker needs a host".into());
        }
        if !self.broker.embedded && self.broker.port == 0 {
            say(vec![Seg::Key("broker"), Seg::Key("port")], "an external broker needs a port".into());
        }
        for (key, addr) in
            [("analytics", &self.http.analytics), ("matcher", &self.http.matcher), ("portal", &self.http.portal)]
        {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                say(vec![Seg::Key("http"), Seg::Key(key)], format!("{addr:?} is not an address like 127.0.0.1:8443"));
            }
        }

        let p = &self.privacy;
        if !(p.epsilon_per_day.is_finite() && p.epsilon_per_day > 0.0 && p.epsilon_per_day <= 10.0) {
            say(vec![Seg::Key("privacy"), Seg::Key("epsilon_per_day")], "must be in (0, 10]".into());
        }
        if !(p.delta_per_day.is_finite() && p.delta_per_day > 0.0 && p.delta_per_day <= 1e-4) {
            say(vec![Seg::Key("privacy"), Seg::Key("delta_per_day")], "must be in (0, 1e-4]".into());
        }
        if p.interval_secs == 0 || p.interval_secs > 3600 || 86_400 % p.interval_secs != 0 {
            say(vec![Seg::Key("privacy"), Seg::Key("interval_secs")], "must divide a day and be at most 3600".into());
        }
        if p.max_crossings_per_person_day == 0 {
            say(vec![Seg::Key("privacy"), Seg::Key("max_crossings_per_person_day")], "must be at least 1".into());
        }
        if !(p.flag_below_std_multiple.is_finite() && p.flag_below_std_multiple >= 0.0) {
            say(
                vec![Seg::Key("privacy"), Seg::Key("flag_below_std_multiple")],
                "must be finite and non-negative".into(),
            );
        }

        let m = &self.matching;
        if !(m.threshold.is_finite() && m.threshold > -1.0 && m.threshold < 1.0) {
            say(vec![Seg::Key("matching"), Seg::Key("threshold")], "a cosine threshold must lie in (-1, 1)".into());
        }
        if m.queue == 0 {
            say(vec![Seg::Key("matching"), Seg::Key("queue")], "must be at least 1".into());
        }

        let f = &self.faces;
        let face = |key: &'static str| vec![Seg::Key("faces"), Seg::Key(key)];
        if !(f.min_detection_score.is_finite() && f.min_detection_score > 0.0 && f.min_detection_score < 1.0) {
            say(face("min_detection_score"), "must lie in (0, 1)".into());
        }
        if !(32..=4096).contains(&f.detect_max_side) {
            say(face("detect_max_side"), "must be between 32 and 4096 pixels".into());
        }
        if f.min_liveness.is_some_and(|l| !(l.is_finite() && (0.0..1.0).contains(&l))) {
            say(face("min_liveness"), "must lie in [0, 1)".into());
        }
        if f.approach_window_secs == 0 || f.approach_window_secs > 300 {
            say(face("approach_window_secs"), "must be between 1 and 300 seconds".into());
        }
        if !(f.same_person_cosine.is_finite() && f.same_person_cosine > 0.0 && f.same_person_cosine < 1.0) {
            say(face("same_person_cosine"), "must lie in (0, 1)".into());
        }

        let spool = &self.spool;
        if !(MIN_SPOOL_BYTES..=MAX_SPOOL_BYTES).contains(&spool.max_bytes_per_venue) {
            say(
                vec![Seg::Key("spool"), Seg::Key("max_bytes_per_venue")],
                format!("must be between {MIN_SPOOL_BYTES} (1 MiB) and {MAX_SPOOL_BYTES} (1 GiB)"),
            );
        }
        if spool.ack_timeout_secs == 0 || spool.ack_timeout_secs > 600 {
            say(vec![Seg::Key("spool"), Seg::Key("ack_timeout_secs")], "must be between 1 and 600".into());
        }

        let a = &self.analytics;
        let aat = |key| vec![Seg::Key("analytics"), Seg::Key(key)];
        if !(a.alert_high.is_finite() && a.alert_high > 0.0 && a.alert_high <= 2.0) {
            say(aat("alert_high"), "must lie in (0, 2]".into());
        } else if !(a.alert_low.is_finite() && a.alert_low > 0.0 && a.alert_low < a.alert_high) {
            say(aat("alert_low"), "must lie in (0, alert_high)".into());
        }
        if a.alert_every_secs == 0 || a.alert_every_secs > 3600 {
            say(aat("alert_every_secs"), "must be between 1 and 3600".into());
        }
        if let Some(url) = &a.alert_webhook {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                say(aat("alert_webhook"), "must be an http:// or https:// URL without spaces".into());
            }
        }
        if a.forecast_buckets == 0 || a.forecast_buckets > 48 {
            say(aat("forecast_buckets"), "must be between 1 and 48".into());
        }

        let mut purpose_ids = HashSet::new();
        for (i, purpose) in self.purposes.iter().enumerate() {
            let at = |key| vec![Seg::Key("purposes"), Seg::Index(i), Seg::Key(key)];
            if !purpose_ids.insert(&purpose.id) {
                say(at("id"), format!("purpose `{}` is defined twice", purpose.id));
            }
            if purpose.biometric && purpose.legal_basis != LegalBasis::ExplicitConsent {
                say(at("legal_basis"), "biometric processing needs explicit consent (art9-2-a)".into());
            }
        }
        if self.purposes.iter().any(|p| p.biometric)
            && !self.purposes.iter().any(|p| !p.biometric && p.id.as_str().contains("access"))
        {
            say(
                vec![Seg::Key("purposes")],
                "biometric access needs a non-biometric access alternative purpose (e.g. `ticket-access`)".into(),
            );
        }

        let reg = |key| vec![Seg::Key("register"), Seg::Key(key)];
        if self.register.controller.trim().is_empty() {
            say(reg("controller"), "name the controller".into());
        }
        if !is_iso_date(&self.register.dpia_date) {
            say(reg("dpia_date"), format!("{:?} is not a YYYY-MM-DD date", self.register.dpia_date));
        }
        let version = &self.register.dpia_version;
        if version.trim().is_empty() || version.len() > 32 || version.chars().any(char::is_control) {
            say(reg("dpia_version"), "give the DPIA a version of 1 to 32 characters".into());
        }
        for (i, activity) in self.register.activities.iter().enumerate() {
            if !purpose_ids.contains(&activity.purpose) {
                say(
                    vec![Seg::Key("register"), Seg::Key("activities"), Seg::Index(i), Seg::Key("purpose")],
                    format!("unknown purpose `{}`", activity.purpose),
                );
            }
        }
        for purpose in &self.purposes {
            if !self.register.activities.iter().any(|a| a.purpose == purpose.id) {
                say(reg("activities"), format!("purpose `{}` has no processing activity in the register", purpose.id));
            }
        }

        if self.venues.is_empty() {
            say(vec![Seg::Key("venues")], "at least one venue is needed".into());
        }
        let mut venue_ids = HashSet::new();
        for (v, venue) in self.venues.iter().enumerate() {
            let base = || vec![Seg::Key("venues"), Seg::Index(v)];
            let at = |extra: &[Seg]| {
                let mut path = base();
                path.extend_from_slice(extra);
                path
            };
            if !venue_ids.insert(&venue.id) {
                say(at(&[Seg::Key("id")]), format!("venue `{}` is defined twice", venue.id));
            }
            let zones = unique_ids(venue.zones.iter().map(|z| &z.id), "zones", &at, &mut say);
            let lines = unique_ids(venue.lines.iter().map(|l| &l.id), "lines", &at, &mut say);
            unique_ids(venue.gates.iter().map(|g| &g.id), "gates", &at, &mut say);
            unique_ids(venue.cameras.iter().map(|c| &c.id), "cameras", &at, &mut say);

            for (i, zone) in venue.zones.iter().enumerate() {
                let zat = |key| at(&[Seg::Key("zones"), Seg::Index(i), Seg::Key(key)]);
                if zone.capacity == 0 {
                    say(zat("capacity"), "must be at least 1".into());
                }
                if let Some(problem) = classes_problem(&zone.classes) {
                    say(zat("classes"), problem);
                }
                if zone.polygon.len() < 3 {
                    say(zat("polygon"), "needs at least 3 points".into());
                } else if zone.polygon.iter().flatten().any(|x| !x.is_finite()) {
                    say(zat("polygon"), "coordinates must be finite".into());
                } else if polygon_area(&zone.polygon).abs() < 1e-9 {
                    say(zat("polygon"), "has zero area".into());
                }
            }
            for (i, line) in venue.lines.iter().enumerate() {
                let lat = |key| at(&[Seg::Key("lines"), Seg::Index(i), Seg::Key(key)]);
                if let Some(problem) = classes_problem(&line.classes) {
                    say(lat("classes"), problem);
                }
                if line.from.iter().chain(&line.to).any(|x| !x.is_finite()) {
                    say(lat("from"), "coordinates must be finite".into());
                } else if line.from == line.to {
                    say(lat("to"), "a line needs two distinct end points".into());
                }
            }
            for (i, gate) in venue.gates.iter().enumerate() {
                if !zones.contains(&gate.zone) {
                    say(
                        at(&[Seg::Key("gates"), Seg::Index(i), Seg::Key("zone")]),
                        format!("unknown zone `{}`", gate.zone),
                    );
                }
            }
            for (i, camera) in venue.cameras.iter().enumerate() {
                for line in &camera.lines {
                    if !lines.contains(line) {
                        say(
                            at(&[Seg::Key("cameras"), Seg::Index(i), Seg::Key("lines")]),
                            format!("unknown line `{line}`"),
                        );
                    }
                }
                for zone in &camera.zones {
                    if !zones.contains(zone) {
                        say(
                            at(&[Seg::Key("cameras"), Seg::Index(i), Seg::Key("zones")]),
                            format!("unknown zone `{zone}`"),
                        );
                    }
                }
            }
            let r = &venue.retention;
            let rat = |key| at(&[Seg::Key("retention"), Seg::Key(key)]);
            if r.evidence_image_hours > 6 {
                say(rat("evidence_image_hours"), "blurred evidence images may be kept at most 6 hours".into());
            }
            if r.denial_notice_hours == 0 || r.denial_notice_hours > 24 * 7 {
                say(rat("denial_notice_hours"), "must be between 1 and 168 hours".into());
            }
            if r.counts_days == 0 {
                say(rat("counts_days"), "must be at least 1 day".into());
            }
            if r.audit_days < 365 {
                say(rat("audit_days"), "the audit log must be kept at least 365 days".into());
            }
        }
        out
    }
}

fn is_iso_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let number = |s: &str, len: usize, range: std::ops::RangeInclusive<u32>| {
        s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) && s.parse().is_ok_and(|n: u32| range.contains(&n))
    };
    parts.len() == 3 && number(parts[0], 4, 1970..=9999) && number(parts[1], 2, 1..=12) && number(parts[2], 2, 1..=31)
}

fn unique_ids<'a>(
    ids: impl Iterator<Item = &'a Id>,
    key: &'static str,
    at: &dyn Fn(&[Seg]) -> Vec<Seg>,
    say: &mut dyn FnMut(Vec<Seg>, String),
) -> HashSet<&'a Id> {
    let mut seen = HashSet::new();
    for (i, id) in ids.enumerate() {
        if !seen.insert(id) {
            say(at(&[Seg::Key(key), Seg::Index(i), Seg::Key("id")]), format!("`{id}` is defined twice in {key}"));
        }
    }
    seen
}

/// Signed area by the shoelace formula.
/// What is wrong with a list of detector classes, if anything.
fn classes_problem(classes: &[String]) -> Option<String> {
    if classes.is_empty() {
        return Some("needs at least one class (e.g. \"person\")".into());
    }
    classes
        .iter()
        .find(|c| {
            c.is_empty()
                || c.len() > 64
                || !c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        })
        .map(|c| format!("class {c:?} must be 1-64 characters of a-z, 0-9, '-' or '_'"))
}

fn polygon_area(points: &[Point]) -> f64 {
    let n = points.len();
    (0..n)
        .map(|i| {
            let [x0, y0] = points[i];
            let [x1, y1] = points[(i + 1) % n];
            x0 * y1 - x1 * y0
        })
        .sum::<f64>()
        / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_default_is_consistent() {
        assert!(Config::default().problems().is_empty());
        assert_eq!(Config::from_toml(""), Ok(Config::default()));
    }

    #[test]
    fn a_written_default_round_trips() {
        let written = toml::to_string(&Config::default()).expect("serialises");
        assert_eq!(Config::from_toml(&written), Ok(Config::default()));
    }

    #[test]
    fn every_error_is_reported_with_its_location() {
        let src = r#"
[privacy]
epsilon_per_day = -1.0

[bogus]
x = 1

[[venues]]
id = "v1"
name = "V"
[[venues.zones]]
id = "z"
name = "Z"
capacity = 0
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]
[[venues.cameras]]
id = "c"
lines = ["nowhere"]
"#;
        let errors = Config::from_toml(src).expect_err("invalid").0;
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        // Unknown section is reported first (type pass); semantic errors need a clean type pass.
        assert_eq!(rendered.len(), 1, "{rendered:#?}");
        assert!(
            rendered[0].starts_with("6:1: unknown section `bogus`") || rendered[0].starts_with("5:"),
            "{rendered:#?}"
        );

        let src = src.replace("[bogus]\nx = 1\n", "");
        let errors = Config::from_toml(&src).expect_err("invalid").0;
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            vec![
                "3:19: privacy.epsilon_per_day: must be in (0, 10]".to_owned(),
                "12:12: venues[0].zones[0].capacity: must be at least 1".to_owned(),
                "16:9: venues[0].cameras[0].lines: unknown line `nowhere`".to_owned(),
            ]
        );
    }

    #[test]
    fn type_errors_in_several_elements_are_all_reported() {
        let src = r#"
[[venues]]
id = "Bad Id"
name = "V"

[[venues]]
id = "ok"
name = 7
"#;
        let errors = Config::from_toml(src).expect_err("invalid").0;
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!((errors[0].line, errors[1].line), (3, 8), "{errors:#?}");
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        let errors = Config::from_toml("[privacy\nepsilon_per_day = 1").expect_err("invalid").0;
        assert_eq!(errors[0].line, 1, "{errors:#?}");
    }

    #[test]
    fn analytics_alert_thresholds_are_checked() {
        let errors = Config::from_toml(
            "[analytics]\nalert_high = 0.5\nalert_low = 0.7\nalert_every_secs = 0\nalert_webhook = \"ftp://x\"\n",
        )
        .expect_err("invalid")
        .0;
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            vec![
                "3:13: analytics.alert_low: must lie in (0, alert_high)".to_owned(),
                "4:20: analytics.alert_every_secs: must be between 1 and 3600".to_owned(),
                "5:17: analytics.alert_webhook: must be an http:// or https:// URL without spaces".to_owned(),
            ]
        );
        let config = Config::from_toml("[analytics]\nalert_webhook = \"http://127.0.0.1:9/hook\"\n").expect("valid");
        assert_eq!(config.analytics.alert_webhook.as_deref(), Some("http://127.0.0.1:9/hook"));
    }

    #[test]
    fn the_register_is_checked_against_the_purposes() {
        let src = "[register]\ndpia_date = \"2026-13-01\"\n\n[[register.activities]]\npurpose = \"nope\"\n\
                   name = \"x\"\ndata_subjects = []\ndata_categories = []\nrecipients = []\n";
        let errors = Config::from_toml(src).expect_err("invalid").0;
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            rendered[0].starts_with("2:13: register.dpia_date: \"2026-13-01\" is not a YYYY-MM-DD date"),
            "{rendered:#?}"
        );
        assert!(
            rendered.iter().any(|e| e.contains("register.activities[0].purpose: unknown purpose `nope`")),
            "{rendered:#?}"
        );
        let orphans = rendered.iter().filter(|e| e.contains("has no processing activity")).count();
        assert_eq!(orphans, 3, "{rendered:#?}");
        let config = Config::from_toml("[register]\nexpected_visitors_per_day = 300\n").expect("valid");
        assert_eq!(config.register.expected_visitors_per_day, 300);
        assert_eq!(config.register.activities, Register::default().activities);
    }

    #[test]
    fn the_face_settings_are_checked() {
        let src =
            "[faces]\nmin_detection_score = 1.5\nmin_liveness = -0.2\napproach_window_secs = 0\nevidence = true\n";
        let rendered: Vec<String> =
            Config::from_toml(src).expect_err("invalid").0.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            vec![
                "2:23: faces.min_detection_score: must lie in (0, 1)".to_owned(),
                "3:16: faces.min_liveness: must lie in [0, 1)".to_owned(),
                "4:24: faces.approach_window_secs: must be between 1 and 300 seconds".to_owned(),
            ]
        );
        let config = Config::from_toml("[faces]\nmin_liveness = 0.6\nevidence = true\n").expect("valid");
        assert_eq!(config.faces, Faces { min_liveness: Some(0.6), evidence: true, ..Faces::default() });
    }

    #[test]
    fn the_spool_bound_and_ack_timeout_are_checked() {
        let errors =
            Config::from_toml("[spool]\nmax_bytes_per_venue = 1000\nack_timeout_secs = 0\n").expect_err("invalid").0;
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            vec![
                "2:23: spool.max_bytes_per_venue: must be between 1048576 (1 MiB) and 1073741824 (1 GiB)".to_owned(),
                "3:20: spool.ack_timeout_secs: must be between 1 and 600".to_owned(),
            ]
        );
        let config = Config::from_toml("[spool]\nmax_bytes_per_venue = 2097152\n").expect("valid");
        assert_eq!(config.spool, Spool { max_bytes_per_venue: 2 * 1024 * 1024, ack_timeout_secs: 10 });
    }

    #[test]
    fn biometric_purposes_need_explicit_consent() {
        let src = r#"
[[purposes]]
id = "face-access"
description = "faces"
legal_basis = "art6-1-f"
biometric = true

[[purposes]]
id = "ticket-access"
description = "tickets"
legal_basis = "art6-1-b"
"#;
        let errors = Config::from_toml(src).expect_err("invalid").0;
        assert_eq!(errors[0].path, "purposes[0].legal_basis", "{errors:#?}");
        assert!(errors[0].message.contains("explicit consent"));
    }
}
