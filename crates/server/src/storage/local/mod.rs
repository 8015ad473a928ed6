//! The local backend: a home directory on a local file system, every operation by virtual
//! path.
//!
//! The home directory is opened once at login as a `cap_std::fs::Dir`; every later operation is
//! relative to that descriptor, and cap-std resolves each path component inside it (openat2
//! `RESOLVE_BENEATH` where the kernel has it, a checked component walk where it does not). A `..`
//! that climbs out, an absolute symlink or a relative one that leads above the home therefore
//! fails in the kernel-side walk, whatever the string looked like — the lexical clean-up in
//! [`VirtualPath`] is for display, not for safety.
//!
//! All methods block; [`super::Home`] runs them on tokio's blocking pool so a slow disk or a
//! huge directory never stalls other sessions.

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::sync::{Arc, MutexGuard};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt, OpenOptions};
use ferry_proto::listing::Entry;
use ferry_proto::{FileTime, VirtualPath};

use super::claims::{is_uploading, Claims, UploadClaim};
use super::{is_part_name, PART_SUFFIX};
use super::{Completed, Freed, Replacement, Result, StorageError, UploadMode, UploadPlan, Writer};

mod listing;
pub mod usage;
use listing::entry;
pub use listing::MAX_LIST_ENTRIES;

/// How an upload opens its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// STOR: create or truncate.
    Truncate,
    /// APPE: create or append.
    Append,
    /// REST n + STOR: keep the first n bytes, write from there.
    Resume(u64),
    /// STOU: only a new file.
    CreateNew,
}

/// Longest name (bytes) Linux file systems hold in one path component.
const MAX_NAME: usize = 255;

/// Regular files ignore O_NONBLOCK today, but open(2) warns it may gain a meaning for them;
/// a file opened without blocking is switched back before sendfile or a read can see EAGAIN.
fn clear_nonblock(file: &std::fs::File) -> io::Result<()> {
    rustix::fs::fcntl_setfl(file, rustix::fs::OFlags::RDONLY)?;
    Ok(())
}

/// A user's home, shareable between a session and its transfer tasks.
#[derive(Clone, Debug)]
pub struct LocalHome {
    root: Arc<SharedDir>,
}

/// One open home directory, shared by every session in it.
#[derive(Debug)]
struct SharedDir {
    dir: Dir,
    /// The names uploads are writing in this home.
    claims: Arc<Claims>,
}

impl SharedDir {
    fn uploading(&self) -> MutexGuard<'_, HashSet<VirtualPath>> {
        self.claims.lock()
    }
}

impl std::ops::Deref for SharedDir {
    type Target = Dir;

    fn deref(&self) -> &Dir {
        &self.dir
    }
}

/// Open home directories, shared by all sessions of the same home: a descriptor per user,
/// not per session, so ten thousand sessions of one user cost ten thousand sockets and one
/// directory descriptor.
#[derive(Default)]
pub struct Homes {
    open:
        std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, std::sync::Weak<SharedDir>>>,
}

impl Homes {
    /// The jail for `home`: the directory another session already holds, if the path still
    /// names that same directory, else a newly opened one. Blocking.
    pub fn open(&self, home: &Path) -> io::Result<LocalHome> {
        std::fs::create_dir_all(home)?;
        let on_disk = std::fs::metadata(home)?;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = open.get(home).and_then(std::sync::Weak::upgrade) {
            use std::os::unix::fs::MetadataExt as _;
            let held = dir.dir_metadata()?;
            if (held.dev(), held.ino()) == (on_disk.dev(), on_disk.ino()) {
                return Ok(LocalHome { root: dir });
            }
        }
        open.retain(|_, w| w.strong_count() > 0);
        let vfs = LocalHome::open(home)?;
        open.insert(home.to_path_buf(), Arc::downgrade(&vfs.root));
        Ok(vfs)
    }
}

impl LocalHome {
    /// Opens (creating if needed) the home directory as the jail root.
    pub fn open(home: &Path) -> io::Result<LocalHome> {
        std::fs::create_dir_all(home)?;
        let dir = Dir::open_ambient_dir(home, ambient_authority())?;
        Ok(LocalHome {
            root: Arc::new(SharedDir {
                dir,
                claims: Arc::default(),
            }),
        })
    }

