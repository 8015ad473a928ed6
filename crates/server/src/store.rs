//! The SQLite user store at `<data-dir>/ferry.db`: schema and migrations, and CRUD on user
//! records (name, argon2 PHC hash, home directory, quota limits and usage counters).
//!
//! [`Store`] is blocking and `Send + Sync` (one connection behind a mutex); async callers wrap
//! calls in `tokio::task::spawn_blocking`. WAL mode plus a busy timeout let `ferryd user ...`
//! edit users while `ferryd serve` has the same database open.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use thiserror::Error;

/// File name of the database inside the data directory.
pub const DB_FILE_NAME: &str = "ferry.db";

/// How long a statement waits for another process's write lock before failing with "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations; entry `i` upgrades `PRAGMA user_version` from `i` to `i + 1`.
/// Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // v1: users, including the quota limits and usage counters that quota enforcement uses.
    // A quota column holds NULL = the server's default, -1 = unlimited, n >= 0 = the limit
    // (see `Limit`). STRICT makes SQLite reject wrongly typed values instead of silently
    // storing them.
    "CREATE TABLE users (
        name          TEXT    NOT NULL PRIMARY KEY,
        password_hash TEXT    NOT NULL,
        home          TEXT    NOT NULL,
        quota_bytes   INTEGER CHECK (quota_bytes IS NULL OR quota_bytes >= -1),
        quota_files   INTEGER CHECK (quota_files IS NULL OR quota_files >= -1),
        used_bytes    INTEGER NOT NULL DEFAULT 0 CHECK (used_bytes >= 0),
        used_files    INTEGER NOT NULL DEFAULT 0 CHECK (used_files >= 0),
        created_at    INTEGER NOT NULL
    ) STRICT;",
];

/// A per-user limit as stored: follow the server's default, no limit, or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Limit {
    #[default]
    Default,
    Unlimited,
    Max(u64),
}

impl Limit {
    /// The limit in force, given the server's default (`None` = unlimited).
    pub fn resolve(self, default: Option<u64>) -> Option<u64> {
        match self {
            Limit::Default => default,
            Limit::Unlimited => None,
            Limit::Max(n) => Some(n),
        }
    }

    fn to_sql(self, what: &'static str) -> Result<Option<i64>, StoreError> {
        match self {
            Limit::Default => Ok(None),
            Limit::Unlimited => Ok(Some(-1)),
            Limit::Max(n) => opt_to_sql(what, Some(n)),
        }
    }

