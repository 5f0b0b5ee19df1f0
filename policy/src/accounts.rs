//! Staff accounts and sessions, with no I/O: passwords hashed with Argon2id, a TOTP second
//! factor (RFC 6238, one use per 30-second step), lockout after repeated failures, session
//! and bearer tokens of 256 bits kept only as SHA-256 hashes, revocation, and per-venue
//! scoping of every principal.
//!
//! The caller supplies the clock (`now`, Unix seconds) and the randomness source, and persists
//! [`Accounts`] (it is `serde`) where it likes; a session token or bearer token is shown once,
//! at creation, and never stored.

use std::collections::BTreeMap;

use passage_wire::Id;
use rand::CryptoRng;
use ring::digest::{digest, SHA256};
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Argon2id cost for staff passwords: 19 MiB, 2 passes, 1 lane (OWASP's minimum setting).
const ARGON_M_KIB: u32 = 19 * 1024;
const ARGON_T: u32 = 2;
/// Consecutive failed logins before an account is locked.
pub const MAX_FAILURES: u32 = 5;
/// How long a locked account stays locked, in seconds.
pub const LOCKOUT_SECS: i64 = 15 * 60;
/// A session ends after this long without use, in seconds.
pub const SESSION_IDLE_SECS: i64 = 30 * 60;
/// A session ends this long after login regardless of use, in seconds.
pub const SESSION_MAX_SECS: i64 = 12 * 3600;
/// TOTP time step, in seconds.
pub const TOTP_STEP: i64 = 30;
/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the deployment: every venue.
    Operator,
    /// Sees the analytics of the venues listed on the account only.
    VenueManager,
    /// The data protection officer: DPIA, register, audit log of every venue.
    Dpo,
    /// A gate: match requests for its venue only.
    Gate,
    /// A camera: publishes its own counts only.
    Camera,
    /// A visitor (data subject) in the self-service portal: their own data only. The name is
    /// the subject's pseudonymous reference; visitors hold bearer tokens, never passwords.
    Visitor,
}

/// Who is acting, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Account or device name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The venues it is scoped to (ignored for operators and the DPO, who see every venue).
    pub venues: Vec<Id>,
}

impl Principal {
    /// Whether this principal may see or act on `venue`.
    pub fn can_access(&self, venue: &Id) -> bool {
        match self.role {
            Role::Operator | Role::Dpo => true,
            Role::VenueManager | Role::Gate | Role::Camera | Role::Visitor => self.venues.contains(venue),
        }
    }

    /// The audit log's actor reference for this principal.
    pub fn actor(&self) -> String {
        let role = match self.role {
            Role::Operator => "operator",
            Role::VenueManager => "manager",
            Role::Dpo => "dpo",
            Role::Gate => "gate",
            Role::Camera => "camera",
            Role::Visitor => "visitor",
        };
        format!("{role}:{}", self.name)
    }
}

/// A staff account as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Account {
    role: Role,
    venues: Vec<Id>,
    /// Hex salt (16 bytes) and Argon2id hash (32 bytes).
    salt: String,
    hash: String,
    /// Hex TOTP secret (20 bytes).
    totp: String,
    /// The last TOTP step accepted (a code is usable once).
    last_step: i64,
    failures: u32,
    locked_until: i64,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    account: String,
    created: i64,
    last_used: i64,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Token {
    principal: Principal,
    created: i64,
}

/// The accounts, sessions and bearer tokens of a deployment.
#[derive(Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounts {
    accounts: BTreeMap<String, Account>,
    /// By hex SHA-256 of the session token.
    sessions: BTreeMap<String, Session>,
    /// By hex SHA-256 of the bearer token.
    tokens: BTreeMap<String, Token>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("accounts", &self.accounts.len())
            .field("sessions", &self.sessions.len())
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// Why an account operation or a login failed. Login failures are deliberately vague to the
/// caller ([`AccountError::Login`]); the reason goes to the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// Name, password, code or lock: the client learns only that the login failed.
    #[error("login failed")]
    Login(LoginFailure),
    /// The account name is taken.
    #[error("an account named {0:?} exists")]
    Exists(String),
    /// No such account.
    #[error("no account named {0:?}")]
    Unknown(String),
    /// A bad name, password or role/venue combination.
    #[error("{0}")]
    Invalid(&'static str),
    /// Argon2 refused its parameters.
    #[error("password hashing failed")]
    Hashing,
}

