//! `passage enrol`: enrolment at a venue's registration desk, for a visitor who gave explicit
//! consent on a signed form (the portal is the self-service way). The photo is embedded here,
//! the embedding encrypted under the venue's key from the key store, and only the ciphertext
//! goes to the matcher; the consent evidence (with the form's reference) is stored encrypted
//! under a new per-subject key, and each step is audited.
//!
//! It writes to the edge's audit log and subject store, so it runs where the edge agent's data
//! directory is and takes the audit log's lock: while the edge agent runs, enrol through the
//! portal instead.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use passage_edge::agents::Governance;
use passage_edge::enrolment::{enrol_with_consent, Enrolment};
use passage_edge::keyholder::KeyHolder;
use passage_fhe::Params;
use passage_policy::audit::{AuditError, AuditLog};
use passage_policy::subjects::SubjectRecord;
use passage_vision::face::{Embedding, FacePipeline, PipelineConfig};
use passage_wire::Id;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::service::{connect_bus, now_secs, stop, Pki};
use crate::{keys, models, ConfigArg};

/// Largest enrolment photo read (as the portal).
const MAX_PHOTO_BYTES: u64 = 8 * 1024 * 1024;

/// Options of `passage enrol`.
#[derive(Debug, Args)]
pub struct EnrolArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The venue.
    #[arg(long)]
    venue: String,
    /// The enrolment photo: a JPEG or PNG with exactly one face.
    #[arg(long, required_unless_present = "embedding", conflicts_with = "embedding")]
    photo: Option<PathBuf>,
    /// An embedding instead of a photo: a JSON array of floats, or a line of `passage embed`.
    #[arg(long)]
    embedding: Option<PathBuf>,
    /// The venue's reference of the signed consent form (kept encrypted under the subject's
    /// key, for as long as the consent evidence).
    #[arg(long, value_name = "REF")]
    consent_ref: String,
    /// The privacy notice version printed on the signed form; enrolment is refused unless it
    /// is the venue's current one (default: the current one).
    #[arg(long)]
    notice_version: Option<u32>,
    #[command(flatten)]
    broker: crate::service::BrokerArg,
    /// The device CA directory: reach the broker over mTLS as the venue's edge agent
    /// (`edge:VENUE`).
    #[arg(long, value_name = "DIR")]
    pki: Option<PathBuf>,
    #[command(flatten)]
    models: models::DirArg,
}

