//! The key holder's key store: each venue's FHE secret key, encrypted at rest.
//!
//! File `{dir}/{venue}.key`:
//!
//! ```text
//! "PKS1" | version u8 | params id u64 | argon2 m_cost u32 | t_cost u32 | p_cost u32
//!        | salt [16] | nonce [12] | AES-256-GCM(secret key encoding) with tag [16]
//! ```
//!
//! The key-encryption key is derived from the operator's passphrase with Argon2id (salt per
//! file); everything before the ciphertext, plus the venue id, is authenticated as associated
//! data, so a file moved to another venue or edited in any byte is refused. Files are written
//! atomically (temporary file, fsync, rename) with mode 0600. Destroying a key overwrites the
//! file with zeros before unlinking it; because copy-on-write file systems and SSDs may keep
//! old blocks, what makes a destroyed key unrecoverable is that its file was only ever written
//! encrypted — rotate the passphrase as well when retiring a storage device.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use passage_fhe::{FheRng, Params, SecretKey};
use passage_wire::Id;
use rand::TryRngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"PKS1";
const VERSION: u8 = 1;
const SALT_LEN: usize = 16;
const HEADER_LEN: usize = 4 + 1 + 8 + 12 + SALT_LEN + NONCE_LEN;
/// Argon2id cost: 64 MiB, 3 passes, 1 lane (about 0.2 s on one core).
const M_COST_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;
/// Shortest passphrase accepted.
pub const MIN_PASSPHRASE_LEN: usize = 12;

/// Why the key store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// File system error, with the file concerned.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No key file for the venue.
    #[error("no key for venue `{0}` (create one with `passage keys init`)")]
    Missing(Id),
    /// A key file already exists; refusing to overwrite it.
    #[error("a key for venue `{0}` already exists (use `passage keys rotate` to replace it)")]
    Exists(Id),
    /// Wrong passphrase, or the file was modified or belongs to another venue.
    #[error("cannot decrypt the key of venue `{0}`: wrong passphrase, or the file was altered")]
    Decrypt(Id),
    /// The file is not a key file for these parameters.
    #[error("{path} is not a Passage key file for these parameters: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The passphrase is too short.
    #[error("the passphrase must have at least {MIN_PASSPHRASE_LEN} characters")]
    WeakPassphrase,
    /// Key generation, derivation or entropy failed.
    #[error("{0}")]
    Crypto(String),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KeyStoreError + 'a {
    move |source| KeyStoreError::Io { op, path: path.to_owned(), source }
}

/// A directory of encrypted venue keys.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

fn random<const N: usize>() -> Result<[u8; N], KeyStoreError> {
    let mut out = [0u8; N];
    rand::rngs::OsRng.try_fill_bytes(&mut out).map_err(|e| KeyStoreError::Crypto(format!("no OS entropy: {e}")))?;
    Ok(out)
}

