//! Irreversible anonymisation of faces in a frame: the only form in which an image may leave
//! the edge. Pure: pixels in, pixels out.
//!
//! Each face box is enlarged by a margin on every side (so that a detector's tight box leaves
//! no forehead, chin or ear outside), then the region is replaced by a coarse mosaic: a grid of
//! at most `blocks` x `blocks` cells, each filled with its mean colour. A 6x6 mosaic keeps
//! 108 numbers of a face region of thousands of pixels; what was discarded cannot be
//! recovered, and no detector in the inventory finds a face in it (tested with all of them).

use std::path::Path;

use crate::face::{CenterFace, CenterFaceConfig, Face, FaceDetector, UltraFace, UltraFaceConfig};
use crate::image::check_rgb;
use crate::{inventory, VisionError};

/// Anonymisation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AnonymizeConfig {
    /// Margin added on every side, as a fraction of the box's width and height.
    pub margin: f32,
    /// Cells across the longer side of the region.
    pub blocks: u32,
}

impl Default for AnonymizeConfig {
    fn default() -> AnonymizeConfig {
        AnonymizeConfig { margin: 0.3, blocks: 6 }
    }
}

/// The region blanked for `face`: its box enlarged by the margin, clipped to the frame, in
/// whole pixels `[x1, y1, x2, y2)`.
pub fn region(face: &Face, w: u32, h: u32, config: &AnonymizeConfig) -> [u32; 4] {
    let (bw, bh) = face.size();
    let (mx, my) = (bw * config.margin.max(0.0), bh * config.margin.max(0.0));
    let clip = |v: f32, max: u32| -> u32 {
        if v.is_finite() {
            v.clamp(0.0, max as f32) as u32
        } else {
            0
        }
    };
    [
        clip((face.bbox[0] - mx).floor(), w),
        clip((face.bbox[1] - my).floor(), h),
        clip((face.bbox[2] + mx).ceil(), w),
        clip((face.bbox[3] + my).ceil(), h),
    ]
}

/// Replaces every face region of a `w` x `h` packed RGB frame by a mosaic, in place.
///
/// # Errors
/// [`VisionError::BadImage`] when the buffer does not match the size.
pub fn anonymize(rgb: &mut [u8], w: u32, h: u32, faces: &[Face], config: &AnonymizeConfig) -> Result<(), VisionError> {
    check_rgb(rgb, w, h)?;
    for face in faces {
        let [x1, y1, x2, y2] = region(face, w, h, config);
        if x2 <= x1 || y2 <= y1 {
            continue;
        }
        let cell = ((x2 - x1).max(y2 - y1)).div_ceil(config.blocks.max(1)).max(1);
        let mut cy = y1;
        while cy < y2 {
            let cy2 = (cy + cell).min(y2);
            let mut cx = x1;
            while cx < x2 {
                let cx2 = (cx + cell).min(x2);
                let mut sum = [0u64; 3];
                for y in cy..cy2 {
                    for x in cx..cx2 {
                        let p = (y as usize * w as usize + x as usize) * 3;
                        for c in 0..3 {
                            sum[c] += u64::from(rgb[p + c]);
                        }
                    }
                }
                let n = u64::from((cy2 - cy) * (cx2 - cx));
                let mean = sum.map(|s| ((s + n / 2) / n) as u8);
                for y in cy..cy2 {
                    for x in cx..cx2 {
                        let p = (y as usize * w as usize + x as usize) * 3;
                        rgb[p..p + 3].copy_from_slice(&mean);
                    }
                }
                cx = cx2;
            }
            cy = cy2;
        }
    }
    Ok(())
}

/// Detection passes of [`anonymize_detected`] per frame.
pub const MAX_PASSES: usize = 3;

/// Finds faces with every detector (the union), mosaics them, then looks again: hiding one
/// face changes what a detector sees elsewhere in the frame (a blurred face beside a sharp
/// one scored 0.42 before and 0.6 after), so passes repeat until one finds nothing, at most
/// [`MAX_PASSES`] times. Returns how many regions were mosaicked.
///
/// # Errors
/// [`VisionError`] from a detector or a buffer of the wrong size.
pub fn anonymize_detected(
    rgb: &mut [u8],
    w: u32,
    h: u32,
    detectors: &[&dyn FaceDetector],
    config: &AnonymizeConfig,
) -> Result<usize, VisionError> {
    let mut regions = 0;
    for _ in 0..MAX_PASSES {
        let mut faces = Vec::new();
        for detector in detectors {
            faces.extend(detector.detect(rgb, w, h)?);
        }
        if faces.is_empty() {
            break;
        }
        regions += faces.len();
        anonymize(rgb, w, h, &faces, config)?;
    }
    Ok(regions)
}

/// A frame whose faces have been mosaicked: the only image type the edge may write or send.
/// Made only by [`anonymize_frame`].
pub struct AnonymisedFrame {
    w: u32,
    h: u32,
    rgb: Vec<u8>,
}

impl std::fmt::Debug for AnonymisedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnonymisedFrame").field("w", &self.w).field("h", &self.h).finish_non_exhaustive()
    }
}

