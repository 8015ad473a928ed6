//! Integration tests: the real `ferry` binary against real servers on loopback.
//!
//! - `ferryd`: our server (built from crates/server).
//! - `pyftpd`: pyftpdlib (PyPI `pyftpdlib`, `pyopenssl` for TLS), a third-party server, so
//!   client and server cannot agree on the same bug; tests/pyftpd.py adds HASH/XSHA256 and a
//!   mode that changes a file right after sending it.
//! - `shell`: the interactive shell typed into through tmux.

mod common;
mod ferryd;
mod harness;
mod pyftpd;
mod shell;
