//! Passwords and login: user-name rules, argon2id hashing/verification, generated passwords,
//! and the [`Authenticator`] that FTP sessions call for `USER`/`PASS`.
//!
//! Passwords are never logged or put into error values; only [`generate_password`] output is
//! meant to be shown, once, by its caller.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng as HashRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::Rng;
use thiserror::Error;
use tokio::sync::Semaphore;

use sha2::{Digest, Sha256};

use crate::store::{Store, UserRecord};

/// Maximum user name length in bytes (all allowed characters are ASCII).
pub const MAX_USERNAME_LEN: usize = 32;

/// OWASP Password Storage Cheat Sheet minimum for argon2id: 19 MiB memory, 2 passes, 1 lane.
const ARGON2_M_COST_KIB: u32 = 19_456;
const ARGON2_T_COST: u32 = 2;
const ARGON2_P_COST: u32 = 1;

/// Characters for generated passwords: alphanumerics minus look-alikes (0/O/o, 1/l/I), so a
/// password read off a terminal can be typed back without guessing. 55 symbols * 20 chars is
/// about 115 bits of entropy.
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
const GENERATED_PASSWORD_LEN: usize = 20;

#[derive(Debug, Error)]
pub enum AuthError {
    /// Deliberately carries no detail: unknown user and wrong password must look the same.
    #[error("login incorrect")]
    Rejected,
    #[error("internal: {0}")]
    Internal(String),
}

/// Checks the user-name rules from docs/CONTRACT.md: 1-32 chars of `[A-Za-z0-9._-]`, not
/// starting with `-` (looks like a CLI flag) or `.` (hidden / `..` directory names, since the
/// default home directory is named after the user).
pub fn validate_username(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("user name must not be empty".to_owned());
    }
    if name.len() > MAX_USERNAME_LEN {
        return Err(format!(
            "user name is too long ({} chars, max {MAX_USERNAME_LEN})",
            name.chars().count()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "invalid character {bad:?} in user name '{}' (allowed: A-Z a-z 0-9 . _ -)",
            name.escape_debug()
        ));
    }
    if name.starts_with('-') || name.starts_with('.') {
        return Err(format!("user name '{name}' must not start with '-' or '.'"));
    }
    Ok(())
}

fn hasher() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
        .map_err(|e| AuthError::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password into an argon2id PHC string with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut HashRng);
    let hash = hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AuthError::Internal(format!("hashing password: {e}")))?;
    Ok(hash.to_string())
}

/// Verifies a password against a PHC string. The cost parameters are taken from the hash
/// itself, so raising the defaults later does not break existing users. Returns false for a
/// malformed or non-argon2 hash instead of an error: the caller can only reject either way.
pub fn verify_password(password: &str, phc: &str) -> bool {
    verify_with_memory(password, phc, &mut Vec::new())
}

/// [`verify_password`] computing in `memory` (grown if this hash needs more), so a server can
/// reuse a few long-lived work areas instead of allocating ~19 MiB per login: a freed area of
/// that size stays in the allocator's heap and would look like memory held by sessions.
fn verify_with_memory(password: &str, phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_err()
    {
        return false;
    }
    // Output's equality is constant-time.
    password_hash::Output::new(&out).is_ok_and(|got| got == expected)
}

/// argon2 work areas, one per login allowed to run at once, allocated and touched at start.
struct WorkAreas {
    free: std::sync::Mutex<Vec<Vec<Block>>>,
}

impl WorkAreas {
    fn new(count: usize, warm_with: &str) -> WorkAreas {
        let free = (0..count)
            .map(|_| {
                let mut area = Vec::new();
                // A real verify sizes the area and touches every page now, not at the first
                // logins.
                let _ = verify_with_memory("", warm_with, &mut area);
                area
            })
            .collect();
        WorkAreas {
            free: std::sync::Mutex::new(free),
        }
    }

    /// Runs `f` with a work area (the login semaphore guarantees one is free).
    fn with<T>(&self, f: impl FnOnce(&mut Vec<Block>) -> T) -> T {
        let taken = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut area = taken.unwrap_or_default();
        let result = f(&mut area);
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(area);
        result
    }
}

/// Generates a random password from an unambiguous alphabet using the OS RNG.
pub fn generate_password() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..GENERATED_PASSWORD_LEN)
        .map(|_| char::from(PASSWORD_ALPHABET[rng.gen_range(0..PASSWORD_ALPHABET.len())]))
        .collect()
}

/// What a session needs to know about a logged-in user.
#[derive(Clone, Debug)]
pub struct Account {
    pub name: String,
    pub home: PathBuf,
    pub quota_bytes: crate::store::Limit,
    pub quota_files: crate::store::Limit,
    /// Usage recorded in the store at login (the quota registry's starting point).
    pub used_bytes: u64,
    pub used_files: u64,
}