    /// Runs blocking work on the blocking pool (the listing walk's steps, which hold their
    /// open directory between calls).
    pub async fn run<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&LocalHome) -> std::result::Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<io::Error> + Send + 'static,
    {
        let home = self.clone();
        tokio::task::spawn_blocking(move || f(&home))
            .await
            .map_err(|e| E::from(io::Error::other(format!("file task failed: {e}"))))?
    }

    /// Facts about a path, following symlinks that stay inside the home.
    pub fn stat(&self, path: &VirtualPath) -> Result<Entry> {
        let meta = self.root.metadata(path.to_relative())?;
        Ok(entry(path.file_name().unwrap_or("/").to_owned(), &meta))
    }

    /// Opens a regular file for reading; also returns its size.
    pub fn open_read(&self, path: &VirtualPath) -> Result<(std::fs::File, u64)> {
        use cap_std::fs::OpenOptionsExt as _;
        // O_NONBLOCK: a FIFO placed in a home must not hold a thread waiting for a writer.
        let mut opts = OpenOptions::new();
        opts.read(true).custom_flags(libc::O_NONBLOCK);
        let file = self.root.open_with(path.to_relative(), &opts)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(StorageError::kind(io::ErrorKind::IsADirectory));
        }
        if !meta.is_file() {
            return Err(StorageError::kind(io::ErrorKind::PermissionDenied));
        }
        let file = file.into_std();
        clear_nonblock(&file)?;
        Ok((file, meta.len()))
    }

    /// [`LocalHome::open_read`] without blocking, for use on the async threads: succeeds only when
    /// the kernel can resolve the whole path from its caches (`RESOLVE_CACHED`, Linux 5.12)
    /// and the path names a regular file. `None` for everything else (not cached, older
    /// kernel, missing, a directory, outside the home): the caller then runs
    /// [`LocalHome::open_read`] on the blocking pool, which also gives the error its canonical form.
    /// The jail is the same as cap-std's: `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`.
    pub fn open_read_cached(&self, path: &VirtualPath) -> Option<(std::fs::File, u64)> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        // O_NONBLOCK: opening a FIFO someone placed in a home would otherwise wait for a
        // writer, here on an async thread.
        let fd = rustix::fs::openat2(
            &self.root.dir,
            path.to_relative(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::CACHED,
        )
        .ok()?;
        let file = std::fs::File::from(fd);
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        clear_nonblock(&file).ok()?;
        Some((file, meta.len()))
    }

    /// Opens a file for an upload.
    pub fn open_write(&self, path: &VirtualPath, mode: WriteMode) -> Result<std::fs::File> {
        if path.is_root() {
            return Err(StorageError::kind(io::ErrorKind::IsADirectory));
        }
        let mut opts = OpenOptions::new();
        opts.write(true);
        // Truncation waits for the checks below: O_TRUNC would change the file before them.
        match mode {
            WriteMode::Truncate => opts.create(true),
            WriteMode::Append => opts.create(true).append(true),
            WriteMode::Resume(_) => opts.create(true),
            WriteMode::CreateNew => opts.create_new(true),
        };
        let file = self.root.open_with(path.to_relative(), &opts)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(StorageError::kind(io::ErrorKind::IsADirectory));
        }
        // A file with another hard link may be that link's file outside the home (someone
        // with shell access linked it in; the jail cannot see where the other names are):
        // never written in place. An overwrite still works, through a part file renamed over
        // this name, which leaves the other link's file as it was.
        if meta.nlink() > 1 {
            return Err(StorageError::HardLinked);
        }
        let file = file.into_std();
        if let WriteMode::Truncate = mode {
            file.set_len(0)?;
        }
        if let WriteMode::Resume(offset) = mode {
            use std::io::Seek;
            if offset > meta.len() {
                return Err(StorageError::RestPastEnd);
            }
            file.set_len(offset)?;
            let mut f = &file;
            f.seek(io::SeekFrom::Start(offset))?;
        }
        Ok(file)
    }

    /// STOU: a new file named after `base` ("name", "name.1", "name.2", ...).
    pub fn create_unique(&self, base: &VirtualPath) -> Result<UploadPlan> {
        for n in 0..super::UNIQUE_TRIES {
            let candidate = super::unique_name(base, n)?;
            let Ok(claim) = self.claim_upload(&candidate) else {
                continue;
            };
            match self.open_write(&candidate, WriteMode::CreateNew) {
                Ok(file) => {
                    return Ok(UploadPlan {
                        writer: Writer::Local(file),
                        written: candidate,
                        replaces: None,
                        start_size: 0,
                        released: 0,
                        new_file: true,
                        claim,
                    })
                }
                Err(e) if e.io_kind() == Some(io::ErrorKind::AlreadyExists) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StorageError::kind(io::ErrorKind::AlreadyExists))
    }

    /// The hidden sibling an overwrite of `path` is written to: ".name.ferry-part".
    pub fn part_path(path: &VirtualPath) -> Result<VirtualPath> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::from(io::ErrorKind::IsADirectory))?;
        let parent = path.parent().unwrap_or_else(VirtualPath::root);
        let mut part = format!(".{name}{PART_SUFFIX}");
        // A name near the file system's 255-byte limit has no room for the dots and suffix:
        // its part gets a shortened name that is still its own (a digest of the whole name).
        if part.len() > MAX_NAME {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(name.as_bytes());
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            let mut keep = 128;
            while !name.is_char_boundary(keep) {
                keep -= 1;
            }
            part = format!(".{}~{hex}{PART_SUFFIX}", &name[..keep]);
        }
        parent.join(&part).map_err(invalid)
    }

    /// How much of an interrupted overwrite of `path` has arrived: the size of its part
    /// file, if it has one. SIZE answers this instead of the old file's size: it is what
    /// every client's resume continues from (see [`LocalHome::open_upload`]).
    pub fn unfinished_size(&self, path: &VirtualPath) -> Result<Option<u64>> {
        if path.file_name().is_none() {
            return Ok(None);
        }
        match self.regular_size(&LocalHome::part_path(path)?) {
            Ok(size) => Ok(size),
            // A directory or device by that name is no upload of ours.
            Err(e) if !e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Size of a regular file; None if nothing is there; an error for directories and others.
    fn regular_size(&self, path: &VirtualPath) -> Result<Option<u64>> {
        match self.root.metadata(path.to_relative()) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(m) if m.is_dir() => Err(StorageError::kind(io::ErrorKind::IsADirectory)),
            Ok(_) => Err(StorageError::kind(io::ErrorKind::PermissionDenied)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens an upload so that an interrupted overwrite never costs the old file, and every
    /// client's way of resuming one ends with the new file byte-exact or a refusal:
    /// - a new file is written in place (an interrupted upload stays visible and resumable);
    /// - STOR over an existing file writes a hidden part file, renamed over the original only
    ///   when the upload completes ([`LocalHome::complete_upload`]); until then the old content stays
    ///   readable, and a failed upload leaves the part for a later resume (SIZE answers the
    ///   part's size, see [`LocalHome::unfinished_size`]);
    /// - REST n + STOR continues that part file if it holds at least n bytes (its first n
    ///   bytes are the new content's); with a part shorter than n, or no part and a target
    ///   shorter than n, it is [`StorageError::RestPastEnd`] (554) and touches nothing; with no part it
    ///   resumes the target in place (an interrupted new upload);
    /// - APPE continues the part file at its end if this session's SIZE offered exactly that
    ///   size (curl `-C -`); with a part and no such SIZE it is
    ///   [`StorageError::UnfinishedUpload`] (550):
    ///   the old content it would append to is about to be replaced; with no part it appends
    ///   in place.
    pub fn open_upload(&self, target: &VirtualPath, mode: UploadMode) -> Result<UploadPlan> {
        if path_is_part(target) {
            return Err(StorageError::ReservedName);
        }
        let claim = self.claim_upload(target)?;
        let existing = self.regular_size(target)?;
        let direct =
            |file: std::fs::File, start: u64, released: u64, new_file: bool, claim: UploadClaim| {
                UploadPlan {
                    writer: Writer::Local(file),
                    written: target.clone(),
                    replaces: None,
                    start_size: start,
                    released,
                    new_file,
                    claim,
                }
            };
        let part = LocalHome::part_path(target)?;
        let part_size = match existing {
            // A part file follows its file's name: with no file, any part is stale.
            Some(_) => self.regular_size(&part)?,
            None => None,
        };
        let continue_part = |rest: u64, file: std::fs::File, claim: UploadClaim| UploadPlan {
            writer: Writer::Local(file),
            written: part.clone(),
            replaces: Some(Replacement {
                target: target.clone(),
                old_size: existing,
            }),
            start_size: rest,
            released: part_size.unwrap_or(0).saturating_sub(rest),
            new_file: false,
            claim,
        };
        match (mode, existing) {
            (UploadMode::Appe { offered }, size) => match part_size {
                Some(received) if offered == Some(received) => {
                    let file = self.open_write(&part, WriteMode::Resume(received))?;
                    Ok(continue_part(received, file, claim))
                }
                Some(received) => Err(StorageError::UnfinishedUpload { received }),
                None => {
                    let file = self.open_write(target, WriteMode::Append)?;
                    Ok(direct(file, size.unwrap_or(0), 0, size.is_none(), claim))
                }
            },
            (UploadMode::Stor { rest: 0 }, None) => {
                let file = self.open_write(target, WriteMode::Truncate)?;
                // A part left by an overwrite of a file since removed outside the server.
                let stale = self.drop_part(target);
                Ok(direct(file, 0, stale, true, claim))
            }
            (UploadMode::Stor { rest: 0 }, Some(_)) => {
                let file = self.open_write(&part, WriteMode::Truncate)?;
                Ok(continue_part(0, file, claim))
            }
            (UploadMode::Stor { rest }, Some(size)) => match part_size {
                // A part file holds the first bytes of the new content: usable when it has at
                // least `rest` of them. Past its end the bytes in between are missing, and
                // the old file's are not the new content's (a resume from the old file's
                // size, lftp's reput, would splice two versions): refused.
                Some(received) if received >= rest => {
                    let file = self.open_write(&part, WriteMode::Resume(rest))?;
                    Ok(continue_part(rest, file, claim))
                }
                Some(_) => Err(StorageError::RestPastEnd),
                // No overwrite in progress: the file itself is the interrupted upload.
                // Checked here, before the open: a resume past the end must leave the file
                // as it is (open_write checks again, against the size it opened).
                None if rest <= size => {
                    let file = self.open_write(target, WriteMode::Resume(rest))?;
                    Ok(direct(file, rest, size - rest, false, claim))
                }
                None => Err(StorageError::RestPastEnd),
            },
            (UploadMode::Stor { .. }, None) => Err(StorageError::RestPastEnd),
        }
    }

    /// Marks `target` as being uploaded to; 450 if another upload already writes it.
    fn claim_upload(&self, target: &VirtualPath) -> Result<UploadClaim> {
        self.root.claims.claim(target)
    }

    /// Ends an upload (see [`super::Home::complete_upload`]). What a 226 promises with
    /// `sync`: the file's bytes, and the name they are under, are on stable storage before
    /// the reply. A part is flushed before its rename over the target, so a power loss leaves
    /// the old version or the whole new one, never a renamed file with missing blocks.
    pub fn complete_upload(
        &self,
        written: &VirtualPath,
        replaces: Option<&Replacement>,
        new_file: bool,
        ok: bool,
        sync: bool,
    ) -> Result<Completed> {
        let size = self.written_size(written)?;
        let mut replaced = 0;
        match replaces {
            Some(rep) if ok => {
                if sync {
                    self.sync_file(written)?;
                }
                self.root
                    .rename(written.to_relative(), &self.root, rep.target.to_relative())?;
                replaced = rep.old_size.unwrap_or(0);
                if sync {
                    self.sync_parent(&rep.target)?;
                }
            }
            None if ok && sync => {
                self.sync_file(written)?;
                if new_file {
                    self.sync_parent(written)?;
                }
            }
            _ => {}
        }
        // A new file is created when its upload opens, whatever happens next.
        Ok(Completed {
            size,
            replaced,
            target_exists: true,
        })
    }

    /// Size of the file an upload wrote, as it is now on disk.
    fn written_size(&self, path: &VirtualPath) -> Result<u64> {
        Ok(self.regular_size(path)?.unwrap_or(0))
    }

    /// Flushes a file's data and size to stable storage (fsync(2): any descriptor of the
    /// file does, so the upload's own need not be kept for it).
    fn sync_file(&self, path: &VirtualPath) -> Result<()> {
        Ok(self.root.open(path.to_relative())?.into_std().sync_all()?)
    }

    /// Flushes the directory holding `path`: a new name, or a rename into it, survives a
    /// power loss only once its directory is on stable storage too.
    fn sync_parent(&self, path: &VirtualPath) -> Result<()> {
        use cap_std::fs::OpenOptionsExt as _;
        let parent = path.parent().unwrap_or_else(VirtualPath::root);
        let rel = if parent.is_root() {
            "."
        } else {
            parent.to_relative()
        };
        // A plain read-only descriptor: cap-std's directory handles may be O_PATH ones,
        // which fsync(2) refuses.
        let mut opts = OpenOptions::new();
        opts.read(true).custom_flags(libc::O_DIRECTORY);
        Ok(self.root.open_with(rel, &opts)?.into_std().sync_all()?)
    }

    pub fn mkdir(&self, path: &VirtualPath) -> Result<()> {
        Ok(self.root.create_dir(path.to_relative())?)
    }

    pub fn rmdir(&self, path: &VirtualPath) -> Result<()> {
        if path.is_root() {
            return Err(StorageError::kind(io::ErrorKind::PermissionDenied));
        }
        Ok(self.root.remove_dir(path.to_relative())?)
    }

    /// Deletes a file (or a symlink itself, never its target) and any unfinished overwrite of
    /// it; directories need RMD. Returns what was freed: bytes, and whether a regular file went.
    pub fn remove_file(&self, path: &VirtualPath) -> Result<Freed> {
        let uploading = self.root.uploading();
        if is_uploading(&uploading, path) {
            return Err(StorageError::UploadInProgress);
        }
        let meta = self.root.symlink_metadata(path.to_relative())?;
        if meta.is_dir() {
            return Err(StorageError::kind(io::ErrorKind::IsADirectory));
        }
        self.root.remove_file(path.to_relative())?;
        Ok(Freed {
            bytes: if meta.is_file() { meta.len() } else { 0 } + self.drop_part(path),
            file: meta.is_file(),
        })
    }

    /// Removes the unfinished overwrite of `path`, if there is one; returns its bytes. Called
    /// when `path` is deleted or replaced or renamed away: the part's content was meant for a
    /// file that is gone, and a later resume of another file by that name must not continue it.
    fn drop_part(&self, path: &VirtualPath) -> u64 {
        let Ok(part) = LocalHome::part_path(path) else {
            return 0;
        };
        match self.regular_size(&part) {
            Ok(Some(size)) if self.root.remove_file(part.to_relative()).is_ok() => size,
            _ => 0,
        }
    }

    /// Sets the modification time of a file or directory (MFMT, MFF); the access time stays.
    ///
    /// The last component is looked up in its parent, opened through the jail, and its time is
    /// set with `utimensat(AT_SYMLINK_NOFOLLOW)` relative to that descriptor: no symlink is
    /// followed by the kernel outside cap-std's checked walk. A symlink is followed like every
    /// other command follows one: opened through the jail (so only a target inside the home),
    /// and its target's time set with `futimens` on the descriptor. Anything but a regular
    /// file or a directory is refused, as are upload part files.
    pub fn set_modified(&self, path: &VirtualPath, time: FileTime) -> Result<()> {
        use rustix::fs::{AtFlags, Timespec, Timestamps, UTIME_OMIT};
        if path_is_part(path) {
            return Err(StorageError::ReservedName);
        }
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: time.secs,
                tv_nsec: time.nanos.into(),
            },
        };
        let set_in = |dir: &Dir, name: &str| -> Result<()> {
            let meta = dir.symlink_metadata(name)?;
            if meta.is_symlink() {
                return self.set_modified_through_link(path, &times);
            }
            if !(meta.is_file() || meta.is_dir()) {
                return Err(StorageError::kind(io::ErrorKind::PermissionDenied));
            }
            if meta.is_file() && meta.nlink() > 1 {
                return Err(StorageError::HardLinked);
            }
            rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(io::Error::from)?;
            Ok(())
        };
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => set_in(&self.root.open_dir(parent.to_relative())?, name),
            // The home itself.
            _ => set_in(&self.root.dir, "."),
        }
    }

    /// [`LocalHome::set_modified`] of a symlink's target, opened through the jail.
    fn set_modified_through_link(
        &self,
        path: &VirtualPath,
        times: &rustix::fs::Timestamps,
    ) -> Result<()> {
        use cap_std::fs::OpenOptionsExt as _;
        // O_NONBLOCK: a link to a FIFO must not hold the thread waiting for a writer.
        let mut opts = OpenOptions::new();
        opts.read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let file = self.root.open_with(path.to_relative(), &opts)?;
        let meta = file.metadata()?;
        if !(meta.is_file() || meta.is_dir()) {
            return Err(StorageError::kind(io::ErrorKind::PermissionDenied));
        }
        if meta.is_file() && meta.nlink() > 1 {
            return Err(StorageError::HardLinked);
        }
        rustix::fs::futimens(&file, times).map_err(io::Error::from)?;
        Ok(())
    }

    /// Checks that a path exists (for RNFR) without following a final symlink.
    pub fn exists(&self, path: &VirtualPath) -> Result<()> {
        self.root.symlink_metadata(path.to_relative())?;
        Ok(())
    }

    /// Renames; returns what a replaced file at `to` freed, and the unfinished overwrites of
    /// both names, which are dropped (see [`LocalHome::drop_part`]).
    pub fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> Result<Freed> {
        if from.is_root() || to.is_root() {
            return Err(StorageError::kind(io::ErrorKind::PermissionDenied));
        }
        if path_is_part(to) {
            return Err(StorageError::ReservedName);
        }
        let uploading = self.root.uploading();
        if is_uploading(&uploading, from) || is_uploading(&uploading, to) {
            return Err(StorageError::UploadInProgress);
        }
        let src = self.root.symlink_metadata(from.to_relative())?;
        let replaced = match self.root.symlink_metadata(to.to_relative()) {
            Ok(m) if m.is_file() && (m.dev(), m.ino()) != (src.dev(), src.ino()) => Freed {
                bytes: m.len(),
                file: true,
            },
            _ => Freed::default(),
        };
        self.root
            .rename(from.to_relative(), &self.root, to.to_relative())?;
        let parts = if src.is_file() {
            self.drop_part(from) + self.drop_part(to)
        } else {
            0
        };
        Ok(Freed {
            bytes: replaced.bytes + parts,
            ..replaced
        })
    }
}

