//! The device certificate authority behind `passage pki`: one client certificate per gate,
//! camera, edge agent or service, server certificates for the broker gateway and the HTTPS
//! services, revocation with a signed CRL, and the index that maps every certificate's
//! fingerprint to its principal.
//!
//! [`Authority`] is the cryptography (no I/O; ECDSA P-256 keys, what rustls, webpki and
//! OpenSSL-based brokers such as Mosquitto all verify). [`PkiDir`] keeps it in a directory:
//!
//! | file | what | mode |
//! |---|---|---|
//! | `ca.pem`, `ca.key` | the CA certificate and its key | 0644, key 0600 |
//! | `index.json` | every certificate issued: serial, subject, SHA-256 fingerprint, validity, revocation | 0600 |
//! | `crl.pem` | the CA-signed revocation list, rewritten on every revocation | 0644 |
//! | `issued/{slug}-{serial}.pem`, `.key` | a certificate and its key, for the operator to install on the device | 0644, key 0600 |
//!
//! The CA key never leaves the directory; the index is written atomically after every change.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::atomic_file::{write_private, write_public};
use crate::devices::{DeviceError, Principal};

/// Why a PKI operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PkiError {
    /// Certificate or key generation, signing or parsing failed.
    #[error("certificate authority: {0}")]
    Crypto(String),
    /// The principal name is invalid.
    #[error(transparent)]
    Principal(#[from] DeviceError),
    /// A server name is neither a DNS name nor an IP address.
    #[error("`{0}` is not a DNS name or an IP address")]
    BadHost(String),
    /// A time is out of range.
    #[error("time out of range: {0}")]
    Time(i64),
    /// Reading or writing the directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The index is not valid JSON of the expected version.
    #[error("{path}: not a Passage PKI index: {reason}")]
    BadIndex {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `init` on a directory that already has a CA.
    #[error("{0} already holds a certificate authority; refusing to replace it")]
    Exists(PathBuf),
    /// No CA in the directory.
    #[error("{0} holds no certificate authority (run `passage pki init --dir` first)")]
    NoAuthority(PathBuf),
    /// Nothing matched a revocation.
    #[error("no valid certificate matches `{0}`")]
    NotFound(String),
}

fn crypto(error: rcgen::Error) -> PkiError {
    PkiError::Crypto(error.to_string())
}

fn at(secs: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| PkiError::Time(secs))
}

/// What a certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A client certificate for a device or service principal.
    Device(Principal),
    /// A server certificate (broker gateway, HTTPS service) for these DNS names and IPs.
    Server {
        /// A short name for the index (`broker`, `matcher`).
        name: String,
        /// DNS names and IP addresses it answers on.
        hosts: Vec<String>,
    },
}

impl Subject {
    /// The subject as the index and the certificate's common name spell it:
    /// `camera:arena/cam-1` or `server:broker`.
    pub fn name(&self) -> String {
        match self {
            Subject::Device(principal) => principal.to_string(),
            Subject::Server { name, .. } => format!("server:{name}"),
        }
    }
}

/// One certificate in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    /// Serial number, hex.
    pub serial: String,
    /// `camera:arena/cam-1`, `server:broker`, …
    pub subject: String,
    /// SHA-256 of the certificate's DER, hex: how the gateway finds the principal.
    pub fingerprint: String,
    /// Issued at (Unix seconds).
    pub issued_at: i64,
    /// Valid until (Unix seconds).
    pub not_after: i64,
    /// Revoked at (Unix seconds), if revoked.
    pub revoked_at: Option<i64>,
}

impl IssuedCert {
    /// The principal of a device certificate that is neither revoked nor expired at `now`.
    pub fn valid_principal(&self, now: i64) -> Option<Principal> {
        if self.revoked_at.is_some() || now > self.not_after {
            return None;
        }
        Principal::parse(&self.subject).ok()
    }
}

/// The index of every certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Format version (1).
    pub version: u32,
    /// The CA's common name.
    pub ca_name: String,
    /// Number of the last CRL issued.
    pub crl_number: u64,
    /// Every certificate, in issue order.
    pub certs: Vec<IssuedCert>,
}

/// A freshly issued certificate and its private key.
pub struct Issued {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PKCS#8 PEM (zeroized on drop).
    pub key_pem: Zeroizing<String>,
    /// Its index entry.
    pub record: IssuedCert,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("record", &self.record).finish_non_exhaustive()
    }
}

