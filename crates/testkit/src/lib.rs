//! Helpers the server's and the client's integration tests share: test data, byte comparisons
//! that never dump megabytes into a panic, and URL encoding for the clients the tests drive.
//! Each crate's `tests/it/harness.rs` keeps what is its own (starting servers, running tools).

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Percent-encodes everything except RFC 3986 unreserved characters and `/`, for paths in
/// `ftp://` URLs (curl, lftp, ferry).
pub fn pct_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// xorshift64*: incompressible-looking test data, a different stream per generator (tests run
/// in parallel and must not share files' contents by accident). Not for anything secret.
pub struct Rng(u64);

static SEED_SEQ: AtomicU64 = AtomicU64::new(1);

impl Rng {
    pub fn new() -> Rng {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let s = t ^ SEED_SEQ
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .rotate_left(17);
        Rng(s | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for w in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            w.copy_from_slice(&v[..w.len()]);
        }
    }
}

impl Default for Rng {
    fn default() -> Rng {
        Rng::new()
    }
}

/// `len` pseudo-random bytes, different per call.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Rng::new().fill(&mut out);
    out
}

/// Asserts byte equality with a short message: sizes and the first differing offset.
#[track_caller]
pub fn assert_bytes_eq(what: &str, got: &[u8], expected: &[u8]) {
    if got == expected {
        return;
    }
    let first_diff = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    panic!(
        "{what}: content differs: got {} bytes, expected {} bytes, first difference at offset {}",
        got.len(),
        expected.len(),
        first_diff
    );
}

/// Reads `path`, panicking with the path on error.
#[track_caller]
pub fn read(path: &Path) -> Vec<u8> {
    match fs::read(path) {
        Ok(b) => b,
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pct_encode_keeps_unreserved_and_slashes() {
        assert_eq!(pct_encode("a/b-c_d.e~f"), "a/b-c_d.e~f");
        assert_eq!(pct_encode("x y/é%"), "x%20y/%C3%A9%25");
    }

    #[test]
    fn random_bytes_differ_per_call_and_fill_odd_lengths() {
        let (a, b) = (random_bytes(1001), random_bytes(1001));
        assert_eq!(a.len(), 1001);
        assert_ne!(a, b);
        assert!(a.iter().any(|&x| x != 0));
    }

    #[test]
    #[should_panic(expected = "first difference at offset 2")]
    fn assert_bytes_eq_names_the_first_difference() {
        assert_bytes_eq("t", b"abXd", b"abcd");
    }
}
