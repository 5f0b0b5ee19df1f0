//! DPIA artifacts for data protection officers, generated from the deployment's own
//! configuration: the processing register (`[register]`) plus the live technical parameters
//! (FHE parameter set and security statement, DP budget and mechanism, retention, matching).
//!
//! [`generate`] returns every artifact as text; it does no I/O (the `passage dpia generate`
//! command writes them, the analytics service serves them on its DPO page). The output is
//! deterministic: the same configuration gives byte-identical files, so a committed copy can
//! be checked for staleness.
#![deny(missing_docs)]

pub mod answers;
pub mod cnil;
pub mod content;
pub mod dataflow;
pub mod doc;
pub mod reports;

use passage_config::Config;

use crate::content::{Facts, Measure, Status};

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// File name (no directory).
    pub name: String,
    /// Content.
    pub text: String,
    /// MIME type, for serving it.
    pub mime: &'static str,
}

/// Every artifact of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifacts {
    /// The DPIA version they describe.
    pub version: String,
    /// The files, in a fixed order.
    pub files: Vec<Artifact>,
}

impl Artifacts {
    /// A file by name.
    pub fn get(&self, name: &str) -> Option<&Artifact> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// The measures of `config` (for pages that list them).
pub fn measures(config: &Config) -> Vec<Measure> {
    content::measures(config, &Facts::of(config))
}

/// Generates every artifact for `config`.
pub fn generate(config: &Config) -> Artifacts {
    let facts = Facts::of(config);
    let measures = content::measures(config, &facts);
    let risks = content::risks(&measures);
    let answers = answers::answers(config, &facts, &measures, &risks);
    let name = format!("{} (Passage)", config.deployment.name);
    let cnil = cnil::export(&name, &config.register, &answers, &measures, &risks);
    let dpia = reports::dpia(config, &facts, &answers, &measures, &risks);
    let mut files = vec![
        Artifact {
            name: "dpia.cnil.json".into(),
            text: serde_json::to_string_pretty(&cnil).unwrap_or_default() + "\n",
            mime: "application/json",
        },
        Artifact { name: "dpia.html".into(), text: dpia.html("en"), mime: "text/html; charset=utf-8" },
        Artifact { name: "dpia.md".into(), text: dpia.markdown(), mime: "text/markdown; charset=utf-8" },
        Artifact {
            name: "ropa.md".into(),
            text: reports::ropa(config, &facts, &measures).markdown(),
            mime: "text/markdown; charset=utf-8",
        },
        Artifact { name: "dataflow.svg".into(), text: dataflow::svg(config, &facts), mime: "image/svg+xml" },
        Artifact {
            name: "wp248.md".into(),
            text: reports::wp248(config).markdown(),
            mime: "text/markdown; charset=utf-8",
        },
        Artifact {
            name: "action-plan.csv".into(),
            text: reports::action_plan_csv(config, &measures),
            mime: "text/csv; charset=utf-8",
        },
    ];
    for venue in &config.venues {
        for lang in ["en", "de"] {
            files.push(Artifact {
                name: format!("signage-{}.{lang}.md", venue.id),
                text: reports::signage(config, &facts, venue, lang).markdown(),
                mime: "text/markdown; charset=utf-8",
            });
        }
    }
    Artifacts { version: config.register.dpia_version.clone(), files }
}

/// A venue's privacy notice as shown before consent, in English and German, with its version:
/// the first 32 bits of the SHA-256 of both texts, so any change of wording or of a live
/// parameter it quotes (retention, ε) is a new version and earlier consents stop counting.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivacyNotice {
    /// Version (content hash).
    pub version: u32,
    /// English text.
    pub en: doc::Doc,
    /// German text.
    pub de: doc::Doc,
}

/// The privacy notice of `venue` (the same text as its signage artifacts).
pub fn privacy_notice(config: &Config, venue: &passage_config::Venue) -> PrivacyNotice {
    use sha2::{Digest, Sha256};
    let facts = Facts::of(config);
    let en = reports::signage(config, &facts, venue, "en");
    let de = reports::signage(config, &facts, venue, "de");
    let mut hash = Sha256::new();
    hash.update(en.markdown().as_bytes());
    hash.update([0u8]);
    hash.update(de.markdown().as_bytes());
    let digest = hash.finalize();
    let version = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    PrivacyNotice { version, en, de }
}

/// Every `path::test` named as evidence by an existing measure (for checks that they exist).
pub fn evidence(config: &Config) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = measures(config)
        .iter()
        .filter(|m| m.status == Status::Existing)
        .flat_map(|m| m.evidence.iter().copied())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
