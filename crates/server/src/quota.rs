//! Per-user disk quotas: bytes and number of files.
//!
//! Every session of one user shares one [`Usage`] (the [`QuotaRegistry`] hands out the same
//! `Arc` while any session holds it), so concurrent uploads of one user reserve from the same
//! counters under one lock and cannot jointly overrun the limit. An upload reserves each chunk
//! before writing it ([`Usage::reserve_bytes`]); once the limit is reached it writes what still
//! fits and stops with 552, leaving the user at or under quota. After every upload the
//! reservation is reconciled with the file's real size, so an error half-way never leaks space.
//!
//! Usage is persisted in the store after each change and re-read at the first login of a user
//! with no other session. Regular files count; directories do not; bytes are apparent sizes
//! (what SIZE reports), upload part files included.
//!
//! # Counters are recounted once per process, before anyone can reserve
//!
//! The stored counters cannot be trusted at start: after a crash (kill -9, power loss) the
//! uploads that were running had written bytes they never settled, and files may have been
//! changed while the server was down. So in a new process every user starts *unverified*, and
//! no [`Usage`] is ever built from an unverified counter: [`QuotaRegistry::attach`] first
//! makes sure the user was recounted from the disk ([`Storage::scan_usage`]) in this process, scanning
//! the home itself (it runs on a blocking thread) if nobody has yet. The background rescan at
//! start ([`QuotaRegistry::rescan_all`]) does the same for every user, so most logins find the
//! work done and users who never log in get true numbers in `ferryd user list`.
//!
//! Exactness by exclusion, not by adjustment: each user has one gate (a mutex around their
//! "verified" flag), held for the whole of their scan and its write to the store. The first of
//! the background rescan and the user's first login to take the gate scans; the other waits for
//! that one scan (a login waits for its own user's scan only, never for other users') and then
//! finds the flag set and does nothing. A `Usage` is created only after the gate was passed, so
//! while a home is being walked none of its user's sessions exists that could upload, delete
//! or rename in it; once a `Usage` exists the user is verified and nothing rescans the home
//! again in this process (the live counters are the truth from then on, kept exact by
//! reservations and settlement). No scan ever races an upload of its own user, so there is no
//! half-written file to count twice or not at all and no difference to reconcile, and a
//! session's counter is never overwritten by a scan. `ferryd user rescan NAME` (another
//! process) writes the store; a login picks that up when the user has no other session.
//!
//! The gate is keyed by name and home, so a user deleted and added again with another home
//! while the server runs is recounted too. A clean stop does not make the stored counters
//! trustworthy either (uploads cut at the end of the grace period are never settled, and the
//! disk may change while the server is down), so every start recounts.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::auth::Account;
use crate::storage::{Storage, StorageError};
use crate::store::{Store, StoreError};

/// The counters and limits of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub used_bytes: u64,
    pub used_files: u64,
    pub max_bytes: Option<u64>,
    pub max_files: Option<u64>,
}

impl Counters {
    pub fn remaining_bytes(&self) -> Option<u64> {
        self.max_bytes.map(|m| m.saturating_sub(self.used_bytes))
    }
}

/// One user's live usage, shared by all their sessions.
pub struct Usage {
    name: String,
    store: Arc<Store>,
    counters: Mutex<Counters>,
    /// Held across a persist's read of the counters and its write (see [`Usage::persist`]).
    persisting: Mutex<()>,
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usage")
            .field("name", &self.name)
            .field("counters", &self.snapshot())
            .finish()
    }
}

impl Usage {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Counters {
        *self.lock()
    }

    /// Reserves up to `want` bytes; returns how many fit under the limit.
    pub fn reserve_bytes(&self, want: u64) -> u64 {
        let mut c = self.lock();
        let granted = match c.max_bytes {
            Some(max) => want.min(max.saturating_sub(c.used_bytes)),
            None => want,
        };
        c.used_bytes += granted;
        granted
    }

    pub fn release_bytes(&self, n: u64) {
        let mut c = self.lock();
        c.used_bytes = c.used_bytes.saturating_sub(n);
    }

    /// Counts one new file; false when the file limit is reached.
    pub fn reserve_file(&self) -> bool {
        let mut c = self.lock();
        if c.max_files.is_some_and(|m| c.used_files >= m) {
            return false;
        }
        c.used_files += 1;
        true
    }

    pub fn release_file(&self) {
        let mut c = self.lock();
        c.used_files = c.used_files.saturating_sub(1);
    }

