//! Storage: everything a user's files are, behind one boundary.
//!
//! A session holds a [`Home`] (the user's files, wherever they live) and calls it with virtual
//! paths; nothing outside this module opens a file, reads a directory or names a backend's
//! types. A backend provides:
//! - facts about a path ([`Home::stat`]), directories (MKD, RMD), deletes and renames that
//!   report what they freed ([`Freed`]) for the quota;
//! - reads: a [`Reader`] and the size, for RETR and HASH (the local one is the file itself, so
//!   RETR keeps sendfile(2), its page-cache probe and the open from the kernel's caches on the
//!   async thread, [`Home::open_read_cached`]);
//! - uploads: [`Home::open_upload`] decides where an upload's bytes go before the 150 reply
//!   ([`UploadPlan`]: the target, or the hidden part of an overwrite that replaces the target
//!   only when complete), a [`Writer`] for the bytes, and [`Home::complete_upload`] that makes
//!   it durable and visible;
//! - listings, in steps that hold bounded memory whatever the directory's size;
//! - the usage scan for quotas.
//!
//! Failures are [`StorageError`]s: each variant names the reply it becomes (the table itself
//! is `Error::reply` in `error.rs`).
//!
//! A closed set of backends is an enum, not a generic parameter threaded through the session.
//! Today there is one, [`local`]: a home directory on a local file system, opened once per
//! user as a capability (`cap_std::fs::Dir`) so that nothing can reach outside it.

use std::io;

use ferry_proto::listing::Entry;
use ferry_proto::{FileTime, VirtualPath};

mod claims;
pub mod local;
pub mod s3;

/// Suffix of the hidden file an overwrite is written to before it replaces the original.
pub const PART_SUFFIX: &str = ".ferry-part";

/// Is this a file name the server uses for an overwrite in progress?
pub fn is_part_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(PART_SUFFIX) && name.len() > PART_SUFFIX.len() + 1
}

pub use local::{Homes, MAX_LIST_ENTRIES};

/// Why a storage operation failed, by what the client is told.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// 554 (RFC 959: invalid REST parameter): the restart offset lies past the end of the
    /// file a RETR or STOR would continue; nothing was touched.
    #[error("Invalid REST parameter: the offset is past the end of the file")]
    RestPastEnd,
    /// 550: APPE to a file whose overwrite was interrupted, without the SIZE that offered to
    /// continue it: the old content it would append to is about to be replaced. The text
    /// says how to resume or start over.
    #[error(
        "An upload over this file was interrupted after {received} bytes: resume it (SIZE then \
         APPE, or REST {received} then STOR), or send it again with STOR"
    )]
    UnfinishedUpload {
        /// Bytes of the new version received so far (what SIZE answers).
        received: u64,
    },
    /// 550: a write in place (APPE, REST + STOR, MFMT) to a file with other hard links, which
    /// may be a file outside the home; an overwrite with STOR still works.
    #[error(
        "The file has other hard links (perhaps outside your home): it is not changed in \
         place; upload it anew with STOR"
    )]
    HardLinked,
    /// 450: another session's upload is writing the name (see [`UploadClaim`]).
    #[error("File busy: an upload to it is in progress")]
    UploadInProgress,
    /// 553: the name of an upload's part file, which no command may use.
    #[error("Reserved name: the server keeps unfinished uploads under it")]
    ReservedName,
    /// 554: REST into the middle of an interrupted upload whose storage keeps it in parts
    /// (S3): it can continue only where a part ends; `resumable` is the last such offset.
    #[error(
        "Invalid REST parameter: the interrupted upload can continue from {resumable} bytes \
         (SIZE), not from inside a stored part"
    )]
    RestInsidePart { resumable: u64 },
    /// 550: a directory rename that would copy more objects than the server allows.
    #[error("Directory too large to rename here (more than {limit} objects): move its files")]
    TooManyObjects { limit: usize },
    /// 550: what this storage cannot do (MFMT on object storage).
    #[error("{0}")]
    Unsupported(&'static str),
    /// 552: the user's file limit (the byte limit is checked as bytes arrive).
    #[error("Exceeded storage allocation: {0}")]
    QuotaExceeded(&'static str),
    /// By kind (`error.rs`'s `io_reply`): 550 missing, refused, exists, wrong kind; 553 bad
    /// names; 452 disk full; 451 anything else. Its text is never shown (it may hold a real
    /// path).
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl StorageError {
    /// The IO error's kind, if this is one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            StorageError::Io(e) => Some(e.kind()),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.io_kind() == Some(io::ErrorKind::NotFound)
    }

    pub(crate) fn kind(kind: io::ErrorKind) -> StorageError {
        StorageError::Io(io::Error::from(kind))
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// STOU tries this many names before it gives up.
const UNIQUE_TRIES: u32 = 1000;

/// STOU's `n`th candidate for `base`: "name", then "name.1", "name.2", ...
fn unique_name(base: &VirtualPath, n: u32) -> Result<VirtualPath> {
    if n == 0 {
        return Ok(base.clone());
    }
    let name = format!("{}.{n}", base.file_name().unwrap_or("file"));
    base.parent()
        .unwrap_or_else(VirtualPath::root)
        .join(&name)
        .map_err(|e| StorageError::Io(io::Error::new(io::ErrorKind::InvalidFilename, e)))
}

/// How an upload command asks to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// STOR, after `REST offset` (0 without REST).
    Stor { rest: u64 },
    /// APPE. `offered`: what this session's last SIZE of the same path answered from the
    /// file's unfinished overwrite, if it did (see [`Home::open_upload`]).
    Appe { offered: Option<u64> },
}

/// Where an upload's bytes go, decided before the 150 reply (see [`Home::open_upload`]).
#[derive(Debug)]
pub struct UploadPlan {
    pub writer: Writer,
    /// What is being written: the target itself, or its hidden part.
    pub written: VirtualPath,
    /// Set when the bytes go to a part that replaces `target` once complete.
    pub replaces: Option<Replacement>,
    /// Size of the written file once opened (the upload's bytes come after it).
    pub start_size: u64,
    /// Bytes the open removed (a truncated part, or a resumed file cut at the offset).
    pub released: u64,
    /// The upload creates a file that did not exist (counts against the file limit).
    pub new_file: bool,
    /// Keeps other uploads, deletes and renames off the target until dropped (after the
    /// upload is settled).
    pub claim: UploadClaim,
}

pub use claims::UploadClaim;

#[derive(Debug, Clone)]
pub struct Replacement {
    pub target: VirtualPath,
    /// Size of the file being replaced (freed when the replacement happens); None if it is
    /// gone.
    pub old_size: Option<u64>,
}

/// Space given back by a delete or a rename over an existing file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Freed {
    pub bytes: u64,
    /// A regular file was removed (one less against the file limit).
    pub file: bool,
}

/// What [`Home::complete_upload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    /// Size of the written file (target or part) as stored, for the quota's settlement.
    pub size: u64,
    /// Bytes of the old version a completed overwrite replaced (to give back).
    pub replaced: u64,
    /// The target exists after it (a new file's upload that stored nothing under its name,
    /// as an interrupted one on S3, gives its place in the file limit back).
    pub target_exists: bool,
}