/// Runs `passage enrol`.
pub fn run(args: &EnrolArgs) -> anyhow::Result<()> {
    let config = Arc::new(args.config.load()?);
    let venue = Id::new(&args.venue).with_context(|| format!("invalid venue id `{}`", args.venue))?;
    let Some(venue_config) = config.venues.iter().find(|v| v.id == venue) else {
        bail!("venue `{venue}` is not in the configuration");
    };
    let reference = args.consent_ref.trim();
    if reference.is_empty() || reference.len() > 128 || reference.chars().any(char::is_control) {
        bail!("--consent-ref must be 1 to 128 printable characters");
    }
    let notice = passage_dpia::privacy_notice(&config, venue_config).version;
    if let Some(signed) = args.notice_version {
        if signed != notice {
            bail!("the form was signed for notice version {signed}, but the venue's current notice is version {notice}: the visitor must read and sign the current one");
        }
    }
    let Some(data) = config.deployment.data_dir.clone() else {
        bail!("the configuration has no deployment.data_dir (where the key store, the subject store and the audit log are)");
    };
    let audit = match AuditLog::open(&data.join("audit")) {
        Ok(log) => Arc::new(log),
        Err(AuditError::Locked { .. }) => {
            bail!("the edge agent is running on this data directory (it holds the audit log): enrol through its portal, or stop it first")
        }
        Err(error) => return Err(error).context("cannot open the audit log"),
    };
    let key = keys::store(&config)?.load(&venue, Params::DEFAULT, &keys::passphrase("PASSAGE_KEY_PASSPHRASE")?)?;
    let keyholder = KeyHolder::from_key(venue.clone(), key, config.matching.threshold)?;
    let embedding = match (&args.photo, &args.embedding) {
        (Some(photo), _) => embed_photo(photo, &models::models_dir(args.models.dir.as_deref()), &config.faces)?,
        (None, Some(file)) => read_embedding(file, keyholder.params().dim)?,
        (None, None) => bail!("give --photo or --embedding"),
    };
    let notices = config.venues.iter().map(|v| (v.id.clone(), passage_dpia::privacy_notice(&config, v).version));
    let governance = Governance::open(&data.join("subjects"), audit, notices)?;

    let bits: u128 = rand::random();
    let subject = Id::new(&format!("v-{bits:032x}")).context("no pseudonym")?;
    let pki = args.pki.as_ref().map(Pki::open).transpose()?;
    let broker = args.broker.addr(&config)?;
    crate::runtime()?.block_on(async {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let tls = pki.as_ref().map(|p| p.client(&format!("edge:{venue}"))).transpose()?;
        let client_id = format!("edge-{venue}-enrol-{}", std::process::id());
        let bus = connect_bus(broker.clone(), client_id, tls, cancel.child_token(), &tracker)
            .await
            .with_context(|| format!("cannot reach the broker at {}:{}", broker.0, broker.1))?;
        let enrolment = Enrolment {
            venue: &venue,
            subject: &subject,
            notice_version: notice,
            actor: "staff:registration-desk".into(),
            records: vec![SubjectRecord::ConsentForm {
                venue: venue.to_string(),
                reference: reference.to_owned(),
                at: now_secs(),
            }],
        };
        let enrolled = enrol_with_consent(&governance, &keyholder, &bus, enrolment, embedding.as_slice()).await;
        drop(embedding);
        stop(&cancel, &tracker).await;
        enrolled.context("not enrolled (nothing biometric was kept)")
    })?;
    println!(
        "{}",
        serde_json::json!({ "venue": venue, "subject": subject, "notice_version": notice, "enrolled": true })
    );
    eprintln!("enrolled: give the visitor their pseudonym `{subject}` (withdrawal and erasure refer to it)");
    Ok(())
}

fn embed_photo(
    photo: &std::path::Path,
    models: &std::path::Path,
    faces: &passage_config::Faces,
) -> anyhow::Result<Embedding> {
    use std::io::Read;
    let file = std::fs::File::open(photo).with_context(|| format!("cannot read {}", photo.display()))?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_PHOTO_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", photo.display()))?;
    if bytes.len() as u64 > MAX_PHOTO_BYTES {
        bail!("{} is larger than 8 MiB", photo.display());
    }
    // Liveness is a gate check; an enrolment photo is a photo.
    let config = PipelineConfig { liveness: false, ..passage_edge::face::pipeline_config(faces) };
    let pipeline = FacePipeline::load(models, config).context("cannot load the face models (passage models fetch)")?;
    passage_edge::face::enrolment_embedding(&pipeline, &bytes).with_context(|| format!("{}", photo.display()))
}

/// An embedding from a file: a JSON array of numbers, or an object with an `embedding` array
/// (a line of `passage embed`); it must have `dim` finite values, not all zero.
fn read_embedding(file: &std::path::Path, dim: usize) -> anyhow::Result<Embedding> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?,
    );
    let value: serde_json::Value =
        serde_json::from_str(text.trim()).with_context(|| format!("{} is not JSON", file.display()))?;
    let array = match &value {
        serde_json::Value::Array(values) => values,
        serde_json::Value::Object(map) => match map.get("embedding") {
            Some(serde_json::Value::Array(values)) => values,
            _ => bail!("{}: an object must have an `embedding` array", file.display()),
        },
        _ => bail!("{}: expected a JSON array of numbers", file.display()),
    };
    if array.len() != dim {
        bail!("{}: the embedding has {} values; this deployment's models make {dim}", file.display(), array.len());
    }
    let values = array
        .iter()
        .map(|v| v.as_f64().filter(|x| x.is_finite()).map(|x| x as f32))
        .collect::<Option<Vec<f32>>>()
        .with_context(|| format!("{}: every value must be a finite number", file.display()))?;
    Embedding::normalised(values).with_context(|| format!("{}: the embedding is all zeros", file.display()))
}
