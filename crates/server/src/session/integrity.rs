//! File hashes: HASH and OPTS HASH (draft-bryan-ftpext-hash-02), RANG for HASH
//! (draft-bryan-ftp-range-09), and the legacy XMD5, XSHA1, XSHA256, XSHA512, XCRC.
//!
//! Replies, and why:
//!
//! | command | success | notes |
//! |---|---|---|
//! | `OPTS HASH` | `200 SHA-256` | the session's algorithm (draft §3.2) |
//! | `OPTS HASH SHA-512` | `200 SHA-512` | unknown names: `501 Unknown algorithm, current selection not changed` (draft §3.2/§3.5; ProFTPD mod_digest does the same) |
//! | `RANG s e` | `350 Restarting at s. End byte range at e` | `e` inclusive; `RANG 1 0` resets; `s > e` is 501 and resets (range draft §3) |
//! | `HASH path` | `213 SHA-256 0-<size> <hex> <path>` | whole file: `0-<size>` like ProFTPD mod_digest (the form also works for empty files) |
//! | `RANG s e` + `HASH path` | `213 SHA-256 s-e <hex> <path>` | bytes `s..=e`, echoed as sent (draft §3.4 example `RANG 0 49` -> `0-49`); `e >= size` is 501 |
//! | `XSHA256 path [s e]` | `250 <hex>` | the code ProFTPD mod_digest, Serv-U/GlobalSCAPE XCRC and ftpserverlib use; one line (no `250-Computing` preamble) so naive parsers take the first token after the code; bytes `s..e`, end exclusive as in ProFTPD and ftpserverlib; `s > e` or `e > size` is 501 |
//!
//! Digests are lowercase hex (the draft's SHOULD; ProFTPD sends X-command digests in upper case,
//! so clients already compare case-insensitively); CRC32 is 8 hex digits, the value `cksfv` and
//! `zlib.crc32` print. The path in a 213 reply is echoed as the client sent it. A RANG is used by
//! the next HASH only (and then forgotten, even if that HASH fails); RETR/STOR ignore it (resume
//! uses REST), which is why FEAT does not claim `RANG STREAM`.
//!
//! Hashing runs as the session's child job (like a transfer): the loop keeps answering ABOR,
//! STAT (which shows the bytes hashed so far) and QUIT, and [`crate::hash`] does the work on the
//! blocking pool, stopping within one chunk when the job is cancelled.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ferry_proto::command::HashAlgo;
use ferry_proto::{Reply, VirtualPath};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Flow, Session};
use crate::error::{Error, Result};
use crate::hash::{self, Outcome};
use crate::storage::Reader;

/// The legacy verb for an algorithm (for logs and STAT).
fn legacy_verb(algo: HashAlgo) -> &'static str {
    match algo {
        HashAlgo::Md5 => "XMD5",
        HashAlgo::Sha1 => "XSHA1",
        HashAlgo::Sha256 => "XSHA256",
        HashAlgo::Sha512 => "XSHA512",
        HashAlgo::Crc32 => "XCRC",
    }
}

/// `(start, len)` of a RANG range (end inclusive) within a file of `size` bytes.
fn rang_span(start: u64, end: u64, size: u64) -> Result<(u64, u64)> {
    if end >= size {
        return Err(Error::BadArgument(format!(
            "Range {start}-{end} is beyond the end of the file ({size} bytes)"
        )));
    }
    // RANG refuses start > end, so end - start + 1 cannot underflow; end < size, so no overflow.
    Ok((start, end - start + 1))
}

/// `(start, len)` of a legacy `start end` range (end exclusive) within a file of `size` bytes.
fn legacy_span(start: u64, end: u64, size: u64) -> Result<(u64, u64)> {
    if start > end {
        return Err(Error::BadArgument(format!(
            "Range start {start} is after its end {end}"
        )));
    }
    if end > size {
        return Err(Error::BadArgument(format!(
            "Range end {end} is beyond the end of the file ({size} bytes)"
        )));
    }
    Ok((start, end - start))
}

impl Session {
    pub(super) async fn opts_hash(&mut self, algo: Option<String>) -> Result<Flow> {
        let client = self.client()?;
        if let Some(name) = algo {
            client.hash_algo = HashAlgo::from_name(&name).ok_or_else(|| {
                Error::BadArgument("Unknown algorithm, current selection not changed".into())
            })?;
        }
        let name = client.hash_algo.name();
        self.ok(200, name).await
    }