/// An open file to read, at any offset.
#[derive(Debug)]
pub enum Reader {
    /// A regular file: sendfile(2), `preadv2(RWF_NOWAIT)` probes and positioned reads.
    Local(std::fs::File),
    /// An object: read by ranged GETs.
    S3(s3::S3Reader),
}

/// A reader's bytes from an offset on (RETR through user space: TLS, TYPE A, objects).
pub enum ReadStream {
    Local(tokio::fs::File),
    S3(s3::ObjectStream),
}

impl ReadStream {
    /// The next bytes into `buf`; 0 at the end.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use tokio::io::AsyncReadExt as _;
        match self {
            ReadStream::Local(file) => file.read(buf).await,
            ReadStream::S3(object) => object.read(buf).await,
        }
    }
}

impl Reader {
    /// Whether this is a file the kernel can send itself (sendfile(2)) and read with
    /// positioned reads on the blocking pool ([`Reader::read_at`]).
    pub fn is_local(&self) -> bool {
        matches!(self, Reader::Local(_))
    }

    /// The bytes from `offset` on, as a stream.
    pub async fn into_stream(self, offset: u64) -> io::Result<ReadStream> {
        use tokio::io::AsyncSeekExt as _;
        match self {
            Reader::Local(file) => {
                let mut file = tokio::fs::File::from_std(file);
                if offset > 0 {
                    file.seek(io::SeekFrom::Start(offset)).await?;
                }
                Ok(ReadStream::Local(file))
            }
            Reader::S3(object) => Ok(ReadStream::S3(object.stream(offset).await?)),
        }
    }

    /// The SHA-256 kept with the file, if the backend keeps one (objects uploaded in one
    /// piece): HASH answers it without reading the file.
    /// With the size of the file it is the digest of.
    pub fn stored_sha256(&self) -> Option<(&str, u64)> {
        match self {
            Reader::Local(_) => None,
            Reader::S3(object) => object.stored_sha256(),
        }
    }

