//! The gate's face stage: frames in, at most one probe per person per approach out.
//!
//! A person walking up to a gate is in many consecutive frames. [`ApproachFilter`] keeps the
//! embeddings of the faces it let through in the last `window` (RAM only, wiped on drop) and
//! drops a new face whose embedding is that close to one of them: the same person, still
//! approaching. [`FaceStage`] runs the face pipeline, applies the liveness threshold and the
//! filter, and hands out embeddings for the key holder to quantise and encrypt.

use std::time::{Duration, Instant};

use passage_vision::face::{CenterFaceConfig, Embedding, FacePipeline, PipelineConfig, StageTimes};

use crate::frames::RgbFrame;

/// De-duplicates faces within a time window, in RAM.
#[derive(Debug)]
pub struct ApproachFilter {
    window: Duration,
    same_person: f32,
    recent: Vec<Approach>,
}

/// A face let through: when it was last seen, and when it may try again while still in view
/// (after a refusal that concerned the attempt, not the person).
#[derive(Debug)]
struct Approach {
    seen: Instant,
    retry_at: Option<Instant>,
    embedding: Embedding,
}

impl ApproachFilter {
    /// Faces within `window` of a let-through face with cosine ≥ `same_person` are dropped.
    pub fn new(window: Duration, same_person: f32) -> ApproachFilter {
        ApproachFilter { window, same_person, recent: Vec::new() }
    }

    /// Whether `embedding`, seen at `now`, starts a new approach (and remembers it if so).
    pub fn admit(&mut self, now: Instant, embedding: &Embedding) -> bool {
        self.recent.retain(|a| now.saturating_duration_since(a.seen) < self.window);
        if let Some(entry) = self.recent.iter_mut().find(|a| a.embedding.cosine(embedding) >= self.same_person) {
            // Still approaching: the window runs from the last sighting.
            entry.seen = now;
            if entry.retry_at.is_some_and(|at| now >= at) {
                entry.retry_at = None;
                return true;
            }
            return false;
        }
        self.recent.push(Approach { seen: now, retry_at: None, embedding: embedding.clone() });
        true
    }

    /// Forgets `embedding`'s approach (a frame that was decided otherwise).
    pub fn forget(&mut self, embedding: &Embedding) {
        self.recent.retain(|a| a.embedding.cosine(embedding) < self.same_person);
    }

    /// Lets `embedding`'s approach try again when seen from `at` on, still in view.
    pub fn retry_at(&mut self, embedding: &Embedding, at: Instant) {
        for entry in self.recent.iter_mut().filter(|a| a.embedding.cosine(embedding) >= self.same_person) {
            entry.retry_at = Some(at);
        }
    }

    /// Faces remembered now.
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }
}

/// Face stage settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceStageConfig {
    /// Faces with a liveness score below this are not probed (`None`: liveness not required).
    pub min_liveness: Option<f32>,
    /// De-duplication window.
    pub window: Duration,
    /// Cosine above which two faces in the window are the same person.
    pub same_person: f32,
}

impl Default for FaceStageConfig {
    fn default() -> FaceStageConfig {
        FaceStageConfig { min_liveness: None, window: Duration::from_secs(10), same_person: 0.5 }
    }
}

impl FaceStageConfig {
    /// The stage settings of a deployment's `[faces]` section.
    pub fn from_config(faces: &passage_config::Faces) -> FaceStageConfig {
        FaceStageConfig {
            min_liveness: faces.min_liveness.map(|l| l as f32),
            window: Duration::from_secs(u64::from(faces.approach_window_secs)),
            same_person: faces.same_person_cosine as f32,
        }
    }
}

/// The face pipeline settings of a deployment's `[faces]` section.
pub fn pipeline_config(faces: &passage_config::Faces) -> PipelineConfig {
    PipelineConfig {
        detector: CenterFaceConfig {
            min_score: faces.min_detection_score as f32,
            max_side: faces.detect_max_side,
            ..CenterFaceConfig::default()
        },
        min_face_px: faces.min_face_px as f32,
        liveness: faces.min_liveness.is_some(),
        ..PipelineConfig::default()
    }
}

/// Why an enrolment photo gave no embedding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolmentPhotoError {
    /// Not a JPEG or PNG image, or a damaged one.
    #[error("the photo: {0}")]
    Decode(String),
    /// No face large enough.
    #[error("no face large enough was found: use a well-lit photo of the face, looking at the camera")]
    NoFace,
    /// Two faces or more.
    #[error("more than one face is in the photo: only the person enrolling may be")]
    SeveralFaces,
    /// The models failed on it.
    #[error("the face chain failed on the photo: {0}")]
    Pipeline(String),
}

/// The embedding of the one face of an enrolment photo (JPEG or PNG bytes); the decoded
/// image is wiped before this returns, the embedding when it is dropped.
///
/// # Errors
/// [`EnrolmentPhotoError`].
pub fn enrolment_embedding(faces: &FacePipeline, photo: &[u8]) -> Result<Embedding, EnrolmentPhotoError> {
    let image = passage_vision::decode::decode(photo).map_err(|e| EnrolmentPhotoError::Decode(e.to_string()))?;
    let (found, _) =
        faces.process(&image.rgb, image.w, image.h).map_err(|e| EnrolmentPhotoError::Pipeline(e.to_string()))?;
    drop(image);
    let mut embedded = found.into_iter().filter_map(|f| f.embedding);
    match (embedded.next(), embedded.next()) {
        (None, _) => Err(EnrolmentPhotoError::NoFace),
        (Some(_), Some(_)) => Err(EnrolmentPhotoError::SeveralFaces),
        (Some(one), None) => Ok(one),
    }
}

