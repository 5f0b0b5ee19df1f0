//! The gate's access rules, with no I/O: what a recognised face or a scanned ticket must
//! satisfy to turn a gate green, and the reason code of every refusal.
//!
//! Conditions, in the order they are checked:
//! * face path: one face at a time, liveness (when required), recognised, consent current for
//!   this venue, a linked ticket valid for this venue, zone and time;
//! * ticket path: a code that verifies, valid for this venue, zone and time;
//! * both: the target zone's capacity alert not raised, the gate's clock trustworthy.
//!
//! The kiosk shows only a neutral message for each reason ([`Reason::kiosk`]); the precise
//! reason ([`Reason::visitor`]) goes only to the visitor's own device.

use crate::tickets::{Ticket, TicketError};

/// Earliest wall-clock time a gate accepts as plausible (2025-01-01T00:00:00Z): a gate whose
/// clock reads earlier lost its time (no RTC battery, no NTP yet) and decides nothing by time.
pub const EARLIEST_PLAUSIBLE: i64 = 1_735_689_600;

/// The outcome of one attempt at a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Green.
    Admitted,
    /// No enrolled face matched (or more than one did).
    NotRecognised,
    /// Recognised, but the visitor's face-access consent for this venue is not current.
    ConsentWithdrawn,
    /// No ticket linked, or none valid for this gate.
    NoValidTicket,
    /// A ticket code that is not a ticket, or whose signature does not verify.
    TicketInvalid,
    /// The ticket's window has ended.
    TicketExpired,
    /// The ticket's window has not started.
    TicketNotYetValid,
    /// The ticket is for another venue or zone.
    TicketWrongGate,
    /// The target zone's capacity alert is raised.
    ZoneFull,
    /// The face did not pass the liveness check (a photo or screen held up).
    NotLive,
    /// More than one face at the gate.
    OneAtATime,
    /// The matcher did not answer: nobody is admitted by face until it does.
    MatcherUnavailable,
    /// The gate's clock is not trustworthy (before [`EARLIEST_PLAUSIBLE`] or went back).
    ClockUnreliable,
}

/// A language of the kiosk and of notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// German.
    De,
}

impl Reason {
    /// Every reason, for tables and tests.
    pub const ALL: [Reason; 13] = [
        Reason::Admitted,
        Reason::NotRecognised,
        Reason::ConsentWithdrawn,
        Reason::NoValidTicket,
        Reason::TicketInvalid,
        Reason::TicketExpired,
        Reason::TicketNotYetValid,
        Reason::TicketWrongGate,
        Reason::ZoneFull,
        Reason::NotLive,
        Reason::OneAtATime,
        Reason::MatcherUnavailable,
        Reason::ClockUnreliable,
    ];

    /// Whether the gate opens.
    pub fn is_green(self) -> bool {
        self == Reason::Admitted
    }

    /// Whether the refusal concerns the attempt, not the person: several faces at once, the
    /// matcher or the clock unavailable, the zone full. The gate lets a visitor who stays in
    /// view try again after a short pause instead of waiting out their approach.
    pub fn is_retryable(self) -> bool {
        matches!(self, Reason::OneAtATime | Reason::MatcherUnavailable | Reason::ClockUnreliable | Reason::ZoneFull)
    }

