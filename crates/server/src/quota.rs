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
//! with no other session. It stays true to the disk through [`scan_home`]: at server start (for
//! users not logged in) and with `ferryd user rescan NAME`. Regular files count; directories do
//! not; bytes are apparent sizes (what SIZE reports), upload part files included.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use crate::auth::Account;
use crate::store::Store;

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

    /// Writes the current counters to the store (blocking; call on the blocking pool). Reads
    /// them at write time, so whichever write runs last stores the latest state.
    pub fn persist(&self) {
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

/// Hands out the shared [`Usage`] of each logged-in user.
pub struct QuotaRegistry {
    live: Mutex<HashMap<String, Weak<Usage>>>,
    store: Arc<Store>,
    default_bytes: Option<u64>,
    default_files: Option<u64>,
}

impl QuotaRegistry {
    pub fn new(
        store: Arc<Store>,
        default_bytes: Option<u64>,
        default_files: Option<u64>,
    ) -> QuotaRegistry {
        QuotaRegistry {
            live: Mutex::new(HashMap::new()),
            store,
            default_bytes,
            default_files,
        }
    }

    /// The usage of a user who just logged in: shared with their other sessions if any, else
    /// read from the store now — not from the record loaded at login, which a session that
    /// ended meanwhile may have updated. Blocking (a store read); call on the blocking pool.
    pub fn attach(&self, account: &Account) -> Result<Arc<Usage>, crate::store::StoreError> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(usage) = live.get(&account.name).and_then(Weak::upgrade) {
            return Ok(usage);
        }
        // Forget users whose sessions have all ended, so the table does not grow.
        live.retain(|_, w| w.strong_count() > 0);
        let rec = self
            .store
            .get_user(&account.name)?
            .ok_or_else(|| crate::store::StoreError::NotFound(account.name.clone()))?;
        let usage = Arc::new(Usage {
            name: account.name.clone(),
            store: self.store.clone(),
            counters: Mutex::new(Counters {
                used_bytes: rec.used_bytes,
                used_files: rec.used_files,
                max_bytes: rec.quota_bytes.resolve(self.default_bytes),
                max_files: rec.quota_files.resolve(self.default_files),
            }),
        });
        live.insert(account.name.clone(), Arc::downgrade(&usage));
        Ok(usage)
    }

    /// Is any session of this user logged in?
    pub fn is_live(&self, name: &str) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(name).is_some_and(|w| w.strong_count() > 0)
    }

    /// Rescans every user's home and records the result for users not logged in (a live
    /// user's counters are already authoritative). Blocking; run on the blocking pool.
    pub fn rescan_all(&self) {
        let users = match self.store.list_users() {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "usage rescan: cannot list users");
                return;
            }
        };
        for user in users {
            match scan_home(&user.home) {
                Ok((bytes, files)) => {
                    if self.is_live(&user.name) {
                        continue;
                    }
                    if (bytes, files) != (user.used_bytes, user.used_files) {
                        tracing::info!(user = %user.name, bytes, files, was_bytes = user.used_bytes, was_files = user.used_files, "usage rescan corrected");
                    }
                    if let Err(e) = self.store.set_usage(&user.name, bytes, files) {
                        tracing::warn!(user = %user.name, error = %e, "usage rescan: cannot record");
                    }
                }
                Err(e) => {
                    tracing::warn!(user = %user.name, error = %e, "usage rescan: cannot scan home")
                }
            }
        }
    }
}

/// Suffix of the hidden file an overwrite is written to before it replaces the original.
pub const PART_SUFFIX: &str = ".ferry-part";

/// Is this a file name the server uses for an overwrite in progress?
pub fn is_part_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(PART_SUFFIX) && name.len() > PART_SUFFIX.len() + 1
}

/// Bytes (apparent size) and number of regular files under `home`, not following symlinks.
/// Part files count in bytes but not as files. Blocking.
pub fn scan_home(home: &Path) -> io::Result<(u64, u64)> {
    let mut bytes = 0u64;
    let mut files = 0u64;
    let mut stack = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // The home itself must be readable; a subdirectory we cannot read is skipped.
            Err(e) if dir == home => return Err(e),
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                bytes += meta.len();
                if !is_part_name(&entry.file_name().to_string_lossy()) {
                    files += 1;
                }
            }
        }
    }
    Ok((bytes, files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Limit, NewUser};

    fn registry(max_bytes: Limit, max_files: Limit) -> (tempfile::TempDir, QuotaRegistry, Account) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(tmp.path()).expect("store"));
        store
            .add_user(&NewUser {
                name: "u".into(),
                password_hash: "x".into(),
                home: tmp.path().join("home"),
                quota_bytes: max_bytes,
                quota_files: max_files,
            })
            .expect("add");
        let account = Account {
            name: "u".into(),
            home: tmp.path().join("home"),
            quota_bytes: max_bytes,
            quota_files: max_files,
            used_bytes: 0,
            used_files: 0,
        };
        (tmp, QuotaRegistry::new(store, Some(1000), None), account)
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
        let (tmp, reg, account) = registry(Limit::Unlimited, Limit::Unlimited);
        let usage = reg.attach(&account).expect("attach");
        usage.reserve_bytes(5);
        usage.reserve_file();
        usage.persist();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(home.join("d/e")).expect("mkdir");
        std::fs::write(home.join("a"), b"12345").expect("write");
        std::fs::write(home.join("d/e/b"), b"123").expect("write");
        std::fs::write(home.join(format!(".a{PART_SUFFIX}")), b"12").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", home.join("link")).expect("symlink");
        assert_eq!(scan_home(&home).expect("scan"), (10, 2));
        drop(usage);
        reg.rescan_all();
        let rec = reg.store.get_user("u").expect("get").expect("user");
        assert_eq!((rec.used_bytes, rec.used_files), (10, 2));
        assert!(
            is_part_name(".a.ferry-part")
                && !is_part_name("a.ferry-part")
                && !is_part_name(".ferry-part")
        );
    }
}
