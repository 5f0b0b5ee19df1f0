//! Enrolment with consent, the one sequence every way in uses (the portal, the operator's
//! `passage enrol`, the demo's simulated visitors): explicit consent against the venue's
//! current notice, its evidence stored encrypted per subject, then, and only then, the
//! encrypted template. When the template cannot be stored, the consent served no purpose and
//! is withdrawn again, with evidence of that.

use passage_policy::subjects::{SubjectRecord, SubjectStore};
use passage_policy::ConsentRegistry;
use passage_transport::Bus;
use passage_wire::{EnrolStatus, Id};

use crate::agents::{Governance, FACE_ACCESS};
use crate::keyholder::{KeyHolder, KeyHolderError};
use crate::{lock, now_secs};

/// Why an enrolment did not happen. In every case nothing biometric was kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolmentError {
    /// The consent was refused by the registry (the notice accepted is not the current one).
    #[error("consent not recorded: {0}")]
    Consent(#[from] passage_policy::ConsentError),
    /// The consent evidence could not be stored.
    #[error("the consent evidence could not be stored: {0}")]
    Evidence(String),
    /// The matcher answered, but did not store the template.
    #[error("the matcher refused the template: {status:?} {detail}")]
    Refused {
        /// Its status.
        status: EnrolStatus,
        /// Its explanation.
        detail: String,
    },
    /// The matcher could not be reached, or the template not made.
    #[error("the template could not be enrolled: {0}")]
    KeyHolder(#[from] KeyHolderError),
}

/// One subject's enrolment at one venue.
#[derive(Debug)]
pub struct Enrolment<'a> {
    /// The venue.
    pub venue: &'a Id,
    /// The subject's pseudonym.
    pub subject: &'a Id,
    /// The version of the venue's privacy notice the subject accepted.
    pub notice_version: u32,
    /// Who gave the consent, for the audit log (`visitor:{subject}`, `staff:{name}`...).
    pub actor: String,
    /// Records stored with the consent evidence (a contact, a ticket, a consent form's
    /// reference), encrypted under the subject's key like it.
    pub records: Vec<SubjectRecord>,
}