    /// The stable reason code (audit log, notices, API).
    pub fn code(self) -> &'static str {
        match self {
            Reason::Admitted => "admitted",
            Reason::NotRecognised => "not_recognised",
            Reason::ConsentWithdrawn => "consent_withdrawn",
            Reason::NoValidTicket => "no_valid_ticket",
            Reason::TicketInvalid => "ticket_invalid",
            Reason::TicketExpired => "ticket_expired",
            Reason::TicketNotYetValid => "ticket_not_yet_valid",
            Reason::TicketWrongGate => "ticket_wrong_gate",
            Reason::ZoneFull => "zone_full",
            Reason::NotLive => "not_live",
            Reason::OneAtATime => "one_at_a_time",
            Reason::MatcherUnavailable => "matcher_unavailable",
            Reason::ClockUnreliable => "clock_unreliable",
        }
    }

    /// The reason with this code.
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The neutral message on the kiosk: it says what to do, never why a person was refused
    /// (others are watching), except where the reason concerns everybody at the gate.
    pub fn kiosk(self, lang: Lang) -> &'static str {
        match (self, lang) {
            (Reason::Admitted, Lang::En) => "Welcome. Please go ahead.",
            (Reason::Admitted, Lang::De) => "Willkommen. Bitte eintreten.",
            (Reason::OneAtATime, Lang::En) => "One person at a time, please.",
            (Reason::OneAtATime, Lang::De) => "Bitte einzeln eintreten.",
            (Reason::ZoneFull, Lang::En) => "This area is full. Please wait.",
            (Reason::ZoneFull, Lang::De) => "Dieser Bereich ist voll. Bitte warten.",
            (Reason::MatcherUnavailable | Reason::ClockUnreliable, Lang::En) => "Please try again, or use your ticket.",
            (Reason::MatcherUnavailable | Reason::ClockUnreliable, Lang::De) => {
                "Bitte erneut versuchen oder das Ticket nutzen."
            }
            (Reason::NotLive, Lang::En) => "Please look at the camera, or use your ticket.",
            (Reason::NotLive, Lang::De) => "Bitte in die Kamera schauen oder das Ticket nutzen.",
            (_, Lang::En) => "Not admitted here. Please use your ticket or ask staff.",
            (_, Lang::De) => "Kein Zutritt hier. Bitte Ticket nutzen oder Personal fragen.",
        }
    }

    /// The precise reason, for the visitor's own device only.
    pub fn visitor(self, lang: Lang) -> &'static str {
        match (self, lang) {
            (Reason::Admitted, Lang::En) => "You were admitted.",
            (Reason::Admitted, Lang::De) => "Sie wurden eingelassen.",
            (Reason::NotRecognised, Lang::En) => "Your face was not recognised at this gate.",
            (Reason::NotRecognised, Lang::De) => "Ihr Gesicht wurde an diesem Eingang nicht erkannt.",
            (Reason::ConsentWithdrawn, Lang::En) => "Consent withdrawn: face access is off for this venue.",
            (Reason::ConsentWithdrawn, Lang::De) => "Einwilligung widerrufen: Gesichtszutritt ist für diesen Ort aus.",
            (Reason::NoValidTicket, Lang::En) => "No valid ticket for this gate.",
            (Reason::NoValidTicket, Lang::De) => "Kein gültiges Ticket für diesen Eingang.",
            (Reason::TicketInvalid, Lang::En) => "The ticket code is not valid.",
            (Reason::TicketInvalid, Lang::De) => "Der Ticketcode ist ungültig.",
            (Reason::TicketExpired, Lang::En) => "Your ticket has expired.",
            (Reason::TicketExpired, Lang::De) => "Ihr Ticket ist abgelaufen.",
            (Reason::TicketNotYetValid, Lang::En) => "Your ticket is not valid yet.",
            (Reason::TicketNotYetValid, Lang::De) => "Ihr Ticket ist noch nicht gültig.",
            (Reason::TicketWrongGate, Lang::En) => "Your ticket is for another entrance or area.",
            (Reason::TicketWrongGate, Lang::De) => "Ihr Ticket gilt für einen anderen Eingang oder Bereich.",
            (Reason::ZoneFull, Lang::En) => "The area behind this gate is full.",
            (Reason::ZoneFull, Lang::De) => "Der Bereich hinter diesem Eingang ist voll.",
            (Reason::NotLive, Lang::En) => "The liveness check failed: look at the camera yourself.",
            (Reason::NotLive, Lang::De) => "Die Lebenderkennung schlug fehl: bitte selbst in die Kamera schauen.",
            (Reason::OneAtATime, Lang::En) => "More than one face was at the gate.",
            (Reason::OneAtATime, Lang::De) => "Mehr als ein Gesicht war am Eingang.",
            (Reason::MatcherUnavailable, Lang::En) => {
                "Face matching is unavailable right now: try again or use your ticket."
            }
            (Reason::MatcherUnavailable, Lang::De) => {
                "Der Gesichtsabgleich ist gerade nicht verfügbar: erneut versuchen oder Ticket nutzen."
            }
            (Reason::ClockUnreliable, Lang::En) => "The gate's clock is out of order: please ask staff.",
            (Reason::ClockUnreliable, Lang::De) => "Die Uhr des Eingangs ist gestört: bitte Personal fragen.",
        }
    }
}

