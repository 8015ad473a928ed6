//! `mirror`: copy a directory tree down (`mirror URL DIR`) or up (`mirror --reverse DIR URL`).
//!
//! The whole source tree is listed first (so the overall bar knows the files and bytes), then
//! files that are missing or differ on the other side are transferred with the same resume,
//! retry and verification as `get`/`put`. A file counts as up to date when its size matches
//! and, where the listing gives a time (MLSD `modify`), the copy is not older; downloaded
//! files get the server's modification time. Nothing is deleted on the destination.
//!
//! Names from a server are not trusted: an entry containing `/`, `\`, NUL, or equal to `.` or
//! `..` is skipped with a warning, so a hostile listing cannot write outside `DIR`.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::listing::Kind;
use crate::target::join;
use crate::transfer::Client;

/// What a mirror run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub transferred: u64,
    pub skipped: u64,
    pub failed: u64,
    pub bytes: u64,
}

struct Planned {
    remote: String,
    local: PathBuf,
    size: u64,
    mtime: Option<i64>,
}

fn safe_name(name: &str) -> bool {
    !(name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']))
}

fn local_mtime(p: &Path) -> Option<i64> {
    let m = std::fs::metadata(p).ok()?.modified().ok()?;
    Some(m.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64)
}

fn set_local_mtime(p: &Path, unix: i64) {
    let Ok(secs) = u64::try_from(unix) else {
        return;
    };
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    if let Ok(f) = std::fs::File::options().write(true).open(p) {
        let _ = f.set_modified(t);
    }
}

/// Server tree `remote_dir` into local `local_dir`.
pub async fn mirror_down(
    client: &mut Client,
    remote_dir: &str,
    local_dir: &Path,
) -> Result<Summary> {
    std::fs::create_dir_all(local_dir).map_err(|e| Error::local(local_dir, e))?;
    let mut plan = Vec::new();
    let mut summary = Summary::default();
    let mut queue = vec![(
        remote_dir.trim_end_matches('/').to_owned(),
        local_dir.to_owned(),
    )];
    while let Some((rdir, ldir)) = queue.pop() {
        let entries = {
            let r = client.conn().await?.list_dir(&rdir).await;
            client.check(r)?
        };
        for e in entries {
            if !safe_name(&e.name) {
                client
                    .progress
                    .note(&format!("skipping unsafe name {:?} in {rdir}", e.name));
                continue;
            }
            let remote = join(&rdir, &e.name);
            let local = ldir.join(&e.name);
            match e.kind {
                Kind::Dir => {
                    std::fs::create_dir_all(&local).map_err(|err| Error::local(&local, err))?;
                    queue.push((remote, local));
                }
                Kind::File => {
                    let size = e.size.unwrap_or(0);
                    let up_to_date = std::fs::metadata(&local).is_ok_and(|m| {
                        m.is_file()
                            && e.size == Some(m.len())
                            && e.mtime.is_none_or(|t| local_mtime(&local) == Some(t))
                    });
                    if up_to_date {
                        summary.skipped += 1;
                        continue;
                    }
                    plan.push(Planned {
                        remote,
                        local,
                        size,
                        mtime: e.mtime,
                    });
                }
                Kind::Link | Kind::Other => client.progress.note(&format!(
                    "skipping {remote}: not a regular file or directory"
                )),
            }
        }
    }
    run_plan(client, plan, summary, true).await
}

/// Local tree `local_dir` into server directory `remote_dir` (created if missing).
pub async fn mirror_up(client: &mut Client, local_dir: &Path, remote_dir: &str) -> Result<Summary> {
    if !local_dir.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a directory",
            local_dir.display()
        )));
    }
    let root = remote_dir.trim_end_matches('/').to_owned();
    let mut plan = Vec::new();
    let mut summary = Summary::default();
    let mut queue = vec![(local_dir.to_owned(), root)];
    while let Some((ldir, rdir)) = queue.pop() {
        let listing = {
            let r = client.conn().await?.list_dir(&rdir).await;
            match r {
                Ok(l) => l,
                // Missing: servers answer 550 (or 501, pyftpdlib); create it. If that
                // fails too, the listing error is the one to report.
                Err(e @ Error::Server { .. }) if !rdir.is_empty() => {
                    if (500..600).contains(&server_code(&e)) {
                        let r = client.conn().await?.mkd(&rdir).await;
                        client.check(r).map_err(|_| e)?;
                        Vec::new()
                    } else {
                        return Err(e);
                    }
                }
                Err(e) => return client.check(Err(e)),
            }
        };
        let mut read = std::fs::read_dir(&ldir)
            .map_err(|e| Error::local(&ldir, e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::local(&ldir, e))?;
        read.sort_by_key(|e| e.file_name());
        for entry in read {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                client
                    .progress
                    .note(&format!("skipping {}: name is not UTF-8", path.display()));
                continue;
            };
            let meta = std::fs::metadata(&path).map_err(|e| Error::local(&path, e))?;
            let remote = join(&rdir, &name);
            let there = listing.iter().find(|e| e.name == name);
            if meta.is_dir() {
                if there.is_none() {
                    let r = client.conn().await?.mkd(&remote).await;
                    client.check(r)?;
                }
                queue.push((path, remote));
            } else if meta.is_file() {
                let up_to_date = there.is_some_and(|e| {
                    e.kind == Kind::File
                        && e.size == Some(meta.len())
                        && e.mtime
                            .is_none_or(|t| local_mtime(&path).is_none_or(|l| t >= l))
                });
                if up_to_date {
                    summary.skipped += 1;
                    continue;
                }
                plan.push(Planned {
                    remote,
                    local: path,
                    size: meta.len(),
                    mtime: None,
                });
            }
        }
    }
    run_plan(client, plan, summary, false).await
}

fn server_code(e: &Error) -> u16 {
    match e {
        Error::Server { reply, .. } => reply.code,
        _ => 0,
    }
}

async fn run_plan(
    client: &mut Client,
    plan: Vec<Planned>,
    mut summary: Summary,
    down: bool,
) -> Result<Summary> {
    let total: u64 = plan.iter().map(|p| p.size).sum();
    client.progress.start_overall(plan.len() as u64, total);
    let mut first_error = None;
    for p in plan {
        let r = if down {
            client.get(&p.remote, &p.local).await
        } else {
            client.put(&p.local, &p.remote).await
        };
        match r {
            Ok(report) => {
                summary.transferred += 1;
                summary.bytes += report.bytes;
                if let (true, Some(t)) = (down, p.mtime) {
                    set_local_mtime(&p.local, t);
                }
            }
            Err(e) => {
                summary.failed += 1;
                eprintln!("ferry: error: {e}");
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    client.progress.finish_overall();
    match first_error {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_refused() {
        for bad in ["", ".", "..", "a/b", "..\\x", "nul\0"] {
            assert!(!safe_name(bad), "{bad:?}");
        }
        for good in ["résumé.txt", "emoji 🚀", "..hidden", "a..b"] {
            assert!(safe_name(good), "{good:?}");
        }
    }
}
