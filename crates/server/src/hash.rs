//! Streaming file digests for HASH and the legacy X-commands (`session/integrity.rs` speaks the
//! protocol; this module only turns bytes of an open file into a hex digest).
//!
//! - **Off the async threads.** [`digest_file`] runs the work with `spawn_blocking`; the
//!   session's job task only awaits it.
//! - **Bounded.** One buffer of at most [`CHUNK`] bytes per running digest, filled with positioned
//!   reads (`read_at`), so memory does not grow with the file. At most [`max_parallel`] digests
//!   run at once in the whole server ([`permits`]); more wait for a permit without holding a
//!   blocking thread, so a storm of HASH commands cannot take the blocking pool from logins and
//!   file operations.
//! - **Cancellable.** The worker checks the job's [`CancellationToken`] before every chunk and
//!   stops within one chunk of an ABOR, QUIT-less disconnect or shutdown. If the awaiting task is
//!   dropped without cancelling, a drop guard cancels for it. A stopped worker logs one line
//!   ("hash stopped") with the bytes it had hashed, the evidence that nothing runs on.
//! - **Fast.** sha2 and sha1 0.10 pick their SHA-NI code at run time (`cpufeatures`), SHA-512
//!   uses its AVX2 code, crc32fast uses PCLMULQDQ; the `asm` features only replace the portable
//!   fallback, so they change nothing on CPUs with those extensions. Chunks are large (1 MiB) so
//!   the per-call overhead disappears, and the kernel is told the access is sequential so cold
//!   files are read ahead.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use ferry_proto::command::HashAlgo;
use sha2::Digest as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::storage::Reader;

/// Bytes read and hashed per step; also the cancellation granularity.
pub const CHUNK: usize = 1 << 20;

/// How many digests may run at once server-wide: one per CPU.
pub fn max_parallel() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// The server-wide limiter of running digests.
pub fn permits() -> Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS
        .get_or_init(|| Arc::new(Semaphore::new(max_parallel())))
        .clone()
}

/// The FEAT line for HASH with `selected` marked `*` (draft-bryan-ftpext-hash §3.1: the mark
/// shows the session's current algorithm), e.g. `" HASH SHA-256*;SHA-512;SHA-1;MD5;CRC32"`.
pub fn feat_line(selected: HashAlgo) -> String {
    let names: Vec<String> = HashAlgo::ALL
        .iter()
        .map(|a| {
            let star = if *a == selected { "*" } else { "" };
            format!("{}{star}", a.name())
        })
        .collect();
    format!(" HASH {}", names.join(";"))
}

/// A running digest of one of the [`HashAlgo`]s.
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Crc32(crc32fast::Hasher),
}