/// The certificate authority: its key and certificate.
pub struct Authority {
    name: String,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").field("name", &self.name).finish_non_exhaustive()
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Passage");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.key_identifier_method = KeyIdMethod::Sha256;
    params
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens.
fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// SHA-256 of DER bytes, hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

impl Authority {
    /// A new CA named `name`, valid for ten years from `now`.
    pub fn create(name: &str, now: i64) -> Result<Authority, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
        let mut params = ca_params(name);
        params.not_before = at(now - 3600)?;
        params.not_after = at(now + 10 * 365 * 86_400)?;
        let cert = params.self_signed(&key).map_err(crypto)?;
        Ok(Authority { name: name.to_owned(), key, cert_pem: cert.pem() })
    }

    /// The CA from its stored certificate and key.
    pub fn load(name: &str, cert_pem: &str, key_pem: &str) -> Result<Authority, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(crypto)?;
        Ok(Authority { name: name.to_owned(), key, cert_pem: cert_pem.to_owned() })
    }

    /// The CA certificate, PEM: what every device and service trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key, PEM (zeroized on drop).
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.key.serialize_pem())
    }

    fn issuer(&self) -> Issuer<'static, &KeyPair> {
        Issuer::new(ca_params(&self.name), &self.key)
    }

    /// Issues a certificate for `subject`, valid for `days` from `now`, with a 128-bit
    /// `serial` (random, from the caller).
    pub fn issue(&self, subject: &Subject, now: i64, days: u32, serial: [u8; 16]) -> Result<Issued, PkiError> {
        let mut serial = serial;
        serial[0] &= 0x7f; // positive
        serial[0] |= 0x01; // and of full length
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, subject.name());
        dn.push(DnType::OrganizationName, "Passage");
        params.distinguished_name = dn;
        params.not_before = at(now - 3600)?;
        let not_after = now + i64::from(days) * 86_400;
        params.not_after = at(not_after)?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        match subject {
            Subject::Device(_) => params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
            Subject::Server { hosts, .. } => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                for host in hosts {
                    let san = match host.parse::<std::net::IpAddr>() {
                        Ok(ip) => SanType::IpAddress(ip),
                        Err(_) if is_dns_name(host) => {
                            SanType::DnsName(host.as_str().try_into().map_err(|_| PkiError::BadHost(host.clone()))?)
                        }
                        Err(_) => return Err(PkiError::BadHost(host.chars().take(80).collect())),
                    };
                    params.subject_alt_names.push(san);
                }
            }
        }
        let cert = params.signed_by(&key, &self.issuer()).map_err(crypto)?;
        let record = IssuedCert {
            serial: hex::encode(serial),
            subject: subject.name(),
            fingerprint: fingerprint(cert.der()),
            issued_at: now,
            not_after,
            revoked_at: None,
        };
        Ok(Issued { cert_pem: cert.pem(), key_pem: Zeroizing::new(key.serialize_pem()), record })
    }

    /// A CRL listing every revoked certificate of `index`, valid for `days` from `now`.
    pub fn crl(&self, index: &Index, now: i64, days: u32) -> Result<String, PkiError> {
        let mut revoked = Vec::new();
        for cert in &index.certs {
            let Some(when) = cert.revoked_at else { continue };
            let serial =
                hex::decode(&cert.serial).map_err(|_| PkiError::Crypto(format!("bad serial {}", cert.serial)))?;
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: at(when)?,
                reason_code: Some(RevocationReason::CessationOfOperation),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: at(now - 60)?,
            next_update: at(now + i64::from(days) * 86_400)?,
            crl_number: SerialNumber::from(index.crl_number),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer()).and_then(|crl| crl.pem()).map_err(crypto)
    }
}

/// How long a CRL is valid; `passage pki crl` renews it before then.
pub const CRL_DAYS: u32 = 30;

/// A PKI kept in a directory (see the module documentation for the layout).
#[derive(Debug, Clone)]
pub struct PkiDir {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.to_owned(), source }
}

