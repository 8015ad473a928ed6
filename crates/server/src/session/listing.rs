//! LIST, NLST and MLSD (RFC 959 §4.1.3, RFC 3659 §7): the listing a transfer sends, and the
//! wildcards of NLST and LIST.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ferry_proto::listing::{self, EntryKind};
use ferry_proto::{glob, VirtualPath};
use tokio::io::AsyncWriteExt;

use super::transfer::classify;
use super::{Flow, Session};
use crate::data;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListKind {
    List,
    Nlst,
    Mlsd,
}

/// The path in a LIST/NLST/STAT argument, after options such as "-la" that clients send.
pub(super) fn list_path_arg(arg: &str) -> Option<&str> {
    if arg.starts_with('-') {
        match arg.split_once(' ') {
            Some((_, rest)) if !rest.trim().is_empty() => Some(rest.trim_start()),
            _ => None,
        }
    } else {
        Some(arg)
    }
}

impl Session {
    /// [`Session::listing_of`] for a path the client typed as it resolved.
    pub(super) async fn listing_text(
        &mut self,
        path: &VirtualPath,
        kind: ListKind,
    ) -> Result<String> {
        let typed = path.as_str().to_owned();
        self.listing_of(path, &typed, kind).await
    }

    /// Formats a listing on the blocking pool (directory scans can be large). `typed` is the
    /// path as the client wrote it: NLST of a wildcard names its matches with the same
    /// directory prefix, so each line is a path the client can RETR.
    pub(super) async fn listing_of(
        &mut self,
        path: &VirtualPath,
        typed: &str,
        kind: ListKind,
    ) -> Result<String> {
        let (vfs, _) = self.resolve(".")?;
        let path = path.clone();
        let typed_dir = typed.rsplit_once('/').map(|(dir, _)| format!("{dir}/"));
        let facts = self.mlst_facts;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let result = vfs
            .run(move |v| {
                let top = match v.stat(&path) {
                    Ok(top) => top,
                    // A name that exists is itself, wildcards or not; one that does not may
                    // be a pattern for its directory's names (NLST/LIST only: RFC 3659 has
                    // MLSD name one directory).
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound && kind != ListKind::Mlsd =>
                    {
                        let (Some(dir), Some(pattern)) = (path.parent(), path.file_name()) else {
                            return Err(e);
                        };
                        if !glob::has_wildcards(pattern) {
                            return Err(e);
                        }
                        let mut out = String::new();
                        for name in v.glob(&dir, pattern)? {
                            if kind == ListKind::Nlst {
                                out.push_str(typed_dir.as_deref().unwrap_or(""));
                                out.push_str(&name);
                                out.push_str("\r\n");
                            } else if let Some(entry) =
                                dir.join(&name).ok().and_then(|p| v.stat(&p).ok())
                            {
                                // An entry gone since the scan is left out, as ls does.
                                listing::list_line(&entry, now, &mut out);
                            }
                        }
                        return Ok(Ok(out));
                    }
                    Err(e) => return Err(e),
                };
                let mut out = String::new();
                if kind == ListKind::Nlst {
                    // Names only: a directory's are read without a stat each.
                    let names = if top.kind == EntryKind::Dir {
                        v.list_names(&path)?
                    } else {
                        vec![top.name]
                    };
                    for name in names {
                        out.push_str(&name);
                        out.push_str("\r\n");
                    }
                    return Ok(Ok(out));
                }
                let entries = if top.kind == EntryKind::Dir {
                    v.list(&path)?
                } else if kind == ListKind::Mlsd {
                    return Ok(Err(Error::BadArgument(
                        "MLSD needs a directory; use MLST".into(),
                    )));
                } else {
                    vec![top]
                };
                for e in &entries {
                    if kind == ListKind::Mlsd {
                        listing::mlsx_facts_selected(e, facts, &mut out);
                        out.push_str("\r\n");
                    } else {
                        listing::list_line(e, now, &mut out);
                    }
                }
                Ok(Ok(out))
            })
            .await?;
        result
    }

    pub(super) async fn list(&mut self, arg: Option<String>, kind: ListKind) -> Result<Flow> {
        let target = self.take_data_target()?;
        let path_arg = match kind {
            ListKind::Mlsd => arg.as_deref(),
            _ => arg.as_deref().and_then(list_path_arg),
        };
        let typed = path_arg.unwrap_or(".");
        let (_, path) = self.resolve(typed)?;
        let text = self.listing_of(&path, typed, kind).await?;
        let progress = Arc::new(AtomicU64::new(0));
        let sent = progress.clone();
        let task = async move {
            let stall = target.stall;
            let mut stream = target.connect().await?;
            let n = data::send_bytes(&mut stream, text.as_bytes(), &sent, stall)
                .await
                .map_err(classify)?;
            stream.shutdown().await.map_err(classify)?;
            Ok(n)
        };
        let verb = match kind {
            ListKind::List => "LIST",
            ListKind::Nlst => "NLST",
            ListKind::Mlsd => "MLSD",
        };
        self.start_transfer(
            "Here comes the directory listing".into(),
            format!("{verb} {path}"),
            progress,
            task,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_options_are_not_paths() {
        assert_eq!(list_path_arg("-la"), None);
        assert_eq!(list_path_arg("-la sub dir"), Some("sub dir"));
        assert_eq!(list_path_arg("sub"), Some("sub"));
        assert_eq!(list_path_arg("-a "), None);
    }
}