impl Hasher {
    pub fn new(algo: HashAlgo) -> Hasher {
        match algo {
            HashAlgo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlgo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            HashAlgo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlgo::Md5 => Hasher::Md5(md5::Md5::new()),
            HashAlgo::Crc32 => Hasher::Crc32(crc32fast::Hasher::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
            Hasher::Crc32(h) => h.update(data),
        }
    }

    /// The digest in lowercase hex; CRC32 as 8 digits, big-endian (as `zlib.crc32` prints it).
    pub fn finish_hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sha512(h) => hex(&h.finalize()),
            Hasher::Sha1(h) => hex(&h.finalize()),
            Hasher::Md5(h) => hex(&h.finalize()),
            Hasher::Crc32(h) => format!("{:08x}", h.finalize()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// How a digest job ended (errors aside).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The lowercase hex digest.
    Done(String),
    /// Cancelled after this many bytes were hashed.
    Cancelled(u64),
}

/// Hashes `len` bytes of `file` from offset `start` on the calling thread (blocking). Adds the
/// bytes hashed to `progress` after every chunk and checks `cancel` before each one. A file that
/// ends before `start + len` (it shrank since it was measured) is an `UnexpectedEof` error.
pub fn hash_range(
    file: &Reader,
    algo: HashAlgo,
    start: u64,
    len: u64,
    progress: &AtomicU64,
    cancel: &CancellationToken,
) -> io::Result<Outcome> {
    file.advise_sequential(start, len);
    let mut hasher = Hasher::new(algo);
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(CHUNK).min(CHUNK)];
    let mut done = 0u64;
    while done < len {
        if cancel.is_cancelled() {
            return Ok(Outcome::Cancelled(done));
        }
        let want = usize::try_from(len - done).unwrap_or(CHUNK).min(buf.len());
        let n = match file.read_at(&mut buf[..want], start + done) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while it was hashed",
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        done += n as u64;
        progress.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(Outcome::Done(hasher.finish_hex()))
}

/// Hashes `len` bytes of `file` from `start` on the blocking pool, after taking one of the
/// server-wide [`permits`] (waiting for one holds no thread). The permit is held by the worker
/// until it really stops, so the limit counts running workers even after an abort. `label`
/// names the job in the line a cancelled worker logs.
pub async fn digest_file(
    file: Reader,
    algo: HashAlgo,
    start: u64,
    len: u64,
    progress: Arc<AtomicU64>,
    cancel: CancellationToken,
    label: String,
) -> io::Result<Outcome> {
    // Dropping this future (the job task aborted) without cancelling still stops the worker.
    let guard = cancel.clone().drop_guard();
    if algo == HashAlgo::Sha256 && start == 0 {
        if let Some((digest, size)) = file.stored_sha256() {
            if size == len {
                guard.disarm();
                progress.fetch_add(len, Ordering::Relaxed);
                return Ok(Outcome::Done(digest.to_ascii_lowercase()));
            }
        }
    }
    let permit = tokio::select! {
        permit = permits().acquire_owned() => {
            permit.map_err(|_| io::Error::other("hash limiter closed"))?
        }
        _ = cancel.cancelled() => return Ok(Outcome::Cancelled(0)),
    };
    if !file.is_local() {
        let outcome = hash_stream(file, algo, start, len, &progress, &cancel, &label).await;
        drop(permit);
        guard.disarm();
        return outcome;
    }
    let span = tracing::Span::current();
    let worker = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let _entered = span.enter();
        let outcome = hash_range(&file, algo, start, len, &progress, &cancel);
        if let Ok(Outcome::Cancelled(bytes)) = &outcome {
            tracing::info!(job = %ferry_proto::reply::Escaped(&label), bytes, of = len, result = "cancelled", "hash stopped");
        }
        outcome
    });
    let outcome = worker
        .await
        .map_err(|e| io::Error::other(format!("hash task failed: {e}")))?;
    guard.disarm();
    outcome
}

