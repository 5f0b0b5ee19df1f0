//! The matcher's state, its evaluation queue and its MQTT endpoints.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use passage_fhe::{
    DecisionKey, EncryptedProbe, EncryptedTemplate, Gallery, GalleryError, Params, PreparedDecisionKey, Target,
};
use passage_transport::{Bus, Message, QoS};
use passage_wire::{
    topics, DecisionKeyUpload, EnrolRequest, EnrolResponse, EnrolStatus, EraseRequest, GalleryIndex, Id, MatchMode,
    MatchRequest, MatchResponse, MatchStatus, MatchTarget, PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{write_atomically, GalleryStore, StoreError};

/// Why the matcher could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MatcherError {
    /// A gallery file could not be opened or loaded.
    #[error("cannot load the gallery of venue `{venue}`")]
    Store {
        /// The venue.
        venue: Id,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// A stored template does not fit the gallery.
    #[error("gallery of venue `{venue}` is inconsistent: {source}")]
    Gallery {
        /// The venue.
        venue: Id,
        /// The cause.
        #[source]
        source: GalleryError,
    },
    /// The evaluation thread pool could not be built.
    #[error("cannot build the evaluation thread pool: {0}")]
    Pool(String),
    /// Subscribing on the broker failed.
    #[error("cannot subscribe on the MQTT broker")]
    Subscribe(#[source] passage_transport::BusError),
}

/// How the matcher runs.
#[derive(Debug, Clone)]
pub struct MatcherOptions {
    /// Where gallery files (`{dir}/{venue}.gallery`) and decision keys
    /// (`{dir}/{venue}.decision-key`) live.
    pub gallery_dir: PathBuf,
    /// Scheme parameters.
    pub params: Params,
    /// Evaluation threads (0: one per core).
    pub threads: usize,
    /// Requests that may wait for evaluation before new ones are answered "busy".
    pub queue: usize,
}

/// Counters, for the demo summary and health endpoints. Counts of requests, not of people.
#[derive(Debug, Default)]
pub struct MatcherStats {
    /// Match requests received.
    pub requests: AtomicU64,
    /// Match requests answered with encrypted results.
    pub answered: AtomicU64,
    /// Requests refused because the queue was full.
    pub busy: AtomicU64,
    /// Requests refused as malformed.
    pub rejected: AtomicU64,
    /// Templates evaluated (sum over requests).
    pub templates_evaluated: AtomicU64,
    /// Microseconds spent evaluating answered requests (probe preparation included; sum).
    pub eval_us: AtomicU64,
    /// Enrolments stored.
    pub enrolments: AtomicU64,
    /// Erasures performed.
    pub erasures: AtomicU64,
}

impl MatcherStats {
    /// The request counters as JSON (health endpoint, final summary line).
    pub fn snapshot(&self) -> serde_json::Value {
        let load = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        serde_json::json!({
            "requests": load(&self.requests),
            "answered": load(&self.answered),
            "busy": load(&self.busy),
            "rejected": load(&self.rejected),
            "enrolments": load(&self.enrolments),
            "erasures": load(&self.erasures),
        })
    }
}

struct VenueGallery {
    gallery: Gallery,
    subjects: Vec<Id>,
    epoch: u64,
    store: GalleryStore,
}

struct Job {
    request: MatchRequest,
    reply: oneshot::Sender<MatchResponse>,
}

struct Inner {
    params: Params,
    gallery_dir: PathBuf,
    galleries: RwLock<HashMap<Id, VenueGallery>>,
    /// Decision-mode evaluation keys, expanded (public material, ~120 MB each in RAM).
    decision_keys: RwLock<HashMap<Id, Arc<PreparedDecisionKey>>>,
    jobs: mpsc::Sender<Job>,
    stats: Arc<MatcherStats>,
}

/// A running matcher. Cheap to clone.
#[derive(Clone)]
pub struct Matcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher").finish_non_exhaustive()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Matcher {
    /// Loads the galleries of `venues` and starts the evaluation worker on `tracker`.
    pub fn start(
        options: &MatcherOptions,
        venues: &[Id],
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Matcher, MatcherError> {
        let mut galleries = HashMap::new();
        for venue in venues {
            let path = options.gallery_dir.join(format!("{venue}.gallery"));
            let (store, entries) = GalleryStore::open(&path, options.params)
                .map_err(|source| MatcherError::Store { venue: venue.clone(), source })?;
            let (subjects, templates): (Vec<Id>, Vec<EncryptedTemplate>) = entries.into_iter().unzip();
            let gallery = Gallery::from_templates(options.params, templates)
                .map_err(|source| MatcherError::Gallery { venue: venue.clone(), source })?;
            tracing::info!(%venue, templates = gallery.len(), "gallery loaded");
            galleries.insert(venue.clone(), VenueGallery { gallery, subjects, epoch: 1, store });
        }
        let threads = if options.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("fhe-eval-{i}"))
            .build()
            .map_err(|error| MatcherError::Pool(error.to_string()))?;
        let mut decision_keys = HashMap::new();
        for venue in venues {
            if let Some(key) = pool.install(|| load_decision_key(options, venue)) {
                decision_keys.insert(venue.clone(), Arc::new(key));
            }
        }
        let (jobs, rx) = mpsc::channel(options.queue.max(1));
        let matcher = Matcher {
            inner: Arc::new(Inner {
                params: options.params,
                gallery_dir: options.gallery_dir.clone(),
                galleries: RwLock::new(galleries),
                decision_keys: RwLock::new(decision_keys),
                jobs,
                stats: Arc::default(),
            }),
        };
        let worker = matcher.clone();
        tracker.spawn(async move { worker.evaluate_jobs(rx, Arc::new(pool), cancel).await });
        Ok(matcher)
    }

    /// The counters.
    pub fn stats(&self) -> Arc<MatcherStats> {
        self.inner.stats.clone()
    }

    /// Scheme parameters.
    pub fn params(&self) -> Params {
        self.inner.params
    }

    async fn evaluate_jobs(self, mut rx: mpsc::Receiver<Job>, pool: Arc<rayon::ThreadPool>, cancel: CancellationToken) {
        loop {
            let job = tokio::select! {
                () = cancel.cancelled() => break,
                job = rx.recv() => match job { Some(job) => job, None => break },
            };
            let this = self.clone();
            let pool = pool.clone();
            let Job { request, reply } = job;
            let response = tokio::task::spawn_blocking(move || pool.install(|| this.evaluate(&request)))
                .await
                .unwrap_or_else(|_| MatchResponse::failed(MatchStatus::Internal, "evaluation failed"));
            let _ = reply.send(response);
        }
    }

    /// Evaluates one request (blocking; runs on the evaluation pool).
    fn evaluate(&self, request: &MatchRequest) -> MatchResponse {
        let started = std::time::Instant::now();
        let stats = &self.inner.stats;
        let probe = match EncryptedProbe::from_bytes(self.inner.params, &request.probe) {
            Ok(probe) => probe,
            Err(error) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                return MatchResponse::failed(MatchStatus::BadRequest, format!("probe: {error}"));
            }
        };
        let prepared = probe.prepare();
        let galleries = read(&self.inner.galleries);
        let Some(venue) = galleries.get(&request.venue) else {
            return MatchResponse::failed(
                MatchStatus::UnknownVenue,
                format!("no gallery for venue `{}`", request.venue),
            );
        };
        let target = match request.target {
            MatchTarget::Gallery => Target::All,
            MatchTarget::Slot(slot) => Target::Slot(slot),
        };
        let outcome = match request.mode {
            MatchMode::Score => venue.gallery.evaluate(&prepared, target).map(|r| (r.n_templates(), r.to_bytes())),
            MatchMode::Decision => {
                let Some(key) = read(&self.inner.decision_keys).get(&request.venue).cloned() else {
                    return MatchResponse::failed(
                        MatchStatus::NoDecisionKey,
                        "no decision key for this venue; the key holder must publish one",
                    );
                };
                venue
                    .gallery
                    .evaluate_decisions(&prepared, target, &key, request.threshold)
                    .map(|r| (r.n_templates(), r.to_bytes()))
            }
        };
        match outcome {
            Ok((n_templates, result)) => {
                stats.answered.fetch_add(1, Ordering::Relaxed);
                stats.templates_evaluated.fetch_add(n_templates as u64, Ordering::Relaxed);
                stats.eval_us.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                MatchResponse {
                    status: MatchStatus::Ok,
                    epoch: venue.epoch,
                    n_templates: n_templates as u32,
                    result,
                    detail: String::new(),
                }
            }
            Err(GalleryError::Empty) => {
                MatchResponse::failed(MatchStatus::EmptyGallery, "the venue's gallery is empty")
            }
            Err(GalleryError::UnknownSlot(slot)) => {
                MatchResponse::failed(MatchStatus::UnknownSlot, format!("slot {slot} does not exist"))
            }
            Err(error) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                MatchResponse::failed(MatchStatus::BadRequest, error.to_string())
            }
        }
    }

    /// Queues a match request and waits for its answer; answers "busy" at once when the
    /// queue is full.
    ///
    /// # Cancel safety
    /// Dropping the future drops the answer; the evaluation still runs.
    pub async fn handle_match(&self, request: MatchRequest) -> MatchResponse {
        let stats = &self.inner.stats;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        if request.mode == MatchMode::Decision && !read(&self.inner.decision_keys).contains_key(&request.venue) {
            return MatchResponse::failed(
                MatchStatus::NoDecisionKey,
                "no decision key for this venue; the key holder must publish one",
            );
        }
        if !read(&self.inner.galleries).contains_key(&request.venue) {
            return MatchResponse::failed(
                MatchStatus::UnknownVenue,
                format!("no gallery for venue `{}`", request.venue),
            );
        }
        let (reply, answer) = oneshot::channel();
        match self.inner.jobs.try_send(Job { request, reply }) {
            Ok(()) => {
                answer.await.unwrap_or_else(|_| MatchResponse::failed(MatchStatus::Internal, "matcher shutting down"))
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                stats.busy.fetch_add(1, Ordering::Relaxed);
                MatchResponse::failed(MatchStatus::Busy, "matcher queue is full; try again shortly")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                MatchResponse::failed(MatchStatus::Internal, "matcher shutting down")
            }
        }
    }

    /// Stores an encrypted template durably, then adds it to the gallery. A subject enrolled
    /// again replaces its previous template. Blocking (file I/O and packing).
    pub fn enrol(&self, request: &EnrolRequest) -> EnrolResponse {
        let refuse = |status, detail: String| EnrolResponse { status, slot: 0, epoch: 0, detail };
        let template = match EncryptedTemplate::from_bytes(self.inner.params, &request.template) {
            Ok(t) => t,
            Err(error) => return refuse(EnrolStatus::Rejected, format!("template: {error}")),
        };
        let mut galleries = write(&self.inner.galleries);
        let Some(venue) = galleries.get_mut(&request.venue) else {
            return refuse(EnrolStatus::UnknownVenue, format!("no gallery for venue `{}`", request.venue));
        };
        if venue.subjects.contains(&request.subject) {
            if let Err(error) = remove_subject(venue, &request.subject) {
                tracing::error!(venue = %request.venue, error = %error, "re-enrolment could not remove the old template");
                return refuse(EnrolStatus::Internal, "storage failure".into());
            }
        }
        if let Err(error) = venue.store.append(&request.subject, &template) {
            tracing::error!(venue = %request.venue, error = %error, "enrolment not stored");
            return refuse(EnrolStatus::Internal, "storage failure".into());
        }
        match venue.gallery.push(template) {
            Ok(slot) => {
                venue.subjects.push(request.subject.clone());
                venue.epoch += 1;
                self.inner.stats.enrolments.fetch_add(1, Ordering::Relaxed);
                EnrolResponse { status: EnrolStatus::Ok, slot, epoch: venue.epoch, detail: String::new() }
            }
            Err(error) => refuse(EnrolStatus::Rejected, error.to_string()),
        }
    }

    /// Installs a venue's decision-mode evaluation key: decoded (bounded), expanded, then
    /// written atomically to `{dir}/{venue}.decision-key` so it survives restarts. Blocking
    /// (expansion takes about a second on two cores).
    pub fn install_decision_key(&self, upload: &DecisionKeyUpload) -> EnrolResponse {
        let answer = |status, detail: String| EnrolResponse { status, slot: 0, epoch: 0, detail };
        if !read(&self.inner.galleries).contains_key(&upload.venue) {
            return answer(EnrolStatus::UnknownVenue, format!("no gallery for venue `{}`", upload.venue));
        }
        let key = match DecisionKey::from_bytes(self.inner.params, &upload.key) {
            Ok(key) => key,
            Err(error) => return answer(EnrolStatus::Rejected, format!("decision key: {error}")),
        };
        let prepared = key.prepare();
        let path = decision_key_path(&self.inner.gallery_dir, &upload.venue);
        if let Err(error) = write_atomically(&path, &upload.key) {
            tracing::error!(venue = %upload.venue, %error, "decision key not stored");
            return answer(EnrolStatus::Internal, "storage failure".into());
        }
        write(&self.inner.decision_keys).insert(upload.venue.clone(), Arc::new(prepared));
        tracing::info!(venue = %upload.venue, "decision key installed");
        answer(EnrolStatus::Ok, String::new())
    }

    /// Whether a venue has a decision key installed.
    pub fn has_decision_key(&self, venue: &Id) -> bool {
        read(&self.inner.decision_keys).contains_key(venue)
    }

    /// Erases a subject's template from memory and from the gallery file before returning.
    /// Returns whether the subject was enrolled. Blocking.
    pub fn erase(&self, venue: &Id, subject: &Id) -> Result<bool, StoreError> {
        let mut galleries = write(&self.inner.galleries);
        let Some(gallery) = galleries.get_mut(venue) else { return Ok(false) };
        if !gallery.subjects.contains(subject) {
            return Ok(false);
        }
        remove_subject(gallery, subject)?;
        gallery.epoch += 1;
        self.inner.stats.erasures.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// The slot -> subject map of a venue's gallery.
    pub fn index(&self, venue: &Id) -> Option<GalleryIndex> {
        let galleries = read(&self.inner.galleries);
        let g = galleries.get(venue)?;
        Some(GalleryIndex {
            v: u32::from(PROTOCOL_VERSION),
            venue: venue.clone(),
            epoch: g.epoch,
            subjects: g.subjects.clone(),
        })
    }

    /// Number of templates enrolled for a venue.
    pub fn gallery_len(&self, venue: &Id) -> Option<usize> {
        read(&self.inner.galleries).get(venue).map(|g| g.gallery.len())
    }

    /// Serves match, enrol, erase and index requests from the bus until `cancel` fires.
    pub async fn serve_mqtt(
        &self,
        bus: &Bus,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<(), MatcherError> {
        // One share group per filter: rumqttd 0.20 keeps a single delivery cursor per group
        // name, so one group over several filters silently starves all but the first.
        let mut matches = bus
            .subscribe(&topics::shared("matcher-match", topics::MATCH_FILTER), QoS::AtLeastOnce, 64)
            .await
            .map_err(MatcherError::Subscribe)?;
        let mut enrols = bus
            .subscribe(&topics::shared("matcher-enrol", topics::ENROL_FILTER), QoS::AtLeastOnce, 64)
            .await
            .map_err(MatcherError::Subscribe)?;
        let mut erases = bus
            .subscribe(&topics::shared("matcher-erase", topics::ERASE_FILTER), QoS::AtLeastOnce, 64)
            .await
            .map_err(MatcherError::Subscribe)?;
        let mut indexes = bus
            .subscribe(&topics::shared("matcher-index", topics::INDEX_FILTER), QoS::AtLeastOnce, 64)
            .await
            .map_err(MatcherError::Subscribe)?;
        let mut decision_keys = bus
            .subscribe(&topics::shared("matcher-decision-key", topics::DECISION_KEY_FILTER), QoS::AtLeastOnce, 2)
            .await
            .map_err(MatcherError::Subscribe)?;
        // Expanding a decision key takes seconds: its own task, so enrolments and erasures are
        // not held up behind it, one upload at a time in arrival order, so the latest key wins.
        let (this, keys_bus, keys_cancel) = (self.clone(), bus.clone(), cancel.clone());
        tracker.spawn(async move {
            loop {
                let message = tokio::select! {
                    () = keys_cancel.cancelled() => break,
                    message = decision_keys.recv() => match message {
                        Some(message) => message,
                        None => break,
                    },
                };
                let this = this.clone();
                let outcome = tokio::task::spawn_blocking(move || {
                    let response = this.on_decision_key(&message);
                    (message, response)
                })
                .await;
                if let Ok((message, response)) = outcome {
                    let _ = keys_bus.respond(&message, response.encode()).await;
                }
            }
        });
        let this = self.clone();
        let bus = bus.clone();
        let inner_tracker = tracker.clone();
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    Some(message) = matches.recv() => {
                        let (this, bus) = (this.clone(), bus.clone());
                        inner_tracker.spawn(async move { this.on_match(&bus, message).await });
                    }
                    Some(message) = enrols.recv() => {
                        let this = this.clone();
                        let response = tokio::task::spawn_blocking(move || this.on_enrol(&message).map(|r| (message, r))).await;
                        if let Ok(Some((message, response))) = response {
                            let _ = bus.respond(&message, response.encode()).await;
                        }
                    }
                    Some(message) = erases.recv() => {
                        let this = this.clone();
                        let outcome = tokio::task::spawn_blocking(move || {
                            let reply = this.on_erase(&message);
                            (message, reply)
                        }).await;
                        if let Ok((message, reply)) = outcome {
                            let _ = bus.respond(&message, reply).await;
                        }
                    }
                    Some(message) = indexes.recv() => {
                        let reply = match topics::venue_of(&message.topic).and_then(|venue| this.index(&venue)) {
                            Some(index) => index.encode(),
                            None => b"{\"error\":\"unknown venue\"}".to_vec(),
                        };
                        let _ = bus.respond(&message, reply).await;
                    }
                    else => break,
                }
            }
        });
        Ok(())
    }

    async fn on_match(&self, bus: &Bus, message: Message) {
        let response = match MatchRequest::decode(&message.payload) {
            Ok(request) if topics::venue_of(&message.topic).as_ref() == Some(&request.venue) => {
                self.handle_match(request).await
            }
            Ok(_) => MatchResponse::failed(MatchStatus::BadRequest, "venue in topic and request differ"),
            Err(error) => {
                self.inner.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = %message.topic, %error, "malformed match request");
                MatchResponse::failed(MatchStatus::BadRequest, error.to_string())
            }
        };
        if let Err(error) = bus.respond(&message, response.encode()).await {
            tracing::warn!(%error, "match response not sent");
        }
    }

    /// A decision-key upload from the bus: installed when its topic names its venue. Blocking.
    fn on_decision_key(&self, message: &Message) -> EnrolResponse {
        let refused = |detail: String| EnrolResponse { status: EnrolStatus::Rejected, slot: 0, epoch: 0, detail };
        match DecisionKeyUpload::decode(&message.payload) {
            Ok(upload) if topics::venue_of(&message.topic).as_ref() == Some(&upload.venue) => {
                self.install_decision_key(&upload)
            }
            Ok(_) => refused("venue in topic and request differ".into()),
            Err(error) => refused(error.to_string()),
        }
    }

    fn on_enrol(&self, message: &Message) -> Option<EnrolResponse> {
        let response = match EnrolRequest::decode(&message.payload) {
            Ok(request) if topics::venue_of(&message.topic).as_ref() == Some(&request.venue) => self.enrol(&request),
            Ok(_) => EnrolResponse {
                status: EnrolStatus::Rejected,
                slot: 0,
                epoch: 0,
                detail: "venue in topic and request differ".into(),
            },
            Err(error) => EnrolResponse { status: EnrolStatus::Rejected, slot: 0, epoch: 0, detail: error.to_string() },
        };
        Some(response)
    }

    fn on_erase(&self, message: &Message) -> Vec<u8> {
        match EraseRequest::decode(&message.payload) {
            Ok(request) => match self.erase(&request.venue, &request.subject) {
                Ok(found) => format!("{{\"erased\":{found}}}").into_bytes(),
                Err(error) => {
                    tracing::error!(venue = %request.venue, error = %error, "erasure failed");
                    b"{\"error\":\"storage failure\"}".to_vec()
                }
            },
            Err(error) => format!("{{\"error\":{:?}}}", error.to_string()).into_bytes(),
        }
    }
}

