//! The MQTT topic layout, version 1. `docs/protocol.md` documents it; this module is the only
//! place topic strings are built.
//!
//! ```text
//! passage/v1/{venue}/counts/{camera}          noised CountRecord, QoS 1        camera -> analytics
//! passage/v1/{venue}/counts-ack/{camera}      CountAck (ids committed), QoS 1  analytics -> camera
//! passage/v1/{venue}/match                    MatchRequest (MQTT 5 request:    gate -> matcher
//!                                             response topic + correlation data)
//! passage/v1/_replies/{client}               MatchResponse / EnrolResponse    matcher -> requester
//! passage/v1/{venue}/enrol                    EnrolRequest                     key holder -> matcher
//! passage/v1/{venue}/erase                    EraseRequest (request/response)  policy -> matcher
//! passage/v1/{venue}/index                    request; reply GalleryIndex      key holder -> matcher
//! passage/v1/{venue}/alerts/{zone}           CapacityAlert, QoS 1             analytics -> gates, anyone
//! ```
//!
//! Services subscribe through MQTT 5 shared subscriptions (`$share/{group}/...`) so that
//! several workers can split a topic on a clustered broker.

use crate::Id;

/// First topic level of everything Passage publishes.
pub const ROOT: &str = "passage/v1";

/// Where a camera publishes its noised counts.
pub fn counts(venue: &Id, camera: &Id) -> String {
    format!("{ROOT}/{venue}/counts/{camera}")
}

/// Filter matching the counts of every camera of every venue.
pub const COUNTS_FILTER: &str = "passage/v1/+/counts/+";

/// Where analytics acknowledges the count records of a camera it has committed.
pub fn counts_ack(venue: &Id, camera: &Id) -> String {
    format!("{ROOT}/{venue}/counts-ack/{camera}")
}

/// Filter matching the acknowledgements of every camera of `venue` (an edge agent's spool).
pub fn counts_ack_filter(venue: &Id) -> String {
    format!("{ROOT}/{venue}/counts-ack/+")
}

/// Where gates send match requests for a venue.
pub fn match_requests(venue: &Id) -> String {
    format!("{ROOT}/{venue}/match")
}

/// Filter matching match requests of every venue.
pub const MATCH_FILTER: &str = "passage/v1/+/match";

/// The reply topic of one MQTT client: requesters name it as their MQTT 5 response topic.
/// `client` is the MQTT client id.
pub fn reply_to(client: &str) -> String {
    format!("{ROOT}/_replies/{client}")
}

/// Where encrypted templates are enrolled.
pub fn enrol(venue: &Id) -> String {
    format!("{ROOT}/{venue}/enrol")
}

/// Filter matching enrolments of every venue.
pub const ENROL_FILTER: &str = "passage/v1/+/enrol";

/// Where erasure requests go.
pub fn erase(venue: &Id) -> String {
    format!("{ROOT}/{venue}/erase")
}

/// Filter matching erasures of every venue.
pub const ERASE_FILTER: &str = "passage/v1/+/erase";

/// Where the key holder publishes its decision-mode evaluation key (MQTT 5 request/response).
pub fn decision_key(venue: &Id) -> String {
    format!("{ROOT}/{venue}/decision-key")
}

/// Filter matching decision-key uploads of every venue.
pub const DECISION_KEY_FILTER: &str = "passage/v1/+/decision-key";

/// Where the key holder asks for the gallery index (MQTT 5 request/response).
pub fn index(venue: &Id) -> String {
    format!("{ROOT}/{venue}/index")
}

/// Filter matching index requests of every venue.
pub const INDEX_FILTER: &str = "passage/v1/+/index";

/// Where a zone's capacity alerts are published.
pub fn alert(venue: &Id, zone: &Id) -> String {
    format!("{ROOT}/{venue}/alerts/{zone}")
}

/// Filter matching the capacity alerts of every zone of `venue`.
pub fn alerts_filter(venue: &Id) -> String {
    format!("{ROOT}/{venue}/alerts/+")
}

/// Wraps a filter in an MQTT 5 shared subscription for `group`.
pub fn shared(group: &str, filter: &str) -> String {
    format!("$share/{group}/{filter}")
}

/// The venue level of a Passage topic (`passage/v1/{venue}/...`), if the topic has one.
pub fn venue_of(topic: &str) -> Option<Id> {
    let rest = topic.strip_prefix(ROOT)?.strip_prefix('/')?;
    let venue = rest.split('/').next()?;
    Id::new(venue).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_documented_layout() {
        let venue = Id::new("arena").expect("valid");
        let cam = Id::new("cam-1").expect("valid");
        assert_eq!(counts(&venue, &cam), "passage/v1/arena/counts/cam-1");
        assert_eq!(counts_ack(&venue, &cam), "passage/v1/arena/counts-ack/cam-1");
        assert_eq!(counts_ack_filter(&venue), "passage/v1/arena/counts-ack/+");
        assert_eq!(shared("ingest", COUNTS_FILTER), "$share/ingest/passage/v1/+/counts/+");
        assert_eq!(venue_of("passage/v1/arena/match"), Some(venue));
        assert_eq!(venue_of("other/v1/arena/match"), None);
        assert_eq!(venue_of("passage/v1/Bad/match"), None);
    }
}
