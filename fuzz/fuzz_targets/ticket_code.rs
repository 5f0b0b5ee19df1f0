//! Ticket codes as a gate reads them from a QR code or a scanner: any text, verified with a
//! fixed key. Never panics; only a code signed with that key verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use passage_policy::tickets::TicketKey;

fuzz_target!(|data: &[u8]| {
    let key = TicketKey::from_bytes(&[7u8; 32]);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = key.verify(text);
    }
});
