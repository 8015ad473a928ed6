//! `ferry`, an FTP/FTPS client: one-shot commands for scripts and an interactive shell.
//!
//! Built on the sans-IO `ferry-proto` crate (replies, commands, addresses, listings); this crate
//! adds the IO: the control connection with explicit FTPS (RFC 4217) and certificate pinning
//! ([`conn`], [`tls`]), transfers that resume and verify themselves ([`transfer`]), directory
//! mirroring ([`mirror`]), progress display ([`progress`]) and the shell ([`shell`]).
//!
//! Works against any standard server: optional extensions (HASH, XSHA256/XMD5/XCRC, MLSD,
//! EPSV, REST STREAM, AUTH TLS) are discovered with FEAT (RFC 2389) and replaced by the
//! standard fallback when absent.

pub mod cli;
pub mod conn;
pub mod creds;
pub mod error;
pub mod hash;
pub mod listing;
pub mod mirror;
pub mod progress;
pub mod shell;
pub mod target;
pub mod tls;
pub mod transfer;

pub use error::{Error, Result};

/// Exit codes: what a script can rely on.
///
/// | code | meaning |
/// |---|---|
/// | 0 | success |
/// | 1 | other error |
/// | 2 | usage: bad arguments or URL |
/// | 3 | network: cannot connect, connection lost, timeout (after retries) |
/// | 4 | login refused (530) or no password available without a terminal |
/// | 5 | TLS: handshake failed, or `--tls require` and the server has no AUTH TLS |
/// | 6 | certificate not trusted: unknown self-signed certificate, or a pinned one changed |
/// | 7 | the server refused the operation (5xx: no such file, permission denied, ...) |
/// | 8 | local file error (cannot read or write) |
/// | 9 | verification failed: the copy differs from the server's file |
/// | 10 | the server does not support what the command needs (e.g. SITE QUOTA, HASH) |
pub mod exit {
    pub const OK: u8 = 0;
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NETWORK: u8 = 3;
    pub const LOGIN: u8 = 4;
    pub const TLS: u8 = 5;
    pub const CERT: u8 = 6;
    pub const REMOTE: u8 = 7;
    pub const LOCAL: u8 = 8;
    pub const VERIFY: u8 = 9;
    pub const UNSUPPORTED: u8 = 10;

    /// The table shown at the end of `ferry --help`.
    pub const HELP: &str = "\
Exit codes:
  0  success
  1  other error
  2  usage: bad arguments or URL
  3  network: cannot connect, connection lost, timeout (after retries)
  4  login refused, or no password available without a terminal
  5  TLS: handshake failed, or --tls require and the server has no AUTH TLS
  6  certificate not trusted: unknown self-signed certificate, or a pinned one changed
  7  the server refused the operation (5xx: no such file, permission denied, ...)
  8  local file error (cannot read or write)
  9  verification failed: the copy differs from the server's file
  10 the server does not support what the command needs (e.g. SITE QUOTA, HASH)";
}
