//! Directory listings through the jail: names, entries with their facts, wildcard matches.
//! Part of [`Vfs`](super::Vfs); everything here reads, nothing writes.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use cap_std::fs::{Dir, Metadata, MetadataExt};
use ferry_proto::glob::Pattern;
use ferry_proto::listing::{Entry, EntryKind};
use ferry_proto::VirtualPath;

use super::Vfs;
use crate::quota::is_part_name;
#[cfg(test)]
use crate::quota::PART_SUFFIX;

/// Most directory entries one listing returns, so a listing's memory is bounded.
pub const MAX_LIST_ENTRIES: usize = 1_000_000;

/// Directories at least this big are stat'ed by two threads (below it a thread costs more than
/// it saves: a stat is about a microsecond).
pub const SPLIT_LISTING_AT: usize = 2048;

/// A permit for one listing helper thread. The server has one per CPU beyond the first, so
/// concurrent big listings cannot multiply threads; a listing that finds none works alone.
struct ListingHelper;

static LISTING_HELPERS_BUSY: AtomicUsize = AtomicUsize::new(0);

impl ListingHelper {
    fn take() -> Option<ListingHelper> {
        // available_parallelism reads the affinity mask and cgroup files: once is enough.
        static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let limit = *LIMIT.get_or_init(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1))
        });
        LISTING_HELPERS_BUSY
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |busy| {
                (busy < limit).then_some(busy + 1)
            })
            .ok()
            .map(|_| ListingHelper)
    }
}