/// Logins run the store lookup and argon2 verify on tokio's blocking pool, at most `max_parallel`
/// argon2 computations at once (tokio::sync::Semaphore) so a login storm cannot starve
/// transfers. Unknown users are verified against a dummy hash (made once at construction) so
/// they take the same time and get the same error. A password verified within the last
/// `cache_ttl` is recognised without argon2 ([`VerifiedLogins`]).
pub struct Authenticator {
    store: Arc<Store>,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
    areas: Arc<WorkAreas>,
    verified: VerifiedLogins,
}

impl Authenticator {
    /// Builds the authenticator. Computes one argon2 hash (the dummy), so call it once at
    /// startup, not per connection. `max_parallel` must be at least 1; a zero `cache_ttl`
    /// verifies every login with argon2.
    pub fn new(
        store: Arc<Store>,
        max_parallel: usize,
        cache_ttl: Duration,
    ) -> Result<Self, AuthError> {
        if max_parallel == 0 {
            return Err(AuthError::Internal(
                "login parallelism must be at least 1".to_owned(),
            ));
        }
        let dummy_hash = hash_password(&generate_password())?;
        let areas = Arc::new(WorkAreas::new(max_parallel, &dummy_hash));
        Ok(Authenticator {
            store,
            permits: Arc::new(Semaphore::new(max_parallel)),
            areas,
            dummy_hash: dummy_hash.into(),
            verified: VerifiedLogins::new(cache_ttl),
        })
    }

    /// Checks `user`/`password`. Every failure a client can cause is [`AuthError::Rejected`];
    /// [`AuthError::Internal`] means the server itself failed (database error, panic).
    pub async fn login(&self, user: &str, password: &str) -> Result<Account, AuthError> {
        // The record is read on every login, cached or not, so a deleted user, a changed
        // password or a new quota counts at once. The lookup takes no argon2 permit: a storm
        // of wrong passwords queues on the permits, not in front of users the cache knows.
        let store = Arc::clone(&self.store);
        let name = user.to_owned();
        let record = tokio::task::spawn_blocking(move || lookup(&store, &name))
            .await
            .map_err(|e| AuthError::Internal(format!("login task failed: {e}")))??;
        if let Some(rec) = &record {
            if self.verified.holds(&rec.name, &rec.password_hash, password) {
                return Ok(account_of(rec.clone()));
            }
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AuthError::Internal("authenticator shut down".to_owned()))?;
        let dummy_hash = Arc::clone(&self.dummy_hash);
        let areas = Arc::clone(&self.areas);
        let password_owned = password.to_owned();
        let task = tokio::task::spawn_blocking(move || {
            // The permit lives inside the blocking task: if the session is dropped mid-login
            // (client hung up), the hash still runs to completion and must stay counted.
            let _permit = permit;
            areas.with(|area| check_credentials(record, &dummy_hash, &password_owned, area))
        });
        let result = match task.await {
            Ok(result) => result,
            Err(e) => Err(AuthError::Internal(format!("login task failed: {e}"))),
        };
        if let Ok((_, phc)) = &result {
            self.verified.remember(user, phc, password);
        }
        result.map(|(account, _)| account)
    }
}

/// The user's record, or `None` for a name that does not exist or cannot exist (not looked up).
fn lookup(store: &Store, user: &str) -> Result<Option<UserRecord>, AuthError> {
    if validate_username(user).is_err() {
        return Ok(None);
    }
    store
        .get_user(user)
        .map_err(|e| AuthError::Internal(format!("looking up user: {e}")))
}

fn account_of(rec: UserRecord) -> Account {
    Account {
        name: rec.name,
        home: rec.home,
        quota_bytes: rec.quota_bytes,
        quota_files: rec.quota_files,
        used_bytes: rec.used_bytes,
        used_files: rec.used_files,
    }
}

/// The argon2 check; on success the account and the hash it was verified against.
fn check_credentials(
    record: Option<UserRecord>,
    dummy_hash: &str,
    password: &str,
    area: &mut Vec<Block>,
) -> Result<(Account, String), AuthError> {
    match record {
        Some(rec) => {
            if verify_with_memory(password, &rec.password_hash, area) {
                let phc = rec.password_hash.clone();
                Ok((account_of(rec), phc))
            } else {
                if PasswordHash::new(&rec.password_hash).is_err() {
                    // Operator-visible hint; the client still just sees "login incorrect".
                    tracing::warn!(user = %rec.name, "stored password hash is malformed");
                }
                Err(AuthError::Rejected)
            }
        }
        None => {
            // A name that does not exist still costs one verify, so that it cannot be told
            // apart from a real name by timing.
            let _ = verify_with_memory(password, dummy_hash, area);
            Err(AuthError::Rejected)
        }
    }
}

