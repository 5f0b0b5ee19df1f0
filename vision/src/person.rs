//! The pedestrian SSDLite person detector (MobileNet SSDLite, two classes: background and
//! person), a TensorFlow 1 frozen graph run through tract-tensorflow.
//!
//! The frozen graph's own pre-processor (a `TensorArray` loop) and post-processor are not
//! supported by tract; they are also not needed. [`PersonDetector::load`] cuts the graph at
//! `Preprocessor/sub` (which becomes the input: a 1x300x300x3 image already scaled to
//! `x * 2/255 - 1`) and at the raw heads `concat` (box codes, 1x1917x1x4) and `concat_1`
//! (class logits, 1x1917x2). Resizing, decoding against the anchors and non-maximum
//! suppression are done here ([`crate::image`], [`crate::ssd`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use tract_tensorflow::prelude::*;
use tract_tensorflow::tfpb::tensorflow::GraphDef;

use crate::image::{check_rgb, resize_into};
use crate::inventory;
use crate::onnx::Plan;
use crate::ssd::{anchors, decode_box, nms, sigmoid, Anchor, AnchorConfig};
use crate::VisionError;

/// The network's input side.
pub const INPUT_SIDE: u32 = 300;
const INPUT_NODE: &str = "Preprocessor/sub";
const BOX_NODE: &str = "concat";
const CLASS_NODE: &str = "concat_1";

/// Detection thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonConfig {
    /// Minimum person score (sigmoid of the logit) to keep a box.
    pub min_score: f32,
    /// Boxes overlapping a better one by more than this IoU are suppressed.
    pub nms_iou: f32,
    /// At most this many people per frame.
    pub max_detections: usize,
}

impl Default for PersonConfig {
    fn default() -> PersonConfig {
        PersonConfig { min_score: 0.5, nms_iou: 0.6, max_detections: 100 }
    }
}

/// One detected person, in the frame's pixel coordinates.
#[derive(Clone, PartialEq)]
pub struct PersonBox {
    /// `[x1, y1, x2, y2]`, clipped to the frame.
    pub bbox: [f64; 4],
    /// Person score in `[0, 1]`.
    pub score: f32,
}

impl std::fmt::Debug for PersonBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A position of a person: not printed (privacy invariant 1).
        f.debug_struct("PersonBox").field("score", &self.score).finish_non_exhaustive()
    }
}

/// The loaded, optimised detector. Cheap to clone; `detect` takes `&self`, so one model can
/// serve several threads.
#[derive(Clone)]
pub struct PersonDetector {
    plan: Plan,
    anchors: Arc<Vec<Anchor>>,
    config: PersonConfig,
}

impl std::fmt::Debug for PersonDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonDetector").field("config", &self.config).finish_non_exhaustive()
    }
}

impl PersonDetector {
    /// Loads `frozen_inference_graph.pb` after checking its sha256 pin.
    ///
    /// # Errors
    /// [`VisionError::Read`], [`VisionError::Checksum`] or [`VisionError::Runtime`].
    pub fn load(path: &Path, config: PersonConfig) -> Result<PersonDetector, VisionError> {
        let bytes = crate::read_pinned(path, &inventory::PEDESTRIAN_SSDLITE)?;
        PersonDetector::from_bytes(&bytes, config)
    }

    /// Builds the detector from the frozen graph's bytes (no pin check).
    ///
    /// # Errors
    /// [`VisionError::Runtime`] when the graph is not the expected detector.
    pub fn from_bytes(bytes: &[u8], config: PersonConfig) -> Result<PersonDetector, VisionError> {
        let tf = tract_tensorflow::tensorflow();
        let mut graph = tf.proto_model_for_read(&mut &*bytes).map_err(VisionError::runtime)?;
        cut_graph(&mut graph)?;
        let mut model = tf.model_for_proto_model(&graph).map_err(VisionError::runtime)?;
        let outputs = [BOX_NODE, CLASS_NODE]
            .iter()
            .map(|name| model.node_id_by_name(name).map(|id| OutletId::new(id, 0)))
            .collect::<TractResult<Vec<_>>>()
            .map_err(VisionError::runtime)?;
        model.select_output_outlets(&outputs).map_err(VisionError::runtime)?;
        let side = INPUT_SIDE as usize;
        model.set_input_fact(0, f32::fact([1, side, side, 3]).into()).map_err(VisionError::runtime)?;
        let plan = model.into_optimized().and_then(|m| m.into_runnable()).map_err(VisionError::runtime)?;
        let plan = Plan::from_runnable(plan, &[1, side, side, 3]);
        let anchors = anchors(&AnchorConfig::ssdlite_300());
        Ok(PersonDetector { plan, anchors: Arc::new(anchors), config })
    }

