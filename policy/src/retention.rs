//! What the subject store may keep, by the venue's retention rules (no I/O; the services'
//! sweepers apply it with [`crate::subjects::SubjectStore::retain`]).
//!
//! * Consent evidence of a venue and purpose is kept while that consent is active and for
//!   `consent_evidence_secs` after it was withdrawn (proof that processing was lawful), then
//!   the whole history of that consent goes.
//! * A contact for denial notices and a linked ticket are needed only while some consent is
//!   active; once none is, they go after `notice_secs` (a denial notice in flight can still be
//!   delivered).
//!
//! A subject left with no record loses its key too (see `SubjectStore::retain`).

use std::collections::BTreeMap;

use crate::subjects::SubjectRecord;

/// Retention of one venue, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectRules {
    /// Consent evidence after withdrawal.
    pub consent_evidence_secs: i64,
    /// Contacts and tickets after the last consent ended.
    pub notice_secs: i64,
}

/// For each of one subject's `records` (oldest first), whether it is still within retention at
/// `now`. `rules` gives each venue's rules; records of a venue it does not know (removed from
/// the configuration) get `fallback`.
pub fn keep(
    records: &[SubjectRecord],
    now: i64,
    rules: impl Fn(&str) -> Option<SubjectRules>,
    fallback: SubjectRules,
) -> Vec<bool> {
    let rules_of = |venue: &str| rules(venue).unwrap_or(fallback);
    // The latest consent event per (venue, purpose).
    let mut last: BTreeMap<(&str, &str), (bool, i64)> = BTreeMap::new();
    for record in records {
        if let SubjectRecord::Consent { venue, purpose, granted, at, .. } = record {
            last.insert((venue, purpose), (*granted, *at));
        }
    }
    let any_active = last.values().any(|(granted, _)| *granted);
    // When the last active consent ended (the latest withdrawal), for contacts and tickets.
    let ended_at = last.values().map(|(_, at)| *at).max().unwrap_or(i64::MIN);
    records
        .iter()
        .map(|record| match record {
            SubjectRecord::Consent { venue, purpose, .. } => match last.get(&(venue.as_str(), purpose.as_str())) {
                Some((true, _)) => true,
                Some((false, withdrawn)) => now < withdrawn.saturating_add(rules_of(venue).consent_evidence_secs),
                None => false,
            },
            // Kept as long as the consent evidence of its venue.
            SubjectRecord::ConsentForm { venue, at, .. } => {
                let here: Vec<_> = last.iter().filter(|((v, _), _)| *v == venue.as_str()).map(|(_, g)| *g).collect();
                if here.iter().any(|(granted, _)| *granted) {
                    true
                } else {
                    let ended = here.iter().map(|(_, at)| *at).max().unwrap_or(*at);
                    now < ended.saturating_add(rules_of(venue).consent_evidence_secs)
                }
            }
            SubjectRecord::Contact { at, .. } => {
                let secs = last.keys().map(|(v, _)| rules_of(v).notice_secs).max().unwrap_or(fallback.notice_secs);
                any_active || now < ended_at.max(*at).saturating_add(secs)
            }
            SubjectRecord::Ticket { venue, at, .. } => {
                let active_here = last.iter().any(|((v, _), (granted, _))| *v == venue.as_str() && *granted);
                active_here || now < ended_at.max(*at).saturating_add(rules_of(venue).notice_secs)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn consent(venue: &str, granted: bool, at: i64) -> SubjectRecord {
        SubjectRecord::Consent { venue: venue.into(), purpose: "face-access".into(), notice: 1, granted, at }
    }

    fn rules(venue: &str) -> Option<SubjectRules> {
        (venue == "arena").then_some(SubjectRules { consent_evidence_secs: 365 * DAY, notice_secs: DAY })
    }

    const FALLBACK: SubjectRules = SubjectRules { consent_evidence_secs: 30 * DAY, notice_secs: 3600 };

    #[test]
    fn active_consent_keeps_everything() {
        let records = vec![
            consent("arena", true, 0),
            SubjectRecord::Contact { value: "push:abc".into(), at: 0 },
            SubjectRecord::Ticket { venue: "arena".into(), ticket: "T-1".into(), at: 0 },
        ];
        assert_eq!(keep(&records, 10 * 365 * DAY, rules, FALLBACK), vec![true, true, true]);
    }

    #[test]
    fn withdrawn_consent_evidence_expires_and_contacts_go_first() {
        let records = vec![
            consent("arena", true, 0),
            SubjectRecord::Contact { value: "push:abc".into(), at: 0 },
            SubjectRecord::Ticket { venue: "arena".into(), ticket: "T-1".into(), at: 0 },
            consent("arena", false, 10 * DAY),
        ];
        // Within a day of the withdrawal: all kept (a denial notice may be in flight).
        assert_eq!(keep(&records, 10 * DAY + 60, rules, FALLBACK), vec![true; 4]);
        // After a day: contact and ticket go, the evidence stays for a year.
        assert_eq!(keep(&records, 12 * DAY, rules, FALLBACK), vec![true, false, false, true]);
        // After the year: nothing is left.
        assert_eq!(keep(&records, 10 * DAY + 365 * DAY, rules, FALLBACK), vec![false; 4]);
    }

    #[test]
    fn an_unknown_venue_gets_the_fallback_and_consents_are_per_venue() {
        let records = vec![consent("gone", true, 0), consent("gone", false, DAY), consent("arena", true, DAY)];
        let at = DAY + 31 * DAY;
        assert_eq!(keep(&records, at, rules, FALLBACK), vec![false, false, true]);
    }

    #[test]
    fn a_consent_form_reference_lives_as_long_as_the_consent_evidence() {
        let form = SubjectRecord::ConsentForm { venue: "arena".into(), reference: "FORM-17".into(), at: 0 };
        let active = vec![consent("arena", true, 0), form.clone()];
        assert_eq!(keep(&active, 5 * 365 * DAY, rules, FALLBACK), vec![true, true]);
        let withdrawn = vec![consent("arena", true, 0), form.clone(), consent("arena", false, DAY)];
        assert_eq!(keep(&withdrawn, 300 * DAY, rules, FALLBACK), vec![true, true, true]);
        assert_eq!(keep(&withdrawn, DAY + 365 * DAY, rules, FALLBACK), vec![false; 3]);
        // A form of another venue's consent does not keep this one alive.
        let elsewhere = vec![consent("gone", true, 0), form];
        assert_eq!(keep(&elsewhere, 400 * DAY, rules, FALLBACK), vec![true, false]);
    }
}
