//! The Faceplugin liveness classifier (`fr_liveness.onnx`, MIT, npm
//! `faceplugin-face-recognition-js`): the face box enlarged 2.7 times around its centre (less
//! when the frame is too small, shifted to stay inside it, as the package's own code does),
//! resized to 128x128, RGB 0..255 NCHW; three logits, softmax of the first is "live".
//!
//! models.md measured weak separation on simulated recaptures: the score is one input of the
//! gate's decision with a configurable threshold, not proof of presence on its own.

use std::path::Path;

use super::Face;
use crate::inventory;
use crate::onnx::{self, Plan};
use crate::warp::{resize_map, warp_planar};
use crate::VisionError;

const SIDE: u32 = 128;
const ENLARGE: f64 = 2.7;

/// The loaded classifier.
#[derive(Clone)]
pub struct Liveness {
    plan: Plan,
}

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Liveness(fr_liveness)")
    }
}

/// The crop the classifier sees for `face` in a `w` x `h` frame: `[x1, y1, x2, y2]`.
pub fn crop(face: &Face, w: u32, h: u32) -> [f64; 4] {
    let (fw, fh) = (f64::from(w), f64::from(h));
    let (bw, bh) = (f64::from(face.bbox[2] - face.bbox[0]).max(1.0), f64::from(face.bbox[3] - face.bbox[1]).max(1.0));
    let scale = ENLARGE.min((fh - 1.0).max(1.0) / bh).min((fw - 1.0).max(1.0) / bw);
    let (nw, nh) = (bw * scale, bh * scale);
    let (cx, cy) = (f64::from(face.bbox[0]) + bw / 2.0, f64::from(face.bbox[1]) + bh / 2.0);
    let (mut x1, mut y1, mut x2, mut y2) = (cx - nw / 2.0, cy - nh / 2.0, cx + nw / 2.0, cy + nh / 2.0);
    if x1 < 0.0 {
        x2 -= x1;
        x1 = 0.0;
    }
    if y1 < 0.0 {
        y2 -= y1;
        y1 = 0.0;
    }
    if x2 > fw - 1.0 {
        x1 -= x2 - fw + 1.0;
        x2 = fw - 1.0;
    }
    if y2 > fh - 1.0 {
        y1 -= y2 - fh + 1.0;
        y2 = fh - 1.0;
    }
    [x1.max(0.0), y1.max(0.0), x2, y2]
}

impl Liveness {
    /// The optimised model (for model-only timing).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Loads `fr_liveness.onnx` after checking its pin.
    ///
    /// # Errors
    /// [`VisionError::Read`], [`VisionError::Checksum`] or [`VisionError::Runtime`].
    pub fn load(path: &Path) -> Result<Liveness, VisionError> {
        Ok(Liveness { plan: onnx::load(path, &inventory::FR_LIVENESS, &[1, 3, SIDE as usize, SIDE as usize])? })
    }

    /// The probability in `[0, 1]` that `face` is a live person rather than a recapture.
    ///
    /// # Errors
    /// [`VisionError::BadImage`] or [`VisionError::Runtime`].
    pub fn score(&self, rgb: &[u8], w: u32, h: u32, face: &Face) -> Result<f32, VisionError> {
        let map = resize_map(crop(face, w, h), SIDE, SIDE);
        let outputs = self.plan.run(|input| warp_planar(rgb, w, h, &map, input, SIDE, SIDE, (SIDE, SIDE), |x| x))?;
        let logits = onnx::output(&outputs, 0, 3, "fr_liveness")?;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        Ok(if sum > 0.0 && sum.is_finite() { exp[0] / sum } else { 0.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crop_is_enlarged_and_kept_inside_the_frame() {
        let face = Face { bbox: [100.0, 100.0, 120.0, 130.0], score: 1.0, landmarks: None };
        let c = crop(&face, 640, 480);
        assert!(((c[2] - c[0]) - 54.0).abs() < 1e-6 && ((c[3] - c[1]) - 81.0).abs() < 1e-6);
        let corner = Face { bbox: [0.0, 0.0, 20.0, 30.0], score: 1.0, landmarks: None };
        let c = crop(&corner, 640, 480);
        assert!(c[0] == 0.0 && c[1] == 0.0 && (c[2] - 54.0).abs() < 1e-6);
        let big = Face { bbox: [0.0, 0.0, 600.0, 470.0], score: 1.0, landmarks: None };
        let c = crop(&big, 640, 480);
        assert!(c[0] >= 0.0 && c[1] >= 0.0 && c[2] <= 639.0 && c[3] <= 479.0, "{c:?}");
    }
}
