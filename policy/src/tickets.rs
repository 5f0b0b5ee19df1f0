//! Signed entry tickets: the non-biometric way through a gate.
//!
//! A ticket is issued by the venue (which holds the ticket key) and carried as the text of a
//! QR code:
//!
//! ```text
//! PT1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(key, "PT1." + claims part))>
//! ```
//!
//! The claims name the ticket, its venue, the zones it admits to (none: any zone of the
//! venue) and its validity window. The same venue verifies it at the gate, so a symmetric MAC
//! is enough; a code from another venue, a changed byte or a made-up ticket fails the tag
//! check, which runs before the claims are parsed. Decoding is bounded ([`MAX_CODE_LEN`]) and
//! never panics on any input (fuzz target `ticket_code`).
//!
//! Ticket identifiers are personal data once linked to a visitor: they are kept only in the
//! visitor's encrypted records and in RAM at the gate, and `Debug` does not print them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Prefix and version of a ticket code.
pub const PREFIX: &str = "PT1";
/// Longest ticket code accepted, in bytes.
pub const MAX_CODE_LEN: usize = 600;
/// Longest ticket identifier.
pub const MAX_ID_LEN: usize = 40;
/// Most zones a ticket may name.
pub const MAX_ZONES: usize = 16;
/// Length of a ticket key, in bytes.
pub const KEY_LEN: usize = 32;

/// What a ticket says.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    /// The ticket's identifier (1 to [`MAX_ID_LEN`] of `A-Z a-z 0-9 -`).
    pub id: String,
    /// The venue it is valid at.
    pub venue: String,
    /// The zones it admits to; empty: every zone of the venue.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Valid from, seconds since the Unix epoch.
    pub not_before: i64,
    /// Valid until (inclusive), seconds since the Unix epoch.
    pub not_after: i64,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("venue", &self.venue)
            .field("zones", &self.zones)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Why a ticket code was refused (or could not be issued).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// Not a ticket code at all: wrong prefix, shape, encoding or length.
    #[error("not a Passage ticket code")]
    Malformed,
    /// The code has the right shape but its tag does not verify: forged, altered, or issued
    /// by another venue's key.
    #[error("the ticket's signature does not verify")]
    Forged,
    /// The tag verified but the claims break the rules (a venue's own bug, not an attack).
    #[error("the ticket's claims are invalid: {0}")]
    Claims(&'static str),
}

/// A venue's ticket key (HMAC-SHA256), wiped on drop.
pub struct TicketKey {
    raw: Zeroizing<[u8; KEY_LEN]>,
    key: hmac::Key,
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(..)")
    }
}

impl TicketKey {
    /// A fresh random key.
    pub fn generate(rng: &mut impl rand::CryptoRng) -> TicketKey {
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(raw.as_mut());
        TicketKey::from_bytes(&raw)
    }

    /// The key with these bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> TicketKey {
        TicketKey { raw: Zeroizing::new(*bytes), key: hmac::Key::new(hmac::HMAC_SHA256, bytes) }
    }

    /// The key's bytes (to store it; keep them secret).
    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        self.raw.clone()
    }

    /// Signs `ticket` and returns its code (the text of its QR code).
    ///
    /// # Errors
    /// [`TicketError::Claims`] when the ticket breaks the rules of [`Ticket`].
    pub fn issue(&self, ticket: &Ticket) -> Result<String, TicketError> {
        check_claims(ticket)?;
        let claims = serde_json::to_vec(ticket).map_err(|_| TicketError::Claims("not encodable"))?;
        let signed = format!("{PREFIX}.{}", URL_SAFE_NO_PAD.encode(claims));
        let tag = hmac::sign(&self.key, signed.as_bytes());
        let code = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        if code.len() > MAX_CODE_LEN {
            return Err(TicketError::Claims("the code would be too long"));
        }
        Ok(code)
    }

    /// Verifies a ticket code (from a QR code or a scanner: untrusted) and returns its
    /// claims. Validity for a gate at a time is [`crate::access::check_ticket`]'s business.
    ///
    /// # Errors
    /// [`TicketError::Malformed`] for anything not shaped like a code, [`TicketError::Forged`]
    /// when the tag does not verify, [`TicketError::Claims`] for verified but invalid claims.
    pub fn verify(&self, code: &str) -> Result<Ticket, TicketError> {
        let code = code.trim();
        if code.len() > MAX_CODE_LEN || !code.is_ascii() {
            return Err(TicketError::Malformed);
        }
        let (signed, tag) = code.rsplit_once('.').ok_or(TicketError::Malformed)?;
        let claims =
            signed.strip_prefix(PREFIX).and_then(|rest| rest.strip_prefix('.')).ok_or(TicketError::Malformed)?;
        if claims.contains('.') {
            return Err(TicketError::Malformed);
        }
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TicketError::Malformed)?;
        let claims = URL_SAFE_NO_PAD.decode(claims).map_err(|_| TicketError::Malformed)?;
        if tag.len() != 32 {
            return Err(TicketError::Malformed);
        }
        hmac::verify(&self.key, signed.as_bytes(), &tag).map_err(|_| TicketError::Forged)?;
        let ticket: Ticket =
            serde_json::from_slice(&claims).map_err(|_| TicketError::Claims("not the claims format"))?;
        check_claims(&ticket)?;
        Ok(ticket)
    }
}

