//! The key holder: the venue's gate controller, the only place the FHE secret key exists.
//!
//! It encrypts templates for enrolment and probes for matching, sends them to the matcher
//! over the bus, decrypts the encrypted scores it gets back and thresholds them. Scores and
//! quantised vectors live in RAM only and are zeroized after use.
//!
//! Foundation scope: the key is generated at start and held in RAM only (never written), so a
//! restart means re-enrolment; the encrypted key store and key rotation are the matcher
//! issue's work (see ARCHITECTURE.md).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use passage_fhe::{DecisionResult, FheRng, Params, Quantizer, ScoreResult, SecretKey};
use passage_transport::{Bus, BusError};
use passage_wire::{
    topics, DecisionKeyUpload, EnrolRequest, EnrolResponse, EnrolStatus, EraseRequest, GalleryIndex, Id, MatchMode,
    MatchRequest, MatchResponse, MatchStatus, MatchTarget, PROTOCOL_VERSION,
};
use rand::TryRngCore;
use zeroize::Zeroize;

use crate::lock;

/// Why a key-holder operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyHolderError {
    /// The embedding could not be quantised or encrypted.
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
    /// The bus failed or the matcher did not answer in time.
    #[error("matcher unreachable")]
    Bus(#[from] BusError),
    /// The matcher's answer could not be decoded.
    #[error("malformed answer from the matcher: {0}")]
    Answer(String),
    /// The matcher's HTTPS API could not be reached or did not answer in time.
    #[error("matcher unreachable over HTTPS: {0}")]
    Https(String),
    /// The matcher refused the request.
    #[error("matcher answered {status:?}: {detail}")]
    Refused {
        /// Status code.
        status: MatchStatus,
        /// Reason given.
        detail: String,
    },
}

/// What the key holder concluded about one face.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identification {
    /// A template scored at or above the threshold: the pseudonymous subject of the best one.
    Match(Id),
    /// No template reached the threshold.
    NoMatch,
    /// Decision mode only: several templates reached the threshold and the key holder cannot
    /// rank them (it learns no scores). The gate treats this like no match.
    Ambiguous(usize),
}

/// The matcher's HTTPS API as the key holder's way to send match requests
/// (`[matching] link = "https"`): one mutually authenticated TLS connection straight to the
/// matcher instead of two hops through the broker. The score response of a large gallery is
/// tens of megabytes (387.5 bytes per template), and each broker hop copies it several times.
/// Enrolments, erasures and the gallery index stay on the bus.
#[derive(Debug, Clone)]
pub struct HttpsMatcher {
    client: reqwest::Client,
    url: String,
}

impl HttpsMatcher {
    /// Match requests go to `{base}/api/v1/match` (`base`: `https://host:port`) through
    /// `client`, which carries the edge's client certificate and trusts the matcher's CA.
    pub fn new(client: reqwest::Client, base: &str) -> HttpsMatcher {
        HttpsMatcher { client, url: format!("{}/api/v1/match", base.trim_end_matches('/')) }
    }

    /// Posts one encoded request; the answer is a `MatchResponse` frame whatever the HTTP
    /// status (the matcher maps its statuses onto HTTP ones).
    async fn request(&self, body: Vec<u8>, timeout: Duration) -> Result<bytes::Bytes, KeyHolderError> {
        let unreachable = |error: reqwest::Error| KeyHolderError::Https(error.without_url().to_string());
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        response.bytes().await.map_err(unreachable)
    }
}

/// The key holder of one venue.
pub struct KeyHolder {
    venue: Id,
    key: SecretKey,
    quantizer: Quantizer,
    threshold: i32,
    rng: Mutex<FheRng>,
    index: Mutex<Option<GalleryIndex>>,
    timeout: Duration,
    /// Enrolment is off a gate's critical path: by default it waits longer than a match, so a
    /// matcher busy installing a decision key still answers.
    enrol_timeout: Duration,
    /// Match requests over HTTPS instead of the bus, when set.
    https: Option<HttpsMatcher>,
}

