//! Denial notices: the precise reason a gate refused a recognised visitor, delivered only to
//! that visitor's own device, never shown on the kiosk.
//!
//! Three ways out, all bound to the visitor's own credentials:
//! * the portal's notice stream (`GET /api/v1/me/notices`, the visitor's access key), fed from
//!   the in-RAM box here;
//! * an MQTT topic bound to the visitor's access key:
//!   `passage/v1/{venue}/notice/{topic}`, where `topic` is [`topic_for_token_hash`] of the
//!   SHA-256 of the key (the app computes the same from its key; a new key is a new topic);
//! * a webhook, when the visitor's registered contact is an `https://` URL (plain `http://`
//!   only to a loopback address, for tests and on-premises relays).
//!
//! Notices live in RAM only, for at most the venue's `denial_notice_hours`, a bounded number
//! per visitor; erasure forgets them with the visitor.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use passage_policy::access::{Lang, Reason};
use passage_wire::{topics, Id};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use crate::{lock, now_secs};

/// Most notices kept per visitor.
pub const PER_VISITOR: usize = 20;

/// One denial notice.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Notice {
    /// Venue.
    pub venue: String,
    /// Gate.
    pub gate: String,
    /// Reason code ([`Reason::code`]).
    pub reason: &'static str,
    /// The reason in English.
    pub en: &'static str,
    /// The reason in German.
    pub de: &'static str,
    /// When, seconds since the Unix epoch.
    pub at: i64,
}

impl Notice {
    /// The notice for `reason` at `gate`.
    pub fn new(venue: &Id, gate: &Id, reason: Reason, at: i64) -> Notice {
        Notice {
            venue: venue.to_string(),
            gate: gate.to_string(),
            reason: reason.code(),
            en: reason.visitor(Lang::En),
            de: reason.visitor(Lang::De),
            at,
        }
    }
}

/// The MQTT topic level bound to an access key, from the key's SHA-256 (hex, as the access
/// key store keeps it): the first 128 bits of SHA-256("passage-notice/1" ‖ hash), hex.
pub fn topic_for_token_hash(token_sha256_hex: &str) -> String {
    let digest = Sha256::new().chain_update(b"passage-notice/1").chain_update(token_sha256_hex.as_bytes()).finalize();
    hex::encode(&digest[..16])
}

/// The MQTT topic of a visitor's notices at `venue`.
pub fn notice_topic(venue: &Id, topic: &str) -> String {
    format!("{}/{venue}/notice/{topic}", topics::ROOT)
}

/// The notice box of an edge agent, shared by the gates (which post) and the portal (which
/// streams to the visitor).
#[derive(Debug)]
pub struct Notices {
    inner: Mutex<Boxes>,
    live: broadcast::Sender<(Id, Notice)>,
    keep_secs: i64,
}

#[derive(Debug, Default)]
struct Boxes {
    notices: HashMap<Id, VecDeque<Notice>>,
    topics: HashMap<Id, String>,
}

impl Notices {
    /// A box keeping notices for `keep_secs`.
    pub fn new(keep_secs: i64) -> Notices {
        let (live, _) = broadcast::channel(256);
        Notices { inner: Mutex::new(Boxes::default()), live, keep_secs }
    }

    /// Binds `subject`'s MQTT notice topic (from [`topic_for_token_hash`]).
    pub fn bind_topic(&self, subject: &Id, topic: String) {
        lock(&self.inner).topics.insert(subject.clone(), topic);
    }

    /// The subject's bound topic level.
    pub fn topic(&self, subject: &Id) -> Option<String> {
        lock(&self.inner).topics.get(subject).cloned()
    }

    /// Keeps `notice` for `subject` and hands it to live streams.
    pub fn post(&self, subject: &Id, notice: Notice) {
        {
            let mut boxes = lock(&self.inner);
            let queue = boxes.notices.entry(subject.clone()).or_default();
            queue.push_back(notice.clone());
            while queue.len() > PER_VISITOR {
                queue.pop_front();
            }
        }
        // No live stream open is fine: the notice waits in the box.
        let _ = self.live.send((subject.clone(), notice));
    }

    /// `subject`'s notices not older than the retention at `now` (older ones are dropped).
    pub fn pending(&self, subject: &Id, now: i64) -> Vec<Notice> {
        let mut boxes = lock(&self.inner);
        let Some(queue) = boxes.notices.get_mut(subject) else { return Vec::new() };
        queue.retain(|n| now - n.at <= self.keep_secs);
        let out = queue.iter().cloned().collect();
        if queue.is_empty() {
            boxes.notices.remove(subject);
        }
        out
    }

