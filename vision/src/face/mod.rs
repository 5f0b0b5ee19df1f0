//! The face path: detection with landmarks, liveness, alignment and embedding, through tract.
//!
//! * [`centerface`]: CenterFace, the detector of the gate (boxes and five landmarks).
//! * [`ultraface`]: the Faceplugin UltraFace-style detector (boxes only), a second opinion
//!   used by the anonymiser's test oracle.
//! * [`yunet`], [`mtcnn`]: two more detectors, the third and fourth opinions of the
//!   anonymiser's oracle.
//! * [`liveness`]: the Faceplugin liveness classifier.
//! * [`embed`]: SFace, 128-d embeddings of faces aligned to the ArcFace template.
//! * [`pipeline`]: the whole chain for one frame, with per-stage timings.
//!
//! Faces, crops, landmarks and embeddings exist in RAM only: `Debug` never prints them and
//! the buffers that hold pixels or embeddings are wiped after use (privacy invariant 1).

pub mod centerface;
pub mod embed;
pub mod liveness;
pub mod mtcnn;
pub mod pipeline;
pub mod ultraface;
pub mod yunet;

pub use centerface::{CenterFace, CenterFaceConfig};
pub use embed::{AlignedFace, Embedder, Embedding, EMBEDDING_DIM};
pub use liveness::Liveness;
pub use mtcnn::{Mtcnn, MtcnnConfig};
pub use pipeline::{FacePipeline, PipelineConfig, ProcessedFace, StageTimes};
pub use ultraface::{UltraFace, UltraFaceConfig};
pub use yunet::{YuNet, YuNetConfig};

use crate::VisionError;

/// One detected face in frame pixel coordinates.
#[derive(Clone, PartialEq)]
pub struct Face {
    /// `[x1, y1, x2, y2]`, clipped to the frame.
    pub bbox: [f32; 4],
    /// Detector confidence in `[0, 1]`.
    pub score: f32,
    /// Left eye, right eye, nose tip, left and right mouth corners, when the detector gives them.
    pub landmarks: Option<[[f32; 2]; 5]>,
}

impl std::fmt::Debug for Face {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Where a face is, and its landmarks, are not printed (privacy invariant 1).
        f.debug_struct("Face").field("score", &self.score).finish_non_exhaustive()
    }
}

impl Face {
    /// Width and height of the box.
    pub fn size(&self) -> (f32, f32) {
        (self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1])
    }
}

/// Anything that finds faces in a packed RGB frame.
pub trait FaceDetector: Send + Sync {
    /// A short name (`centerface`, `ultraface`, `yunet`, `mtcnn`).
    fn name(&self) -> &'static str;
    /// The faces in a `w` x `h` packed RGB frame.
    ///
    /// # Errors
    /// [`VisionError::BadImage`] for a buffer of the wrong size, [`VisionError::Runtime`]
    /// when the model fails.
    fn detect(&self, rgb: &[u8], w: u32, h: u32) -> Result<Vec<Face>, VisionError>;
}

/// Intersection over union of two boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Greedy non-maximum suppression: best first, dropping boxes overlapping a kept one by more
/// than `max_iou`, at most `max_out`.
pub fn nms(mut faces: Vec<Face>, max_iou: f32, max_out: usize) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Face> = Vec::new();
    for face in faces {
        if kept.len() >= max_out {
            break;
        }
        if kept.iter().all(|k| iou(&k.bbox, &face.bbox) <= max_iou) {
            kept.push(face);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(b: [f32; 4], score: f32) -> Face {
        Face { bbox: b, score, landmarks: None }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let kept = nms(
            vec![
                face([0.0, 0.0, 10.0, 10.0], 0.6),
                face([1.0, 1.0, 11.0, 11.0], 0.9),
                face([50.0, 50.0, 60.0, 60.0], 0.7),
            ],
            0.3,
            10,
        );
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].score, 0.7);
        assert_eq!(nms(kept, 0.3, 1).len(), 1);
    }

    #[test]
    fn debug_does_not_print_positions() {
        let text =
            format!("{:?}", Face { bbox: [12.5, 13.5, 14.5, 15.5], score: 0.5, landmarks: Some([[99.25, 98.25]; 5]) });
        assert!(!text.contains("12.5") && !text.contains("99.25"), "{text}");
    }
}