/// Most users remembered at once; past it the entry closest to expiry makes room.
const VERIFIED_LOGINS_MAX: usize = 10_000;

/// Passwords argon2 accepted within the last `ttl`, so that a client that logs in again and
/// again (curl fetching one file per connection, rclone opening its pool, a monitoring probe)
/// pays the ~20 ms argon2 costs once per `ttl` instead of per login. SFTPGo does the same
/// (`password_caching`, on by default).
///
/// What it holds is a SHA-256 over a per-process random key, the stored hash and the
/// password: never the password, never on disk, and worthless after a restart. Only a
/// password argon2 accepted is ever remembered, so a wrong guess always pays full price, and
/// the stored hash is part of the tag, so a changed password forgets the old one at once.
struct VerifiedLogins {
    key: [u8; 32],
    ttl: Duration,
    entries: Mutex<HashMap<String, Verified>>,
}

struct Verified {
    tag: [u8; 32],
    expires: Instant,
}

impl VerifiedLogins {
    fn new(ttl: Duration) -> VerifiedLogins {
        VerifiedLogins {
            key: rand::rngs::OsRng.gen(),
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn tag(&self, phc: &str, password: &str) -> [u8; 32] {
        let mut digest = Sha256::new();
        digest.update(self.key);
        // Length-prefixed, so no (hash, password) pair can be shifted into another.
        digest.update((phc.len() as u64).to_le_bytes());
        digest.update(phc.as_bytes());
        digest.update(password.as_bytes());
        digest.finalize().into()
    }

    fn holds(&self, user: &str, phc: &str, password: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let tag = self.tag(phc, password);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(user).is_some_and(|known| {
            // Every byte compared whatever the first difference: no timing to learn from.
            let differences = known
                .tag
                .iter()
                .zip(&tag)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            known.expires > Instant::now() && differences == 0
        })
    }

    fn remember(&self, user: &str, phc: &str, password: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let verified = Verified {
            tag: self.tag(phc, password),
            expires: now + self.ttl,
        };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= VERIFIED_LOGINS_MAX && !entries.contains_key(user) {
            entries.retain(|_, known| known.expires > now);
            if entries.len() >= VERIFIED_LOGINS_MAX {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, known)| known.expires)
                    .map(|(name, _)| name.clone());
                if let Some(name) = soonest {
                    entries.remove(&name);
                }
            }
        }
        entries.insert(user.to_owned(), verified);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewUser;

    #[test]
    fn username_rules() {
        for good in [
            "alice",
            "a",
            "Bob_2",
            "x.y-z",
            "a-",
            "9lives",
            "a".repeat(32).as_str(),
        ] {
            assert!(validate_username(good).is_ok(), "{good:?} should be valid");
        }
        for bad in [
            "",
            "a".repeat(33).as_str(),
            "-alice",
            ".alice",
            ".",
            "..",
            "al ice",
            "al/ice",
            "al\\ice",
            "al\0ice",
            "élise",
            "alice\n",
            "a:b",
        ] {
            assert!(validate_username(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn username_errors_are_specific() {
        let e = validate_username("bad name").expect_err("space is invalid");
        assert!(e.contains("' '"), "{e}");
        let e = validate_username(&"a".repeat(40)).expect_err("too long");
        assert!(e.contains("40") && e.contains("32"), "{e}");
    }

    #[test]
    fn hash_verify_round_trip() {
        let phc = hash_password("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horsE", &phc));
        assert!(!verify_password("", &phc));
        // Same password, different salt -> different hash.
        let phc2 = hash_password("correct horse").expect("hash");
        assert_ne!(phc, phc2);
        assert!(verify_password("correct horse", &phc2));
    }

    #[test]
    fn malformed_hash_is_false() {
        assert!(!verify_password("x", ""));
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password(
            "x",
            "$argon2id$v=19$m=19456,t=2,p=1$garbage"
        ));
        assert!(!verify_password(
            "x",
            "$2b$12$abcdefghijklmnopqrstuuCTXrDGZhJT5oXn1xf.vO4PqMRfMT6"
        ));
    }

    #[test]
    fn generated_passwords() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), GENERATED_PASSWORD_LEN);
        assert_ne!(a, b);
        for c in a.chars().chain(b.chars()) {
            assert!(PASSWORD_ALPHABET.contains(&(c as u8)), "{c:?}");
            assert!(!"0Oo1lI".contains(c), "{c:?} is ambiguous");
        }
    }

