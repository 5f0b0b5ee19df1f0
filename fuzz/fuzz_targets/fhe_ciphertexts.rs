//! Bounded deserialisation of every FHE key and ciphertext a peer can send.
#![no_main]

use libfuzzer_sys::fuzz_target;
use passage_fhe::{DecisionResult, EncryptedProbe, EncryptedTemplate, Params, ScoreResult};

fuzz_target!(|data: &[u8]| {
    let params = Params::DEFAULT;
    let _ = EncryptedProbe::from_bytes(params, data);
    let _ = EncryptedTemplate::from_bytes(params, data);
    let _ = ScoreResult::from_bytes(params, data);
    let _ = DecisionResult::from_bytes(params, data);
});
