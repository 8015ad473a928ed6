//! The one place where a failure becomes an FTP reply.
//!
//! Handlers return [`Error`]; the session turns it into a reply with [`Error::reply`]. Each
//! variant documents the code it becomes, so a reader can check the whole table here against
//! RFC 959 §4.2 / RFC 3659 without hunting through handlers.

use std::io;

use ferry_proto::{ParseError, PathError, Reply};

use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 530: not logged in, or login refused.
    #[error("{0}")]
    NotLoggedIn(&'static str),
    /// 503: commands in the wrong order (RNTO without RNFR, PASS without USER).
    #[error("{0}")]
    BadSequence(&'static str),
    /// 501/502/504/522: the line did not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// 501: an argument that parsed but makes no sense here.
    #[error("{0}")]
    BadArgument(String),
    /// 550 (553 for names the file system cannot hold): a path argument refused before any
    /// file system call.
    #[error(transparent)]
    Path(#[from] PathError),
    /// 550: the path names something of the wrong kind (SIZE of a directory, CWD to a file).
    #[error("{0}")]
    WrongKind(&'static str),
    /// 500: PORT/EPRT to another host or a privileged port (FTP bounce, RFC 2577).
    #[error("{0}")]
    PortRefused(String),
    /// 425: no data connection could be set up.
    #[error("{0}")]
    NoDataConnection(String),
    /// 426: the data connection broke or was aborted mid-transfer.
    #[error("{0}")]
    TransferAborted(String),
    /// 534: refused by the server's security policy (CCC, AUTH with TLS off).
    #[error("{0}")]
    Policy(&'static str),
    /// 521: `tls = "required"` and the data connection is not protected (RFC 4217 §9).
    #[error("Data connections must be protected: use PROT P")]
    ProtRequired,
    /// 522: the TLS handshake on the data connection failed, or did not resume the control
    /// connection's session while reuse is required.
    #[error("{0}")]
    DataTls(String),
    /// 522: EPSV/EPRT for a network protocol this connection cannot use (RFC 2428 §2);
    /// the text names the one it can.
    #[error("Network protocol not supported, use ({0})")]
    NetworkProtocol(u8),
    /// 503: data connection setup refused after EPSV ALL.
    #[error("EPSV ALL in effect, use EPSV")]
    EpsvAllOnly,
    /// 554 (RFC 959 §4.2: "Requested action not taken: invalid REST parameter"): the REST
    /// offset lies past the end of the file a RETR would send. Sent instead of the 150, before
    /// any data connection is used.
    #[error("{0}")]
    BadRestOffset(String),
    /// What storage refused, by the variant's own reply (see [`StorageError`]).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// 550 / 452 / 451 ...: an IO error outside storage, by kind (see [`io_reply`]).
    #[error("{0}")]
    Io(#[from] io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The reply a client sees for this failure.
    pub fn reply(&self) -> Reply {
        match self {
            Error::NotLoggedIn(text) => Reply::new(530, *text),
            Error::BadSequence(text) => Reply::new(503, *text),
            Error::Parse(e) => {
                let code = match e {
                    ParseError::Unknown(_) => 502,
                    ParseError::Syntax(_) => 501,
                    ParseError::Unsupported(_) => 504,
                    ParseError::Protocol => 522,
                };
                Reply::new(code, capitalize(&e.to_string()))
            }
            Error::BadArgument(text) => Reply::new(501, text),
            Error::Path(e) => {
                let code = match e {
                    PathError::Nul | PathError::Control | PathError::ComponentTooLong => 553,
                    PathError::TooLong | PathError::Empty => 550,
                };
                Reply::new(code, capitalize(&e.to_string()))
            }
            Error::WrongKind(text) => Reply::new(550, *text),
            Error::PortRefused(text) => Reply::new(500, text),
            Error::NoDataConnection(text) => Reply::new(425, text),
            Error::TransferAborted(text) => Reply::new(426, text),
            Error::EpsvAllOnly => Reply::new(503, self.to_string()),
            Error::Policy(text) => Reply::new(534, *text),
            Error::NetworkProtocol(_) => Reply::new(522, self.to_string()),
            Error::ProtRequired => Reply::new(521, self.to_string()),
            Error::DataTls(text) => Reply::new(522, text),
            Error::BadRestOffset(text) => Reply::new(554, text),
            Error::Storage(e) => storage_reply(e),
            Error::Io(e) => io_reply(e),
        }
    }
}

/// Storage's refusals, each with the code its variant documents.
fn storage_reply(e: &StorageError) -> Reply {
    let code = match e {
        StorageError::RestPastEnd | StorageError::RestInsidePart { .. } => 554,
        StorageError::TooManyObjects { .. } | StorageError::Unsupported(_) => 550,
        StorageError::UnfinishedUpload { .. } | StorageError::HardLinked => 550,
        StorageError::UploadInProgress => 450,
        StorageError::ReservedName => 553,
        StorageError::QuotaExceeded(_) => 552,
        StorageError::Io(e) => return io_reply(e),
    };
    Reply::new(code, e.to_string())
}

/// IO errors by kind. Texts never include a real path: the client only knows virtual ones.
fn io_reply(e: &io::Error) -> Reply {
    use io::ErrorKind::*;
    let (code, text) = match e.kind() {
        NotFound => (550, "No such file or directory"),
        // cap-std reports an attempt to leave the home as PermissionDenied.
        PermissionDenied => (550, "Permission denied"),
        AlreadyExists => (550, "File exists"),
        DirectoryNotEmpty => (550, "Directory not empty"),
        NotADirectory => (550, "Not a directory"),
        IsADirectory => (550, "Is a directory"),
        InvalidFilename => (553, "File name not allowed"),
        InvalidInput => (550, "Invalid path"),
        ResourceBusy => (450, "File busy"),
        StorageFull => (452, "Insufficient storage space"),
        QuotaExceeded | FileTooLarge => (552, "Exceeded storage allocation"),
        ReadOnlyFilesystem => (550, "Read-only file system"),
        CrossesDevices => (550, "Cannot move across devices"),
        _ => match e.raw_os_error() {
            Some(libc::ENAMETOOLONG) => (553, "File name too long"),
            Some(libc::ELOOP) => (550, "Too many levels of symbolic links"),
            _ => (451, "Local error in processing"),
        },
    };
    Reply::new(code, text)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_codes() {
        let code = |e: Error| e.reply().code;
        assert_eq!(code(Error::Parse(ParseError::Unknown("X".into()))), 502);
        assert_eq!(code(Error::Parse(ParseError::Syntax("x".into()))), 501);
        assert_eq!(code(Error::Parse(ParseError::Unsupported("x".into()))), 504);
        assert_eq!(code(Error::Path(PathError::Nul)), 553);
        assert_eq!(
            code(Error::Io(io::Error::from(io::ErrorKind::NotFound))),
            550
        );
        assert_eq!(
            code(Error::Io(io::Error::from(io::ErrorKind::StorageFull))),
            452
        );
        assert_eq!(
            code(Error::Io(io::Error::from_raw_os_error(libc::ENAMETOOLONG))),
            553
        );
        assert_eq!(code(Error::Io(io::Error::other("boom"))), 451);
        assert_eq!(code(Error::BadRestOffset("x".into())), 554);
    }

    /// Every storage refusal has its documented code, and its text is what the client reads.
    #[test]
    fn storage_errors_have_their_codes() {
        let reply = |e: StorageError| Error::from(e).reply();
        assert_eq!(reply(StorageError::RestPastEnd).code, 554);
        let r = reply(StorageError::UnfinishedUpload { received: 42 });
        assert_eq!(r.code, 550);
        assert!(r.text().contains("REST 42"), "{}", r.text());
        assert_eq!(reply(StorageError::HardLinked).code, 550);
        assert_eq!(reply(StorageError::UploadInProgress).code, 450);
        assert_eq!(reply(StorageError::ReservedName).code, 553);
        assert_eq!(
            reply(StorageError::QuotaExceeded("file limit reached")).code,
            552
        );
        let missing = StorageError::from(io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(reply(missing).code, 550);
        // An InvalidInput from the file system is no REST offset.
        let other = StorageError::from(io::Error::from(io::ErrorKind::InvalidInput));
        assert_eq!(reply(other).code, 550);
    }

    #[test]
    fn io_texts_never_leak_os_messages() {
        let e = io::Error::new(io::ErrorKind::NotFound, "/srv/ferry/homes/alice/secret");
        assert!(!Error::Io(e).reply().text().contains("/srv"));
    }
}