impl Drop for ListingHelper {
    fn drop(&mut self) {
        LISTING_HELPERS_BUSY.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Vfs {
    /// The entries of a directory, sorted by name. A symlink whose target is outside the home
    /// (or missing) is listed as a link and cannot be opened.
    ///
    /// Names are read first, then stat'ed one by one relative to the directory's descriptor
    /// (a one-component lookup each). The stats are most of a big listing's time; in a
    /// directory of [`SPLIT_LISTING_AT`] entries or more, half of them go to a helper thread
    /// when one of the server's few listing helpers is free (see [`ListingHelper`]).
    pub fn list(&self, path: &VirtualPath) -> io::Result<Vec<Entry>> {
        let rel = path.to_relative();
        let dir = self.root.open_dir(rel)?;
        let mut names = read_names(&dir)?;
        let stat_all = |names: &mut [String]| -> io::Result<Vec<Entry>> {
            names
                .iter_mut()
                .map(|name| self.list_entry(&dir, rel, std::mem::take(name)))
                .collect()
        };
        let helper = (names.len() >= SPLIT_LISTING_AT)
            .then(ListingHelper::take)
            .flatten();
        let mut out = match helper {
            Some(_held) => {
                let half = names.len() / 2;
                let (first, second) = names.split_at_mut(half);
                std::thread::scope(|scope| {
                    let other = scope.spawn(|| stat_all(second));
                    let mut out = stat_all(first)?;
                    let rest = other
                        .join()
                        .map_err(|_| io::Error::other("listing helper failed"))??;
                    out.extend(rest);
                    Ok::<_, io::Error>(out)
                })?
            }
            None => stat_all(&mut names)?,
        };
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The names in a directory, sorted, without their facts (NLST): no stat per entry.
    pub fn list_names(&self, path: &VirtualPath) -> io::Result<Vec<String>> {
        let mut names = read_names(&self.root.open_dir(path.to_relative())?)?;
        names.sort_unstable();
        Ok(names)
    }

    /// The names in `dir` that match the wildcard `pattern` ([`ferry_proto::glob`]), sorted;
    /// upload part files are never among them. For `NLST *.txt` / `LIST a?c`: the pattern is
    /// one name, matched against `dir`'s entries (a `*` does not match a leading dot).
    pub fn glob(&self, dir: &VirtualPath, pattern: &str) -> io::Result<Vec<String>> {
        let pattern = Pattern::new(pattern);
        let mut names = read_names(&self.root.open_dir(dir.to_relative())?)?;
        names.retain(|name| pattern.matches(name));
        names.sort_unstable();
        Ok(names)
    }

    /// One listing entry: the name's own facts, or its target's for a symlink that resolves
    /// inside the home.
    fn list_entry(&self, dir: &Dir, rel: &str, name: String) -> io::Result<Entry> {
        let meta = dir.symlink_metadata(&name)?;
        if meta.is_symlink() {
            if let Ok(target) = self.root.metadata(Path::new(rel).join(&name)) {
                return Ok(entry(name, &target));
            }
        }
        Ok(entry(name, &meta))
    }
}

/// A directory's names, up to [`MAX_LIST_ENTRIES`], without upload part files (overwrites in
/// progress are the server's business until they complete).
fn read_names(dir: &Dir) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for item in dir.entries()? {
        let name = item?.file_name().to_string_lossy().into_owned();
        if is_part_name(&name) {
            continue;
        }
        names.push(name);
        if names.len() >= MAX_LIST_ENTRIES {
            break;
        }
    }
    Ok(names)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::root().resolve(s).expect("valid path")
    }

    #[test]
    fn big_listing_is_complete_and_sorted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        let dir = home.join("big");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        let n = SPLIT_LISTING_AT + 7;
        for i in 0..n {
            std::fs::write(dir.join(format!("f{i:05}")), vec![b'x'; i % 13]).expect("write");
        }
        std::fs::write(dir.join(format!(".f00001{PART_SUFFIX}")), b"partial").expect("write");
        std::os::unix::fs::symlink("f00012", dir.join("link-in")).expect("symlink");
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link-out")).expect("symlink");
        let vfs = Vfs::open(&home).expect("open");
        let list = vfs.list(&vp("big")).expect("list");
        assert_eq!(list.len(), n + 3, "files, sub, two links; no part file");
        assert!(list.windows(2).all(|w| w[0].name < w[1].name), "sorted");
        for (i, e) in list.iter().filter(|e| e.name.starts_with('f')).enumerate() {
            assert_eq!(e.name, format!("f{i:05}"));
            assert_eq!((e.kind, e.size), (EntryKind::File, (i % 13) as u64));
        }
        let find = |name: &str| list.iter().find(|e| e.name == name).expect(name);
        assert_eq!(find("sub").kind, EntryKind::Dir);
        assert_eq!(
            (find("link-in").kind, find("link-in").size),
            (EntryKind::File, 12)
        );
        assert_eq!(find("link-out").kind, EntryKind::Symlink);
        assert_eq!(LISTING_HELPERS_BUSY.load(Ordering::Acquire), 0);
        let names: Vec<String> = list.into_iter().map(|e| e.name).collect();
        assert_eq!(
            vfs.list_names(&vp("big")).expect("names"),
            names,
            "NLST's names"
        );
    }

    #[test]
    fn glob_matches_names_sorted_without_part_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let vfs = Vfs::open(tmp.path()).expect("open");
        std::fs::create_dir(tmp.path().join("d")).expect("mkdir");
        for name in [
            "b.txt",
            "a.txt",
            ".hidden.txt",
            "c.bin",
            "a\\b.txt",
            "d/inner.txt",
        ] {
            std::fs::write(tmp.path().join(name), b"x").expect("write");
        }
        std::fs::write(tmp.path().join(format!(".a.txt{PART_SUFFIX}")), b"p").expect("write");
        let glob = |dir: &str, pattern: &str| vfs.glob(&vp(dir), pattern).expect("glob");
        assert_eq!(glob("/", "*.txt"), ["a.txt", "a\\b.txt", "b.txt"]);
        assert_eq!(glob("/", ".*"), [".hidden.txt"]);
        assert_eq!(glob("/", "[ab].*"), ["a.txt", "b.txt"]);
        assert_eq!(glob("/", "?"), ["d"]);
        assert_eq!(glob("/d", "*"), ["inner.txt"]);
        assert!(glob("/", "*.zip").is_empty());
        assert!(vfs.glob(&vp("/nope"), "*").is_err());
    }
}