impl PkiDir {
    /// The PKI in `dir` (nothing is read yet).
    pub fn new(dir: impl Into<PathBuf>) -> PkiDir {
        PkiDir { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ca.pem`: the certificate every party trusts.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `crl.pem`: the current revocation list.
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    /// `index.json`.
    pub fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    /// Creates the CA, an empty index and an empty CRL. Refuses a directory that has a CA.
    pub fn init(&self, name: &str, now: i64) -> Result<Authority, PkiError> {
        if self.ca_cert_path().exists() || self.dir.join("ca.key").exists() {
            return Err(PkiError::Exists(self.dir.clone()));
        }
        fs::create_dir_all(self.dir.join("issued")).map_err(io(&self.dir))?;
        let ca = Authority::create(name, now)?;
        let key_path = self.dir.join("ca.key");
        write_private(&key_path, ca.key_pem().as_bytes()).map_err(io(&key_path))?;
        let cert_path = self.ca_cert_path();
        write_public(&cert_path, ca.cert_pem().as_bytes()).map_err(io(&cert_path))?;
        let index = Index { version: 1, ca_name: name.to_owned(), crl_number: 0, certs: Vec::new() };
        self.save(&ca, index, now)?;
        Ok(ca)
    }

    /// The index as stored.
    pub fn index(&self) -> Result<Index, PkiError> {
        let path = self.index_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(PkiError::NoAuthority(self.dir.clone()))
            }
            Err(source) => return Err(PkiError::Io { path, source }),
        };
        let index: Index = serde_json::from_str(&text)
            .map_err(|error| PkiError::BadIndex { path: path.clone(), reason: error.to_string() })?;
        if index.version != 1 {
            return Err(PkiError::BadIndex { path, reason: format!("version {} (this build reads 1)", index.version) });
        }
        Ok(index)
    }

    /// The CA with its index.
    pub fn open(&self) -> Result<(Authority, Index), PkiError> {
        let index = self.index()?;
        let cert_path = self.ca_cert_path();
        let cert = fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key_path = self.dir.join("ca.key");
        let key = Zeroizing::new(fs::read_to_string(&key_path).map_err(io(&key_path))?);
        Ok((Authority::load(&index.ca_name, &cert, &key)?, index))
    }

    /// Writes a new CRL, then the index (the CRL first, so that a crash never leaves a
    /// revocation in the index that the CRL does not carry).
    fn save(&self, ca: &Authority, mut index: Index, now: i64) -> Result<Index, PkiError> {
        index.crl_number += 1;
        let crl = ca.crl(&index, now, CRL_DAYS)?;
        let crl_path = self.crl_path();
        write_public(&crl_path, crl.as_bytes()).map_err(io(&crl_path))?;
        let index_path = self.index_path();
        let json = serde_json::to_vec_pretty(&index).map_err(|error| PkiError::Crypto(error.to_string()))?;
        write_private(&index_path, &json).map_err(io(&index_path))?;
        Ok(index)
    }

    /// Issues a certificate for `subject`, records it, writes the certificate and its key
    /// into `issued/` and returns their paths.
    pub fn issue(
        &self,
        subject: &Subject,
        now: i64,
        days: u32,
        serial: [u8; 16],
    ) -> Result<(PathBuf, PathBuf, IssuedCert), PkiError> {
        let (ca, mut index) = self.open()?;
        let issued = ca.issue(subject, now, days, serial)?;
        let issued_dir = self.dir.join("issued");
        fs::create_dir_all(&issued_dir).map_err(io(&issued_dir))?;
        let (cert_path, key_path) = self.issued_paths(&issued.record);
        write_private(&key_path, issued.key_pem.as_bytes()).map_err(io(&key_path))?;
        write_public(&cert_path, issued.cert_pem.as_bytes()).map_err(io(&cert_path))?;
        index.certs.push(issued.record.clone());
        self.save(&ca, index, now)?;
        Ok((cert_path, key_path, issued.record))
    }

    /// Revokes every valid certificate whose serial or subject is `which`, rewrites the CRL
    /// and returns what was revoked.
    pub fn revoke(&self, which: &str, now: i64) -> Result<Vec<IssuedCert>, PkiError> {
        let (ca, mut index) = self.open()?;
        let mut revoked = Vec::new();
        for cert in &mut index.certs {
            if cert.revoked_at.is_none() && (cert.serial == which || cert.subject == which) {
                cert.revoked_at = Some(now);
                revoked.push(cert.clone());
            }
        }
        if revoked.is_empty() {
            return Err(PkiError::NotFound(which.chars().take(80).collect()));
        }
        self.save(&ca, index, now)?;
        Ok(revoked)
    }

    /// The certificate and key files of `record` in `issued/`.
    pub fn issued_paths(&self, record: &IssuedCert) -> (PathBuf, PathBuf) {
        let slug = record.subject.replace([':', '/'], "-");
        let stem = format!("{slug}-{}", record.serial.get(..8).unwrap_or(&record.serial));
        let issued = self.dir.join("issued");
        (issued.join(format!("{stem}.pem")), issued.join(format!("{stem}.key")))
    }

    /// The newest certificate of `subject` that is neither revoked nor expired at `now` and
    /// whose files are still in `issued/`, with their paths.
    pub fn current(&self, subject: &str, now: i64) -> Result<Option<(PathBuf, PathBuf)>, PkiError> {
        let index = self.index()?;
        Ok(index
            .certs
            .iter()
            .rev()
            .filter(|c| c.subject == subject && c.revoked_at.is_none() && now + 86_400 < c.not_after)
            .map(|c| self.issued_paths(c))
            .find(|(cert, key)| cert.exists() && key.exists()))
    }

    /// Issues a fresh CRL (same revocations, new validity).
    pub fn renew_crl(&self, now: i64) -> Result<(), PkiError> {
        let (ca, index) = self.open()?;
        self.save(&ca, index, now).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000;

    #[test]
    fn issue_revoke_and_the_crl_round_trip_through_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = PkiDir::new(dir.path().join("pki"));
        pki.init("Passage test CA", NOW).expect("init");
        assert!(matches!(pki.init("again", NOW), Err(PkiError::Exists(_))));
        let camera = Subject::Device(Principal::parse("camera:arena/cam-1").expect("principal"));
        let (cert, key, record) = pki.issue(&camera, NOW, 365, [7; 16]).expect("issue");
        assert!(fs::read_to_string(&cert).expect("cert").starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(fs::read_to_string(&key).expect("key").contains("PRIVATE KEY"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&key).expect("key").permissions().mode() & 0o777, 0o600);
            assert_eq!(
                fs::metadata(dir.path().join("pki/ca.key")).expect("ca key").permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(record.subject, "camera:arena/cam-1");
        assert_eq!(record.valid_principal(NOW), Principal::parse("camera:arena/cam-1").ok());
        assert_eq!(record.valid_principal(record.not_after + 1), None, "expired");
        let crl_before = fs::read_to_string(pki.crl_path()).expect("crl");
        assert_eq!(pki.current("camera:arena/cam-1", NOW).expect("index"), Some((cert.clone(), key.clone())));

        let revoked = pki.revoke("camera:arena/cam-1", NOW + 5).expect("revoke");
        assert_eq!(revoked.len(), 1);
        let index = pki.index().expect("index");
        assert_eq!(index.certs[0].revoked_at, Some(NOW + 5));
        assert_eq!(index.certs[0].valid_principal(NOW + 6), None);
        assert_eq!(pki.current("camera:arena/cam-1", NOW + 6).expect("index"), None);
        assert!(matches!(pki.revoke("camera:arena/cam-1", NOW + 6), Err(PkiError::NotFound(_))));
        let crl_after = fs::read_to_string(pki.crl_path()).expect("crl");
        assert_ne!(crl_before, crl_after, "the CRL is reissued");
        assert!(index.crl_number >= 3);
    }

    #[test]
    fn server_certificates_name_their_hosts_and_bad_hosts_are_refused() {
        let ca = Authority::create("ca", NOW).expect("ca");
        let server = Subject::Server { name: "broker".into(), hosts: vec!["localhost".into(), "127.0.0.1".into()] };
        let issued = ca.issue(&server, NOW, 30, [1; 16]).expect("issue");
        assert_eq!(issued.record.subject, "server:broker");
        assert_eq!(issued.record.valid_principal(NOW), None, "a server certificate is no device principal");
        let bad = Subject::Server { name: "x".into(), hosts: vec!["not a host!".into()] };
        assert!(matches!(ca.issue(&bad, NOW, 30, [1; 16]), Err(PkiError::BadHost(_))));
    }

    #[test]
    fn a_damaged_index_is_reported_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = PkiDir::new(dir.path());
        assert!(matches!(pki.index(), Err(PkiError::NoAuthority(_))));
        pki.init("ca", NOW).expect("init");
        fs::write(pki.index_path(), b"{ not json").expect("write");
        let error = pki.index().expect_err("damaged").to_string();
        assert!(error.contains("index.json") && error.contains("not a Passage PKI index"), "{error}");
    }
}