fn derive(passphrase: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<Zeroizing<[u8; 32]>, KeyStoreError> {
    let params = argon2::Params::new(m, t, p, Some(32)).map_err(|e| KeyStoreError::Crypto(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut kek = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, kek.as_mut())
        .map_err(|e| KeyStoreError::Crypto(e.to_string()))?;
    Ok(kek)
}

fn aad(header: &[u8], venue: &Id) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(venue.as_str().as_bytes());
    aad
}

fn aead_key(kek: &[u8; 32]) -> Result<LessSafeKey, KeyStoreError> {
    UnboundKey::new(&AES_256_GCM, kek)
        .map(LessSafeKey::new)
        .map_err(|_| KeyStoreError::Crypto("cannot build the AES-256-GCM key".into()))
}

impl KeyStore {
    /// A store in `dir` (created with mode 0700 if missing).
    ///
    /// # Errors
    /// If the directory cannot be created.
    pub fn open(dir: &Path) -> Result<KeyStore, KeyStoreError> {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io("restrict", dir))?;
        }
        Ok(KeyStore { dir: dir.to_owned() })
    }

    /// The key file of a venue.
    pub fn path(&self, venue: &Id) -> PathBuf {
        self.dir.join(format!("{venue}.key"))
    }

    /// Whether a key exists for the venue.
    pub fn exists(&self, venue: &Id) -> bool {
        self.path(venue).exists()
    }

    /// Generates a fresh key for `venue` and stores it encrypted; refuses to overwrite.
    ///
    /// # Errors
    /// If a key exists, the passphrase is too short, or the file cannot be written.
    pub fn create(&self, venue: &Id, params: Params, passphrase: &str) -> Result<SecretKey, KeyStoreError> {
        if self.exists(venue) {
            return Err(KeyStoreError::Exists(venue.clone()));
        }
        let key = generate(params)?;
        self.write(venue, &key, passphrase, &self.path(venue))?;
        Ok(key)
    }

    /// Loads and decrypts a venue's key.
    ///
    /// # Errors
    /// If there is no key, the passphrase is wrong, or the file was altered.
    pub fn load(&self, venue: &Id, params: Params, passphrase: &str) -> Result<SecretKey, KeyStoreError> {
        let path = self.path(venue);
        let bytes = match fs::read(&path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KeyStoreError::Missing(venue.clone())),
            Err(e) => return Err(io("read", &path)(e)),
        };
        let format = |reason: &str| KeyStoreError::Format { path: path.clone(), reason: reason.into() };
        if bytes.len() < HEADER_LEN + 16 || &bytes[..4] != MAGIC {
            return Err(format("not a key file"));
        }
        if bytes[4] != VERSION {
            return Err(format(&format!("unsupported version {}", bytes[4])));
        }
        let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[5..13]);
        if u64::from_le_bytes(id) != params.id() {
            return Err(format("made for other scheme parameters"));
        }
        let (m, t, p) = (word(13), word(17), word(21));
        // Refuse absurd costs before spending memory on them (a forged file could ask for TiBs).
        if !(8..=4 * 1024 * 1024).contains(&m) || !(1..=64).contains(&t) || !(1..=16).contains(&p) {
            return Err(format("implausible key-derivation cost"));
        }
        let salt = &bytes[25..25 + SALT_LEN];
        let nonce_bytes: [u8; NONCE_LEN] =
            bytes[25 + SALT_LEN..HEADER_LEN].try_into().map_err(|_| format("truncated nonce"))?;
        let kek = derive(passphrase, salt, m, t, p)?;
        let aead = aead_key(&kek)?;
        let mut sealed = Zeroizing::new(bytes[HEADER_LEN..].to_vec());
        let plain = aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(aad(&bytes[..HEADER_LEN], venue)),
                &mut sealed,
            )
            .map_err(|_| KeyStoreError::Decrypt(venue.clone()))?;
        SecretKey::from_bytes(params, plain).map_err(|e| format(&e.to_string()))
    }

    /// Replaces a venue's key with a fresh one: the new key is written beside the old one,
    /// then renamed over it, then the old key's bytes are gone from this file system path.
    /// Every ciphertext made under the old key becomes useless: the caller clears the
    /// matcher's gallery and has subjects re-enrol (the key holder keeps no embeddings).
    ///
    /// # Errors
    /// If the old key cannot be decrypted with `passphrase` (so that only its holder can
    /// rotate), or the files cannot be written.
    pub fn rotate(
        &self,
        venue: &Id,
        params: Params,
        passphrase: &str,
        new_passphrase: &str,
    ) -> Result<SecretKey, KeyStoreError> {
        drop(self.load(venue, params, passphrase)?);
        let key = generate(params)?;
        let path = self.path(venue);
        let old = self.dir.join(format!("{venue}.key.old"));
        fs::rename(&path, &old).map_err(io("move aside", &path))?;
        if let Err(error) = self.write(venue, &key, new_passphrase, &path) {
            let _ = fs::rename(&old, &path);
            return Err(error);
        }
        shred(&old)?;
        Ok(key)
    }

    /// Destroys a venue's key: the file is overwritten with zeros, synced and removed.
    ///
    /// # Errors
    /// If the file cannot be overwritten or removed.
    pub fn destroy(&self, venue: &Id) -> Result<(), KeyStoreError> {
        let path = self.path(venue);
        if !path.exists() {
            return Err(KeyStoreError::Missing(venue.clone()));
        }
        shred(&path)
    }

    fn write(&self, venue: &Id, key: &SecretKey, passphrase: &str, path: &Path) -> Result<(), KeyStoreError> {
        if passphrase.chars().count() < MIN_PASSPHRASE_LEN {
            return Err(KeyStoreError::WeakPassphrase);
        }
        let salt: [u8; SALT_LEN] = random()?;
        let nonce: [u8; NONCE_LEN] = random()?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.extend_from_slice(&key.params().id().to_le_bytes());
        for w in [M_COST_KIB, T_COST, P_COST] {
            header.extend_from_slice(&w.to_le_bytes());
        }
        header.extend_from_slice(&salt);
        header.extend_from_slice(&nonce);
        let kek = derive(passphrase, &salt, M_COST_KIB, T_COST, P_COST)?;
        let aead = aead_key(&kek)?;
        let mut sealed = Zeroizing::new(key.to_bytes().to_vec());
        aead.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(&header, venue)),
            &mut *sealed,
        )
        .map_err(|_| KeyStoreError::Crypto("encryption failed".into()))?;
        let mut file_bytes = header;
        file_bytes.extend_from_slice(&sealed);
        passage_policy::atomic_file::write(path, &file_bytes, passage_policy::atomic_file::Access::Private)
            .map_err(|e| KeyStoreError::Io { op: e.op, path: e.path, source: e.source })?;
        Ok(())
    }
}