fn decision_key_path(dir: &std::path::Path, venue: &Id) -> PathBuf {
    dir.join(format!("{venue}.decision-key"))
}

/// Loads and expands a stored decision key; a missing file is normal (none published yet), an
/// unreadable one is logged and ignored (the key holder publishes it again).
fn load_decision_key(options: &MatcherOptions, venue: &Id) -> Option<PreparedDecisionKey> {
    let path = decision_key_path(&options.gallery_dir, venue);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(%venue, path = %path.display(), %error, "decision key unreadable; decision mode off");
            return None;
        }
    };
    match DecisionKey::from_bytes(options.params, &bytes) {
        Ok(key) => {
            tracing::info!(%venue, "decision key loaded");
            Some(key.prepare())
        }
        Err(error) => {
            tracing::warn!(%venue, path = %path.display(), %error, "stored decision key refused; decision mode off");
            None
        }
    }
}

/// Removes a subject: the file is rewritten without it (in the slot order the gallery will
/// have after the removal), then the gallery slot is freed and its group re-packed. If the
/// rewrite fails, memory and disk are both left as they were.
fn remove_subject(venue: &mut VenueGallery, subject: &Id) -> Result<(), StoreError> {
    let Some(slot) = venue.subjects.iter().position(|s| s == subject) else { return Ok(()) };
    let mut order: Vec<usize> = (0..venue.subjects.len()).collect();
    order.swap_remove(slot);
    let templates = venue.gallery.templates();
    let keep: Vec<(Id, &EncryptedTemplate)> =
        order.iter().map(|&i| (venue.subjects[i].clone(), &templates[i])).collect();
    venue.store.rewrite(&keep)?;
    if venue.gallery.remove(slot as u32).is_ok() {
        venue.subjects.swap_remove(slot);
    }
    Ok(())
}