/// The governance stores of an edge agent could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GovernanceError {
    /// The audit log's erasure tombstones could not be read.
    #[error("cannot read the audit log's erasure tombstones: {0}")]
    Tombstones(#[source] passage_policy::audit::AuditError),
    /// The subject store could not be opened.
    #[error("cannot open the subject store: {0}")]
    Subjects(#[source] passage_policy::subjects::SubjectError),
}

impl Governance {
    /// Opens the encrypted subject store in `subjects_dir` next to `audit`: keys of subjects
    /// with a `subject.erased` tombstone in the audit log are destroyed again (a restored
    /// backup cannot bring them back), and the consent registry is rebuilt from the stored
    /// evidence against `notices`, each venue's current notice version (grants of an older
    /// notice are restored but do not count).
    ///
    /// # Errors
    /// [`GovernanceError`].
    pub fn open(
        subjects_dir: &std::path::Path,
        audit: std::sync::Arc<passage_policy::audit::AuditLog>,
        notices: impl IntoIterator<Item = (Id, u32)>,
    ) -> Result<Governance, GovernanceError> {
        let erased: std::collections::HashSet<String> =
            passage_policy::audit::read(audit.dir(), usize::MAX, |e| e.event.action == "subject.erased")
                .map_err(GovernanceError::Tombstones)?
                .into_iter()
                .filter_map(|e| e.event.subject)
                .collect();
        let (subjects, reshredded) =
            SubjectStore::open(subjects_dir, |s| erased.contains(s)).map_err(GovernanceError::Subjects)?;
        if reshredded > 0 {
            tracing::warn!(keys = reshredded, "keys of erased subjects found (a restored backup?) and destroyed again");
        }
        let mut registry = ConsentRegistry::new();
        for (venue, version) in notices {
            registry.publish_notice(&venue, version);
        }
        let mut active = 0;
        for subject in subjects.subject_ids() {
            let Ok(id) = Id::new(&subject) else { continue };
            match subjects.export(&subject) {
                Ok(records) => active += registry.restore(&id, &records),
                Err(error) => tracing::warn!(%error, "a subject's consent evidence could not be read; not restored"),
            }
        }
        if active > 0 {
            tracing::info!(grants = active, "consents restored from the evidence of earlier runs");
        }
        Ok(Governance {
            consent: std::sync::Arc::new(std::sync::Mutex::new(registry)),
            audit: Some(audit),
            subjects: Some(std::sync::Arc::new(std::sync::Mutex::new(subjects))),
        })
    }

    /// Stores `records` of `subject` on a blocking thread (nothing when there is no store).
    pub(crate) async fn put_records(&self, subject: &Id, records: Vec<SubjectRecord>) -> Result<(), String> {
        let Some(store) = self.subjects.clone() else { return Ok(()) };
        let subject = subject.to_string();
        let written = tokio::task::spawn_blocking(move || {
            let mut store = lock(&store);
            records.iter().try_for_each(|r| store.put(&subject, r))
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Withdraws `subject`'s face-access consent at `venue` (at once, in the registry), stores
    /// the withdrawal as evidence and audits it as `actor`; returns whether the evidence was
    /// stored.
    pub async fn withdraw_face_access(&self, actor: String, subject: &Id, venue: &Id, notice: u32) -> bool {
        if let Ok(purpose) = Id::new(FACE_ACCESS) {
            lock(&self.consent).withdraw(subject, venue, &purpose);
        }
        let record = SubjectRecord::Consent {
            venue: venue.to_string(),
            purpose: FACE_ACCESS.into(),
            notice,
            granted: false,
            at: now_secs(),
        };
        let stored = self.put_records(subject, vec![record]).await;
        if let Err(error) = &stored {
            tracing::error!(%error, "evidence of a withdrawal not stored");
        }
        self.audit_optional_venue(actor, "consent.withdraw", Some(venue), Some(subject), FACE_ACCESS.into()).await;
        stored.is_ok()
    }
}

/// Consent, its evidence, then the template of `embedding` (encrypted by `keyholder`, sent
/// over `bus`); every step is audited. The embedding never leaves this process in the clear.
///
/// # Errors
/// [`EnrolmentError`]: nothing biometric is kept, and a consent recorded on the way is
/// withdrawn again (with evidence).
pub async fn enrol_with_consent(
    governance: &Governance,
    keyholder: &KeyHolder,
    bus: &Bus,
    enrolment: Enrolment<'_>,
    embedding: &[f32],
) -> Result<(), EnrolmentError> {
    let Enrolment { venue, subject, notice_version, actor, records } = enrolment;
    let purpose = Id::new(FACE_ACCESS).map_err(|e| EnrolmentError::Evidence(e.to_string()))?;
    let now = now_secs();
    lock(&governance.consent).grant(subject, venue, &purpose, notice_version, now)?;
    let mut evidence = vec![SubjectRecord::Consent {
        venue: venue.to_string(),
        purpose: FACE_ACCESS.into(),
        notice: notice_version,
        granted: true,
        at: now,
    }];
    evidence.extend(records);
    if let Err(error) = governance.put_records(subject, evidence).await {
        // No evidence, no biometric processing.
        lock(&governance.consent).withdraw(subject, venue, &purpose);
        return Err(EnrolmentError::Evidence(error));
    }
    let notice = format!("{FACE_ACCESS}, notice v{notice_version}");
    governance.audit_optional_venue(actor.clone(), "consent.grant", Some(venue), Some(subject), notice).await;

    let keyholder_actor = format!("keyholder:{venue}");
    let failure = match keyholder.enrol(bus, subject, embedding).await {
        Ok(response) if response.status == EnrolStatus::Ok => {
            governance
                .audit_optional_venue(keyholder_actor, "template.enrol", Some(venue), Some(subject), "stored".into())
                .await;
            return Ok(());
        }
        Ok(response) => EnrolmentError::Refused { status: response.status, detail: response.detail },
        Err(error) => EnrolmentError::KeyHolder(error),
    };
    let why = match &failure {
        EnrolmentError::Refused { status, .. } => format!("refused: {status:?}"),
        _ => "matcher unreachable".to_owned(),
    };
    tracing::warn!(error = %failure, "enrolment failed; the consent is withdrawn again");
    governance.audit_optional_venue(keyholder_actor, "template.enrol", Some(venue), Some(subject), why).await;
    governance.withdraw_face_access(actor, subject, venue, notice_version).await;
    Err(failure)
}