    /// Whether `subject` was told `reason` at `gate` less than `within_secs` before `now`
    /// (a visitor waiting in view is decided again after each pause, but told once).
    pub fn told_recently(&self, subject: &Id, gate: &Id, reason: Reason, now: i64, within_secs: i64) -> bool {
        lock(&self.inner).notices.get(subject).is_some_and(|queue| {
            queue.iter().any(|n| n.reason == reason.code() && n.gate == gate.as_str() && now - n.at < within_secs)
        })
    }

    /// Drops every notice older than the retention at `now`; returns how many went.
    pub fn sweep(&self, now: i64) -> usize {
        let mut boxes = lock(&self.inner);
        let mut dropped = 0;
        boxes.notices.retain(|_, queue| {
            let before = queue.len();
            queue.retain(|n| now - n.at <= self.keep_secs);
            dropped += before - queue.len();
            !queue.is_empty()
        });
        dropped
    }

    /// Sweeps every `every` until `cancel` fires: notices past the retention leave RAM even
    /// when their visitor never reads them.
    pub async fn sweep_every(&self, every: std::time::Duration, cancel: tokio_util::sync::CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => {
                    let dropped = self.sweep(now_secs());
                    if dropped > 0 {
                        tracing::debug!(dropped, "denial notices past their retention dropped");
                    }
                }
            }
        }
    }

    /// New notices as they are posted (every subject's: filter by subject).
    pub fn subscribe(&self) -> broadcast::Receiver<(Id, Notice)> {
        self.live.subscribe()
    }

    /// Forgets everything about `subject` (erasure).
    pub fn forget(&self, subject: &Id) {
        let mut boxes = lock(&self.inner);
        boxes.notices.remove(subject);
        boxes.topics.remove(subject);
    }
}

/// Whether `contact` is a webhook URL notices may be POSTed to.
pub fn webhook_url(contact: &str) -> Option<&str> {
    let contact = contact.trim();
    if contact.starts_with("https://") {
        return Some(contact);
    }
    let rest = contact.strip_prefix("http://")?;
    let host = rest.split(['/', '?']).next()?;
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    loopback.then_some(contact)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Id {
        Id::new(s).expect("id")
    }

    #[test]
    fn notices_expire_are_bounded_and_forgotten() {
        let notices = Notices::new(3600);
        let (v, g, s) = (id("arena"), id("north"), id("v-1"));
        let mut live = notices.subscribe();
        notices.post(&s, Notice::new(&v, &g, Reason::NoValidTicket, 1000));
        assert_eq!(live.try_recv().expect("live").1.reason, "no_valid_ticket");
        assert_eq!(notices.pending(&s, 1000 + 3600).len(), 1);
        assert_eq!(notices.pending(&s, 1000 + 3601).len(), 0, "past the retention");
        for t in 0..30 {
            notices.post(&s, Notice::new(&v, &g, Reason::ZoneFull, 5000 + t));
        }
        assert_eq!(notices.pending(&s, 5000).len(), PER_VISITOR);
        assert_eq!(notices.sweep(5029 + 3601), PER_VISITOR);
        notices.post(&s, Notice::new(&v, &g, Reason::ZoneFull, 9000));
        notices.bind_topic(&s, "abc".into());
        notices.forget(&s);
        assert!(notices.pending(&s, 9000).is_empty() && notices.topic(&s).is_none());
    }

    #[test]
    fn a_repeated_reason_at_a_gate_is_told_recently() {
        let notices = Notices::new(3600);
        let (v, g, other, s) = (id("arena"), id("north"), id("south"), id("v-1"));
        notices.post(&s, Notice::new(&v, &g, Reason::ZoneFull, 1000));
        assert!(notices.told_recently(&s, &g, Reason::ZoneFull, 1100, 300));
        assert!(!notices.told_recently(&s, &g, Reason::ZoneFull, 1300, 300), "older than the window");
        assert!(!notices.told_recently(&s, &other, Reason::ZoneFull, 1100, 300), "another gate");
        assert!(!notices.told_recently(&s, &g, Reason::NoValidTicket, 1100, 300), "another reason");
        assert!(!notices.told_recently(&id("v-2"), &g, Reason::ZoneFull, 1100, 300), "another visitor");
    }

    #[test]
    fn topics_are_bound_to_the_key_and_webhooks_to_https() {
        let a = topic_for_token_hash("00ff");
        assert_eq!(a.len(), 32);
        assert_ne!(a, topic_for_token_hash("00fe"));
        assert_eq!(notice_topic(&id("arena"), &a), format!("passage/v1/arena/notice/{a}"));
        assert_eq!(webhook_url("https://push.example/abc"), Some("https://push.example/abc"));
        assert_eq!(webhook_url("http://127.0.0.1:9/x"), Some("http://127.0.0.1:9/x"));
        assert_eq!(webhook_url("http://example.org/x"), None, "plain HTTP off the machine");
        assert_eq!(webhook_url("+49 170 000000"), None);
        assert_eq!(webhook_url("someone@example.org"), None);
    }
}
