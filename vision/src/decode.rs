//! Decoding still images (JPEG, PNG) from untrusted bytes into packed RGB, with bounds, and
//! encoding anonymised frames. No file I/O: callers pass bytes.
//!
//! Decoding is bounded before any pixel is allocated: the header's size is checked against
//! [`MAX_SIDE`] and [`MAX_PIXELS`], and the decoder's allocations are capped. The decoded
//! pixels are returned in a buffer wiped on drop; intermediate buffers of other pixel formats
//! are wiped after conversion (the decoders' own scratch memory is freed, not wiped).

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use zeroize::{Zeroize, Zeroizing};

/// Largest accepted side, in pixels.
pub const MAX_SIDE: u32 = 8192;
/// Largest accepted image, in pixels (about 40 MP).
pub const MAX_PIXELS: u64 = 40_000_000;

/// A decoded image: packed 8-bit RGB, wiped on drop.
pub struct RgbImage {
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
    /// `w * h * 3` bytes.
    pub rgb: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RgbImage").field("w", &self.w).field("h", &self.h).finish_non_exhaustive()
    }
}

/// Why an image could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not a JPEG or PNG.
    #[error("not a JPEG or PNG image")]
    UnknownFormat,
    /// The image is larger than the bounds.
    #[error("image of {w}x{h} pixels is larger than allowed ({MAX_SIDE} per side, {MAX_PIXELS} pixels)")]
    TooLarge {
        /// Width.
        w: u32,
        /// Height.
        h: u32,
    },
    /// The bytes are corrupt or truncated.
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_PIXELS * 8);
    limits
}

/// Decodes JPEG or PNG bytes into packed RGB (alpha dropped, grey expanded).
///
/// # Errors
/// [`DecodeError`]; never panics on any input.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    let format = image::guess_format(bytes).map_err(|_| DecodeError::UnknownFormat)?;
    if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png) {
        return Err(DecodeError::UnknownFormat);
    }
    if format == ImageFormat::Jpeg && !has_end_marker(bytes) {
        // The JPEG decoder fills a truncated image with grey instead of failing: a frame cut
        // short in transit is refused here instead.
        return Err(DecodeError::Corrupt("truncated JPEG: no end-of-image marker".into()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format);
    let (w, h) = reader.into_dimensions().map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(DecodeError::TooLarge { w, h });
    }
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format);
    reader.limits(limits());
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => DecodeError::TooLarge { w, h },
        other => DecodeError::Corrupt(other.to_string()),
    })?;
    let rgb = match image {
        DynamicImage::ImageRgb8(buffer) => buffer.into_raw(),
        other => {
            let rgb = other.to_rgb8().into_raw();
            wipe(other);
            rgb
        }
    };
    Ok(RgbImage { w, h, rgb: Zeroizing::new(rgb) })
}

/// Whether a JPEG ends with its end-of-image marker (`FF D9`), allowing up to 4 KiB of
/// trailing padding. Inside the entropy-coded data `FF` is always stuffed (`FF 00`), so the
/// marker there is the real one; an embedded thumbnail's marker sits near the start, not the end.
fn has_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn wipe(image: DynamicImage) {
    match image {
        DynamicImage::ImageLuma8(b) => b.into_raw().zeroize(),
        DynamicImage::ImageLumaA8(b) => b.into_raw().zeroize(),
        DynamicImage::ImageRgb8(b) => b.into_raw().zeroize(),
        DynamicImage::ImageRgba8(b) => b.into_raw().zeroize(),
        DynamicImage::ImageLuma16(b) => b.into_raw().zeroize(),
        DynamicImage::ImageLumaA16(b) => b.into_raw().zeroize(),
        DynamicImage::ImageRgb16(b) => b.into_raw().zeroize(),
        DynamicImage::ImageRgba16(b) => b.into_raw().zeroize(),
        DynamicImage::ImageRgb32F(b) => b.into_raw().zeroize(),
        DynamicImage::ImageRgba32F(b) => b.into_raw().zeroize(),
        _ => {}
    }
}

/// Output formats for anonymised images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// PNG (lossless).
    Png,
    /// JPEG at quality 90.
    Jpeg,
}

impl OutputFormat {
    /// The format for a file name's extension (`.png`, `.jpg`, `.jpeg`), if known.
    pub fn from_extension(ext: &str) -> Option<OutputFormat> {
        match ext.to_ascii_lowercase().as_str() {
            "png" => Some(OutputFormat::Png),
            "jpg" | "jpeg" => Some(OutputFormat::Jpeg),
            _ => None,
        }
    }
}

/// Encodes packed RGB as PNG or JPEG.
///
/// # Errors
/// [`DecodeError::Corrupt`] when the buffer does not match the size or encoding fails.
pub fn encode(rgb: &[u8], w: u32, h: u32, format: OutputFormat) -> Result<Vec<u8>, DecodeError> {
    crate::image::check_rgb(rgb, w, h).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let mut out = Vec::new();
    let result = match format {
        OutputFormat::Png => {
            image::codecs::png::PngEncoder::new(&mut out).write_image(rgb, w, h, image::ExtendedColorType::Rgb8)
        }
        OutputFormat::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).write_image(
            rgb,
            w,
            h,
            image::ExtendedColorType::Rgb8,
        ),
    };
    result.map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    Ok(out)
}

use image::ImageEncoder as _;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn gradient(w: u32, h: u32) -> Vec<u8> {
        (0..w * h * 3).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn png_round_trips_exactly_and_jpeg_approximately() {
        let rgb = gradient(17, 9);
        let png = encode(&rgb, 17, 9, OutputFormat::Png).expect("encodes");
        let back = decode(&png).expect("decodes");
        assert_eq!((back.w, back.h), (17, 9));
        assert_eq!(&back.rgb[..], &rgb[..]);
        let flat = vec![120u8; 16 * 16 * 3];
        let jpeg = encode(&flat, 16, 16, OutputFormat::Jpeg).expect("encodes");
        let back = decode(&jpeg).expect("decodes");
        assert!(back.rgb.iter().all(|&v| v.abs_diff(120) <= 3));
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        assert!(matches!(decode(b"GIF89a...."), Err(DecodeError::UnknownFormat)));
        assert!(matches!(decode(&[]), Err(DecodeError::UnknownFormat)));
        let png = encode(&gradient(32, 32), 32, 32, OutputFormat::Png).expect("encodes");
        assert!(matches!(decode(&png[..png.len() / 2]), Err(DecodeError::Corrupt(_))));
        assert!(encode(&[0; 5], 2, 2, OutputFormat::Png).is_err());
        let jpeg = encode(&gradient(64, 64), 64, 64, OutputFormat::Jpeg).expect("encodes");
        assert!(decode(&jpeg).is_ok());
        assert!(
            matches!(decode(&jpeg[..jpeg.len() * 2 / 3]), Err(DecodeError::Corrupt(reason)) if reason.contains("truncated"))
        );
    }

    #[test]
    fn a_huge_declared_size_is_refused_before_decoding() {
        // A PNG header claiming 60000 x 60000 pixels followed by nothing.
        let mut png = encode(&gradient(1, 1), 1, 1, OutputFormat::Png).expect("encodes");
        png[16..20].copy_from_slice(&60000u32.to_be_bytes());
        png[20..24].copy_from_slice(&60000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(decode(&png), Err(DecodeError::TooLarge { w: 60000, h: 60000 })));
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), png in any::<bool>()) {
            let mut input = if png { b"\x89PNG\r\n\x1a\n".to_vec() } else { vec![0xff, 0xd8, 0xff] };
            input.extend(bytes);
            let _ = decode(&input);
        }
    }
}
