//! One frame through the whole face chain: detect, then per face (largest first) liveness on
//! a second thread beside alignment and embedding, with the time of each stage.

use std::path::Path;
use std::time::Instant;

use super::{CenterFace, CenterFaceConfig, Embedder, Embedding, Face, FaceDetector, Liveness};
use crate::inventory;
use crate::VisionError;

/// Pipeline settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// Detector settings.
    pub detector: CenterFaceConfig,
    /// Faces whose shorter box side is below this many pixels are detected but not embedded
    /// (too small to recognise reliably).
    pub min_face_px: f32,
    /// At most this many faces per frame are embedded (largest first).
    pub max_embedded: usize,
    /// Run the liveness classifier.
    pub liveness: bool,
}

impl Default for PipelineConfig {
    fn default() -> PipelineConfig {
        PipelineConfig { detector: CenterFaceConfig::default(), min_face_px: 40.0, max_embedded: 4, liveness: true }
    }
}

/// Milliseconds spent in each stage for one frame (summed over its faces).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Detection.
    pub detect_ms: f64,
    /// Liveness.
    pub liveness_ms: f64,
    /// Alignment.
    pub align_ms: f64,
    /// Embedding.
    pub embed_ms: f64,
}

/// A face with its embedding.
#[derive(Debug)]
pub struct ProcessedFace {
    /// The detection.
    pub face: Face,
    /// Liveness probability, when the classifier ran.
    pub liveness: Option<f32>,
    /// The L2-normalised embedding, when the face was large enough.
    pub embedding: Option<Embedding>,
}

/// The loaded face chain. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FacePipeline {
    detector: CenterFace,
    liveness: Option<Liveness>,
    embedder: Embedder,
    config: PipelineConfig,
}

impl FacePipeline {
    /// Loads the models from `{models_dir}/{name}/{file}` (the layout `passage models fetch`
    /// writes), checking every pin.
    ///
    /// # Errors
    /// The first model that cannot be read, is not the pinned file, or does not load.
    pub fn load(models_dir: &Path, config: PipelineConfig) -> Result<FacePipeline, VisionError> {
        let path = |spec: &inventory::ModelSpec| models_dir.join(spec.name).join(spec.file);
        let detector = CenterFace::load(&path(&inventory::CENTERFACE), config.detector.clone())?;
        let liveness = if config.liveness { Some(Liveness::load(&path(&inventory::FR_LIVENESS))?) } else { None };
        let embedder = Embedder::load(&path(&inventory::SFACE))?;
        Ok(FacePipeline { detector, liveness, embedder, config })
    }

    /// The detector.
    pub fn detector(&self) -> &CenterFace {
        &self.detector
    }

    /// The embedder.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// The liveness classifier, when enabled.
    pub fn liveness(&self) -> Option<&Liveness> {
        self.liveness.as_ref()
    }

    /// The settings in use.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Runs the chain on one `w` x `h` packed RGB frame.
    ///
    /// # Errors
    /// [`VisionError::BadImage`] for a buffer of the wrong size, [`VisionError::Runtime`]
    /// when a model fails.
    pub fn process(&self, rgb: &[u8], w: u32, h: u32) -> Result<(Vec<ProcessedFace>, StageTimes), VisionError> {
        let mut times = StageTimes::default();
        let started = Instant::now();
        let mut faces = self.detector.detect(rgb, w, h)?;
        times.detect_ms = ms(started);
        // Largest first: the person nearest the gate.
        faces.sort_by(|a, b| {
            let area = |f: &Face| f.size().0 * f.size().1;
            area(b).total_cmp(&area(a))
        });
        let mut out = Vec::with_capacity(faces.len());
        for (i, face) in faces.into_iter().enumerate() {
            let (fw, fh) = face.size();
            if i >= self.config.max_embedded || fw.min(fh) < self.config.min_face_px {
                out.push(ProcessedFace { face, liveness: None, embedding: None });
                continue;
            }
            // Liveness reads its own crop of the frame: it runs on a second thread beside
            // alignment and embedding (a gate has two cores; each stage keeps its own time).
            let (liveness, embedded) = std::thread::scope(|scope| {
                let liveness = self.liveness.as_ref().map(|model| {
                    let face = &face;
                    scope.spawn(move || {
                        let started = Instant::now();
                        model.score(rgb, w, h, face).map(|score| (score, ms(started)))
                    })
                });
                let embedded = (|| {
                    let started = Instant::now();
                    let aligned = Embedder::align(rgb, w, h, &face)?;
                    let align_ms = ms(started);
                    let started = Instant::now();
                    let embedding = self.embedder.embed_aligned(&aligned)?;
                    Ok::<_, VisionError>((embedding, align_ms, ms(started)))
                })();
                let liveness = liveness.map(|handle| {
                    handle.join().unwrap_or_else(|_| Err(VisionError::Runtime("the liveness model stopped".into())))
                });
                (liveness.transpose(), embedded)
            });
            let liveness = match liveness? {
                Some((score, took)) => {
                    times.liveness_ms += took;
                    Some(score)
                }
                None => None,
            };
            let (embedding, align_ms, embed_ms) = embedded?;
            times.align_ms += align_ms;
            times.embed_ms += embed_ms;
            out.push(ProcessedFace { face, liveness, embedding: Some(embedding) });
        }
        Ok((out, times))
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
