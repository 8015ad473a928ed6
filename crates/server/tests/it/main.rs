//! End-to-end tests for the real `ferryd` binary.
//!
//! Every test talks to a freshly spawned `ferryd` (own temp data dir, ephemeral loopback port)
//! through the same tools a user would use: the `ferryd user ...` CLI, `curl`, `lftp`, and a raw
//! TCP control connection. curl and lftp are required; a missing tool fails the test with an
//! install hint rather than silently skipping.

mod cli;
mod curl;
mod harness;
mod jail;
mod lftp;
mod shutdown;