/// Where and when a ticket is checked.
#[derive(Debug, Clone, Copy)]
pub struct GateContext<'a> {
    /// The gate's venue.
    pub venue: &'a str,
    /// The zone the gate admits to.
    pub zone: &'a str,
    /// The gate's wall clock, seconds since the Unix epoch.
    pub now: i64,
    /// Tolerated difference between the issuer's and the gate's clocks, seconds: a window is
    /// widened by this much at both ends.
    pub skew_secs: i64,
}

/// Whether `ticket` admits at `ctx`.
///
/// # Errors
/// The refusal's reason.
pub fn check_ticket(ticket: &Ticket, ctx: &GateContext<'_>) -> Result<(), Reason> {
    if ticket.venue != ctx.venue || !(ticket.zones.is_empty() || ticket.zones.iter().any(|z| z == ctx.zone)) {
        return Err(Reason::TicketWrongGate);
    }
    if ctx.now < ticket.not_before.saturating_sub(ctx.skew_secs) {
        return Err(Reason::TicketNotYetValid);
    }
    if ctx.now > ticket.not_after.saturating_add(ctx.skew_secs) {
        return Err(Reason::TicketExpired);
    }
    Ok(())
}

/// Of the tickets linked to a recognised visitor, whether one admits at `ctx`; the refusal
/// is the most useful reason among them (wrong gate over expired over not yet valid).
///
/// # Errors
/// [`Reason::NoValidTicket`] when none is linked, or the best refusal.
pub fn check_linked_tickets<'t>(
    tickets: impl IntoIterator<Item = &'t Result<Ticket, TicketError>>,
    ctx: &GateContext<'_>,
) -> Result<(), Reason> {
    let mut best: Option<Reason> = None;
    for ticket in tickets {
        let outcome = match ticket {
            Ok(t) => check_ticket(t, ctx),
            Err(_) => Err(Reason::NoValidTicket),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(reason) => {
                let rank = |r: Reason| match r {
                    Reason::TicketNotYetValid => 3,
                    Reason::TicketExpired => 2,
                    Reason::TicketWrongGate => 1,
                    _ => 0,
                };
                if best.is_none_or(|b| rank(reason) > rank(b)) {
                    best = Some(reason);
                }
            }
        }
    }
    Err(match best {
        Some(Reason::NoValidTicket) | None => Reason::NoValidTicket,
        Some(reason) => reason,
    })
}

/// Watches a gate's wall clock: refuses times before [`EARLIEST_PLAUSIBLE`] and a clock that
/// went back more than the tolerance since the last decision (someone set it back, or NTP
/// stepped it); both make time-window checks meaningless.
#[derive(Debug, Clone)]
pub struct ClockGuard {
    latest: i64,
    tolerance: i64,
}

impl ClockGuard {
    /// A guard tolerating steps back of up to `tolerance` seconds.
    pub fn new(tolerance: i64) -> ClockGuard {
        ClockGuard { latest: i64::MIN, tolerance }
    }

    /// Checks `now`, remembering the latest time seen.
    ///
    /// # Errors
    /// [`Reason::ClockUnreliable`].
    pub fn observe(&mut self, now: i64) -> Result<(), Reason> {
        if now < EARLIEST_PLAUSIBLE || now < self.latest.saturating_sub(self.tolerance) {
            return Err(Reason::ClockUnreliable);
        }
        self.latest = self.latest.max(now);
        Ok(())
    }

    /// Forgets the latest time (after staff confirmed the clock), so the next reading is
    /// trusted again.
    pub fn reset(&mut self) {
        self.latest = i64::MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn ctx(now: i64) -> GateContext<'static> {
        GateContext { venue: "arena", zone: "stand-north", now, skew_secs: 120 }
    }

    fn ticket(zones: &[&str], from: i64, until: i64) -> Ticket {
        Ticket {
            id: "T1".into(),
            venue: "arena".into(),
            zones: zones.iter().map(|z| (*z).to_owned()).collect(),
            not_before: from,
            not_after: until,
        }
    }