    fn store_with_alice() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        store
            .add_user(&NewUser {
                name: "alice".to_owned(),
                password_hash: hash_password("s3cret").expect("hash"),
                home: dir.path().join("homes/alice"),
                quota_bytes: crate::store::Limit::Max(1 << 20),
                quota_files: crate::store::Limit::Default,
            })
            .expect("add");
        (dir, Arc::new(store))
    }

    #[tokio::test]
    async fn login_accepts_and_rejects() {
        let (dir, store) = store_with_alice();
        let auth = Authenticator::new(store, 2, Duration::ZERO).expect("authenticator");

        let acct = auth.login("alice", "s3cret").await.expect("login ok");
        assert_eq!(acct.name, "alice");
        assert_eq!(acct.home, dir.path().join("homes/alice"));
        assert_eq!(acct.quota_bytes, crate::store::Limit::Max(1 << 20));
        assert_eq!(acct.quota_files, crate::store::Limit::Default);

        assert!(matches!(
            auth.login("alice", "wrong").await,
            Err(AuthError::Rejected)
        ));
        assert!(matches!(
            auth.login("nobody", "s3cret").await,
            Err(AuthError::Rejected)
        ));
        assert!(matches!(
            auth.login("../etc", "s3cret").await,
            Err(AuthError::Rejected)
        ));
        // Names are case-sensitive.
        assert!(matches!(
            auth.login("Alice", "s3cret").await,
            Err(AuthError::Rejected)
        ));
    }

    #[tokio::test]
    async fn malformed_stored_hash_rejects() {
        let (_dir, store) = store_with_alice();
        store
            .set_password_hash("alice", "garbage")
            .expect("set hash");
        let auth = Authenticator::new(store, 1, Duration::ZERO).expect("authenticator");
        assert!(matches!(
            auth.login("alice", "s3cret").await,
            Err(AuthError::Rejected)
        ));
    }

    /// Holds every argon2 permit: a login that still completes did not run argon2.
    async fn hold_permits(auth: &Authenticator) -> tokio::sync::OwnedSemaphorePermit {
        let all = u32::try_from(auth.permits.available_permits()).expect("few permits");
        auth.permits
            .clone()
            .acquire_many_owned(all)
            .await
            .expect("permits")
    }

    async fn login_within(auth: &Authenticator, user: &str, pw: &str) -> Option<bool> {
        tokio::time::timeout(Duration::from_millis(500), auth.login(user, pw))
            .await
            .ok()
            .map(|r| r.is_ok())
    }

    #[tokio::test]
    async fn a_verified_password_skips_argon2_until_it_expires_or_changes() {
        let (_dir, store) = store_with_alice();
        let auth = Authenticator::new(store.clone(), 1, Duration::from_millis(600)).expect("auth");
        auth.login("alice", "s3cret").await.expect("first login");

        let held = hold_permits(&auth).await;
        assert_eq!(login_within(&auth, "alice", "s3cret").await, Some(true));
        // A wrong password is never answered from the cache: it waits for argon2.
        assert_eq!(login_within(&auth, "alice", "s3cre").await, None);
        assert_eq!(login_within(&auth, "bob", "s3cret").await, None);
        drop(held);

        // A changed password forgets the old one at once.
        store
            .set_password_hash("alice", &hash_password("n3w").expect("hash"))
            .expect("set hash");
        assert!(matches!(
            auth.login("alice", "s3cret").await,
            Err(AuthError::Rejected)
        ));
        auth.login("alice", "n3w").await.expect("new password");

        // Past its time, argon2 runs again.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let held = hold_permits(&auth).await;
        assert_eq!(login_within(&auth, "alice", "n3w").await, None);
        drop(held);
        auth.login("alice", "n3w").await.expect("verified again");
    }

    #[tokio::test]
    async fn a_deleted_user_is_refused_although_verified() {
        let (_dir, store) = store_with_alice();
        let auth = Authenticator::new(store.clone(), 1, Duration::from_secs(60)).expect("auth");
        auth.login("alice", "s3cret").await.expect("first login");
        store.delete_user("alice").expect("delete");
        assert!(matches!(
            auth.login("alice", "s3cret").await,
            Err(AuthError::Rejected)
        ));
    }

    #[tokio::test]
    async fn a_zero_ttl_never_skips_argon2() {
        let (_dir, store) = store_with_alice();
        let auth = Authenticator::new(store, 1, Duration::ZERO).expect("auth");
        auth.login("alice", "s3cret").await.expect("first login");
        let held = hold_permits(&auth).await;
        assert_eq!(login_within(&auth, "alice", "s3cret").await, None);
        drop(held);
    }

    #[test]
    fn zero_parallelism_is_an_error() {
        let (_dir, store) = store_with_alice();
        assert!(matches!(
            Authenticator::new(store, 0, Duration::ZERO),
            Err(AuthError::Internal(_))
        ));
    }
}