/// What became of one face in a frame.
#[derive(Debug)]
pub enum FaceOutcome {
    /// A new approach: probe the matcher with this embedding.
    Probe(Embedding),
    /// The same person as a recent probe.
    Duplicate,
    /// Liveness below the threshold.
    NotLive,
    /// Too small or beyond the per-frame limit: detected, not embedded.
    NotEmbedded,
}

/// The face stage of one gate.
#[derive(Debug)]
pub struct FaceStage {
    pipeline: FacePipeline,
    filter: ApproachFilter,
    config: FaceStageConfig,
}

impl FaceStage {
    /// A stage over a loaded pipeline.
    pub fn new(pipeline: FacePipeline, config: FaceStageConfig) -> FaceStage {
        let filter = ApproachFilter::new(config.window, config.same_person);
        FaceStage { pipeline, filter, config }
    }

    /// Forgets the approach of a probe this stage let through, when its frame was decided by
    /// something else (a QR ticket in the same frame): the face is then still new next time.
    pub fn forget(&mut self, embedding: &Embedding) {
        self.filter.forget(embedding);
    }

    /// Lets a probe this stage let through try again from `at` while its person stays in view
    /// (the attempt was refused for a reason that may pass: [`passage_policy::access::Reason::is_retryable`]).
    pub fn retry_at(&mut self, embedding: &Embedding, at: Instant) {
        self.filter.retry_at(embedding, at);
    }

    /// Processes one frame seen at `now`: one outcome per detected face, largest first.
    ///
    /// # Errors
    /// The pipeline's error for a bad frame; the stage stays usable for the next one.
    pub fn observe(
        &mut self,
        frame: &RgbFrame,
        now: Instant,
    ) -> Result<(Vec<FaceOutcome>, StageTimes), passage_vision::VisionError> {
        let (faces, times) = self.pipeline.process(&frame.rgb, frame.w, frame.h)?;
        let outcomes = faces
            .into_iter()
            .map(|face| match (face.embedding, face.liveness, self.config.min_liveness) {
                (None, _, _) => FaceOutcome::NotEmbedded,
                (Some(_), Some(live), Some(min)) if live < min => FaceOutcome::NotLive,
                (Some(embedding), _, _) => {
                    if self.filter.admit(now, &embedding) {
                        // The planted defect of the `plant-leak` test build (see Cargo.toml).
                        #[cfg(feature = "plant-leak")]
                        tracing::debug!(embedding = ?embedding.as_slice(), "planted leak: probe embedding");
                        FaceOutcome::Probe(embedding)
                    } else {
                        FaceOutcome::Duplicate
                    }
                }
            })
            .collect();
        Ok((outcomes, times))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Embedding {
        Embedding::normalised(v.to_vec()).expect("non-zero")
    }

    #[test]
    fn one_probe_per_person_per_approach() {
        let mut filter = ApproachFilter::new(Duration::from_secs(10), 0.5);
        let t0 = Instant::now();
        let alice = unit(&[1.0, 0.0, 0.0]);
        let alice_again = unit(&[0.9, 0.1, 0.0]);
        let bob = unit(&[0.0, 1.0, 0.0]);
        assert!(filter.admit(t0, &alice));
        assert!(!filter.admit(t0 + Duration::from_secs(1), &alice_again));
        assert!(filter.admit(t0 + Duration::from_secs(1), &bob));
        filter.forget(&alice_again);
        assert!(filter.admit(t0 + Duration::from_secs(2), &alice), "a forgotten approach starts again");
        // Alice keeps walking up: each sighting extends her window.
        assert!(!filter.admit(t0 + Duration::from_secs(9), &alice));
        assert!(!filter.admit(t0 + Duration::from_secs(18), &alice));
        // She leaves; after a full window without her she is a new approach.
        assert!(filter.admit(t0 + Duration::from_secs(29), &alice));
        assert_eq!(filter.len(), 1, "bob's entry expired");
    }

    #[test]
    fn a_refused_attempt_tries_again_after_the_pause_while_in_view() {
        let mut filter = ApproachFilter::new(Duration::from_secs(10), 0.5);
        let t0 = Instant::now();
        let alice = unit(&[1.0, 0.0, 0.0]);
        let bob = unit(&[0.0, 1.0, 0.0]);
        assert!(filter.admit(t0, &alice));
        assert!(filter.admit(t0, &bob));
        // Alice's attempt was refused "try again": she may from t0 + 2 s, Bob may not.
        filter.retry_at(&alice, t0 + Duration::from_secs(2));
        assert!(!filter.admit(t0 + Duration::from_secs(1), &alice), "not before the pause");
        assert!(filter.admit(t0 + Duration::from_secs(2), &alice), "again after it, still in view");
        assert!(!filter.admit(t0 + Duration::from_secs(3), &alice), "once: then the approach holds again");
        assert!(!filter.admit(t0 + Duration::from_secs(3), &bob));
    }
}