fn check_claims(ticket: &Ticket) -> Result<(), TicketError> {
    let name_ok = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    };
    if !name_ok(&ticket.id, MAX_ID_LEN) {
        return Err(TicketError::Claims("the id must be 1 to 40 of A-Z a-z 0-9 - _"));
    }
    if !name_ok(&ticket.venue, 64) {
        return Err(TicketError::Claims("invalid venue"));
    }
    if ticket.zones.len() > MAX_ZONES || !ticket.zones.iter().all(|z| name_ok(z, 64)) {
        return Err(TicketError::Claims("invalid zones"));
    }
    if ticket.not_after < ticket.not_before {
        return Err(TicketError::Claims("the window ends before it starts"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn key(seed: u64) -> TicketKey {
        TicketKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed))
    }

    fn ticket() -> Ticket {
        Ticket {
            id: "T-0001".into(),
            venue: "arena".into(),
            zones: vec!["stand-north".into()],
            not_before: 1_800_000_000,
            not_after: 1_800_086_400,
        }
    }

    #[test]
    fn issued_codes_verify_and_round_trip() {
        let k = key(1);
        let code = k.issue(&ticket()).expect("issued");
        assert!(code.starts_with("PT1.") && code.len() < 300, "{code}");
        assert_eq!(k.verify(&code), Ok(ticket()));
        assert_eq!(k.verify(&format!("  {code}\n")), Ok(ticket()), "scanner whitespace is ignored");
        let restored = TicketKey::from_bytes(&k.to_bytes());
        assert_eq!(restored.verify(&code), Ok(ticket()));
    }

    #[test]
    fn forged_altered_and_foreign_codes_are_refused() {
        let k = key(1);
        let code = k.issue(&ticket()).expect("issued");
        assert_eq!(key(2).verify(&code), Err(TicketError::Forged), "another venue's key");
        // Claims changed, tag kept: a ticket for a longer window.
        let mut longer = ticket();
        longer.not_after += 86_400 * 365;
        let other = key(2).issue(&longer).expect("issued");
        let (_, tag) = code.rsplit_once('.').expect("tag");
        let (forged_claims, _) = other.rsplit_once('.').expect("tag");
        assert_eq!(k.verify(&format!("{forged_claims}.{tag}")), Err(TicketError::Forged));
        // Made-up codes.
        for bad in
            ["", "PT1", "PT1..", "PT2.e30.AAAA", "hello", "PT1.e30", "PT1.a.b.c", "PT1.!!.??", "https://example.org"]
        {
            assert_eq!(k.verify(bad), Err(TicketError::Malformed), "{bad:?}");
        }
        assert_eq!(k.verify(&"A".repeat(MAX_CODE_LEN + 1)), Err(TicketError::Malformed));
    }

    #[test]
    fn bad_claims_are_not_issued() {
        let k = key(1);
        let mut t = ticket();
        t.id = "with space".into();
        assert!(matches!(k.issue(&t), Err(TicketError::Claims(_))));
        let mut t = ticket();
        t.not_after = t.not_before - 1;
        assert!(matches!(k.issue(&t), Err(TicketError::Claims(_))));
        let mut t = ticket();
        t.zones = vec!["z".into(); MAX_ZONES + 1];
        assert!(matches!(k.issue(&t), Err(TicketError::Claims(_))));
    }

    #[test]
    fn debug_hides_the_ticket_id() {
        assert!(!format!("{:?}", ticket()).contains("T-0001"));
        assert_eq!(format!("{:?}", key(1)), "TicketKey(..)");
    }

    proptest! {
        #[test]
        fn verify_never_panics(s in "\\PC{0,700}") {
            let _ = key(3).verify(&s);
        }

        #[test]
        fn any_valid_ticket_round_trips(
            id in "[A-Za-z0-9_-]{1,40}",
            zones in proptest::collection::vec("[a-z0-9-]{1,20}", 0..5),
            start in 0i64..4_000_000_000,
            len in 0i64..10_000_000,
        ) {
            let k = key(4);
            let t = Ticket { id, venue: "arena".into(), zones, not_before: start, not_after: start + len };
            let code = k.issue(&t).expect("issued");
            prop_assert_eq!(k.verify(&code), Ok(t));
            // Any single changed character is refused.
            let bytes = code.as_bytes();
            let i = (start as usize) % bytes.len();
            let mut changed = bytes.to_vec();
            changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
            if let Ok(changed) = String::from_utf8(changed) {
                prop_assert!(k.verify(&changed).is_err());
            }
        }
    }
}