    /// Settles an upload: `reserved` bytes were counted, the file really grew by `grown`.
    pub fn settle(&self, reserved: u64, grown: u64) {
        let mut c = self.lock();
        c.used_bytes = (c.used_bytes + grown).saturating_sub(reserved);
    }

    /// Would `n` more bytes fit? (ALLO)
    pub fn fits(&self, n: u64) -> bool {
        self.lock().remaining_bytes().is_none_or(|r| n <= r)
    }

    /// Writes the current counters to the store (blocking; call on the blocking pool). Persists
    /// run one at a time, each reading the counters when its turn comes, so the last one stores
    /// the latest state: two that read in one order and wrote in the other would leave an older
    /// state in the store, which the user's next login would take once their sessions ended.
    pub fn persist(&self) {
        let _turn = self.persisting.lock().unwrap_or_else(|p| p.into_inner());
        let c = self.snapshot();
        if let Err(e) = self.store.set_usage(&self.name, c.used_bytes, c.used_files) {
            tracing::warn!(user = %self.name, error = %e, "cannot record usage");
        }
    }

    /// Persists on the blocking pool without waiting.
    pub fn persist_soon(self: &Arc<Self>) {
        let usage = self.clone();
        tokio::task::spawn_blocking(move || usage.persist());
    }
}

/// One user's scan gate: held during the user's scan; `true` once the user was recounted.
type Gate = Arc<Mutex<bool>>;

/// Hands out the shared [`Usage`] of each logged-in user, and recounts each user's usage from
/// the disk once per process before handing it out (see the module documentation).
pub struct QuotaRegistry {
    live: Mutex<HashMap<String, Weak<Usage>>>,
    /// Per user (name and home): the gate a scan holds, around "recounted in this process".
    gates: Mutex<HashMap<(String, PathBuf), Gate>>,
    store: Arc<Store>,
    /// Where the homes are: counted by its usage scan.
    storage: Arc<Storage>,
    default_bytes: Option<u64>,
    default_files: Option<u64>,
}

impl QuotaRegistry {
    pub fn new(
        store: Arc<Store>,
        storage: Arc<Storage>,
        default_bytes: Option<u64>,
        default_files: Option<u64>,
    ) -> QuotaRegistry {
        QuotaRegistry {
            live: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            store,
            storage,
            default_bytes,
            default_files,
        }
    }

