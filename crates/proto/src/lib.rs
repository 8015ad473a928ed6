//! ferry-proto: the FTP protocol core of Ferry, without IO.
//!
//! Bytes go in and typed values come out, or the reverse: control-line framing with a hard
//! length limit ([`line`](mod@line)), command parsing ([`command`]), reply formatting and parsing
//! ([`reply`]), PORT/EPRT/PASV/EPSV addresses ([`addr`]), the user's virtual paths ([`path`]),
//! directory listings ([`listing`]) and wildcard patterns ([`glob`]). The server and the client
//! both build on it; neither tokio nor any socket appears here, so every rule can be tested (and
//! fuzzed) as a function.

pub mod addr;
pub mod ascii;
pub mod command;
pub mod glob;
pub mod line;
pub mod listing;
pub mod path;
pub mod reply;

pub use command::{Command, FileTime, ParseError};
pub use line::{LineError, LineFramer};
pub use path::{PathError, VirtualPath};
pub use reply::Reply;