fn path_is_part(path: &VirtualPath) -> bool {
    path.file_name().is_some_and(is_part_name)
}

fn invalid(e: ferry_proto::PathError) -> StorageError {
    StorageError::Io(io::Error::new(io::ErrorKind::InvalidFilename, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::root().resolve(s).expect("valid path")
    }

    /// A directory big enough for two threads: the listing is complete, sorted, with each
    /// entry's own facts (symlinks inside the home show their target, others themselves), part
    /// files hidden, and the helper permit given back.
    #[test]
    fn symlinks_out_of_the_home_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::write(tmp.path().join("secret"), b"outside").expect("write");
        std::os::unix::fs::symlink("/etc", home.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../secret", home.join("rel")).expect("symlink");
        std::fs::write(home.join("inside"), b"ok").expect("write");
        std::os::unix::fs::symlink("inside", home.join("good")).expect("symlink");
        let vfs = LocalHome::open(&home).expect("open");
        assert!(vfs.open_read(&vp("abs/passwd")).is_err());
        assert!(vfs.open_read(&vp("rel")).is_err());
        assert!(vfs.list(&vp("abs")).is_err());
        assert!(vfs.stat(&vp("abs")).is_err());
        assert!(vfs.open_write(&vp("rel"), WriteMode::Truncate).is_err());
        assert_eq!(
            std::fs::read(tmp.path().join("secret")).expect("read"),
            b"outside"
        );
        let mut s = String::new();
        use std::io::Read;
        vfs.open_read(&vp("good"))
            .expect("inside link")
            .0
            .read_to_string(&mut s)
            .expect("read");
        assert_eq!(s, "ok");
    }

    #[test]
    fn cached_open_keeps_the_jail_and_gives_only_regular_files() {
        use std::io::Read;
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(home.join("dir")).expect("mkdir");
        std::fs::write(tmp.path().join("secret"), b"outside").expect("write");
        std::os::unix::fs::symlink("/etc", home.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../secret", home.join("rel")).expect("symlink");
        std::fs::write(home.join("inside"), b"ok").expect("write");
        std::os::unix::fs::symlink("inside", home.join("good")).expect("symlink");
        nix::unistd::mkfifo(&home.join("fifo"), nix::sys::stat::Mode::S_IRWXU).expect("fifo");
        let vfs = LocalHome::open(&home).expect("open");
        for refused in ["abs/passwd", "rel", "dir", "/", "missing", "fifo"] {
            assert!(
                vfs.open_read_cached(&vp(refused)).is_none(),
                "{refused} must fall back to the blocking pool"
            );
        }
        // Warm the dentry cache the way a first open on the blocking pool would.
        let _ = std::fs::read(home.join("good"));
        let (mut file, size) = vfs.open_read_cached(&vp("good")).expect("cached open");
        assert_eq!(size, 2);
        let mut s = String::new();
        file.read_to_string(&mut s).expect("read");
        assert_eq!(s, "ok");
    }

    #[test]
    fn resume_keeps_prefix_and_rejects_offsets_past_the_end() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let vfs = LocalHome::open(tmp.path()).expect("open");
        std::fs::write(tmp.path().join("f"), b"0123456789").expect("write");
        use std::io::Write;
        let mut f = vfs
            .open_write(&vp("f"), WriteMode::Resume(4))
            .expect("open");
        f.write_all(b"xy").expect("write");
        drop(f);
        assert_eq!(
            std::fs::read(tmp.path().join("f")).expect("read"),
            b"0123xy"
        );
        assert!(vfs.open_write(&vp("f"), WriteMode::Resume(100)).is_err());
    }

    #[test]
    fn unique_names_do_not_clobber() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let vfs = LocalHome::open(tmp.path()).expect("open");
        let a = vfs.create_unique(&vp("up")).expect("first");
        let b = vfs.create_unique(&vp("up")).expect("second");
        assert_eq!(a.written.as_str(), "/up");
        assert_eq!(b.written.as_str(), "/up.1");
    }

    /// While an upload holds its name, the name cannot be uploaded to, deleted or renamed
    /// (nor can a directory above it), in any session of the home; afterwards it can.
    #[test]
    fn a_running_upload_keeps_its_name_busy() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let homes = Homes::default();
        let (mine, other) = (
            homes.open(tmp.path()).expect("open"),
            homes.open(tmp.path()).expect("open"),
        );
        other.mkdir(&vp("d")).expect("mkdir");
        std::fs::write(tmp.path().join("d/f"), b"old").expect("write");
        let busy = |r: Result<()>| {
            let e = r.expect_err("busy");
            assert!(matches!(e, StorageError::UploadInProgress), "{e}");
        };
        let plan = mine
            .open_upload(&vp("d/f"), UploadMode::Stor { rest: 0 })
            .expect("upload");
        busy(
            other
                .open_upload(&vp("d/f"), UploadMode::Appe { offered: None })
                .map(drop),
        );
        busy(other.remove_file(&vp("d/f")).map(drop));
        busy(other.rename(&vp("d/f"), &vp("g")).map(drop));
        busy(other.rename(&vp("d"), &vp("e")).map(drop));
        std::fs::write(tmp.path().join("g"), b"g").expect("write");
        busy(other.rename(&vp("g"), &vp("d/f")).map(drop));
        // A name that only shares a prefix is free.
        std::fs::write(tmp.path().join("d/ff"), b"ff").expect("write");
        other.remove_file(&vp("d/ff")).expect("unrelated name");
        drop(plan);
        other
            .rename(&vp("d/f"), &vp("g"))
            .expect("rename after the upload");
        other
            .remove_file(&vp("g"))
            .expect("delete after the upload");
    }

    #[test]
    fn overwrite_goes_to_a_hidden_part_file_until_finished() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let vfs = LocalHome::open(tmp.path()).expect("open");
        std::fs::write(tmp.path().join("f"), b"old content").expect("write");
        use std::io::Write;
        let mut plan = vfs
            .open_upload(&vp("f"), UploadMode::Stor { rest: 0 })
            .expect("plan");
        assert_eq!(plan.written.as_str(), "/.f.ferry-part");
        assert!(!plan.new_file);
        let Writer::Local(file) = &mut plan.writer else {
            panic!("a local plan writes a file");
        };
        file.write_all(b"new").expect("write");
        // Interrupted here: the old file is intact and the part is hidden from listings.
        assert_eq!(
            std::fs::read(tmp.path().join("f")).expect("read"),
            b"old content"
        );
        let names: Vec<String> = vfs
            .list(&VirtualPath::root())
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec!["f"]);
        drop(plan);
        // A resume with REST continues the part, then completes the replacement.
        let mut plan = vfs
            .open_upload(&vp("f"), UploadMode::Stor { rest: 3 })
            .expect("resume");
        assert_eq!(plan.written.as_str(), "/.f.ferry-part");
        let Writer::Local(file) = &mut plan.writer else {
            panic!("a local plan writes a file");
        };
        file.write_all(b" stuff").expect("write");
        let rep = plan.replaces.clone().expect("replacement");
        assert_eq!(rep.old_size, Some(11));
        let done = vfs
            .complete_upload(&plan.written, Some(&rep), false, true, true)
            .expect("finish");
        assert_eq!(
            done,
            Completed {
                size: 9,
                replaced: 11,
                target_exists: true
            }
        );
        assert_eq!(
            std::fs::read(tmp.path().join("f")).expect("read"),
            b"new stuff"
        );
        assert!(!tmp.path().join(".f.ferry-part").exists());
        // New files are written in place; REST past the end of a missing file is refused.
        let plan = vfs
            .open_upload(&vp("g"), UploadMode::Stor { rest: 0 })
            .expect("new");
        assert!(plan.new_file && plan.replaces.is_none());
        assert!(vfs
            .open_upload(&vp("h"), UploadMode::Stor { rest: 5 })
            .is_err());
        assert!(vfs
            .open_upload(&vp(".f.ferry-part"), UploadMode::Appe { offered: None })
            .is_err());
    }

    /// REST past the end of both the target and its part file is the 554 marker, and
    /// neither file changes; the claim on the name is given back.
    #[test]
    fn rest_past_the_end_is_refused_before_touching_anything() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let vfs = LocalHome::open(tmp.path()).expect("open");
        std::fs::write(tmp.path().join("f"), b"abcdef").expect("write");
        let is_554 = |r: Result<UploadPlan>| {
            let e = r.expect_err("past the end");
            assert!(matches!(e, StorageError::RestPastEnd), "{e:?}");
        };
        is_554(vfs.open_upload(&vp("f"), UploadMode::Stor { rest: 100 }));
        is_554(vfs.open_upload(&vp("f"), UploadMode::Stor { rest: 7 }));
        std::fs::write(tmp.path().join(".f.ferry-part"), b"xyz").expect("write");
        is_554(vfs.open_upload(&vp("f"), UploadMode::Stor { rest: 100 }));
        is_554(vfs.open_upload(&vp("missing"), UploadMode::Stor { rest: 1 }));
        assert_eq!(
            std::fs::read(tmp.path().join("f")).expect("read"),
            b"abcdef"
        );
        assert_eq!(
            std::fs::read(tmp.path().join(".f.ferry-part")).expect("read"),
            b"xyz"
        );
        assert!(!tmp.path().join("missing").exists());
        // With an unfinished overwrite, the part decides: past its end is refused even where
        // the old file reaches (its bytes are not the new version's: lftp's reput from the
        // old size would splice two versions); up to its end continues it.
        is_554(vfs.open_upload(&vp("f"), UploadMode::Stor { rest: 6 }));
        let plan = vfs
            .open_upload(&vp("f"), UploadMode::Stor { rest: 3 })
            .expect("resume the part");
        assert_eq!(
            (plan.written.as_str(), plan.start_size),
            ("/.f.ferry-part", 3)
        );
        drop(plan);
        // Without one, the file itself is the interrupted upload: resumed in place.
        std::fs::remove_file(tmp.path().join(".f.ferry-part")).expect("rm");
        let plan = vfs
            .open_upload(&vp("f"), UploadMode::Stor { rest: 6 })
            .expect("resume at the end");
        assert_eq!((plan.written.as_str(), plan.start_size), ("/f", 6));
    }

    /// APPE after an interrupted overwrite: it continues the part only when this session's
    /// SIZE offered the part's current size (curl `-C -`); otherwise it is refused, since the
    /// old content it would append to is about to be replaced. Without a part, APPE appends.
    #[test]
    fn appe_continues_an_unfinished_overwrite_only_when_size_offered_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let vfs = LocalHome::open(tmp.path()).expect("open");
        std::fs::write(tmp.path().join("f"), b"old content").expect("write");
        std::fs::write(tmp.path().join(".f.ferry-part"), b"new").expect("write");
        assert_eq!(vfs.unfinished_size(&vp("f")).expect("size"), Some(3));
        let refused = |offered| {
            let e = vfs
                .open_upload(&vp("f"), UploadMode::Appe { offered })
                .expect_err("refused");
            assert!(
                matches!(e, StorageError::UnfinishedUpload { received: 3 }),
                "{e:?}"
            );
        };
        refused(None);
        refused(Some(11));
        refused(Some(2));
        let plan = vfs
            .open_upload(&vp("f"), UploadMode::Appe { offered: Some(3) })
            .expect("continue the part");
        assert_eq!(
            (plan.written.as_str(), plan.start_size),
            ("/.f.ferry-part", 3)
        );
        let replaces = plan.replaces.as_ref().expect("replaces f");
        assert_eq!(replaces.old_size, Some(11));
        drop(plan);
        std::fs::remove_file(tmp.path().join(".f.ferry-part")).expect("rm");
        assert_eq!(vfs.unfinished_size(&vp("f")).expect("size"), None);
        let plan = vfs
            .open_upload(&vp("f"), UploadMode::Appe { offered: None })
            .expect("append");
        assert_eq!((plan.written.as_str(), plan.start_size), ("/f", 11));
    }

    /// MFMT's time setting: files, directories, the home, links inside the home (their
    /// target), never a link out of it, never a part file.
    #[test]
    fn set_modified_stays_in_the_jail() {
        use std::os::unix::fs::MetadataExt as _;
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(home.join("dir")).expect("mkdir");
        std::fs::write(home.join("f"), b"x").expect("write");
        std::fs::write(tmp.path().join("secret"), b"outside").expect("write");
        std::os::unix::fs::symlink("f", home.join("link-in")).expect("symlink");
        std::os::unix::fs::symlink("dir", home.join("link-dir")).expect("symlink");
        std::os::unix::fs::symlink("../secret", home.join("link-out")).expect("symlink");
        std::os::unix::fs::symlink("../secret", home.join("dir/deep-out")).expect("symlink");
        std::os::unix::fs::symlink("..", home.join("up")).expect("symlink");
        std::fs::write(home.join(format!(".f{PART_SUFFIX}")), b"p").expect("write");
        let vfs = LocalHome::open(&home).expect("open");
        let mtime = |p: &Path| {
            let m = std::fs::metadata(p).expect("stat");
            (m.mtime(), m.mtime_nsec())
        };
        let secret_before = mtime(&tmp.path().join("secret"));
        let t = FileTime {
            secs: 1_582_934_400,
            nanos: 250_000_000,
        };
        for ok in ["f", "dir", "/"] {
            vfs.set_modified(&vp(ok), t).expect(ok);
        }
        assert_eq!(mtime(&home.join("f")), (t.secs, 250_000_000));
        assert_eq!(mtime(&home.join("dir")), (t.secs, 250_000_000));
        assert_eq!(mtime(&home), (t.secs, 250_000_000));
        let t2 = FileTime {
            secs: 1_000_000_000,
            nanos: 0,
        };
        vfs.set_modified(&vp("link-in"), t2).expect("link inside");
        assert_eq!(mtime(&home.join("f")), (t2.secs, 0));
        vfs.set_modified(&vp("link-dir"), t2)
            .expect("link to a dir");
        assert_eq!(mtime(&home.join("dir")), (t2.secs, 0));
        for refused in ["link-out", "dir/deep-out", "up/secret", "missing"] {
            assert!(vfs.set_modified(&vp(refused), t2).is_err(), "{refused}");
        }
        let e = vfs
            .set_modified(&vp(&format!(".f{PART_SUFFIX}")), t2)
            .expect_err("part file");
        assert!(matches!(e, StorageError::ReservedName), "{e:?}");
        assert_eq!(mtime(&tmp.path().join("secret")), secret_before);
    }

    #[test]
    fn sessions_of_one_home_share_its_descriptor() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let homes = Homes::default();
        let a = homes.open(&tmp.path().join("u")).expect("first");
        let b = homes.open(&tmp.path().join("u")).expect("second");
        assert!(Arc::ptr_eq(&a.root, &b.root));
        // A home replaced on disk is opened anew.
        std::fs::rename(tmp.path().join("u"), tmp.path().join("old")).expect("rename");
        let c = homes.open(&tmp.path().join("u")).expect("recreated");
        assert!(!Arc::ptr_eq(&a.root, &c.root));
    }
}