impl AnonymisedFrame {
    /// Width, height and the packed RGB pixels.
    pub fn pixels(&self) -> (u32, u32, &[u8]) {
        (self.w, self.h, &self.rgb)
    }
}

/// Mosaics every face of a frame, consuming the original pixels.
///
/// # Errors
/// [`VisionError::BadImage`] when the buffer does not match the size (the buffer is wiped).
pub fn anonymize_frame(
    mut rgb: zeroize::Zeroizing<Vec<u8>>,
    w: u32,
    h: u32,
    faces: &[Face],
    config: &AnonymizeConfig,
) -> Result<AnonymisedFrame, VisionError> {
    anonymize(&mut rgb, w, h, faces, config)?;
    Ok(AnonymisedFrame { w, h, rgb: std::mem::take(&mut *rgb) })
}

/// The edge's anonymiser: every face that either of two different detectors finds (CenterFace
/// and UltraFace, both more eager than the services' own thresholds: mosaicking something that
/// is not a face costs nothing, missing a face is a leak), mosaicked pass after pass
/// ([`anonymize_detected`]). `passage anonymize` and the gates' evidence mode use it.
pub struct Anonymiser {
    centerface: CenterFace,
    ultraface: UltraFace,
    config: AnonymizeConfig,
}

impl std::fmt::Debug for Anonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anonymiser").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Anonymiser {
    /// Loads both detectors from `{models_dir}/{name}/{file}`, checking their pins.
    ///
    /// # Errors
    /// A model that cannot be read, is not the pinned file, or does not load.
    pub fn load(models_dir: &Path, config: AnonymizeConfig) -> Result<Anonymiser, VisionError> {
        let path = |spec: &inventory::ModelSpec| models_dir.join(spec.name).join(spec.file);
        let eager = CenterFaceConfig { min_score: 0.3, ..CenterFaceConfig::default() };
        let centerface = CenterFace::load(&path(&inventory::CENTERFACE), eager)?;
        let eager = UltraFaceConfig { min_score: 0.4, ..UltraFaceConfig::default() };
        let ultraface = UltraFace::load(&path(&inventory::FR_DETECT), eager)?;
        Ok(Anonymiser { centerface, ultraface, config })
    }

    /// Mosaics every face in a packed RGB frame in place; returns how many regions were
    /// mosaicked.
    ///
    /// # Errors
    /// [`VisionError`] from a detector or a buffer of the wrong size.
    pub fn anonymize(&self, rgb: &mut [u8], w: u32, h: u32) -> Result<usize, VisionError> {
        anonymize_detected(rgb, w, h, &[&self.centerface, &self.ultraface], &self.config)
    }

    /// Mosaics every face of a frame, consuming the original pixels (wiped on failure).
    ///
    /// # Errors
    /// As [`Anonymiser::anonymize`].
    pub fn frame(&self, mut rgb: zeroize::Zeroizing<Vec<u8>>, w: u32, h: u32) -> Result<AnonymisedFrame, VisionError> {
        self.anonymize(&mut rgb, w, h)?;
        Ok(AnonymisedFrame { w, h, rgb: std::mem::take(&mut *rgb) })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn face(b: [f32; 4]) -> Face {
        Face { bbox: b, score: 1.0, landmarks: None }
    }

    #[test]
    fn the_region_is_enlarged_and_clipped() {
        let c = AnonymizeConfig::default();
        assert_eq!(region(&face([10.0, 10.0, 20.0, 30.0]), 100, 100, &c), [7, 4, 23, 36]);
        assert_eq!(region(&face([0.0, 0.0, 100.0, 100.0]), 50, 60, &c), [0, 0, 50, 60]);
        assert_eq!(region(&face([f32::NAN, 0.0, 1.0, 1.0]), 50, 60, &c)[0], 0);
    }

    #[test]
    fn outside_the_region_nothing_changes_and_inside_only_cell_means_remain() {
        let (w, h) = (40u32, 30u32);
        let original: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 256) as u8).collect();
        let mut rgb = original.clone();
        let config = AnonymizeConfig { margin: 0.0, blocks: 2 };
        anonymize(&mut rgb, w, h, &[face([10.0, 10.0, 20.0, 20.0])], &config).expect("valid");
        let mut colours = std::collections::HashSet::new();
        for y in 0..h {
            for x in 0..w {
                let p = ((y * w + x) * 3) as usize;
                if (10..20).contains(&x) && (10..20).contains(&y) {
                    colours.insert([rgb[p], rgb[p + 1], rgb[p + 2]]);
                } else {
                    assert_eq!(rgb[p..p + 3], original[p..p + 3]);
                }
            }
        }
        assert!(colours.len() <= 4, "{} colours left in a 2x2 mosaic", colours.len());
    }

    proptest! {
        #[test]
        fn any_box_is_handled_without_panicking(
            x1 in -50.0f32..150.0, y1 in -50.0f32..150.0, bw in -10.0f32..200.0, bh in -10.0f32..200.0, blocks in 0u32..20,
        ) {
            let mut rgb = vec![9u8; 64 * 48 * 3];
            let config = AnonymizeConfig { margin: 0.3, blocks };
            prop_assert!(anonymize(&mut rgb, 64, 48, &[face([x1, y1, x1 + bw, y1 + bh])], &config).is_ok());
        }
    }
}
