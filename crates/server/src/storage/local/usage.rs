//! The usage scan of a local home: what the quota counts, recounted from the disk.

use std::io;
use std::path::Path;

use crate::storage::is_part_name;

/// Bytes (apparent size) and number of regular files under `home`, not following symlinks.
/// Part files count in bytes but not as files. Blocking.
pub fn scan(home: &Path) -> io::Result<(u64, u64)> {
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