    fn from_sql(v: Option<i64>) -> Limit {
        match v {
            None => Limit::Default,
            Some(n) if n < 0 => Limit::Unlimited,
            Some(n) => Limit::Max(n as u64),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub password_hash: String,
    pub home: PathBuf,
    pub quota_bytes: Limit,
    pub quota_files: Limit,
    pub used_bytes: u64,
    pub used_files: u64,
    /// Unix seconds.
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub password_hash: String,
    pub home: PathBuf,
    pub quota_bytes: Limit,
    pub quota_files: Limit,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("user '{0}' already exists")]
    Duplicate(String),
    #[error("no such user '{0}'")]
    NotFound(String),
    #[error("invalid user name: {0}")]
    InvalidName(String),
    #[error("home directory {0:?} is not valid UTF-8")]
    NonUtf8Home(PathBuf),
    #[error("{what} {value} is too large (max {max})", max = i64::MAX)]
    TooLarge { what: &'static str, value: u64 },
    #[error(
        "database {path:?} has schema version {found}, newer than this ferryd supports \
         ({supported}); upgrade ferryd"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// Handle on the user database. Cheap to share behind an `Arc`.
pub struct Store {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/ferry.db`. A missing `data_dir` is created with
    /// mode 0700 because the database holds password hashes; an existing one is left as is.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(data_dir).map_err(|source| StoreError::Io {
            context: format!("creating data directory {}", data_dir.display()),
            source,
        })?;
        let path = data_dir.join(DB_FILE_NAME);
        create_private_file(&path).map_err(|source| StoreError::Io {
            context: format!("creating {}", path.display()),
            source,
        })?;

        // Switching a new database to WAL and migrating it take locks that SQLite's busy handler
        // does not wait for, so two processes starting at once (two `user add`s on a fresh data
        // dir) could fail with "database is locked". An advisory lock serialises set-up.
        let lock_path = data_dir.join(".ferry.db.lock");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::Io {
                context: format!("opening {}", lock_path.display()),
                source,
            })?;
        let _setup_lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| StoreError::Io {
            context: format!("locking {}", lock_path.display()),
            source: std::io::Error::from(errno),
        })?;

        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // journal_mode returns the resulting mode as a row, so it needs the _and_check form.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "SQLite refused WAL mode; concurrent CLI edits may block");
        }
        // NORMAL is durable across application crashes in WAL mode; only an OS crash can lose
        // the last commits, which is acceptable for user edits and usage counters.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        migrate(&mut conn, &path)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection half-way through a write:
        // SQLite rolls back any open statement/transaction, so the poison flag is safe to ignore.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts a user. Fails with [`StoreError::Duplicate`] if the name is taken (names are
    /// case-sensitive) and [`StoreError::InvalidName`] if it breaks the user-name rules.
    pub fn add_user(&self, u: &NewUser) -> Result<(), StoreError> {
        crate::auth::validate_username(&u.name).map_err(StoreError::InvalidName)?;
        let home = home_text(&u.home)?;
        let quota_bytes = u.quota_bytes.to_sql("quota_bytes")?;
        let quota_files = u.quota_files.to_sql("quota_files")?;
        let result = self.conn().execute(
            "INSERT INTO users (name, password_hash, home, quota_bytes, quota_files, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                u.name,
                u.password_hash,
                home,
                quota_bytes,
                quota_files,
                unix_now()
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                Err(StoreError::Duplicate(u.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let rec = self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE name = ?1"),
                [name],
                user_from_row,
            )
            .optional()?;
        Ok(rec)
    }

    /// All users, ordered by name (byte order, so "Zed" sorts before "alice").
    pub fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM users ORDER BY name"))?;
        let rows = stmt.query_map([], user_from_row)?;
        let users = rows.collect::<Result<Vec<_>, _>>()?;
        Ok(users)
    }

    pub fn set_password_hash(&self, name: &str, phc: &str) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE users SET password_hash = ?2 WHERE name = ?1",
            params![name, phc],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Removes the user's record only; their home directory is not touched.
    pub fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM users WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(StoreError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Changes a user's limits; `None` leaves that limit as it is.
    pub fn set_limits(
        &self,
        name: &str,
        bytes: Option<Limit>,
        files: Option<Limit>,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        if let Some(b) = bytes {
            let n = conn.execute(
                "UPDATE users SET quota_bytes = ?1 WHERE name = ?2",
                params![b.to_sql("quota_bytes")?, name],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(name.to_owned()));
            }
        }
        if let Some(f) = files {
            let n = conn.execute(
                "UPDATE users SET quota_files = ?1 WHERE name = ?2",
                params![f.to_sql("quota_files")?, name],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(name.to_owned()));
            }
        }
        if bytes.is_none() && files.is_none() && user_missing(&conn, name)? {
            return Err(StoreError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Records a user's usage (bytes and files in their home).
    pub fn set_usage(
        &self,
        name: &str,
        used_bytes: u64,
        used_files: u64,
    ) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE users SET used_bytes = ?1, used_files = ?2 WHERE name = ?3",
            params![
                opt_to_sql("used_bytes", Some(used_bytes))?,
                opt_to_sql("used_files", Some(used_files))?,
                name
            ],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    pub fn count_users(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
        // COUNT(*) is never negative.
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

const COLUMNS: &str =
    "name, password_hash, home, quota_bytes, quota_files, used_bytes, used_files, created_at";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: row.get(0)?,
        password_hash: row.get(1)?,
        home: PathBuf::from(row.get::<_, String>(2)?),
        // rusqlite's u64 conversion fails (IntegralValueOutOfRange) on negative values, which
        // the CHECK constraints rule out anyway.
        quota_bytes: Limit::from_sql(row.get(3)?),
        quota_files: Limit::from_sql(row.get(4)?),
        used_bytes: row.get(5)?,
        used_files: row.get(6)?,
        created_at: row.get(7)?,
    })
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let supported = MIGRATIONS.len() as i64;
    // IMMEDIATE takes the write lock before reading the version, so two processes opening a new
    // database at once cannot both run the same migration.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > supported {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

fn user_missing(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM users WHERE name = ?1",
        params![name],
        |r| r.get(0),
    )?;
    Ok(n == 0)
}

fn home_text(home: &Path) -> Result<&str, StoreError> {
    home.to_str()
        .ok_or_else(|| StoreError::NonUtf8Home(home.to_owned()))
}

/// SQLite integers are i64; a limit above i64::MAX (8 EiB) is rejected rather than wrapped.
fn opt_to_sql(what: &'static str, v: Option<u64>) -> Result<Option<i64>, StoreError> {
    v.map(|v| i64::try_from(v).map_err(|_| StoreError::TooLarge { what, value: v }))
        .transpose()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Pre-creates the database file as 0600 so SQLite (which would use 0644) never exposes the
/// password hashes; SQLite gives its -wal/-shm files the same mode as the database.
#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn create_private_file(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_user(name: &str, home: &Path) -> NewUser {
        NewUser {
            name: name.to_owned(),
            password_hash: format!("hash-of-{name}"),
            home: home.join(name),
            quota_bytes: Limit::Default,
            quota_files: Limit::Default,
        }
    }

    #[test]
    fn crud() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.count_users().expect("count"), 0);
        assert_eq!(store.get_user("bob").expect("get"), None);

        let mut bob = new_user("bob", dir.path());
        bob.quota_bytes = Limit::Max(5 << 30);
        bob.quota_files = Limit::Unlimited;
        store.add_user(&bob).expect("add bob");
        store
            .add_user(&new_user("alice", dir.path()))
            .expect("add alice");
        assert_eq!(store.count_users().expect("count"), 2);

        let got = store.get_user("bob").expect("get").expect("bob exists");
        assert_eq!(got.name, "bob");
        assert_eq!(got.password_hash, "hash-of-bob");
        assert_eq!(got.home, dir.path().join("bob"));
        assert_eq!(got.quota_bytes, Limit::Max(5 << 30));
        assert_eq!(got.quota_files, Limit::Unlimited);
        assert_eq!(got.quota_files.resolve(Some(7)), None);
        assert_eq!(Limit::Default.resolve(Some(7)), Some(7));
        assert_eq!((got.used_bytes, got.used_files), (0, 0));
        store
            .set_limits("bob", Some(Limit::Default), Some(Limit::Max(3)))
            .expect("set");
        store.set_usage("bob", 1234, 5).expect("usage");
        let got = store.get_user("bob").expect("get").expect("exists");
        assert_eq!(
            (got.quota_bytes, got.quota_files),
            (Limit::Default, Limit::Max(3))
        );
        assert_eq!((got.used_bytes, got.used_files), (1234, 5));
        assert!(matches!(
            store.set_usage("nobody", 1, 1),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.set_limits("nobody", Some(Limit::Unlimited), None),
            Err(StoreError::NotFound(_))
        ));
        assert!(got.created_at > 1_600_000_000, "{}", got.created_at);

        let names: Vec<_> = store
            .list_users()
            .expect("list")
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["alice", "bob"]);

        store.set_password_hash("bob", "new-hash").expect("passwd");
        let got = store.get_user("bob").expect("get").expect("bob exists");
        assert_eq!(got.password_hash, "new-hash");
        assert!(matches!(
            store.set_password_hash("carol", "x"),
            Err(StoreError::NotFound(n)) if n == "carol"
        ));

        store.delete_user("bob").expect("delete");
        assert_eq!(store.get_user("bob").expect("get"), None);
        assert_eq!(store.count_users().expect("count"), 1);
        assert!(matches!(
            store.delete_user("bob"),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn duplicate_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.add_user(&new_user("bob", dir.path())).expect("add");
        let err = store
            .add_user(&new_user("bob", dir.path()))
            .expect_err("duplicate");
        assert!(
            matches!(&err, StoreError::Duplicate(n) if n == "bob"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "user 'bob' already exists");
        // Case-sensitive: a different name.
        store
            .add_user(&new_user("Bob", dir.path()))
            .expect("add Bob");
    }

    #[test]
    fn rejects_invalid_names_and_huge_quotas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert!(matches!(
            store.add_user(&new_user("../x", dir.path())),
            Err(StoreError::InvalidName(_))
        ));
        let mut u = new_user("q", dir.path());
        u.quota_bytes = Limit::Max(u64::MAX);
        assert!(matches!(
            store.add_user(&u),
            Err(StoreError::TooLarge { .. })
        ));
        assert_eq!(store.count_users().expect("count"), 0);
    }

    #[test]
    fn persists_across_reopen_and_migrates_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.add_user(&new_user("bob", dir.path())).expect("add");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert!(store.get_user("bob").expect("get").is_some());
        let version: i64 = store
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, MIGRATIONS.len() as i64);
        let mode: String = store
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode.to_ascii_lowercase(), "wal");
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .conn()
                .pragma_update(None, "user_version", 99)
                .expect("bump");
        }
        let err = Store::open(dir.path()).expect_err("too new");
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{err:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn creates_private_data_dir_and_db() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("a/b/data");
        let _store = Store::open(&data).expect("open");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join(DB_FILE_NAME)), 0o600);
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
    }
}