impl std::fmt::Debug for KeyHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyHolder").field("venue", &self.venue).finish_non_exhaustive()
    }
}

/// 16 bytes from the operating system's CSPRNG, to key the FHE generator.
fn os_seed() -> Result<[u8; 16], KeyHolderError> {
    let mut seed = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|error| KeyHolderError::Encrypt(format!("no entropy from the operating system: {error}")))?;
    Ok(seed)
}

impl KeyHolder {
    /// A key holder with a fresh key for `venue`, held in RAM only (the demo's choice: a
    /// restart means re-enrolment); `cosine_threshold` is the match threshold.
    pub fn generate(venue: Id, params: Params, cosine_threshold: f64) -> Result<KeyHolder, KeyHolderError> {
        let mut rng = FheRng::from_seed(os_seed()?);
        let key = SecretKey::generate(params, &mut rng).map_err(KeyHolderError::Encrypt)?;
        drop(rng);
        KeyHolder::from_key(venue, key, cosine_threshold)
    }

    /// A key holder using `key` (loaded from the encrypted [`crate::keystore::KeyStore`]).
    pub fn from_key(venue: Id, key: SecretKey, cosine_threshold: f64) -> Result<KeyHolder, KeyHolderError> {
        let rng = FheRng::from_seed(os_seed()?);
        let params = *key.params();
        let quantizer = Quantizer::new(&params);
        let threshold = quantizer.score_threshold(cosine_threshold);
        Ok(KeyHolder {
            venue,
            key,
            quantizer,
            threshold,
            rng: Mutex::new(rng),
            index: Mutex::new(None),
            timeout: Duration::from_secs(10),
            enrol_timeout: Duration::from_secs(30),
            https: None,
        })
    }

    /// Sends match requests (identification and verification) to the matcher's HTTPS API
    /// instead of over the bus.
    #[must_use]
    pub fn with_https_matcher(mut self, https: HttpsMatcher) -> KeyHolder {
        self.https = Some(https);
        self
    }