/// [`hash_range`] of a reader that is read as a stream (an object): chunks arrive on the
/// session's task and each is hashed on the blocking pool, so no async thread computes.
async fn hash_stream(
    file: Reader,
    algo: HashAlgo,
    start: u64,
    len: u64,
    progress: &AtomicU64,
    cancel: &CancellationToken,
    label: &str,
) -> io::Result<Outcome> {
    // Logs "hash stopped" however the digest ends early (cancelled, or its task dropped when
    // the client went away), as the blocking worker of a local file does.
    struct Stopped<'a> {
        done: u64,
        len: u64,
        label: &'a str,
        finished: bool,
    }
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            if !self.finished {
                tracing::info!(job = %ferry_proto::reply::Escaped(self.label), bytes = self.done, of = self.len, result = "cancelled", "hash stopped");
            }
        }
    }
    let mut stopped = Stopped {
        done: 0,
        len,
        label,
        finished: false,
    };
    let mut stream = file.into_stream(start).await?;
    let mut hasher = Hasher::new(algo);
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(CHUNK).min(CHUNK)];
    let mut done = 0u64;
    while done < len {
        if cancel.is_cancelled() {
            return Ok(Outcome::Cancelled(done));
        }
        // Fill the buffer (a stream hands out smaller pieces), then hash it in one go.
        let want = usize::try_from(len - done).unwrap_or(CHUNK).min(buf.len());
        let mut filled = 0;
        while filled < want {
            let n = tokio::select! {
                n = stream.read(&mut buf[filled..want]) => n?,
                _ = cancel.cancelled() => return Ok(Outcome::Cancelled(done)),
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while it was hashed",
                ));
            }
            filled += n;
        }
        let (h, b) = tokio::task::spawn_blocking(move || {
            let mut hasher = hasher;
            hasher.update(&buf[..filled]);
            (hasher, buf)
        })
        .await
        .map_err(|e| io::Error::other(format!("hash task failed: {e}")))?;
        (hasher, buf) = (h, b);
        done += filled as u64;
        stopped.done = done;
        progress.fetch_add(filled as u64, Ordering::Relaxed);
    }
    stopped.finished = true;
    Ok(Outcome::Done(hasher.finish_hex()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn digest(algo: HashAlgo, data: &[u8]) -> String {
        let mut h = Hasher::new(algo);
        h.update(data);
        h.finish_hex()
    }

    #[test]
    fn known_vectors() {
        assert_eq!(
            digest(HashAlgo::Sha256, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            digest(HashAlgo::Sha1, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            digest(HashAlgo::Md5, b"abc"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(digest(HashAlgo::Crc32, b"abc"), "352441c2");
        assert_eq!(digest(HashAlgo::Crc32, b""), "00000000");
        assert!(digest(HashAlgo::Sha512, b"abc").starts_with("ddaf35a193617aba"));
        assert_eq!(digest(HashAlgo::Sha512, b"abc").len(), 128);
    }

    #[test]
    fn feat_marks_the_selection() {
        assert_eq!(
            feat_line(HashAlgo::Sha256),
            " HASH SHA-256*;SHA-512;SHA-1;MD5;CRC32"
        );
        assert_eq!(
            feat_line(HashAlgo::Md5),
            " HASH SHA-256;SHA-512;SHA-1;MD5*;CRC32"
        );
    }

    fn temp_file(data: &[u8]) -> Reader {
        let mut f = tempfile::tempfile().expect("temp file");
        f.write_all(data).expect("write");
        Reader::Local(f)
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn ranges_across_chunk_boundaries() {
        let data = pattern(CHUNK * 2 + 3);
        let f = temp_file(&data);
        let none = CancellationToken::new();
        for (start, len) in [(0, data.len()), (5, CHUNK), (CHUNK - 1, CHUNK + 2), (7, 0)] {
            let progress = AtomicU64::new(0);
            let got = hash_range(
                &f,
                HashAlgo::Sha256,
                start as u64,
                len as u64,
                &progress,
                &none,
            )
            .expect("hash");
            let want = digest(HashAlgo::Sha256, &data[start..start + len]);
            assert_eq!(got, Outcome::Done(want), "range {start}+{len}");
            assert_eq!(progress.load(Ordering::Relaxed), len as u64);
        }
    }

    #[test]
    fn cancelled_before_start_reads_nothing() {
        let f = temp_file(&pattern(1000));
        let cancel = CancellationToken::new();
        cancel.cancel();
        let progress = AtomicU64::new(0);
        let got = hash_range(&f, HashAlgo::Md5, 0, 1000, &progress, &cancel).expect("hash");
        assert_eq!(got, Outcome::Cancelled(0));
        assert_eq!(progress.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn shrunken_file_is_an_error() {
        let f = temp_file(&pattern(10));
        let progress = AtomicU64::new(0);
        let err = hash_range(
            &f,
            HashAlgo::Crc32,
            0,
            20,
            &progress,
            &CancellationToken::new(),
        )
        .expect_err("past EOF");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn digest_file_on_the_blocking_pool() {
        let data = pattern(4096);
        let f = temp_file(&data);
        let progress = Arc::new(AtomicU64::new(0));
        let got = digest_file(
            f,
            HashAlgo::Sha1,
            0,
            4096,
            progress.clone(),
            CancellationToken::new(),
            "test".into(),
        )
        .await
        .expect("hash");
        assert_eq!(got, Outcome::Done(digest(HashAlgo::Sha1, &data)));
        assert_eq!(progress.load(Ordering::Relaxed), 4096);
        // Every permit is back once the worker is done.
        assert_eq!(permits().available_permits(), max_parallel());
    }
}
