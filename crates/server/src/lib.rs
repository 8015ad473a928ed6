//! ferry-server: the `ferryd` FTP server.
//!
//! Start at [`server::Server::serve`] (accept loop, limits, shutdown), then
//! [`session::Session`] (one task per control connection, the command dispatch). Every failure a
//! client can see becomes a reply in exactly one place, [`error::Error::reply`]. A user's files are
//! [`storage::Home`]; data connections are [`data`].

pub mod auth;
pub mod config;
pub mod data;
pub mod error;
pub mod hammer;
pub mod hash;
pub mod quota;
pub mod server;
pub mod session;
pub mod size;
pub mod storage;
pub mod store;
pub mod stream;
pub mod tls;
pub mod users_cli;
