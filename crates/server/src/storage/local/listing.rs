//! Reading directories through the jail, for listings: a directory opened for reading, and
//! one entry's facts by its raw name. Part of [`LocalHome`](super::LocalHome); everything here reads,
//! nothing writes. What a listing shows, in which order and in how big steps is the session's
//! business (`session/listing.rs`, its `Walk`); these are the calls it makes, all blocking.

use std::io;
use std::path::Path;

use cap_std::fs::{Metadata, MetadataExt};
use ferry_proto::listing::{Entry, EntryKind};
use ferry_proto::VirtualPath;
use rustix::fs::{AtFlags, FileType};

use super::LocalHome;

/// Most entries one listing shows; it ends there.
pub const MAX_LIST_ENTRIES: usize = 1_000_000;

impl LocalHome {
    /// The directory `path`, opened for reading its names (one descriptor; its read position
    /// is the listing's). Fails as opening fails: missing, not a directory, no permission.
    pub fn open_listing(&self, path: &VirtualPath) -> io::Result<rustix::fs::Dir> {
        Ok(rustix::fs::Dir::new(self.open_dir_for_reading(path)?)?)
    }

    /// Whether `path` is a directory this user could list (CWD): opened for reading and
    /// closed, nothing read.
    pub fn check_listable(&self, path: &VirtualPath) -> io::Result<()> {
        self.open_dir_for_reading(path).map(drop)
    }

    /// `open(O_RDONLY | O_DIRECTORY)` in the jail, following symlinks inside it. (cap-std's
    /// `open_dir` opens with `O_PATH`, which can neither be read nor tells whether it could.)
    fn open_dir_for_reading(&self, path: &VirtualPath) -> io::Result<std::fs::File> {
        use cap_std::fs::OpenOptionsExt as _;
        let mut opts = cap_std::fs::OpenOptions::new();
        opts.read(true).custom_flags(libc::O_DIRECTORY);
        Ok(self.root.open_with(path.to_relative(), &opts)?.into_std())
    }

    /// The facts of `name`, an entry of `dir` (opened by [`LocalHome::open_listing`] for
    /// `dir_path`): its own, or its target's for a symlink that resolves inside the home (one
    /// that leads outside, or nowhere, is listed as a link). The name is stat'ed as the
    /// directory gave it, relative to the directory's descriptor and without following a
    /// link, so it cannot lead anywhere else. (Only names that are UTF-8 are listed, so the
    /// name as text is the name on disk.)
    pub fn listing_entry(
        &self,
        dir: &rustix::fs::Dir,
        dir_path: &VirtualPath,
        name: &str,
    ) -> io::Result<Entry> {
        let stat = rustix::fs::statat(dir.fd()?, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
            let target = Path::new(dir_path.to_relative()).join(name);
            if let Ok(meta) = self.root.metadata(target) {
                return Ok(entry(name.to_owned(), &meta));
            }
        }
        Ok(entry_of_stat(name.to_owned(), &stat))
    }

    /// Every entry of a directory but "." and "..", names that are not UTF-8 and upload part
    /// files, sorted (tests of the jail; listings go through the session's walk).
    #[cfg(test)]
    pub fn list(&self, path: &VirtualPath) -> io::Result<Vec<Entry>> {
        let mut dir = self.open_listing(path)?;
        let mut names = Vec::new();
        while let Some(item) = dir.read() {
            if let Ok(name) = item?.file_name().to_str() {
                if name != "." && name != ".." && !crate::storage::is_part_name(name) {
                    names.push(name.to_owned());
                }
            }
        }
        let mut out = names
            .iter()
            .map(|name| self.listing_entry(&dir, path, name))
            .collect::<io::Result<Vec<Entry>>>()?;
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

pub(super) fn entry(name: String, meta: &Metadata) -> Entry {
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

/// [`entry`] from a raw `stat`: the same fields cap-std's `Metadata` reports.
// The field types differ between architectures; `from` is a no-op on some of them.
#[allow(clippy::useless_conversion)]
fn entry_of_stat(name: String, st: &rustix::fs::Stat) -> Entry {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => EntryKind::Dir,
        FileType::RegularFile => EntryKind::File,
        FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Other,
    };
    Entry {
        name,
        kind,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime: i64::from(st.st_mtime),
        mode: u32::from(st.st_mode) & 0o7777,
        nlink: u64::from(st.st_nlink),
        unique: (u64::from(st.st_dev), u64::from(st.st_ino)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::PART_SUFFIX;

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::root().resolve(s).expect("valid path")
    }

    /// Each entry's own facts, as `stat` (through cap-std) gives them: symlinks inside the
    /// home show their target, others themselves; part files hidden.
    #[test]
    fn entries_have_their_own_facts() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        let dir = home.join("d");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        for i in 0..50 {
            std::fs::write(dir.join(format!("f{i:05}")), vec![b'x'; i % 13]).expect("write");
        }
        std::fs::write(dir.join(format!(".f00001{PART_SUFFIX}")), b"partial").expect("write");
        std::os::unix::fs::symlink("f00012", dir.join("link-in")).expect("symlink");
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link-out")).expect("symlink");
        let vfs = LocalHome::open(&home).expect("open");
        let list = vfs.list(&vp("d")).expect("list");
        assert_eq!(list.len(), 50 + 3, "files, sub, two links; no part file");
        for (i, e) in list.iter().filter(|e| e.name.starts_with('f')).enumerate() {
            assert_eq!(e.name, format!("f{i:05}"));
            assert_eq!((e.kind, e.size), (EntryKind::File, (i % 13) as u64));
            let by_path = vfs.stat(&vp(&format!("d/{}", e.name))).expect("stat");
            assert_eq!(
                (e.mtime, e.mode, e.nlink, e.unique),
                (by_path.mtime, by_path.mode, by_path.nlink, by_path.unique)
            );
        }
        let find = |name: &str| list.iter().find(|e| e.name == name).expect(name);
        assert_eq!(find("sub").kind, EntryKind::Dir);
        assert_eq!(
            (find("link-in").kind, find("link-in").size),
            (EntryKind::File, 12)
        );
        assert_eq!(find("link-out").kind, EntryKind::Symlink);
    }

    #[test]
    fn only_directories_are_listable() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("d")).expect("mkdir");
        std::fs::write(tmp.path().join("f"), b"x").expect("write");
        std::os::unix::fs::symlink("/etc", tmp.path().join("out")).expect("symlink");
        let vfs = LocalHome::open(tmp.path()).expect("open");
        assert!(vfs.check_listable(&vp("d")).is_ok());
        assert!(vfs.check_listable(&VirtualPath::root()).is_ok());
        for refused in ["f", "out", "nope"] {
            assert!(vfs.check_listable(&vp(refused)).is_err(), "{refused}");
            assert!(vfs.open_listing(&vp(refused)).is_err(), "{refused}");
        }
    }
}