    /// Reads into `buf` from `offset` (blocking: a positioned read, no shared cursor). Local
    /// files only: others are read as a stream ([`Reader::into_stream`]).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        use std::os::unix::fs::FileExt as _;
        match self {
            Reader::Local(file) => file.read_at(buf, offset),
            Reader::S3(_) => Err(io::Error::from(io::ErrorKind::Unsupported)),
        }
    }

    /// Tells the backend the range will be read once, front to back (the kernel reads ahead
    /// more on a cold file). Advice only: failures change nothing.
    pub fn advise_sequential(&self, start: u64, len: u64) {
        use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
        use std::os::fd::AsRawFd;
        let Reader::Local(file) = self else {
            return;
        };
        let (Ok(offset), Ok(len)) = (i64::try_from(start), i64::try_from(len)) else {
            return;
        };
        let _ = posix_fadvise(
            file.as_raw_fd(),
            offset,
            len,
            PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
        );
    }
}

/// Where an upload's bytes are written, from the plan's start offset on.
#[derive(Debug)]
pub enum Writer {
    /// A regular file positioned at the upload's start (or opened to append).
    Local(std::fs::File),
    /// An object being uploaded in parts.
    S3(Box<s3::S3Upload>),
}

impl Writer {
    /// Whether this is a file the one-thread plain upload can write.
    pub fn is_local(&self) -> bool {
        matches!(self, Writer::Local(_))
    }
}

/// A user's files, shareable between a session and its transfer tasks. Every method is
/// async: the local backend runs its system calls on the blocking pool.
#[derive(Clone, Debug)]
pub enum Home {
    Local(local::LocalHome),
    S3(s3::S3Home),
}

impl Home {
    /// Facts about a path, following symlinks that stay inside the home.
    pub async fn stat(&self, path: &VirtualPath) -> Result<Entry> {
        let p = path.clone();
        match self {
            Home::Local(h) => h.run(move |h| h.stat(&p)).await,
            Home::S3(h) => h.stat(&p).await,
        }
    }

    /// Facts about a path and how much of an interrupted upload of it is stored (see
    /// [`local::LocalHome::unfinished_size`]), for SIZE.
    pub async fn stat_with_unfinished(&self, path: &VirtualPath) -> Result<(Entry, Option<u64>)> {
        let p = path.clone();
        match self {
            Home::Local(h) => {
                h.run(move |h| Ok((h.stat(&p)?, h.unfinished_size(&p)?)))
                    .await
            }
            Home::S3(h) => h.stat_with_unfinished(&p).await,
        }
    }

    /// Whether `path` is a directory this user can list (CWD): false for other kinds, an
    /// error if it is missing or cannot be read.
    pub async fn is_listable_dir(&self, path: &VirtualPath) -> Result<bool> {
        let p = path.clone();
        match self {
            Home::Local(h) => {
                h.run(move |h| {
                    if h.stat(&p)?.kind != ferry_proto::listing::EntryKind::Dir {
                        return Ok(false);
                    }
                    h.check_listable(&p)?;
                    Ok(true)
                })
                .await
            }
            Home::S3(h) => Ok(h.stat(&p).await?.kind == ferry_proto::listing::EntryKind::Dir),
        }
    }

    /// Opens a regular file for reading; also returns its size.
    pub async fn open_read(&self, path: &VirtualPath) -> Result<(Reader, u64)> {
        if let Some(opened) = self.open_read_cached(path) {
            return Ok(opened);
        }
        let p = path.clone();
        match self {
            Home::Local(h) => {
                let (file, size) = h.run(move |h| h.open_read(&p)).await?;
                Ok((Reader::Local(file), size))
            }
            Home::S3(h) => h.open_read(&p).await,
        }
    }

    /// [`Home::open_read`] without waiting, on the async thread: only when the backend can
    /// answer at once (a local path the kernel resolves from its caches). The hop to the
    /// blocking pool is most of a small download's cost.
    pub fn open_read_cached(&self, path: &VirtualPath) -> Option<(Reader, u64)> {
        match self {
            Home::Local(h) => h
                .open_read_cached(path)
                .map(|(file, size)| (Reader::Local(file), size)),
            Home::S3(_) => None,
        }
    }

    /// Decides where an upload goes and opens it (see [`local::LocalHome::open_upload`] for
    /// the rules every backend keeps: an overwrite never costs the old version, and every
    /// client's way of resuming ends byte-exact or refused).
    pub async fn open_upload(&self, target: &VirtualPath, mode: UploadMode) -> Result<UploadPlan> {
        let p = target.clone();
        match self {
            Home::Local(h) => h.run(move |h| h.open_upload(&p, mode)).await,
            Home::S3(h) => h.open_upload(&p, mode).await,
        }
    }

    /// STOU: a new file named after `base` ("name", "name.1", ...), as a plan.
    pub async fn create_unique(&self, base: &VirtualPath) -> Result<UploadPlan> {
        let base = base.clone();
        match self {
            Home::Local(h) => h.run(move |h| h.create_unique(&base)).await,
            Home::S3(h) => h.create_unique(&base).await,
        }
    }

