//! The JSON-lines detection decoder of `passage count --detections`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = passage_edge::count::detect::decode_line(data);
});
