//! Device identity and the topic rules of the broker: which principal may publish or
//! subscribe where.
//!
//! A principal is named by the certificate the device CA issued it (`passage pki issue`);
//! the broker gateway finds it by the certificate's fingerprint and checks every CONNECT,
//! PUBLISH (and will message) and SUBSCRIBE against [`Principal::allows`]. The same rules are
//! written as a Mosquitto ACL file ([`mosquitto_acl`]) for deployments on Mosquitto.
//!
//! | principal | publishes | subscribes |
//! |---|---|---|
//! | `camera:{venue}/{camera}` | its own counts | its own counts acknowledgements |
//! | `gate:{venue}/{gate}` | match, enrol, erase, index and decision-key requests of its venue; denial notices of its venue | its venue's alerts |
//! | `edge:{venue}` | both of the above for every camera and gate of the venue | counts acknowledgements and alerts of its venue |
//! | `service:matcher` | replies | requests of every venue |
//! | `service:analytics` | replies, counts acknowledgements, alerts | counts of every venue |
//!
//! Every principal may also publish and subscribe on its own reply topic
//! (`passage/v1/_replies/{client id}`), and its MQTT client id must be its client prefix
//! ([`Principal::client_prefix`]), alone or followed by `-` and a suffix, so that no device
//! can take over another's session or read its replies.

use std::fmt;

use passage_wire::{topics, Id};
use thiserror::Error;

/// Why a principal name is not valid.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceError {
    /// Not `kind:venue/id`, `edge:venue` or `service:name`.
    #[error("`{0}` is not a principal: expected camera:VENUE/CAMERA, gate:VENUE/GATE, edge:VENUE, service:matcher or service:analytics")]
    BadName(String),
    /// An identifier inside the name is invalid.
    #[error("`{name}`: {error}")]
    BadId {
        /// The whole name.
        name: String,
        /// What is wrong with the identifier.
        error: passage_wire::IdError,
    },
}

/// A device or service that connects to the broker with a client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A counting camera: publishes its own noised counts.
    Camera {
        /// Its venue.
        venue: Id,
        /// The camera.
        camera: Id,
    },
    /// A gate (the key holder): asks the matcher for its venue.
    Gate {
        /// Its venue.
        venue: Id,
        /// The gate.
        gate: Id,
    },
    /// An edge agent hosting every camera and gate of one venue.
    Edge {
        /// Its venue.
        venue: Id,
    },
    /// The matcher service.
    Matcher,
    /// The analytics service.
    Analytics,
}

/// What a client asks the broker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Connect with this client id.
    Connect {
        /// The MQTT client id.
        client_id: &'a str,
    },
    /// Publish on this topic (also the topic of a will message).
    Publish {
        /// The topic.
        topic: &'a str,
    },
    /// Subscribe to this filter (`$share/{group}/` prefixes allowed).
    Subscribe {
        /// The filter.
        filter: &'a str,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Write,
    Read,
}

/// Request topics a key holder sends to the matcher, by their last level.
const REQUESTS: [&str; 5] = ["match", "enrol", "erase", "index", "decision-key"];

fn parse_id(name: &str, s: &str) -> Result<Id, DeviceError> {
    Id::new(s).map_err(|error| DeviceError::BadId { name: name.to_owned(), error })
}