    /// The thresholds in use.
    pub fn config(&self) -> &PersonConfig {
        &self.config
    }

    /// Detects people in a `w` x `h` packed RGB frame. The resized input tensor is zeroized
    /// before returning.
    ///
    /// # Errors
    /// [`VisionError::BadImage`] for a buffer of the wrong size, [`VisionError::Runtime`] if
    /// the model fails.
    pub fn detect(&self, rgb: &[u8], w: u32, h: u32) -> Result<Vec<PersonBox>, VisionError> {
        check_rgb(rgb, w, h)?;
        // Resize straight into the input tensor's buffer (no second copy of the frame); the
        // plan wipes it after the run.
        let outputs = self
            .plan
            .run(|input| resize_into(rgb, w, h, INPUT_SIDE, INPUT_SIDE, input, |x| x * (2.0 / 255.0) - 1.0))?;
        let (codes, logits) = match (outputs.first(), outputs.get(1)) {
            (Some(c), Some(l)) => (&c.data, &l.data),
            _ => return Err(VisionError::Runtime("the model returned fewer than two outputs".into())),
        };
        let n = self.anchors.len();
        if codes.len() != n * 4 || logits.len() != n * 2 {
            return Err(VisionError::Runtime(format!(
                "unexpected output sizes {} and {} for {n} anchors",
                codes.len(),
                logits.len()
            )));
        }
        let mut candidates = Vec::new();
        for (i, anchor) in self.anchors.iter().enumerate() {
            let score = sigmoid(logits[i * 2 + 1]);
            if score.is_finite() && score >= self.config.min_score {
                let code = [codes[i * 4], codes[i * 4 + 1], codes[i * 4 + 2], codes[i * 4 + 3]];
                candidates.push((decode_box(code, anchor), score));
            }
        }
        let kept = nms(candidates, self.config.nms_iou, self.config.max_detections);
        let (fw, fh) = (f64::from(w), f64::from(h));
        Ok(kept
            .into_iter()
            .map(|(b, score)| PersonBox {
                bbox: [
                    (f64::from(b[1]) * fw).clamp(0.0, fw),
                    (f64::from(b[0]) * fh).clamp(0.0, fh),
                    (f64::from(b[3]) * fw).clamp(0.0, fw),
                    (f64::from(b[2]) * fh).clamp(0.0, fh),
                ],
                score,
            })
            .filter(|p| p.bbox[2] > p.bbox[0] && p.bbox[3] > p.bbox[1])
            .collect())
    }
}

/// Keeps only the nodes the two heads need, with `Preprocessor/sub` turned into the input.
fn cut_graph(graph: &mut GraphDef) -> Result<(), VisionError> {
    let index: HashMap<String, usize> = graph.node.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
    let mut keep = HashSet::new();
    let mut stack = vec![BOX_NODE.to_owned(), CLASS_NODE.to_owned()];
    while let Some(name) = stack.pop() {
        if !keep.insert(name.clone()) || name == INPUT_NODE {
            continue;
        }
        let node = index.get(&name).and_then(|&i| graph.node.get(i)).ok_or_else(|| {
            VisionError::Runtime(format!("the graph has no node `{name}`: not the pedestrian SSDLite"))
        })?;
        for input in &node.input {
            let base = input.trim_start_matches('^').split(':').next().unwrap_or_default();
            stack.push(base.to_owned());
        }
    }
    if !keep.contains(INPUT_NODE) {
        return Err(VisionError::Runtime(format!("the heads do not depend on `{INPUT_NODE}`")));
    }
    graph.node.retain(|n| keep.contains(&n.name));
    for node in &mut graph.node {
        if node.name == INPUT_NODE {
            let dtype = node
                .attr
                .get("T")
                .cloned()
                .ok_or_else(|| VisionError::Runtime(format!("`{INPUT_NODE}` has no type attribute")))?;
            node.op = "Placeholder".into();
            node.input.clear();
            node.attr.clear();
            node.attr.insert("dtype".into(), dtype);
        }
    }
    Ok(())
}
