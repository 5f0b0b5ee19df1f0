//! Consent per subject × venue × purpose, given against a versioned privacy notice.
//!
//! Biometric matching may run only for a subject with a current, explicit grant for that
//! venue and purpose; withdrawal takes effect for the next check. Subjects are pseudonymous
//! references: the registry holds no names or contact data.

use std::collections::HashMap;

use passage_wire::Id;

/// A recorded grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Version of the privacy notice the subject accepted.
    pub notice_version: u32,
    /// When it was given, seconds since the Unix epoch.
    pub at: i64,
}

/// Why consent could not be recorded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsentError {
    /// The subject accepted an older notice than the venue's current one.
    #[error("notice version {accepted} is not the current version {current}")]
    StaleNotice {
        /// Version accepted.
        accepted: u32,
        /// Current version.
        current: u32,
    },
}

type Key = (Id, Id, Id);

/// The consent registry of a deployment.
#[derive(Debug, Default)]
pub struct ConsentRegistry {
    current_notice: HashMap<Id, u32>,
    grants: HashMap<Key, Grant>,
}

impl ConsentRegistry {
    /// An empty registry.
    pub fn new() -> ConsentRegistry {
        ConsentRegistry::default()
    }

    /// Publishes version `version` of `venue`'s privacy notice. Grants against older versions
    /// stop counting.
    pub fn publish_notice(&mut self, venue: &Id, version: u32) {
        self.current_notice.insert(venue.clone(), version);
    }

    /// Records an explicit grant.
    ///
    /// # Errors
    /// If `notice_version` is not the venue's current notice.
    pub fn grant(
        &mut self,
        subject: &Id,
        venue: &Id,
        purpose: &Id,
        notice_version: u32,
        at: i64,
    ) -> Result<(), ConsentError> {
        let current = self.current_notice.get(venue).copied().unwrap_or(0);
        if notice_version != current {
            return Err(ConsentError::StaleNotice { accepted: notice_version, current });
        }
        self.grants.insert((subject.clone(), venue.clone(), purpose.clone()), Grant { notice_version, at });
        Ok(())
    }

    /// Withdraws a grant; returns whether there was one.
    pub fn withdraw(&mut self, subject: &Id, venue: &Id, purpose: &Id) -> bool {
        self.grants.remove(&(subject.clone(), venue.clone(), purpose.clone())).is_some()
    }

    /// Rebuilds `subject`'s grants from its consent evidence (oldest first, as the subject
    /// store keeps it): the latest event per venue and purpose decides. Used at start, so that
    /// a restart does not forget who consented; grants against a notice that is no longer
    /// current are restored but do not count (see [`ConsentRegistry::allows`]). Returns how
    /// many grants are active after it.
    pub fn restore(&mut self, subject: &Id, records: &[crate::subjects::SubjectRecord]) -> usize {
        let mut restored = 0;
        let mut latest: HashMap<(&str, &str), Option<Grant>> = HashMap::new();
        for record in records {
            if let crate::subjects::SubjectRecord::Consent { venue, purpose, notice, granted, at } = record {
                let grant = granted.then_some(Grant { notice_version: *notice, at: *at });
                latest.insert((venue.as_str(), purpose.as_str()), grant);
            }
        }
        for ((venue, purpose), grant) in latest {
            let (Ok(venue), Ok(purpose)) = (Id::new(venue), Id::new(purpose)) else { continue };
            let key = (subject.clone(), venue, purpose);
            match grant {
                Some(grant) => {
                    self.grants.insert(key, grant);
                    restored += 1;
                }
                None => {
                    self.grants.remove(&key);
                }
            }
        }
        restored
    }

    /// Whether `subject` currently consents to `purpose` at `venue` (against the current notice).
    pub fn allows(&self, subject: &Id, venue: &Id, purpose: &Id) -> bool {
        let current = self.current_notice.get(venue).copied().unwrap_or(0);
        self.grants.get(&(subject.clone(), venue.clone(), purpose.clone())).is_some_and(|g| g.notice_version == current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Id {
        Id::new(s).expect("valid")
    }

    #[test]
    fn consent_is_per_venue_and_purpose_and_withdrawal_is_immediate() {
        let mut r = ConsentRegistry::new();
        let (s, a, b, face) = (id("s1"), id("arena"), id("hall"), id("face-access"));
        r.publish_notice(&a, 2);
        assert_eq!(r.grant(&s, &a, &face, 1, 0), Err(ConsentError::StaleNotice { accepted: 1, current: 2 }));
        r.grant(&s, &a, &face, 2, 0).expect("current notice");
        assert!(r.allows(&s, &a, &face));
        assert!(!r.allows(&s, &b, &face), "consent for one venue is not consent for another");
        assert!(!r.allows(&s, &a, &id("flow-analytics")));
        assert!(r.withdraw(&s, &a, &face));
        assert!(!r.allows(&s, &a, &face));
    }

    #[test]
    fn grants_are_restored_from_the_evidence_and_the_latest_event_decides() {
        use crate::subjects::SubjectRecord;
        let consent = |venue: &str, notice, granted, at| SubjectRecord::Consent {
            venue: venue.into(),
            purpose: "face-access".into(),
            notice,
            granted,
            at,
        };
        let mut r = ConsentRegistry::new();
        let (s, a, b, face) = (id("s1"), id("arena"), id("hall"), id("face-access"));
        r.publish_notice(&a, 7);
        r.publish_notice(&b, 9);
        let evidence = [
            consent("arena", 7, true, 1),
            SubjectRecord::Contact { value: "push:x".into(), at: 1 },
            consent("hall", 9, true, 2),
            consent("hall", 9, false, 3),
        ];
        assert_eq!(r.restore(&s, &evidence), 1);
        assert!(r.allows(&s, &a, &face), "granted and never withdrawn");
        assert!(!r.allows(&s, &b, &face), "withdrawn after it was granted");
        r.publish_notice(&a, 8);
        assert!(!r.allows(&s, &a, &face), "a restored grant of an old notice does not count");
    }

    #[test]
    fn a_new_notice_voids_old_grants() {
        let mut r = ConsentRegistry::new();
        let (s, a, face) = (id("s1"), id("arena"), id("face-access"));
        r.publish_notice(&a, 1);
        r.grant(&s, &a, &face, 1, 0).expect("current");
        r.publish_notice(&a, 2);
        assert!(!r.allows(&s, &a, &face));
    }
}