/// Why a login failed (for the audit log, not for the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// No such account.
    UnknownAccount,
    /// Wrong password.
    WrongPassword,
    /// Wrong or reused TOTP code.
    WrongCode,
    /// The account is locked after repeated failures.
    Locked,
}

impl LoginFailure {
    /// Short text for the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginFailure::UnknownAccount => "unknown account",
            LoginFailure::WrongPassword => "wrong password",
            LoginFailure::WrongCode => "wrong or reused code",
            LoginFailure::Locked => "locked",
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes).as_ref())
}

fn argon(password: &str, salt: &[u8]) -> Result<[u8; 32], AccountError> {
    let params = argon2::Params::new(ARGON_M_KIB, ARGON_T, 1, Some(32)).map_err(|_| AccountError::Hashing)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0; 32];
    argon.hash_password_into(password.as_bytes(), salt, &mut out).map_err(|_| AccountError::Hashing)?;
    Ok(out)
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The RFC 6238 code (HMAC-SHA1) of `secret` at time step `step`, with `digits` digits.
pub fn totp(secret: &[u8], step: i64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]);
    binary % 10u32.pow(digits)
}

/// Base32 (RFC 4648, no padding) of a TOTP secret, as authenticator apps take it.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes base32 (RFC 4648, no padding, case-insensitive); `None` on a bad character.
pub fn from_base32(text: &str) -> Option<Vec<u8>> {
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u32, 0);
    for c in text.trim_end_matches('=').chars() {
        let value = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u32 - 'A' as u32,
            c @ '2'..='7' => c as u32 - '2' as u32 + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// The 6-digit code an authenticator app shows at `now` for the base32 `secret` of an
/// [`Enrolment`].
pub fn code_at(secret: &str, now: i64) -> Option<String> {
    let secret = from_base32(secret)?;
    Some(format!("{:06}", totp(&secret, now.div_euclid(TOTP_STEP), 6)))
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// What a new account's holder needs once: the TOTP secret for their authenticator app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// Base32 secret.
    pub secret: String,
    /// `otpauth://` URI (for a QR code).
    pub uri: String,
}

impl Accounts {
    /// No accounts.
    pub fn new() -> Accounts {
        Accounts::default()
    }

    /// Creates an account; returns the TOTP enrolment to hand to its holder.
    ///
    /// # Errors
    /// A taken or malformed name, a short password, a venue manager without venues.
    pub fn add(
        &mut self,
        name: &str,
        password: &str,
        role: Role,
        venues: Vec<Id>,
        rng: &mut impl CryptoRng,
    ) -> Result<Enrolment, AccountError> {
        if !valid_name(name) {
            return Err(AccountError::Invalid("account names are 1 to 64 of A-Z a-z 0-9 . - _"));
        }
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AccountError::Invalid("passwords need at least 12 characters"));
        }
        if matches!(role, Role::Gate | Role::Camera | Role::Visitor) {
            return Err(AccountError::Invalid(
                "devices and visitors get bearer tokens or certificates, not staff accounts",
            ));
        }
        if role == Role::VenueManager && venues.is_empty() {
            return Err(AccountError::Invalid("a venue manager needs at least one venue"));
        }
        if self.accounts.contains_key(name) {
            return Err(AccountError::Exists(name.to_owned()));
        }
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let mut secret = [0u8; 20];
        rng.fill_bytes(&mut secret);
        let hash = argon(password, &salt)?;
        self.accounts.insert(
            name.to_owned(),
            Account {
                role,
                venues,
                salt: hex::encode(salt),
                hash: hex::encode(hash),
                totp: hex::encode(secret),
                last_step: i64::MIN,
                failures: 0,
                locked_until: 0,
            },
        );
        let b32 = base32(&secret);
        Ok(Enrolment { uri: format!("otpauth://totp/Passage:{name}?secret={b32}&issuer=Passage"), secret: b32 })
    }

    /// Logs in with password and TOTP code; returns a new session token (shown once).
    ///
    /// # Errors
    /// [`AccountError::Login`] with the reason (for the audit log); the account is locked for
    /// [`LOCKOUT_SECS`] after [`MAX_FAILURES`] consecutive failures.
    pub fn login(
        &mut self,
        name: &str,
        password: &str,
        code: &str,
        now: i64,
        rng: &mut impl CryptoRng,
    ) -> Result<String, AccountError> {
        let Some(account) = self.accounts.get_mut(name) else {
            // The same work as a real check, so timing does not reveal which names exist.
            let _ = argon(password, &[0; 16]);
            return Err(AccountError::Login(LoginFailure::UnknownAccount));
        };
        if account.locked_until > now {
            return Err(AccountError::Login(LoginFailure::Locked));
        }
        let salt = hex::decode(&account.salt).unwrap_or_default();
        let stored = hex::decode(&account.hash).unwrap_or_default();
        let password_ok = equal(&argon(password, &salt)?, &stored);
        let secret = hex::decode(&account.totp).unwrap_or_default();
        let step = now.div_euclid(TOTP_STEP);
        let code_step = code
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|_| code.trim().len() == 6)
            .and_then(|code| (step - 1..=step + 1).find(|&s| totp(&secret, s, 6) == code));
        let failure = if !password_ok {
            Some(LoginFailure::WrongPassword)
        } else {
            match code_step {
                Some(s) if s > account.last_step => None,
                _ => Some(LoginFailure::WrongCode),
            }
        };
        if let Some(failure) = failure {
            account.failures += 1;
            if account.failures >= MAX_FAILURES {
                account.failures = 0;
                account.locked_until = now + LOCKOUT_SECS;
            }
            return Err(AccountError::Login(failure));
        }
        account.failures = 0;
        account.last_step = code_step.unwrap_or(step);
        let token = new_token(rng);
        self.sessions
            .insert(sha256_hex(token.as_bytes()), Session { account: name.to_owned(), created: now, last_used: now });
        Ok(token)
    }

    /// The principal of a live session (and marks it used); `None` for an unknown, revoked,
    /// idle or expired token.
    pub fn session(&mut self, token: &str, now: i64) -> Option<Principal> {
        let key = sha256_hex(token.as_bytes());
        let session = self.sessions.get_mut(&key)?;
        if now - session.last_used > SESSION_IDLE_SECS || now - session.created > SESSION_MAX_SECS {
            self.sessions.remove(&key);
            return None;
        }
        session.last_used = now;
        let name = session.account.clone();
        let account = self.accounts.get(&name)?;
        Some(Principal { name, role: account.role, venues: account.venues.clone() })
    }

    /// Ends a session; returns whether it existed.
    pub fn logout(&mut self, token: &str) -> bool {
        self.sessions.remove(&sha256_hex(token.as_bytes())).is_some()
    }

    /// Removes an account with its sessions.
    ///
    /// # Errors
    /// No such account.
    pub fn remove(&mut self, name: &str) -> Result<(), AccountError> {
        self.accounts.remove(name).ok_or_else(|| AccountError::Unknown(name.to_owned()))?;
        self.sessions.retain(|_, s| s.account != name);
        Ok(())
    }

    /// Issues a bearer token for an app or device principal (shown once, stored hashed).
    pub fn issue_token(&mut self, principal: Principal, now: i64, rng: &mut impl CryptoRng) -> String {
        let token = new_token(rng);
        self.tokens.insert(sha256_hex(token.as_bytes()), Token { principal, created: now });
        token
    }

    /// The bearer tokens of `role`, as (SHA-256 of the token in hex, principal): the hashes
    /// are what the store keeps, never the tokens.
    pub fn token_hashes(&self, role: Role) -> Vec<(String, Principal)> {
        self.tokens
            .iter()
            .filter(|(_, t)| t.principal.role == role)
            .map(|(h, t)| (h.clone(), t.principal.clone()))
            .collect()
    }

    /// The SHA-256 (hex) under which a bearer token is stored.
    pub fn token_hash(token: &str) -> String {
        sha256_hex(token.as_bytes())
    }

    /// The principal of a bearer token.
    pub fn bearer(&self, token: &str) -> Option<Principal> {
        self.tokens.get(&sha256_hex(token.as_bytes())).map(|t| t.principal.clone())
    }

    /// Revokes a bearer token; returns whether it existed.
    pub fn revoke_token(&mut self, token: &str) -> bool {
        self.tokens.remove(&sha256_hex(token.as_bytes())).is_some()
    }

    /// Revokes every bearer token of the principal named `name` with `role` (a visitor who
    /// erased their data, a decommissioned gate); returns how many there were.
    pub fn revoke_principal(&mut self, name: &str, role: Role) -> usize {
        let before = self.tokens.len();
        self.tokens.retain(|_, t| !(t.principal.name == name && t.principal.role == role));
        before - self.tokens.len()
    }

    /// Replaces the venues of every bearer token of the principal named `name` with `role`.
    pub fn rescope_principal(&mut self, name: &str, role: Role, venues: &[Id]) {
        for token in self.tokens.values_mut() {
            if token.principal.name == name && token.principal.role == role {
                token.principal.venues = venues.to_vec();
            }
        }
    }

    /// Drops idle and expired sessions.
    pub fn sweep_sessions(&mut self, now: i64) {
        self.sessions.retain(|_, s| now - s.last_used <= SESSION_IDLE_SECS && now - s.created <= SESSION_MAX_SECS);
    }
}