    /// Waits `timeout` for each answer of the matcher, enrolments included (by default 10 s
    /// for a match, 30 s for an enrolment; decision mode over a large gallery takes longer).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> KeyHolder {
        self.timeout = timeout;
        self.enrol_timeout = timeout;
        self
    }

    /// The scheme parameters.
    pub fn params(&self) -> &Params {
        self.key.params()
    }

    /// The venue.
    pub fn venue(&self) -> &Id {
        &self.venue
    }

    /// Encrypts an embedding as a template and enrols it for `subject`. The plaintext never
    /// leaves this process.
    pub async fn enrol(&self, bus: &Bus, subject: &Id, embedding: &[f32]) -> Result<EnrolResponse, KeyHolderError> {
        let quantized = self.quantizer.quantize(embedding).map_err(KeyHolderError::Encrypt)?;
        let template = {
            let mut rng = lock(&self.rng);
            self.key.encrypt_template(&quantized, &mut rng).map_err(KeyHolderError::Encrypt)?
        };
        let request =
            EnrolRequest { venue: self.venue.clone(), subject: subject.clone(), template: template.to_bytes() };
        let reply = bus.request(&topics::enrol(&self.venue), request.encode(), self.enrol_timeout).await?;
        let response = EnrolResponse::decode(&reply.payload).map_err(|e| KeyHolderError::Answer(e.to_string()))?;
        if response.status == EnrolStatus::Ok {
            *lock(&self.index) = None;
        }
        Ok(response)
    }

    /// Builds the encrypted 1:N score-mode request for one face (quantise, encrypt the probe).
    pub fn probe_request(&self, gate: &Id, embedding: &[f32]) -> Result<MatchRequest, KeyHolderError> {
        self.request_for(gate, embedding, MatchMode::Score, MatchTarget::Gallery)
    }

    /// Builds an encrypted request for one face in `mode` against `target`.
    pub fn request_for(
        &self,
        gate: &Id,
        embedding: &[f32],
        mode: MatchMode,
        target: MatchTarget,
    ) -> Result<MatchRequest, KeyHolderError> {
        let quantized = self.quantizer.quantize(embedding).map_err(KeyHolderError::Encrypt)?;
        let probe = {
            let mut rng = lock(&self.rng);
            self.key.encrypt_probe(&quantized, &mut rng).map_err(KeyHolderError::Encrypt)?
        };
        Ok(MatchRequest {
            venue: self.venue.clone(),
            gate: gate.clone(),
            mode,
            target,
            threshold: self.threshold,
            probe: probe.to_bytes(),
        })
    }

    /// Makes the decision-mode evaluation key and publishes it to the matcher, which stores
    /// it. Takes a few seconds of CPU (run from a multi-threaded runtime).
    pub async fn publish_decision_key(&self, bus: &Bus) -> Result<(), KeyHolderError> {
        let key = tokio::task::block_in_place(|| {
            let mut rng = lock(&self.rng);
            self.key.generate_decision_key(&mut rng)
        });
        let upload = DecisionKeyUpload { venue: self.venue.clone(), key: key.to_bytes() };
        let reply = bus.request(&topics::decision_key(&self.venue), upload.encode(), self.timeout * 6).await?;
        let response = EnrolResponse::decode(&reply.payload).map_err(|e| KeyHolderError::Answer(e.to_string()))?;
        if response.status != EnrolStatus::Ok {
            return Err(KeyHolderError::Refused { status: MatchStatus::NoDecisionKey, detail: response.detail });
        }
        Ok(())
    }

    /// Identifies a face against the venue's whole gallery (1:N, score mode).
    pub async fn identify(&self, bus: &Bus, gate: &Id, embedding: &[f32]) -> Result<Identification, KeyHolderError> {
        self.identify_with(bus, gate, embedding, MatchMode::Score).await
    }

    /// Identifies a face against the venue's whole gallery (1:N) in `mode`. In score mode the
    /// best template at or above the threshold wins; in decision mode the key holder learns
    /// only which templates matched, and more than one is [`Identification::Ambiguous`].
    pub async fn identify_with(
        &self,
        bus: &Bus,
        gate: &Id,
        embedding: &[f32],
        mode: MatchMode,
    ) -> Result<Identification, KeyHolderError> {
        self.identify_timed(bus, gate, embedding, mode, &mut IdentifyTimes::default()).await
    }

    /// [`KeyHolder::identify_with`], recording the time of each step in `times`.
    pub async fn identify_timed(
        &self,
        bus: &Bus,
        gate: &Id,
        embedding: &[f32],
        mode: MatchMode,
        times: &mut IdentifyTimes,
    ) -> Result<Identification, KeyHolderError> {
        let started = Instant::now();
        let request = self.request_for(gate, embedding, mode, MatchTarget::Gallery)?;
        times.encrypt_ms = ms(started);
        let Some((slots, epoch)) = self.matching_slots(bus, request, times).await? else {
            return Ok(Identification::NoMatch);
        };
        match slots.as_slice() {
            [] => Ok(Identification::NoMatch),
            [slot] => {
                let started = Instant::now();
                let subject = self.subject_of(bus, *slot, epoch).await?;
                times.lookup_ms = ms(started);
                Ok(subject.map_or(Identification::NoMatch, Identification::Match))
            }
            several => Ok(Identification::Ambiguous(several.len())),
        }
    }

    /// 1:1 verification (the ticket names the subject): whether the face matches that
    /// subject's template, in `mode`. A subject not enrolled does not match.
    pub async fn verify(
        &self,
        bus: &Bus,
        gate: &Id,
        subject: &Id,
        embedding: &[f32],
        mode: MatchMode,
    ) -> Result<bool, KeyHolderError> {
        let index = self.fresh_index(bus).await?;
        let Some(slot) = index.subjects.iter().position(|s| s == subject) else { return Ok(false) };
        let request = self.request_for(gate, embedding, mode, MatchTarget::Slot(slot as u32))?;
        let Some((slots, epoch)) = self.matching_slots(bus, request, &mut IdentifyTimes::default()).await? else {
            return Ok(false);
        };
        if epoch != index.epoch {
            // The gallery changed between the index and the evaluation: the slot may now hold
            // someone else. Refuse rather than guess; the gate asks the visitor to try again.
            return Err(KeyHolderError::Answer("the gallery changed during verification; try again".into()));
        }
        Ok(slots == [slot as u32])
    }

    /// Sends a request and returns the slots at or above the threshold with the gallery epoch,
    /// or `None` for an empty gallery.
    async fn matching_slots(
        &self,
        bus: &Bus,
        request: MatchRequest,
        times: &mut IdentifyTimes,
    ) -> Result<Option<(Vec<u32>, u64)>, KeyHolderError> {
        let mode = request.mode;
        let started = Instant::now();
        let reply = match &self.https {
            Some(https) => https.request(request.encode(), self.timeout).await?,
            None => bus.request(&topics::match_requests(&self.venue), request.encode(), self.timeout).await?.payload,
        };
        times.exchange_ms = ms(started);
        let started = Instant::now();
        let response = MatchResponse::decode(&reply).map_err(|e| KeyHolderError::Answer(e.to_string()))?;
        match response.status {
            MatchStatus::Ok => {}
            MatchStatus::EmptyGallery => return Ok(None),
            status => return Err(KeyHolderError::Refused { status, detail: response.detail }),
        }
        let params = *self.key.params();
        let slots = match mode {
            MatchMode::Score => {
                let result = ScoreResult::from_bytes(params, &response.result)
                    .map_err(|e| KeyHolderError::Answer(e.to_string()))?;
                let mut decrypted = self.key.decrypt_scores(&result).map_err(KeyHolderError::Answer)?;
                // The best template only: scores never leave this function.
                let best = decrypted
                    .scores
                    .iter()
                    .filter(|(_, s)| *s >= self.threshold)
                    .max_by_key(|(_, s)| *s)
                    .map(|(slot, _)| *slot);
                for (slot, score) in &mut decrypted.scores {
                    slot.zeroize();
                    score.zeroize();
                }
                best.into_iter().collect()
            }
            MatchMode::Decision => {
                let result = DecisionResult::from_bytes(params, &response.result)
                    .map_err(|e| KeyHolderError::Answer(e.to_string()))?;
                self.key.decrypt_decisions(&result).map_err(KeyHolderError::Answer)?.matches
            }
        };
        times.decrypt_ms = ms(started);
        Ok(Some((slots, response.epoch)))
    }

    /// Erases a subject's template at the matcher (memory and storage). Returns whether the
    /// subject was enrolled.
    pub async fn erase(&self, bus: &Bus, subject: &Id) -> Result<bool, KeyHolderError> {
        let request =
            EraseRequest { v: u32::from(PROTOCOL_VERSION), venue: self.venue.clone(), subject: subject.clone() };
        let reply = bus.request(&topics::erase(&self.venue), request.encode(), self.timeout).await?;
        let answer: serde_json::Value =
            serde_json::from_slice(&reply.payload).map_err(|e| KeyHolderError::Answer(e.to_string()))?;
        match answer.get("erased").and_then(serde_json::Value::as_bool) {
            Some(found) => {
                *lock(&self.index) = None;
                Ok(found)
            }
            None => Err(KeyHolderError::Answer(format!("erasure refused: {answer}"))),
        }
    }

    /// The subjects enrolled at the matcher, in slot order.
    pub async fn enrolled_subjects(&self, bus: &Bus) -> Result<Vec<Id>, KeyHolderError> {
        Ok(self.fresh_index(bus).await?.subjects)
    }

    /// The current gallery index, fetched from the matcher and cached.
    async fn fresh_index(&self, bus: &Bus) -> Result<GalleryIndex, KeyHolderError> {
        let reply = bus.request(&topics::index(&self.venue), Vec::new(), self.timeout).await?;
        let index = GalleryIndex::decode(&reply.payload).map_err(|e| KeyHolderError::Answer(e.to_string()))?;
        *lock(&self.index) = Some(index.clone());
        Ok(index)
    }

    /// The subject in `slot` at gallery `epoch`, refreshing the cached index when stale.
    async fn subject_of(&self, bus: &Bus, slot: u32, epoch: u64) -> Result<Option<Id>, KeyHolderError> {
        let cached =
            lock(&self.index).as_ref().filter(|i| i.epoch == epoch).map(|i| i.subjects.get(slot as usize).cloned());
        if let Some(subject) = cached {
            return Ok(subject);
        }
        let index = self.fresh_index(bus).await?;
        Ok((index.epoch == epoch).then(|| index.subjects.get(slot as usize).cloned()).flatten())
    }
}