    /// Ends an upload: reports the size stored, and if `ok`, makes the upload durable (with
    /// `sync`) and, for an overwrite, puts the new version in place of the old. `writer` is
    /// the upload's writer if the receiving side gave it back (a local file needs it not).
    pub async fn complete_upload(
        &self,
        writer: Option<Writer>,
        written: &VirtualPath,
        replaces: Option<Replacement>,
        new_file: bool,
        ok: bool,
        sync: bool,
    ) -> Result<Completed> {
        let written = written.clone();
        match self {
            Home::Local(h) => {
                // Closed before its size is read and it is flushed through a new descriptor.
                drop(writer);
                h.run(move |h| h.complete_upload(&written, replaces.as_ref(), new_file, ok, sync))
                    .await
            }
            // An object is durable once stored: `sync` asks nothing more of it.
            Home::S3(h) => h.complete_upload(writer, ok).await,
        }
    }

    pub async fn mkdir(&self, path: &VirtualPath) -> Result<()> {
        let p = path.clone();
        match self {
            Home::Local(h) => h.run(move |h| h.mkdir(&p)).await,
            Home::S3(h) => h.mkdir(&p).await,
        }
    }

    pub async fn rmdir(&self, path: &VirtualPath) -> Result<()> {
        let p = path.clone();
        match self {
            Home::Local(h) => h.run(move |h| h.rmdir(&p)).await,
            Home::S3(h) => h.rmdir(&p).await,
        }
    }

    /// Deletes a file and any unfinished overwrite of it; directories need RMD.
    pub async fn remove_file(&self, path: &VirtualPath) -> Result<Freed> {
        let p = path.clone();
        match self {
            Home::Local(h) => h.run(move |h| h.remove_file(&p)).await,
            Home::S3(h) => h.remove_file(&p).await,
        }
    }

    /// Checks that a path exists (RNFR), without following a final symlink.
    pub async fn exists(&self, path: &VirtualPath) -> Result<()> {
        let p = path.clone();
        match self {
            Home::Local(h) => h.run(move |h| h.exists(&p)).await,
            Home::S3(h) => h.exists(&p).await,
        }
    }

    /// Renames a file or directory; returns what a replaced file freed.
    pub async fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> Result<Freed> {
        let (from, to) = (from.clone(), to.clone());
        match self {
            Home::Local(h) => h.run(move |h| h.rename(&from, &to)).await,
            Home::S3(h) => h.rename(&from, &to).await,
        }
    }

    /// Sets the modification time of a file or directory (MFMT, MFF).
    pub async fn set_modified(&self, path: &VirtualPath, time: FileTime) -> Result<()> {
        let p = path.clone();
        match self {
            Home::Local(h) => h.run(move |h| h.set_modified(&p, time)).await,
            Home::S3(_) => Err(StorageError::Unsupported(
                "Modification times are not kept on this server's storage",
            )),
        }
    }
}

/// The server's storage: opens users' homes.
pub enum Storage {
    Local(Homes),
    S3(s3::S3Storage),
}

impl Storage {
    /// Homes on the local file system.
    pub fn local() -> Storage {
        Storage::Local(Homes::default())
    }

    /// The storage `config` names: local, or the S3 bucket (connected: a bad endpoint or bad
    /// credentials fail here, named).
    pub async fn from_config(
        config: &crate::config::StorageConfig,
    ) -> std::result::Result<Storage, String> {
        match config {
            crate::config::StorageConfig::Local => Ok(Storage::local()),
            crate::config::StorageConfig::S3(settings) => {
                Ok(Storage::S3(s3::S3Storage::connect(settings).await?))
            }
        }
    }

    /// Bytes and regular files stored for a user (part files and unfinished uploads count in
    /// bytes, not as files), for quotas. Blocking: call it on the blocking pool (or outside
    /// any runtime).
    pub fn scan_usage(&self, home: &std::path::Path, name: &str) -> Result<(u64, u64)> {
        match self {
            Storage::Local(_) => Ok(local::usage::scan(home)?),
            Storage::S3(s3) => match tokio::runtime::Handle::try_current() {
                Ok(handle) => handle.block_on(s3.scan_usage(name)),
                Err(_) => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(s3.scan_usage(name)),
            },
        }
    }

    /// The home of a user, opened (a local one created if missing). Blocking.
    pub fn open_home(&self, home: &std::path::Path, name: &str) -> Result<Home> {
        match self {
            Storage::Local(homes) => Ok(Home::Local(homes.open(home)?)),
            Storage::S3(s3) => Ok(Home::S3(s3.open_home(name))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds_are_kept() {
        let e = StorageError::from(io::Error::from(io::ErrorKind::NotFound));
        assert!(e.is_not_found());
        assert_eq!(StorageError::RestPastEnd.io_kind(), None);
        assert_eq!(
            StorageError::kind(io::ErrorKind::IsADirectory).io_kind(),
            Some(io::ErrorKind::IsADirectory)
        );
    }
}