/// Reads an accounts file written by [`save`].
///
/// # Errors
/// An unreadable or malformed file (a missing file is an empty set of accounts).
pub fn load(path: &std::path::Path) -> Result<Accounts, std::io::Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Accounts::new()),
        Err(error) => Err(error),
    }
}

/// Writes `accounts` to `path` atomically (a private temporary file beside it, fsync, rename):
/// a crash leaves the old file or the new one.
///
/// # Errors
/// Any failed step.
pub fn save(path: &std::path::Path, accounts: &Accounts) -> Result<(), std::io::Error> {
    crate::atomic_file::write_private(path, &serde_json::to_vec(accounts).map_err(std::io::Error::other)?)
}

/// 256 random bits, hex.
fn new_token(rng: &mut impl CryptoRng) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_file_round_trips_and_holds_no_plain_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("accounts.json");
        assert_eq!(load(&path).expect("missing is empty"), Accounts::new());
        let mut rng = rng();
        let mut a = Accounts::new();
        a.add("dana", "correct horse battery", Role::Dpo, vec![], &mut rng).expect("add");
        let token = a.issue_token(Principal { name: "app".into(), role: Role::Operator, venues: vec![] }, 0, &mut rng);
        save(&path, &a).expect("save");
        assert_eq!(load(&path).expect("load"), a);
        assert!(!std::fs::read_to_string(&path).expect("read").contains(&token));
        std::fs::write(&path, "{not json").expect("write");
        assert!(load(&path).is_err());
    }

    fn rng() -> rand_chacha::ChaCha20Rng {
        rand_chacha::ChaCha20Rng::seed_from_u64(7)
    }

    fn id(s: &str) -> Id {
        Id::new(s).expect("id")
    }

    #[test]
    fn totp_matches_the_rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        for (time, code) in
            [(59, 94_287_082), (1_111_111_109, 7_081_804), (1_111_111_111, 14_050_471), (1_234_567_890, 89_005_924)]
        {
            assert_eq!(totp(secret, time / 30, 8), code, "T = {time}");
        }
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(from_base32("MZXW6YTBOI").as_deref(), Some(&b"foobar"[..]));
        assert_eq!(from_base32("mzxw6ytboi").as_deref(), Some(&b"foobar"[..]));
        assert!(from_base32("M1").is_none());
    }

    fn code_at(accounts: &Accounts, name: &str, now: i64) -> String {
        let secret = hex::decode(&accounts.accounts[name].totp).expect("hex");
        format!("{:06}", totp(&secret, now / TOTP_STEP, 6))
    }

    #[test]
    fn login_needs_password_and_a_fresh_code_and_a_replayed_code_is_refused() {
        let mut rng = rng();
        let mut a = Accounts::new();
        let enrolment = a.add("dana", "correct horse battery", Role::Dpo, vec![], &mut rng).expect("add");
        assert!(enrolment.uri.starts_with("otpauth://totp/Passage:dana?secret="));
        let now = 1_800_000_000;
        let code = code_at(&a, "dana", now);
        let err = a.login("dana", "wrong password!!", &code, now, &mut rng).expect_err("wrong password");
        assert_eq!(err, AccountError::Login(LoginFailure::WrongPassword));
        assert_eq!(err.to_string(), "login failed", "the client learns nothing more");
        let token = a.login("dana", "correct horse battery", &code, now, &mut rng).expect("login");
        assert_eq!(token.len(), 64, "256-bit token");
        assert!(!serde_json::to_string(&a).expect("json").contains(&token), "tokens are stored hashed");
        let replay = a.login("dana", "correct horse battery", &code, now + 5, &mut rng);
        assert_eq!(replay, Err(AccountError::Login(LoginFailure::WrongCode)), "same step, same code: refused");
        let next = code_at(&a, "dana", now + 30);
        assert!(a.login("dana", "correct horse battery", &next, now + 30, &mut rng).is_ok());
        assert_eq!(
            a.login("nobody", "correct horse battery", &code, now, &mut rng),
            Err(AccountError::Login(LoginFailure::UnknownAccount))
        );
    }

    #[test]
    fn five_failures_lock_the_account_for_fifteen_minutes() {
        let mut rng = rng();
        let mut a = Accounts::new();
        a.add("op", "a long enough password", Role::Operator, vec![], &mut rng).expect("add");
        let now = 1_800_000_000;
        for _ in 0..MAX_FAILURES {
            assert!(a.login("op", "not the password", "000000", now, &mut rng).is_err());
        }
        let code = code_at(&a, "op", now);
        assert_eq!(
            a.login("op", "a long enough password", &code, now, &mut rng),
            Err(AccountError::Login(LoginFailure::Locked))
        );
        let later = now + LOCKOUT_SECS + 1;
        let code = code_at(&a, "op", later);
        assert!(a.login("op", "a long enough password", &code, later, &mut rng).is_ok());
    }

    #[test]
    fn sessions_expire_and_are_revoked_and_scoping_is_per_venue() {
        let mut rng = rng();
        let mut a = Accounts::new();
        a.add("mia", "manager of arena", Role::VenueManager, vec![id("arena")], &mut rng).expect("add");
        assert!(a.add("mia", "manager of arena", Role::Dpo, vec![], &mut rng).is_err(), "names are unique");
        assert!(a.add("x", "short", Role::Dpo, vec![], &mut rng).is_err());
        assert!(a.add("y", "no venue at all!", Role::VenueManager, vec![], &mut rng).is_err());
        let now = 1_800_000_000;
        let code = code_at(&a, "mia", now);
        let token = a.login("mia", "manager of arena", &code, now, &mut rng).expect("login");
        let who = a.session(&token, now + 60).expect("live");
        assert!(who.can_access(&id("arena")) && !who.can_access(&id("hall")), "a manager of A sees nothing of B");
        assert_eq!(who.actor(), "manager:mia");
        assert!(a.session(&token, now + 60 + SESSION_IDLE_SECS + 1).is_none(), "idle sessions end");
        let code = code_at(&a, "mia", now + 30);
        let token = a.login("mia", "manager of arena", &code, now + 30, &mut rng).expect("login");
        assert!(a.logout(&token));
        assert!(a.session(&token, now + 31).is_none(), "revoked");
        assert!(a.session("forged-token", now).is_none());

        let gate = Principal { name: "east-1".into(), role: Role::Gate, venues: vec![id("arena")] };
        let bearer = a.issue_token(gate.clone(), now, &mut rng);
        assert_eq!(a.bearer(&bearer), Some(gate));
        assert!(a.revoke_token(&bearer));
        assert!(a.bearer(&bearer).is_none());
    }

    #[test]
    fn a_visitors_tokens_are_rescoped_and_revoked_together_and_visitors_have_no_password() {
        let mut rng = rng();
        let mut a = Accounts::new();
        assert!(a.add("v", "a long enough password", Role::Visitor, vec![id("arena")], &mut rng).is_err());
        let visitor = Principal { name: "v-1".into(), role: Role::Visitor, venues: vec![id("arena")] };
        let other = Principal { name: "v-2".into(), role: Role::Visitor, venues: vec![id("arena")] };
        let (t1, t2) = (a.issue_token(visitor.clone(), 0, &mut rng), a.issue_token(visitor, 0, &mut rng));
        let t3 = a.issue_token(other, 0, &mut rng);
        a.rescope_principal("v-1", Role::Visitor, &[id("arena"), id("hall")]);
        let who = a.bearer(&t2).expect("live");
        assert!(who.can_access(&id("hall")) && !a.bearer(&t3).expect("live").can_access(&id("hall")));
        assert_eq!(who.actor(), "visitor:v-1");
        assert_eq!(a.revoke_principal("v-1", Role::Visitor), 2);
        assert!(a.bearer(&t1).is_none() && a.bearer(&t2).is_none());
        assert!(a.bearer(&t3).is_some(), "another visitor keeps theirs");
    }
}