/// Milliseconds spent in each step of one identification ([`KeyHolder::identify_timed`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IdentifyTimes {
    /// Quantising the embedding and encrypting the probe.
    pub encrypt_ms: f64,
    /// The request to the matcher and its answer: transport, queue and evaluation.
    pub exchange_ms: f64,
    /// Decrypting the result (scores or match bits) and thresholding.
    pub decrypt_ms: f64,
    /// Mapping the matching slot to its subject (from the cached gallery index, or a fresh one).
    pub lookup_ms: f64,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// What a key rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Subjects whose templates were erased at the matcher; they must enrol again.
    pub erased: usize,
    /// Whether a new decision key was published.
    pub decision_key_published: bool,
}

/// Rotates a venue's key (the documented procedure, `docs/fhe.md`, "Key rotation"):
///
/// 1. load the current key (only its holder, with the passphrase, can rotate);
/// 2. erase every template of the venue at the matcher — they are useless under a new key, and
///    the key holder keeps no embeddings to re-encrypt them from, so subjects re-enrol;
/// 3. replace the key in the store (new file renamed over the old, old bytes overwritten);
/// 4. publish a new decision key when the venue's gates use decision mode.
///
/// If step 2 fails part-way, the old key is still in place and the command can be re-run.
///
/// # Errors
/// On a wrong passphrase, an unreachable matcher or a store failure.
#[allow(clippy::too_many_arguments)]
pub async fn rotate_key(
    store: &crate::keystore::KeyStore,
    venue: &Id,
    params: Params,
    passphrase: &str,
    new_passphrase: &str,
    cosine_threshold: f64,
    publish_decision_key: bool,
    bus: &Bus,
) -> Result<Rotation, RotationError> {
    let old = store.load(venue, params, passphrase)?;
    let holder = KeyHolder::from_key(venue.clone(), old, cosine_threshold)?;
    let subjects = holder.enrolled_subjects(bus).await?;
    for subject in &subjects {
        holder.erase(bus, subject).await?;
    }
    drop(holder);
    let new = store.rotate(venue, params, passphrase, new_passphrase)?;
    let holder = KeyHolder::from_key(venue.clone(), new, cosine_threshold)?;
    if publish_decision_key {
        holder.publish_decision_key(bus).await?;
    }
    Ok(Rotation { erased: subjects.len(), decision_key_published: publish_decision_key })
}

/// Why a key rotation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// The key store refused (wrong passphrase, missing key, file system).
    #[error(transparent)]
    Store(#[from] crate::keystore::KeyStoreError),
    /// The matcher could not be reached or refused.
    #[error(transparent)]
    Matcher(#[from] KeyHolderError),
}