    #[test]
    fn ticket_windows_zones_and_skew() {
        let t = ticket(&["stand-north"], NOW - 3600, NOW + 3600);
        assert_eq!(check_ticket(&t, &ctx(NOW)), Ok(()));
        assert_eq!(check_ticket(&ticket(&[], NOW - 1, NOW + 1), &ctx(NOW)), Ok(()), "no zones: any zone");
        assert_eq!(check_ticket(&ticket(&["stand-south"], NOW - 1, NOW + 1), &ctx(NOW)), Err(Reason::TicketWrongGate));
        let mut other_venue = t.clone();
        other_venue.venue = "hall".into();
        assert_eq!(check_ticket(&other_venue, &ctx(NOW)), Err(Reason::TicketWrongGate));
        // Clock skew: within the tolerance either way it admits; beyond it, a defined refusal.
        assert_eq!(check_ticket(&t, &ctx(NOW - 3600 - 120)), Ok(()));
        assert_eq!(check_ticket(&t, &ctx(NOW - 3600 - 121)), Err(Reason::TicketNotYetValid));
        assert_eq!(check_ticket(&t, &ctx(NOW + 3600 + 120)), Ok(()));
        assert_eq!(check_ticket(&t, &ctx(NOW + 3600 + 121)), Err(Reason::TicketExpired));
        assert_eq!(check_ticket(&ticket(&[], i64::MIN, i64::MAX), &ctx(NOW)), Ok(()), "no overflow");
    }

    #[test]
    fn linked_tickets_give_the_most_useful_refusal() {
        let expired = Ok(ticket(&[], NOW - 7200, NOW - 3600));
        let other_zone = Ok(ticket(&["stand-south"], NOW - 1, NOW + 1));
        let valid = Ok(ticket(&[], NOW - 1, NOW + 1));
        let broken = Err(TicketError::Forged);
        assert_eq!(check_linked_tickets([], &ctx(NOW)), Err(Reason::NoValidTicket));
        assert_eq!(check_linked_tickets([&broken], &ctx(NOW)), Err(Reason::NoValidTicket));
        assert_eq!(check_linked_tickets([&other_zone, &expired], &ctx(NOW)), Err(Reason::TicketExpired));
        assert_eq!(check_linked_tickets([&other_zone, &broken], &ctx(NOW)), Err(Reason::TicketWrongGate));
        assert_eq!(check_linked_tickets([&expired, &valid], &ctx(NOW)), Ok(()));
    }

    #[test]
    fn clock_guard_refuses_implausible_and_backward_clocks() {
        let mut guard = ClockGuard::new(300);
        assert_eq!(guard.observe(0), Err(Reason::ClockUnreliable), "epoch: the clock was lost");
        assert_eq!(guard.observe(NOW), Ok(()));
        assert_eq!(guard.observe(NOW - 300), Ok(()), "small steps back (NTP slew) are tolerated");
        assert_eq!(guard.observe(NOW - 301), Err(Reason::ClockUnreliable));
        assert_eq!(guard.observe(NOW + 10), Ok(()));
        guard.reset();
        assert_eq!(guard.observe(NOW - 86_400), Ok(()), "after staff reset it");
    }

    #[test]
    fn codes_round_trip_and_messages_exist_in_both_languages() {
        for reason in Reason::ALL {
            assert_eq!(Reason::from_code(reason.code()), Some(reason));
            for lang in [Lang::En, Lang::De] {
                assert!(!reason.kiosk(lang).is_empty() && !reason.visitor(lang).is_empty());
            }
            assert_ne!(reason.kiosk(Lang::En), reason.kiosk(Lang::De));
            assert_ne!(reason.visitor(Lang::En), reason.visitor(Lang::De));
        }
        assert_eq!(Reason::ALL.iter().filter(|r| r.is_green()).count(), 1);
        // The kiosk never names a personal reason.
        for reason in [Reason::ConsentWithdrawn, Reason::NoValidTicket, Reason::TicketExpired, Reason::NotRecognised] {
            let kiosk = reason.kiosk(Lang::En).to_lowercase();
            assert!(!kiosk.contains("consent") && !kiosk.contains("expired") && !kiosk.contains("recognis"));
        }
    }
}