    pub(super) async fn rang(&mut self, start: u64, end: u64) -> Result<Flow> {
        let client = self.client()?;
        if (start, end) == (1, 0) {
            client.range = None;
            return self.ok(350, "Range reset; HASH covers whole files").await;
        }
        if start > end {
            client.range = None;
            return Err(Error::BadArgument(format!(
                "RANG start {start} is after its end {end}; range reset"
            )));
        }
        client.range = Some((start, end));
        self.ok(
            350,
            &format!("Restarting at {start}. End byte range at {end}. Send HASH"),
        )
        .await
    }

    pub(super) async fn hash(&mut self, arg: String) -> Result<Flow> {
        let client = self.client()?;
        // The range belongs to this command whatever happens to it (range draft §4.3).
        let range = client.range.take();
        let algo = client.hash_algo;
        let (file, size, path) = self.open_for_hash(&arg).await?;
        let (start, len, shown) = match range {
            None => (0, size, format!("0-{size}")),
            Some((s, e)) => {
                let (start, len) = rang_span(s, e, size)?;
                (start, len, format!("{s}-{e}"))
            }
        };
        let name = algo.name();
        let label = format!("HASH {name} {path} {shown}");
        self.start_hash(label, file, algo, start, len, move |hex| {
            Reply::new(213, format!("{name} {shown} {hex} {arg}"))
        })
        .await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn xhash(
        &mut self,
        algo: HashAlgo,
        arg: String,
        range: Option<(u64, u64)>,
    ) -> Result<Flow> {
        let (file, size, path) = self.open_for_hash(&arg).await?;
        let (start, len) = match range {
            None => (0, size),
            Some((s, e)) => legacy_span(s, e, size)?,
        };
        let label = format!("{} {path} {start}-{}", legacy_verb(algo), start + len);
        self.start_hash(label, file, algo, start, len, |hex| Reply::new(250, hex))
            .await?;
        Ok(Flow::Continue)
    }

    /// Opens a regular file through the jail (missing, directory, outside the home: 550).
    async fn open_for_hash(&mut self, arg: &str) -> Result<(Reader, u64, VirtualPath)> {
        let (files, path) = self.resolve(arg)?;
        let (reader, size) = files.open_read(&path).await?;
        Ok((reader, size, path))
    }

    /// Starts the digest as the session's child job; `reply` turns the hex digest into the
    /// final reply. ABOR or the session's end cancel the job's token, which stops the worker.
    async fn start_hash<R>(
        &mut self,
        label: String,
        reader: Reader,
        algo: HashAlgo,
        start: u64,
        len: u64,
        reply: R,
    ) -> std::io::Result<()>
    where
        R: FnOnce(String) -> Reply + Send + 'static,
    {
        let progress = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        let work = hash::digest_file(
            reader,
            algo,
            start,
            len,
            progress.clone(),
            cancel.clone(),
            label.clone(),
        );
        let task = async move {
            match work.await? {
                Outcome::Done(hex) => Ok(reply(hex)),
                Outcome::Cancelled(_) => Err(Error::TransferAborted("Hash cancelled".into())),
            }
        }
        // The session's span (id, peer, user) on the job's log lines too.
        .instrument(tracing::Span::current());
        let job = super::transfer::Job {
            label,
            progress,
            cancel,
            graceful: false,
        };
        self.start_job(None, job, task).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rang_ranges_are_inclusive() {
        assert_eq!(rang_span(0, 49, 100).ok(), Some((0, 50)));
        assert_eq!(rang_span(0, 0, 1).ok(), Some((0, 1)));
        assert_eq!(rang_span(99, 99, 100).ok(), Some((99, 1)));
        assert!(rang_span(0, 100, 100).is_err());
        assert!(rang_span(0, 0, 0).is_err());
    }

    #[test]
    fn legacy_ranges_are_exclusive() {
        assert_eq!(legacy_span(7, 11, 36).ok(), Some((7, 4)));
        assert_eq!(legacy_span(0, 36, 36).ok(), Some((0, 36)));
        assert_eq!(legacy_span(5, 5, 36).ok(), Some((5, 0)));
        assert!(legacy_span(0, 37, 36).is_err());
        assert!(legacy_span(9, 8, 36).is_err());
    }

    #[test]
    fn legacy_ranges_reply_501() {
        let e = legacy_span(9, 8, 36).expect_err("bad range");
        assert_eq!(e.reply().code, 501);
    }
}