impl Principal {
    /// Parses `camera:arena/cam-1`, `gate:arena/east-1`, `edge:arena`, `service:matcher` or
    /// `service:analytics`.
    pub fn parse(name: &str) -> Result<Principal, DeviceError> {
        let bad = || DeviceError::BadName(name.chars().take(80).collect());
        let (kind, rest) = name.split_once(':').ok_or_else(bad)?;
        match kind {
            "camera" | "gate" => {
                let (venue, id) = rest.split_once('/').ok_or_else(bad)?;
                let (venue, id) = (parse_id(name, venue)?, parse_id(name, id)?);
                Ok(if kind == "camera" {
                    Principal::Camera { venue, camera: id }
                } else {
                    Principal::Gate { venue, gate: id }
                })
            }
            "edge" => Ok(Principal::Edge { venue: parse_id(name, rest)? }),
            "service" => match rest {
                "matcher" => Ok(Principal::Matcher),
                "analytics" => Ok(Principal::Analytics),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }

    /// The venue the principal belongs to (services belong to none).
    pub fn venue(&self) -> Option<&Id> {
        match self {
            Principal::Camera { venue, .. } | Principal::Gate { venue, .. } | Principal::Edge { venue } => Some(venue),
            Principal::Matcher | Principal::Analytics => None,
        }
    }

    /// What its MQTT client ids start with: `camera-arena-cam-1`, `edge-arena`, `matcher`.
    pub fn client_prefix(&self) -> String {
        match self {
            Principal::Camera { venue, camera } => format!("camera-{venue}-{camera}"),
            Principal::Gate { venue, gate } => format!("gate-{venue}-{gate}"),
            Principal::Edge { venue } => format!("edge-{venue}"),
            Principal::Matcher => "matcher".into(),
            Principal::Analytics => "analytics".into(),
        }
    }

    /// Whether `client_id` belongs to this principal: its prefix alone or followed by `-` and
    /// a suffix of letters, digits, `-` and `_`.
    pub fn owns_client_id(&self, client_id: &str) -> bool {
        let prefix = self.client_prefix();
        match client_id.strip_prefix(&prefix) {
            Some("") => true,
            Some(rest) => {
                rest.len() <= 64
                    && rest.starts_with('-')
                    && rest[1..].chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            }
            None => false,
        }
    }

    /// The topic patterns this principal may write (publish) or read (subscribe), with
    /// `{client}` standing for its client id; `+` matches one level.
    fn rules(&self) -> Vec<(Access, String)> {
        let root = topics::ROOT;
        let mut rules = vec![
            (Access::Write, format!("{root}/_replies/{{client}}")),
            (Access::Read, format!("{root}/_replies/{{client}}")),
        ];
        let requests = |venue: &str, rules: &mut Vec<(Access, String)>| {
            for request in REQUESTS {
                rules.push((Access::Write, format!("{root}/{venue}/{request}")));
            }
            rules.push((Access::Read, format!("{root}/{venue}/alerts/+")));
            // Denial notices to visitors' own topics (bound to their access keys).
            rules.push((Access::Write, format!("{root}/{venue}/notice/+")));
        };
        match self {
            Principal::Camera { venue, camera } => {
                rules.push((Access::Write, format!("{root}/{venue}/counts/{camera}")));
                rules.push((Access::Read, format!("{root}/{venue}/counts-ack/{camera}")));
            }
            Principal::Gate { venue, .. } => requests(venue.as_str(), &mut rules),
            Principal::Edge { venue } => {
                rules.push((Access::Write, format!("{root}/{venue}/counts/+")));
                rules.push((Access::Read, format!("{root}/{venue}/counts-ack/+")));
                requests(venue.as_str(), &mut rules);
            }
            Principal::Matcher => {
                rules.push((Access::Write, format!("{root}/_replies/+")));
                for request in REQUESTS {
                    rules.push((Access::Read, format!("{root}/+/{request}")));
                }
            }
            Principal::Analytics => {
                rules.push((Access::Write, format!("{root}/_replies/+")));
                rules.push((Access::Write, format!("{root}/+/counts-ack/+")));
                rules.push((Access::Write, format!("{root}/+/alerts/+")));
                rules.push((Access::Read, format!("{root}/+/counts/+")));
            }
        }
        rules
    }

    /// Whether this principal, connected as `client_id`, may do `action`.
    pub fn allows(&self, client_id: &str, action: Action<'_>) -> bool {
        let (access, requested) = match action {
            Action::Connect { client_id: asked } => return self.owns_client_id(asked),
            Action::Publish { topic } => {
                if topic.is_empty() || topic.contains(['+', '#']) {
                    return false;
                }
                (Access::Write, topic)
            }
            Action::Subscribe { filter } => (Access::Read, unshare(filter)),
        };
        if !self.owns_client_id(client_id) {
            return false;
        }
        self.rules()
            .iter()
            .filter(|(a, _)| *a == access)
            .any(|(_, pattern)| covers(&pattern.replace("{client}", client_id), requested))
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Camera { venue, camera } => write!(f, "camera:{venue}/{camera}"),
            Principal::Gate { venue, gate } => write!(f, "gate:{venue}/{gate}"),
            Principal::Edge { venue } => write!(f, "edge:{venue}"),
            Principal::Matcher => f.write_str("service:matcher"),
            Principal::Analytics => f.write_str("service:analytics"),
        }
    }
}

/// The filter inside a shared subscription (`$share/{group}/{filter}`); other filters as
/// they are. A malformed `$share` (no group or no filter) stays as it is and matches nothing.
fn unshare(filter: &str) -> &str {
    match filter.strip_prefix("$share/").and_then(|rest| rest.split_once('/')) {
        Some((group, inner)) if !group.is_empty() && !group.contains(['+', '#']) && !inner.is_empty() => inner,
        _ => filter,
    }
}

/// Whether `pattern` covers every topic `requested` (a topic or a filter) can match: level by
/// level, `+` in the pattern covers any one level (a `+` of the filter included), `#` covers
/// the rest; a `#` or `+` in the request is covered only by a wildcard of the pattern.
fn covers(pattern: &str, requested: &str) -> bool {
    let mut want = requested.split('/');
    for level in pattern.split('/') {
        if level == "#" {
            return true;
        }
        match want.next() {
            None => return false,
            Some(asked) if level == "+" => {
                if asked == "#" {
                    return false;
                }
            }
            Some(asked) => {
                if asked != level || asked.contains(['+', '#']) {
                    return false;
                }
            }
        }
    }
    want.next().is_none()
}

/// The rules of `principals` as a Mosquitto ACL file (`acl_file`), for a Mosquitto broker
/// configured with `require_certificate true` and `use_identity_as_username true` (the
/// certificate's common name, the principal's name, becomes the user name). Mosquitto cannot
/// bind client ids to certificates, so its reply topics are per client id (`%c`).
pub fn mosquitto_acl(principals: &[Principal]) -> String {
    let mut out = String::from("# Generated by `passage pki acl`; do not edit. One block per device certificate.\n");
    out.push_str("# Every client may use its own reply topic.\n");
    out.push_str(&format!("pattern readwrite {}/_replies/%c\n", topics::ROOT));
    for principal in principals {
        out.push_str(&format!("\nuser {principal}\n"));
        for (access, pattern) in principal.rules() {
            if pattern.contains("{client}") {
                continue;
            }
            let verb = match access {
                Access::Write => "write",
                Access::Read => "read",
            };
            out.push_str(&format!("topic {verb} {pattern}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> Principal {
        Principal::parse(name).expect("valid principal")
    }

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for name in ["camera:arena/cam-1", "gate:arena/east-1", "edge:arena", "service:matcher", "service:analytics"] {
            assert_eq!(p(name).to_string(), name);
        }
        for bad in
            ["", "camera:arena", "camera:/c", "gate:Arena/x", "service:root", "robot:a/b", "edge:a/b", "camera:a/b/c"]
        {
            assert!(Principal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_camera_publishes_only_its_own_counts() {
        let cam = p("camera:arena/cam-1");
        let id = "camera-arena-cam-1-4711";
        assert!(cam.allows(id, Action::Publish { topic: "passage/v1/arena/counts/cam-1" }));
        assert!(!cam.allows(id, Action::Publish { topic: "passage/v1/arena/counts/cam-2" }));
        assert!(!cam.allows(id, Action::Publish { topic: "passage/v1/mall/counts/cam-1" }));
        assert!(!cam.allows(id, Action::Publish { topic: "passage/v1/arena/match" }));
        assert!(!cam.allows(id, Action::Publish { topic: "passage/v1/arena/counts/+" }));
        assert!(cam.allows(id, Action::Subscribe { filter: "passage/v1/arena/counts-ack/cam-1" }));
        assert!(!cam.allows(id, Action::Subscribe { filter: "passage/v1/arena/counts-ack/+" }));
        assert!(!cam.allows(id, Action::Subscribe { filter: "passage/v1/#" }));
        assert!(!cam.allows(id, Action::Subscribe { filter: "#" }));
    }

    #[test]
    fn client_ids_and_reply_topics_are_bound_to_the_certificate() {
        let gate = p("gate:arena/east-1");
        assert!(gate.allows("x", Action::Connect { client_id: "gate-arena-east-1" }));
        assert!(gate.allows("x", Action::Connect { client_id: "gate-arena-east-1-77" }));
        assert!(!gate.allows("x", Action::Connect { client_id: "gate-arena-east-10" }));
        assert!(!gate.allows("x", Action::Connect { client_id: "matcher" }));
        assert!(!gate.allows("x", Action::Connect { client_id: "gate-arena-east-1-a/b" }));
        let id = "gate-arena-east-1-77";
        assert!(gate.allows(id, Action::Subscribe { filter: "passage/v1/_replies/gate-arena-east-1-77" }));
        assert!(gate.allows(id, Action::Publish { topic: "passage/v1/_replies/gate-arena-east-1-77" }));
        assert!(!gate.allows(id, Action::Subscribe { filter: "passage/v1/_replies/matcher-1" }));
        assert!(!gate.allows(id, Action::Subscribe { filter: "passage/v1/_replies/+" }));
        assert!(!gate.allows(id, Action::Publish { topic: "passage/v1/_replies/edge-arena" }));
        // A client id that is not its own grants nothing.
        assert!(!gate.allows("edge-arena", Action::Publish { topic: "passage/v1/arena/match" }));
    }

    #[test]
    fn gates_and_edges_stay_in_their_venue() {
        let gate = p("gate:arena/east-1");
        let id = "gate-arena-east-1";
        for request in REQUESTS {
            assert!(gate.allows(id, Action::Publish { topic: &format!("passage/v1/arena/{request}") }));
            assert!(!gate.allows(id, Action::Publish { topic: &format!("passage/v1/mall/{request}") }));
        }
        assert!(!gate.allows(id, Action::Publish { topic: "passage/v1/arena/counts/cam-1" }));
        let edge = p("edge:arena");
        assert!(edge.allows("edge-arena-1", Action::Publish { topic: "passage/v1/arena/counts/cam-9" }));
        assert!(edge.allows("edge-arena-1", Action::Publish { topic: "passage/v1/arena/match" }));
        assert!(edge.allows("edge-arena-1", Action::Publish { topic: "passage/v1/arena/notice/0123abcd" }));
        assert!(!edge.allows("edge-arena-1", Action::Publish { topic: "passage/v1/mall/notice/0123abcd" }));
        assert!(!edge.allows("edge-arena-1", Action::Subscribe { filter: "passage/v1/arena/notice/+" }));
        assert!(!edge.allows("edge-arena-1", Action::Publish { topic: "passage/v1/mall/counts/cam-1" }));
        assert!(edge.allows("edge-arena-1", Action::Subscribe { filter: "passage/v1/arena/counts-ack/+" }));
        assert!(!edge.allows("edge-arena-1", Action::Subscribe { filter: "passage/v1/+/counts-ack/+" }));
    }

    #[test]
    fn services_read_every_venue_through_shared_subscriptions() {
        let matcher = p("service:matcher");
        assert!(matcher.allows("matcher-1", Action::Subscribe { filter: "$share/matcher-match/passage/v1/+/match" }));
        assert!(matcher.allows("matcher-1", Action::Subscribe { filter: "passage/v1/arena/enrol" }));
        assert!(!matcher.allows("matcher-1", Action::Subscribe { filter: "$share/g/passage/v1/+/counts/+" }));
        assert!(!matcher.allows("matcher-1", Action::Subscribe { filter: "$share//passage/v1/+/match" }));
        assert!(matcher.allows("matcher-1", Action::Publish { topic: "passage/v1/_replies/gate-arena-east-1" }));
        assert!(!matcher.allows("matcher-1", Action::Publish { topic: "passage/v1/arena/counts/cam-1" }));
        let analytics = p("service:analytics");
        assert!(analytics.allows("analytics-9", Action::Subscribe { filter: "$share/analytics/passage/v1/+/counts/+" }));
        assert!(analytics.allows("analytics-9", Action::Publish { topic: "passage/v1/arena/counts-ack/cam-1" }));
        assert!(analytics.allows("analytics-9", Action::Publish { topic: "passage/v1/arena/alerts/hall" }));
        assert!(!analytics.allows("analytics-9", Action::Subscribe { filter: "passage/v1/+/match" }));
    }

    #[test]
    fn the_mosquitto_acl_lists_each_principal() {
        let acl = mosquitto_acl(&[p("camera:arena/cam-1"), p("service:matcher")]);
        assert!(acl.contains("pattern readwrite passage/v1/_replies/%c\n"));
        assert!(acl.contains("user camera:arena/cam-1\ntopic write passage/v1/arena/counts/cam-1\ntopic read passage/v1/arena/counts-ack/cam-1\n"));
        assert!(
            acl.contains("user service:matcher\ntopic write passage/v1/_replies/+\ntopic read passage/v1/+/match\n")
        );
        assert!(!acl.contains("{client}"));
    }

    proptest::proptest! {
        #[test]
        fn covering_never_panics_and_a_pattern_covers_itself(pattern in "[a-z+#/]{0,24}", asked in "[a-z+#/]{0,24}") {
            let _ = covers(&pattern, &asked);
            if !pattern.contains(['+', '#']) {
                proptest::prop_assert!(covers(&pattern, &pattern));
            }
        }
    }
}
