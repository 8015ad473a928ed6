//! The home jail: every file operation of a logged-in user, by virtual path.
//!
//! The home directory is opened once at login as a `cap_std::fs::Dir`; every later operation is
//! relative to that descriptor, and cap-std resolves each path component inside it (openat2
//! `RESOLVE_BENEATH` where the kernel has it, a checked component walk where it does not). A `..`
//! that climbs out, an absolute symlink or a relative one that leads above the home therefore
//! fails in the kernel-side walk, whatever the string looked like — the lexical clean-up in
//! [`VirtualPath`] is for display, not for safety.
//!
//! All methods block; sessions call them through [`Vfs::run`], which moves the work onto tokio's
//! blocking pool so a slow disk or a huge directory never stalls other sessions.

use std::io;
use std::path::Path;
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, Metadata, MetadataExt, OpenOptions};
use ferry_proto::listing::{Entry, EntryKind};
use ferry_proto::VirtualPath;

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

/// A user's home, shareable between a session and its transfer tasks.
#[derive(Clone, Debug)]
pub struct Vfs {
    root: Arc<Dir>,
}

/// Most directory entries one listing returns, so a listing's memory is bounded.
pub const MAX_LIST_ENTRIES: usize = 1_000_000;

impl Vfs {
    /// Opens (creating if needed) the home directory as the jail root.
    pub fn open(home: &Path) -> io::Result<Vfs> {
        std::fs::create_dir_all(home)?;
        let root = Dir::open_ambient_dir(home, ambient_authority())?;
        Ok(Vfs {
            root: Arc::new(root),
        })
    }

    /// Runs blocking file-system work on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        F: FnOnce(&Vfs) -> io::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let vfs = self.clone();
        tokio::task::spawn_blocking(move || f(&vfs))
            .await
            .map_err(|e| io::Error::other(format!("file task failed: {e}")))?
    }

    /// Facts about a path, following symlinks that stay inside the home.
    pub fn stat(&self, path: &VirtualPath) -> io::Result<Entry> {
        let meta = self.root.metadata(path.to_relative())?;
        Ok(entry(path.file_name().unwrap_or("/").to_owned(), &meta))
    }

    /// The entries of a directory, sorted by name. A symlink whose target is outside the home
    /// (or missing) is listed as a link and cannot be opened.
    pub fn list(&self, path: &VirtualPath) -> io::Result<Vec<Entry>> {
        let rel = path.to_relative();
        let mut out = Vec::new();
        for item in self.root.read_dir(rel)? {
            let item = item?;
            let name = item.file_name().to_string_lossy().into_owned();
            let meta = item.metadata()?;
            let e = if meta.is_symlink() {
                match self.root.metadata(Path::new(rel).join(&name)) {
                    Ok(target) => entry(name, &target),
                    Err(_) => entry(name, &meta),
                }
            } else {
                entry(name, &meta)
            };
            out.push(e);
            if out.len() >= MAX_LIST_ENTRIES {
                break;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Opens a regular file for reading.
    pub fn open_read(&self, path: &VirtualPath) -> io::Result<std::fs::File> {
        let file = self.root.open(path.to_relative())?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::from(io::ErrorKind::IsADirectory));
        }
        if !meta.is_file() {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        Ok(file.into_std())
    }

    /// Opens a file for an upload.
    pub fn open_write(&self, path: &VirtualPath, mode: WriteMode) -> io::Result<std::fs::File> {
        if path.is_root() {
            return Err(io::Error::from(io::ErrorKind::IsADirectory));
        }
        let mut opts = OpenOptions::new();
        opts.write(true);
        match mode {
            WriteMode::Truncate => opts.create(true).truncate(true),
            WriteMode::Append => opts.create(true).append(true),
            WriteMode::Resume(_) => opts.create(true),
            WriteMode::CreateNew => opts.create_new(true),
        };
        let file = self.root.open_with(path.to_relative(), &opts)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::from(io::ErrorKind::IsADirectory));
        }
        let file = file.into_std();
        if let WriteMode::Resume(offset) = mode {
            use std::io::Seek;
            if offset > meta.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "restart offset past end of file",
                ));
            }
            file.set_len(offset)?;
            let mut f = &file;
            f.seek(io::SeekFrom::Start(offset))?;
        }
        Ok(file)
    }

    /// STOU: a new file named after `base` ("name", "name.1", "name.2", ...).
    pub fn create_unique(&self, base: &VirtualPath) -> io::Result<(VirtualPath, std::fs::File)> {
        for n in 0..1000u32 {
            let candidate = if n == 0 {
                base.clone()
            } else {
                let name = format!("{}.{n}", base.file_name().unwrap_or("file"));
                base.parent()
                    .unwrap_or_else(VirtualPath::root)
                    .join(&name)
                    .map_err(invalid)?
            };
            match self.open_write(&candidate, WriteMode::CreateNew) {
                Ok(f) => return Ok((candidate, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::from(io::ErrorKind::AlreadyExists))
    }

    pub fn mkdir(&self, path: &VirtualPath) -> io::Result<()> {
        self.root.create_dir(path.to_relative())
    }

    pub fn rmdir(&self, path: &VirtualPath) -> io::Result<()> {
        if path.is_root() {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        self.root.remove_dir(path.to_relative())
    }

    /// Deletes a file (or a symlink itself, never its target); directories need RMD.
    pub fn remove_file(&self, path: &VirtualPath) -> io::Result<()> {
        let meta = self.root.symlink_metadata(path.to_relative())?;
        if meta.is_dir() {
            return Err(io::Error::from(io::ErrorKind::IsADirectory));
        }
        self.root.remove_file(path.to_relative())
    }

    /// Checks that a path exists (for RNFR) without following a final symlink.
    pub fn exists(&self, path: &VirtualPath) -> io::Result<()> {
        self.root.symlink_metadata(path.to_relative()).map(|_| ())
    }

    pub fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> io::Result<()> {
        if from.is_root() || to.is_root() {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        self.root
            .rename(from.to_relative(), &self.root, to.to_relative())
    }
}

fn invalid(e: ferry_proto::PathError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidFilename, e)
}

fn entry(name: String, meta: &Metadata) -> Entry {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::Other
    };
    Entry {
        name,
        kind,
        size: meta.len(),
        mtime: meta.mtime(),
        mode: meta.mode() & 0o7777,
        nlink: meta.nlink(),
        unique: (meta.dev(), meta.ino()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::root().resolve(s).expect("valid path")
    }

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
        let vfs = Vfs::open(&home).expect("open");
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
            .read_to_string(&mut s)
            .expect("read");
        assert_eq!(s, "ok");
    }

    #[test]
    fn resume_keeps_prefix_and_rejects_offsets_past_the_end() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let vfs = Vfs::open(tmp.path()).expect("open");
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
        let vfs = Vfs::open(tmp.path()).expect("open");
        let (a, _) = vfs.create_unique(&vp("up")).expect("first");
        let (b, _) = vfs.create_unique(&vp("up")).expect("second");
        assert_eq!(a.as_str(), "/up");
        assert_eq!(b.as_str(), "/up.1");
    }
}
