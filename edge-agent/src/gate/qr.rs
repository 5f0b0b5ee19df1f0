//! QR codes at the gate: finding a ticket code in a camera frame (decoded in RAM, the frame
//! untouched), and rendering a code as a PNG for the box office (`passage ticket issue`).

use crate::frames::RgbFrame;

/// Why a QR code could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QrError {
    /// The text does not fit a QR code.
    #[error("the text does not fit a QR code: {0}")]
    TooLong(String),
    /// The PNG encoder failed.
    #[error("PNG encoding failed: {0}")]
    Png(String),
}

/// The text of the first QR code found in `frame`, if any (a Passage ticket code or anything
/// else, which then fails verification).
pub fn find_qr(frame: &RgbFrame) -> Option<String> {
    let (w, h) = (frame.w as usize, frame.h as usize);
    if w == 0 || h == 0 || frame.rgb.len() < w * h * 3 {
        return None;
    }
    let rgb = &frame.rgb;
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let i = (y * w + x) * 3;
        // Integer BT.601 luma.
        ((u32::from(rgb[i]) * 77 + u32::from(rgb[i + 1]) * 150 + u32::from(rgb[i + 2]) * 29) >> 8) as u8
    });
    image.detect_grids().into_iter().find_map(|grid| grid.decode().ok().map(|(_, text)| text))
}

/// `text` as a QR code PNG: 8 pixels per module, a 4-module quiet zone.
///
/// # Errors
/// Text too long for a QR code, or a PNG encoder failure.
pub fn render_png(text: &str) -> Result<Vec<u8>, QrError> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| QrError::TooLong(e.to_string()))?;
    let (modules, colors) = (code.width(), code.to_colors());
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
        }
    }
    let mut png = Vec::new();
    let side = u32::try_from(side).map_err(|e| QrError::Png(e.to_string()))?;
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &pixels,
        side,
        side,
        image::ExtendedColorType::L8,
    )
    .map_err(|e| QrError::Png(e.to_string()))?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_code_is_found_again_in_a_frame() {
        let text = "PT1.eyJpZCI6IlQtMSJ9.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let png = render_png(text).expect("rendered");
        let image = passage_vision::decode::decode(&png).expect("decoded");
        // Pasted into a larger grey camera frame, off centre.
        let (fw, fh) = (image.w as usize + 200, image.h as usize + 120);
        let mut rgb = vec![128u8; fw * fh * 3];
        for y in 0..image.h as usize {
            let src = &image.rgb[y * image.w as usize * 3..(y + 1) * image.w as usize * 3];
            let at = ((y + 80) * fw + 150) * 3;
            rgb[at..at + src.len()].copy_from_slice(src);
        }
        let frame = RgbFrame { w: fw as u32, h: fh as u32, index: 0, t: 0.0, rgb: zeroize::Zeroizing::new(rgb) };
        assert_eq!(find_qr(&frame).as_deref(), Some(text));
        let blank = RgbFrame { w: 64, h: 48, index: 0, t: 0.0, rgb: zeroize::Zeroizing::new(vec![200; 64 * 48 * 3]) };
        assert_eq!(find_qr(&blank), None);
        let short = RgbFrame { w: 64, h: 48, index: 0, t: 0.0, rgb: zeroize::Zeroizing::new(vec![0; 10]) };
        assert_eq!(find_qr(&short), None, "a frame shorter than its size says");
    }
}