fn generate(params: Params) -> Result<SecretKey, KeyStoreError> {
    let mut rng = FheRng::from_seed(random()?);
    SecretKey::generate(params, &mut rng).map_err(KeyStoreError::Crypto)
}

/// Overwrites a file with zeros, syncs, and removes it.
fn shred(path: &Path) -> Result<(), KeyStoreError> {
    let len = fs::metadata(path).map_err(io("inspect", path))?.len();
    {
        let mut file = OpenOptions::new().write(true).open(path).map_err(io("open", path))?;
        file.write_all(&vec![0u8; len as usize]).map_err(io("overwrite", path))?;
        file.sync_all().map_err(io("sync", path))?;
    }
    fs::remove_file(path).map_err(io("remove", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = "correct horse battery";

    fn venue(s: &str) -> Id {
        Id::new(s).expect("valid id")
    }

    #[test]
    fn a_stored_key_round_trips_and_is_encrypted_at_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::open(dir.path()).expect("store");
        let params = Params::DEFAULT;
        let key = store.create(&venue("arena"), params, PASS).expect("created");
        let loaded = store.load(&venue("arena"), params, PASS).expect("loaded");
        assert_eq!(*key.to_bytes(), *loaded.to_bytes());
        // The file does not contain the key's encoding.
        let file = fs::read(store.path(&venue("arena"))).expect("file");
        let plain = key.to_bytes();
        assert!(!file.windows(64).any(|w| plain.windows(64).any(|p| p == w)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(store.path(&venue("arena"))).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(store.create(&venue("arena"), params, PASS), Err(KeyStoreError::Exists(_))));
    }

    #[test]
    fn wrong_passphrase_tampering_and_moving_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::open(dir.path()).expect("store");
        let params = Params::DEFAULT;
        store.create(&venue("arena"), params, PASS).expect("created");
        assert!(matches!(store.load(&venue("arena"), params, "wrong passphrase!"), Err(KeyStoreError::Decrypt(_))));
        // Flip one byte anywhere after the magic: refused, never a panic.
        let path = store.path(&venue("arena"));
        let good = fs::read(&path).expect("file");
        for at in [5usize, 14, 30, HEADER_LEN + 3, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            fs::write(&path, &bad).expect("write");
            assert!(store.load(&venue("arena"), params, PASS).is_err(), "byte {at}");
        }
        fs::write(&path, &good[..20]).expect("truncate");
        assert!(matches!(store.load(&venue("arena"), params, PASS), Err(KeyStoreError::Format { .. })));
        // The same file under another venue's name is refused (the venue is authenticated).
        fs::write(store.path(&venue("mall")), &good).expect("copy");
        assert!(matches!(store.load(&venue("mall"), params, PASS), Err(KeyStoreError::Decrypt(_))));
        assert!(matches!(store.load(&venue("nowhere"), params, PASS), Err(KeyStoreError::Missing(_))));
        assert!(matches!(store.create(&venue("short"), params, "short"), Err(KeyStoreError::WeakPassphrase)));
    }

    #[test]
    fn rotation_replaces_the_key_and_leaves_no_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::open(dir.path()).expect("store");
        let params = Params::DEFAULT;
        let old = store.create(&venue("arena"), params, PASS).expect("created");
        assert!(store.rotate(&venue("arena"), params, "not the passphrase", PASS).is_err());
        let new = store.rotate(&venue("arena"), params, PASS, "a new passphrase").expect("rotated");
        assert_ne!(*old.to_bytes(), *new.to_bytes());
        assert!(store.load(&venue("arena"), params, PASS).is_err());
        let loaded = store.load(&venue("arena"), params, "a new passphrase").expect("loaded");
        assert_eq!(*loaded.to_bytes(), *new.to_bytes());
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into())
            .collect();
        assert_eq!(names, ["arena.key"]);
        store.destroy(&venue("arena")).expect("destroyed");
        assert!(!store.exists(&venue("arena")));
    }
}
