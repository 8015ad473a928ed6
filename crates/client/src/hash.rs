//! Comparing a local file with the server's: which check to use and how to run it.
//!
//! Strongest first, as the server offers them in FEAT:
//! 1. `HASH` (draft-bryan-ftpext-hash-02 §3) with SHA-256 (else SHA-512, MD5, CRC32), chosen
//!    with `OPTS HASH`; for a prefix (before resuming) together with `RANG start end`
//!    (draft-bryan-ftp-range, end inclusive);
//! 2. the legacy `XSHA256`, `XMD5`, `XCRC` commands (whole file only);
//! 3. `SIZE` (RFC 3659 §4), which only catches truncation;
//! 4. nothing: the transfer is reported as unverified.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

use ferry_proto::command::HashAlgo;
use ferry_proto::Command;

use crate::conn::Conn;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Sha256,
    Sha512,
    Md5,
    Crc32,
}

impl Algo {
    /// The name used by HASH and OPTS HASH.
    pub fn hash_name(self) -> &'static str {
        match self {
            Algo::Sha256 => "SHA-256",
            Algo::Sha512 => "SHA-512",
            Algo::Md5 => "MD5",
            Algo::Crc32 => "CRC32",
        }
    }

    /// Lower-case tag for output (`sha256:...`).
    pub fn tag(self) -> &'static str {
        match self {
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
            Algo::Md5 => "md5",
            Algo::Crc32 => "crc32",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algo::Sha256 => 64,
            Algo::Sha512 => 128,
            Algo::Md5 => 32,
            Algo::Crc32 => 8,
        }
    }

    fn from_hash_name(s: &str) -> Option<Algo> {
        match s.to_ascii_uppercase().as_str() {
            "SHA-256" => Some(Algo::Sha256),
            "SHA-512" => Some(Algo::Sha512),
            "MD5" => Some(Algo::Md5),
            "CRC32" => Some(Algo::Crc32),
            _ => None,
        }
    }
}

