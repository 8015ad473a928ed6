//! The client's one error type and the exit code each kind becomes.
//!
//! Every failure a user can see goes through [`Error`]; `main` prints it and exits with
//! [`Error::exit_code`]. The codes are part of the command-line contract (scripts test them) and
//! are listed in `ferry --help` and in the crate documentation ([`crate::exit`]).

use std::io;
use std::path::PathBuf;

use ferry_proto::Reply;

use crate::exit;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments, a malformed URL, a name that cannot be sent (CR/LF).
    #[error("{0}")]
    Usage(String),

    /// TCP connect or name resolution failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },

    /// The control or data connection broke, or the server closed it. Retryable.
    #[error("{0}")]
    Network(String),

    /// A network operation took longer than `--timeout`. Retryable.
    #[error("timed out after {secs}s while {what}")]
    Timeout { what: String, secs: u64 },

    /// The server refused the user name or password.
    #[error("login failed: {0}")]
    Login(String),

    /// The TLS handshake failed, or TLS was required and the server does not offer it.
    #[error("TLS: {0}")]
    Tls(String),

    /// A self-signed (or otherwise unverifiable) certificate nobody has vouched for yet.
    #[error(
        "the certificate of {host} is not signed by a trusted authority and is not pinned\n  \
         SHA-256 fingerprint: {fingerprint}\n  \
         check it out of band, then re-run with --pin {fingerprint} (it will be remembered in {known_hosts})"
    )]
    CertUnknown {
        host: String,
        fingerprint: String,
        known_hosts: String,
    },

    /// A pinned certificate changed: like ssh, refuse loudly.
    #[error(
        "@@@ WARNING: THE CERTIFICATE OF {host} HAS CHANGED @@@\n  \
         pinned:    {expected}\n  presented: {got}\n  \
         Someone could be intercepting the connection, or the server's certificate was replaced.\n  \
         If the change is expected, remove the line for {host} from {known_hosts} \
         or pass --pin with the new fingerprint."
    )]
    CertChanged {
        host: String,
        expected: String,
        got: String,
        known_hosts: String,
    },

    /// The server answered a command with a failure reply.
    #[error("{what}: server replied {}", reply_text(.reply))]
    Server { what: String, reply: Reply },

    /// A reply we cannot make sense of (malformed PASV, reply line too long, ...).
    #[error("protocol error: {0}")]
    Protocol(String),

    /// Reading or writing a local file failed.
    #[error("{}: {source}", .path.display())]
    Local { path: PathBuf, source: io::Error },

    /// The file on the server and the local copy differ after a transfer.
    #[error("verification failed: {0}")]
    Verify(String),

    /// The server does not implement something the command needs.
    #[error("{0}")]
    Unsupported(String),
}

fn reply_text(r: &Reply) -> String {
    format!("{} {}", r.code, r.lines.join(" / ").trim())
}

impl Error {
    pub fn server(what: impl Into<String>, reply: Reply) -> Error {
        Error::Server {
            what: what.into(),
            reply,
        }
    }

    pub fn local(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Local {
            path: path.into(),
            source,
        }
    }

    /// The process exit code for this error (see [`crate::exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Connect { .. } | Error::Network(_) | Error::Timeout { .. } => exit::NETWORK,
            Error::Login(_) => exit::LOGIN,
            Error::Tls(_) => exit::TLS,
            Error::CertUnknown { .. } | Error::CertChanged { .. } => exit::CERT,
            Error::Server { reply, .. } if reply.code == 530 => exit::LOGIN,
            Error::Server { reply, .. } if (500..600).contains(&reply.code) => exit::REMOTE,
            Error::Server { .. } | Error::Protocol(_) => exit::NETWORK,
            Error::Local { .. } => exit::LOCAL,
            Error::Verify(_) => exit::VERIFY,
            Error::Unsupported(_) => exit::UNSUPPORTED,
        }
    }

    /// Whether reconnecting and trying again may help: broken or timed-out connections and
    /// transient (4xx) server replies such as 421, 425 and 426.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Network(_) | Error::Timeout { .. } | Error::Connect { .. } => true,
            Error::Server { reply, .. } => (400..500).contains(&reply.code),
            _ => false,
        }
    }

    /// Whether the control connection can still be used after this error.
    pub fn conn_is_usable(&self) -> bool {
        match self {
            Error::Server { reply, .. } => reply.code != 421,
            Error::Usage(_)
            | Error::Local { .. }
            | Error::Verify(_)
            | Error::Unsupported(_)
            | Error::Login(_) => true,
            _ => false,
        }
    }
}
