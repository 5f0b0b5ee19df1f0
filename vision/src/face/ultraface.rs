//! The Faceplugin UltraFace-style detector (`fr_detect.onnx`, MIT, npm
//! `faceplugin-face-recognition-js`): 320x240 input, RGB `(x - 127) / 128`, NCHW; the network
//! decodes its own 4,420 priors into corner boxes (0..1) and softmaxed scores. No landmarks.

use std::path::Path;

use super::{nms, Face, FaceDetector};
use crate::inventory;
use crate::onnx::{self, Plan};
use crate::warp::{resize_map, warp_planar};
use crate::VisionError;

const W: u32 = 320;
const H: u32 = 240;
const PRIORS: usize = 4420;

/// Detection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct UltraFaceConfig {
    /// Minimum face probability.
    pub min_score: f32,
    /// NMS overlap.
    pub nms_iou: f32,
    /// At most this many faces.
    pub max_faces: usize,
}

impl Default for UltraFaceConfig {
    fn default() -> UltraFaceConfig {
        UltraFaceConfig { min_score: 0.7, nms_iou: 0.3, max_faces: 64 }
    }
}

/// The loaded detector.
#[derive(Clone)]
pub struct UltraFace {
    plan: Plan,
    config: UltraFaceConfig,
}

impl std::fmt::Debug for UltraFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UltraFace").field("config", &self.config).finish_non_exhaustive()
    }
}

impl UltraFace {
    /// The optimised model (for model-only timing).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Loads `fr_detect.onnx` after checking its pin.
    ///
    /// # Errors
    /// [`VisionError::Read`], [`VisionError::Checksum`] or [`VisionError::Runtime`].
    pub fn load(path: &Path, config: UltraFaceConfig) -> Result<UltraFace, VisionError> {
        Ok(UltraFace { plan: onnx::load(path, &inventory::FR_DETECT, &[1, 3, H as usize, W as usize])?, config })
    }
}

impl FaceDetector for UltraFace {
    fn name(&self) -> &'static str {
        "ultraface"
    }

    fn detect(&self, rgb: &[u8], w: u32, h: u32) -> Result<Vec<Face>, VisionError> {
        let map = resize_map([0.0, 0.0, f64::from(w), f64::from(h)], W, H);
        let outputs =
            self.plan.run(|input| warp_planar(rgb, w, h, &map, input, W, H, (W, H), |x| (x - 127.0) / 128.0))?;
        let scores = onnx::output(&outputs, 0, PRIORS * 2, "ultraface")?;
        let boxes = onnx::output(&outputs, 1, PRIORS * 4, "ultraface")?;
        let (fw, fh) = (w as f32, h as f32);
        let faces = (0..PRIORS)
            .filter(|&i| scores[i * 2 + 1] >= self.config.min_score)
            .map(|i| Face {
                bbox: [
                    (boxes[i * 4] * fw).clamp(0.0, fw),
                    (boxes[i * 4 + 1] * fh).clamp(0.0, fh),
                    (boxes[i * 4 + 2] * fw).clamp(0.0, fw),
                    (boxes[i * 4 + 3] * fh).clamp(0.0, fh),
                ],
                score: scores[i * 2 + 1],
                landmarks: None,
            })
            .filter(|f| f.bbox[2] > f.bbox[0] && f.bbox[3] > f.bbox[1])
            .collect();
        Ok(nms(faces, self.config.nms_iou, self.config.max_faces))
    }
}
