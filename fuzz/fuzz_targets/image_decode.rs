//! Bounded JPEG/PNG decoding of frames from cameras, uploads and image directories.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = passage_vision::decode::decode(data) {
        assert_eq!(image.rgb.len(), image.w as usize * image.h as usize * 3);
    }
});