    fn live_usage(&self, name: &str) -> Option<Arc<Usage>> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(name).and_then(Weak::upgrade)
    }

    fn gate(&self, name: &str, home: &Path) -> Gate {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates
            .entry((name.to_owned(), home.to_path_buf()))
            .or_default()
            .clone()
    }

    /// Makes the stored usage of `name` true to the disk unless that was done already in this
    /// process: scans `home` and records the result, holding the user's gate throughout, so a
    /// second caller for the same user waits for this one scan and then does nothing. Returns
    /// whether this call scanned. Blocking (a walk of the home and a store write).
    fn verify(&self, name: &str, home: &Path, why: &'static str) -> Result<bool, StoreError> {
        let gate = self.gate(name, home);
        let mut verified = gate.lock().unwrap_or_else(|p| p.into_inner());
        if *verified {
            return Ok(false);
        }
        let (bytes, files) = match self.storage.scan_usage(home, name) {
            Ok(counted) => counted,
            // Nothing there yet (a user who never logged in): nothing is used.
            Err(e) if e.is_not_found() => (0, 0),
            Err(e) => {
                let source = match e {
                    StorageError::Io(source) => source,
                    other => io::Error::other(other.to_string()),
                };
                return Err(StoreError::Io {
                    context: format!("cannot count the files in {}", home.display()),
                    source,
                });
            }
        };
        if let Ok(Some(rec)) = self.store.get_user(name) {
            if (bytes, files) != (rec.used_bytes, rec.used_files) {
                tracing::info!(user = %name, bytes, files, was_bytes = rec.used_bytes, was_files = rec.used_files, by = why, "usage recounted from disk");
            }
        }
        self.store.set_usage(name, bytes, files)?;
        *verified = true;
        Ok(true)
    }

    /// The usage of a user who just logged in: shared with their other sessions if any, else
    /// read from the store now — not from the record loaded at login, which a session that
    /// ended meanwhile may have updated — after the user's counters were recounted from the
    /// disk in this process (by this call if nobody has yet, or by waiting for the scan of this
    /// user that is running). Blocking (a store read, maybe a walk of the home); call on the
    /// blocking pool.
    pub fn attach(&self, account: &Account) -> Result<Arc<Usage>, StoreError> {
        // A live `Usage` was only ever made after its user was verified.
        if let Some(usage) = self.live_usage(&account.name) {
            return Ok(usage);
        }
        // Outside the table's lock: a scan must not hold up other users' logins.
        self.verify(&account.name, &account.home, "login")?;
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(usage) = live.get(&account.name).and_then(Weak::upgrade) {
            return Ok(usage);
        }
        // Forget users whose sessions have all ended, so the table does not grow.
        live.retain(|_, w| w.strong_count() > 0);
        let rec = self
            .store
            .get_user(&account.name)?
            .ok_or_else(|| StoreError::NotFound(account.name.clone()))?;
        let usage = Arc::new(Usage {
            name: account.name.clone(),
            store: self.store.clone(),
            counters: Mutex::new(Counters {
                used_bytes: rec.used_bytes,
                used_files: rec.used_files,
                max_bytes: rec.quota_bytes.resolve(self.default_bytes),
                max_files: rec.quota_files.resolve(self.default_files),
            }),
            persisting: Mutex::new(()),
        });
        live.insert(account.name.clone(), Arc::downgrade(&usage));
        Ok(usage)
    }

    /// Is any session of this user logged in?
    pub fn is_live(&self, name: &str) -> bool {
        self.live_usage(name).is_some()
    }

    /// The start-up rescan: recounts every user's home from the disk and records the result,
    /// except for users already recounted in this process (by their login, which then owns
    /// the counters). Blocking; run on the blocking pool.
    pub fn rescan_all(&self) {
        let started = std::time::Instant::now();
        let users = match self.store.list_users() {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "usage rescan: cannot list users");
                return;
            }
        };
        let mut scanned = 0usize;
        for user in &users {
            match self.verify(&user.name, &user.home, "start-up rescan") {
                Ok(true) => scanned += 1,
                Ok(false) => {}
                // Left unverified: the user's login scans (and fails if it cannot).
                Err(e) => tracing::warn!(user = %user.name, error = %e, "usage rescan failed"),
            }
        }
        tracing::info!(
            users = users.len(),
            scanned,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "usage rescan finished"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::usage::scan as scan_home;
    use crate::storage::{is_part_name, PART_SUFFIX};
    use crate::store::{Limit, NewUser};

    fn add(store: &Store, tmp: &Path, name: &str, max_bytes: Limit, max_files: Limit) -> Account {
        let home = tmp.join(format!("home-{name}"));
        store
            .add_user(&NewUser {
                name: name.into(),
                password_hash: "x".into(),
                home: home.clone(),
                quota_bytes: max_bytes,
                quota_files: max_files,
            })
            .expect("add");
        Account {
            name: name.into(),
            home,
            quota_bytes: max_bytes,
            quota_files: max_files,
            used_bytes: 0,
            used_files: 0,
        }
    }

    fn registry(max_bytes: Limit, max_files: Limit) -> (tempfile::TempDir, QuotaRegistry, Account) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(tmp.path()).expect("store"));
        let account = add(&store, tmp.path(), "u", max_bytes, max_files);
        (
            tmp,
            QuotaRegistry::new(store, Arc::new(Storage::local()), Some(1000), None),
            account,
        )
    }

    #[test]
    fn reservations_never_pass_the_limit_and_sessions_share_counters() {
        let (_tmp, reg, account) = registry(Limit::Max(100), Limit::Max(2));
        let a = reg.attach(&account).expect("attach");
        let b = reg.attach(&account).expect("attach");
        assert_eq!(a.reserve_bytes(60), 60);
        assert_eq!(
            b.reserve_bytes(60),
            40,
            "second session gets only what is left"
        );
        assert_eq!(a.reserve_bytes(1), 0);
        a.release_bytes(30);
        assert!(b.fits(30) && !b.fits(31));
        assert!(a.reserve_file() && b.reserve_file());
        assert!(!a.reserve_file(), "file limit");
        drop((a, b));
        assert!(!reg.is_live("u"));
    }

    #[test]
    fn default_limit_applies_unless_overridden() {
        let (_tmp, reg, account) = registry(Limit::Default, Limit::Default);
        assert_eq!(
            reg.attach(&account).expect("attach").snapshot().max_bytes,
            Some(1000)
        );
        let (_tmp, reg, account) = registry(Limit::Unlimited, Limit::Default);
        assert_eq!(
            reg.attach(&account).expect("attach").snapshot().max_bytes,
            None
        );
    }

    #[test]
    fn usage_is_persisted_and_scan_counts_files_not_dirs_or_links() {
        let (_tmp, reg, account) = registry(Limit::Unlimited, Limit::Unlimited);
        let usage = reg.attach(&account).expect("attach");
        usage.reserve_bytes(5);
        usage.reserve_file();
        usage.persist();
        let home = account.home.clone();
        std::fs::create_dir_all(home.join("d/e")).expect("mkdir");
        std::fs::write(home.join("a"), b"12345").expect("write");
        std::fs::write(home.join("d/e/b"), b"123").expect("write");
        std::fs::write(home.join(format!(".a{PART_SUFFIX}")), b"12").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", home.join("link")).expect("symlink");
        assert_eq!(scan_home(&home).expect("scan"), (10, 2));
        drop(usage);
        // A new process (a restart) recounts; the stored (5, 1) is not trusted.
        let reg = QuotaRegistry::new(reg.store.clone(), Arc::new(Storage::local()), None, None);
        reg.rescan_all();
        let rec = reg.store.get_user("u").expect("get").expect("user");
        assert_eq!((rec.used_bytes, rec.used_files), (10, 2));
        assert!(
            is_part_name(".a.ferry-part")
                && !is_part_name("a.ferry-part")
                && !is_part_name(".ferry-part")
        );
    }

    fn write(path: &Path, len: usize) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, vec![b'x'; len]).expect("write");
    }

    #[test]
    fn a_login_after_a_crash_recounts_before_it_can_reserve() {
        let (_tmp, reg, account) = registry(Limit::Max(100), Limit::Unlimited);
        // The store says 0 (the counter of before the crash), the disk holds 60 bytes.
        write(&account.home.join("a"), 40);
        write(&account.home.join("d/b"), 20);
        let usage = reg.attach(&account).expect("attach");
        let c = usage.snapshot();
        assert_eq!((c.used_bytes, c.used_files), (60, 2));
        assert_eq!(
            usage.reserve_bytes(60),
            40,
            "only what is left under the quota"
        );
        let rec = reg.store.get_user("u").expect("get").expect("user");
        assert_eq!((rec.used_bytes, rec.used_files), (60, 2), "recorded");
    }

    #[test]
    fn the_rescan_never_touches_the_counters_of_a_recounted_user() {
        let (_tmp, reg, account) = registry(Limit::Max(1000), Limit::Unlimited);
        write(&account.home.join("a"), 100);
        let usage = reg.attach(&account).expect("attach");
        // An upload is running: 300 bytes reserved, 200 of them written so far.
        assert_eq!(usage.reserve_bytes(300), 300);
        write(&account.home.join("up"), 200);
        reg.rescan_all();
        assert_eq!(usage.snapshot().used_bytes, 400, "live counter kept");
        // It ends at 250 bytes: settled, the counter is the disk.
        write(&account.home.join("up"), 250);
        usage.settle(300, 250);
        usage.persist();
        assert_eq!(
            usage.snapshot().used_bytes,
            scan_home(&account.home).expect("scan").0
        );
        // Even with no session left, this process does not scan the user again.
        drop(usage);
        reg.rescan_all();
        let usage = reg.attach(&account).expect("attach");
        assert_eq!(usage.snapshot().used_bytes, 350);
    }

    #[test]
    fn a_login_waits_for_the_scan_of_its_own_user_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(tmp.path()).expect("store"));
        let u = add(&store, tmp.path(), "u", Limit::Max(1000), Limit::Unlimited);
        let v = add(&store, tmp.path(), "v", Limit::Max(1000), Limit::Unlimited);
        let reg = Arc::new(QuotaRegistry::new(
            store,
            Arc::new(Storage::local()),
            None,
            None,
        ));
        write(&u.home.join("a"), 10);
        write(&v.home.join("b"), 20);
        // The background rescan is in the middle of u's home.
        let gate = reg.gate(&u.name, &u.home);
        let mut verified = gate.lock().expect("gate");
        let (r, acct) = (reg.clone(), u.clone());
        let waiting = std::thread::spawn(move || r.attach(&acct).expect("attach"));
        // v logs in meanwhile without waiting for u's scan.
        assert_eq!(reg.attach(&v).expect("attach v").snapshot().used_bytes, 20);
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!waiting.is_finished(), "u's login waits for u's scan");
        // The scan finishes (it counted 10 bytes; 7 marks that u's login did not scan again).
        reg.store.set_usage("u", 7, 1).expect("set");
        *verified = true;
        drop(verified);
        let usage = waiting.join().expect("join");
        assert_eq!(usage.snapshot().used_bytes, 7);
    }
}