/// Hex digest of the first `len` bytes of `path` (the whole file when `None`).
pub fn hash_file(path: &Path, algo: Algo, len: Option<u64>) -> io::Result<String> {
    let file = File::open(path)?;
    let mut reader: Box<dyn Read> = match len {
        Some(n) => Box::new(file.take(n)),
        None => Box::new(file),
    };
    let mut buf = vec![0u8; 1 << 20];
    enum State {
        S256(Sha256),
        S512(Sha512),
        M5(Md5),
        Crc(crc32fast::Hasher),
    }
    let mut st = match algo {
        Algo::Sha256 => State::S256(Sha256::new()),
        Algo::Sha512 => State::S512(Sha512::new()),
        Algo::Md5 => State::M5(Md5::new()),
        Algo::Crc32 => State::Crc(crc32fast::Hasher::new()),
    };
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        match &mut st {
            State::S256(h) => h.update(chunk),
            State::S512(h) => h.update(chunk),
            State::M5(h) => h.update(chunk),
            State::Crc(h) => h.update(chunk),
        }
    }
    Ok(match st {
        State::S256(h) => hex(&h.finalize()),
        State::S512(h) => hex(&h.finalize()),
        State::M5(h) => hex(&h.finalize()),
        State::Crc(h) => format!("{:08x}", h.finalize()),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// [`hash_file`] on the blocking pool.
pub async fn hash_local(path: &Path, algo: Algo, len: Option<u64>) -> Result<String> {
    let p = path.to_owned();
    tokio::task::spawn_blocking(move || hash_file(&p, algo, len))
        .await
        .map_err(|e| Error::Protocol(format!("hashing task failed: {e}")))?
        .map_err(|e| Error::local(path, e))
}

/// A digest the server computed, and how we asked for it.
#[derive(Debug, Clone)]
pub struct RemoteDigest {
    pub algo: Algo,
    pub hex: String,
    /// `HASH`, `XSHA256`, `XMD5` or `XCRC`.
    pub command: &'static str,
}

impl RemoteDigest {
    pub fn describe(&self) -> String {
        if self.command == "HASH" {
            format!("{} (HASH)", self.algo.hash_name())
        } else {
            format!("{} ({})", self.algo.hash_name(), self.command)
        }
    }
}

/// The best algorithm the server's HASH offers, by our preference.
fn best_hash_algo(conn: &Conn) -> Option<Algo> {
    let offered = conn.features.hash_algorithms();
    [Algo::Sha256, Algo::Sha512, Algo::Md5, Algo::Crc32]
        .into_iter()
        .find(|a| offered.iter().any(|o| o == a.hash_name()))
}

fn unsupported(code: u16) -> bool {
    matches!(code, 500 | 501 | 502 | 504)
}

async fn select_hash_algo(conn: &mut Conn, algo: Algo) -> Result<bool> {
    let current = conn
        .hash_algo
        .clone()
        .or_else(|| conn.features.hash_selected());
    if current.as_deref() == Some(algo.hash_name()) {
        return Ok(true);
    }
    let r = conn
        .cmd(&Command::Opts(format!("HASH {}", algo.hash_name())))
        .await?;
    if r.is_success() {
        conn.hash_algo = Some(algo.hash_name().to_owned());
        Ok(true)
    } else {
        Ok(false)
    }
}

/// Finds the first token that is a hex digest of the right length.
fn find_hex(text: &str, algo: Algo) -> Option<String> {
    text.split_whitespace()
        .find(|t| t.len() == algo.hex_len() && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
}

/// Asks the server for a digest of `path`: the whole file, or its first `prefix` bytes (only
/// with HASH + RANG). `Ok(None)` when the server offers no way to do it.
pub async fn remote_digest(
    conn: &mut Conn,
    path: &str,
    prefix: Option<u64>,
) -> Result<Option<RemoteDigest>> {
    if let Some(algo) = best_hash_algo(conn) {
        // RANG is tried whenever HASH is offered: servers (ferryd among them) may support it
        // for HASH without advertising `RANG STREAM`, which would also promise ranged RETR.
        if select_hash_algo(conn, algo).await? {
            if let Some(len) = prefix {
                let r = conn.cmd(&Command::Rang(0, len.saturating_sub(1))).await?;
                if r.code != 350 {
                    return Ok(None);
                }
            }
            let r = conn.cmd(&Command::Hash(path.to_owned())).await?;
            if prefix.is_some() {
                // Reset the range so later commands see whole files (draft: "RANG 1 0").
                let _ = conn.cmd(&Command::Rang(1, 0)).await?;
            }
            if r.code == 213 {
                // `213 SHA-256 0-49 <hex> <path>`
                let algo_echo = r
                    .text()
                    .split_whitespace()
                    .next()
                    .and_then(Algo::from_hash_name);
                let algo = algo_echo.unwrap_or(algo);
                if let Some(hex) = find_hex(&r.text(), algo) {
                    return Ok(Some(RemoteDigest {
                        algo,
                        hex,
                        command: "HASH",
                    }));
                }
                return Err(Error::Protocol(format!(
                    "unparsable HASH reply: {}",
                    r.text()
                )));
            }
            if prefix.is_some() {
                // RANG was accepted, so ranges work, but not this one (e.g. the server's file is
                // shorter than our part): what we hold cannot be confirmed, so report a digest
                // nothing equals and the caller starts the file over.
                return Ok(Some(RemoteDigest {
                    algo,
                    hex: String::new(),
                    command: "HASH",
                }));
            }
            if !unsupported(r.code) {
                return Err(Error::server(format!("HASH {path}"), r));
            }
        }
    }
    if prefix.is_some() {
        return Ok(None);
    }
    for (wire, algo) in [
        (HashAlgo::Sha256, Algo::Sha256),
        (HashAlgo::Md5, Algo::Md5),
        (HashAlgo::Crc32, Algo::Crc32),
    ] {
        let x = Command::XHash {
            algo: wire,
            path: path.to_owned(),
            range: None,
        };
        let command = x.verb();
        if !conn.features.has(command) {
            continue;
        }
        let r = conn.cmd(&x).await?;
        if r.is_success() {
            if let Some(hex) = find_hex(&r.text(), algo) {
                return Ok(Some(RemoteDigest { algo, hex, command }));
            }
            return Err(Error::Protocol(format!(
                "unparsable {command} reply: {}",
                r.text()
            )));
        }
        if !unsupported(r.code) {
            return Err(Error::server(format!("{command} {path}"), r));
        }
    }
    Ok(None)
}

/// How a transfer was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// `SHA-256 (HASH)`, `SHA-256 (XSHA256)`, `MD5 (XMD5)`, `CRC32 (XCRC)`, `SIZE`, `none`.
    pub method: String,
    /// `sha256:<hex>` when a digest was compared.
    pub hash: Option<String>,
}

/// Compares the server's `remote` with the local file: strongest check offered wins; a
/// mismatch is [`Error::Verify`].
pub async fn verify(conn: &mut Conn, remote: &str, local: &Path) -> Result<Verification> {
    if let Some(d) = remote_digest(conn, remote, None).await? {
        let mine = hash_local(local, d.algo, None).await?;
        if !mine.eq_ignore_ascii_case(&d.hex) {
            return Err(Error::Verify(format!(
                "{remote}: {} differs: server {}, local {} ({})",
                d.describe(),
                d.hex,
                mine,
                local.display()
            )));
        }
        return Ok(Verification {
            method: d.describe(),
            hash: Some(format!("{}:{}", d.algo.tag(), mine)),
        });
    }
    let local_len = std::fs::metadata(local)
        .map_err(|e| Error::local(local, e))?
        .len();
    match conn.size(remote).await? {
        Some(n) if n == local_len => Ok(Verification {
            method: "SIZE".into(),
            hash: None,
        }),
        Some(n) => Err(Error::Verify(format!(
            "{remote}: SIZE differs: server {n} bytes, local {local_len} bytes ({})",
            local.display()
        ))),
        None => Ok(Verification {
            method: "none".into(),
            hash: None,
        }),
    }
}

/// Whether the first `len` bytes of `local` match the server's file. `None` when the server
/// cannot tell us (no HASH with RANG).
pub async fn prefix_matches(
    conn: &mut Conn,
    remote: &str,
    local: &Path,
    len: u64,
) -> Result<Option<bool>> {
    if len == 0 {
        return Ok(Some(true));
    }
    match remote_digest(conn, remote, Some(len)).await? {
        Some(d) => {
            let mine = hash_local(local, d.algo, Some(len)).await?;
            Ok(Some(mine.eq_ignore_ascii_case(&d.hex)))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").expect("write");
        assert_eq!(
            hash_file(&p, Algo::Sha256, None).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hash_file(&p, Algo::Md5, None).expect("hash"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(hash_file(&p, Algo::Crc32, None).expect("hash"), "352441c2");
        assert_eq!(
            hash_file(&p, Algo::Sha256, Some(0)).expect("hash"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn finds_hex_in_replies() {
        let h = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            find_hex(&format!("SHA-256 0-2 {h} a b.txt"), Algo::Sha256).as_deref(),
            Some(h)
        );
        assert_eq!(
            find_hex("352441C2", Algo::Crc32).as_deref(),
            Some("352441c2")
        );
        assert_eq!(find_hex("no digest here", Algo::Md5), None);
    }
}
