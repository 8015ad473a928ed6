//! File hashes (draft-bryan-ftpext-hash): HASH, OPTS HASH, RANG (draft-bryan-ftp-range), and
//! the legacy XMD5, XSHA1, XSHA256, XSHA512, XCRC.
//! (Being implemented; until then these commands answer 502.)

use ferry_proto::command::HashAlgo;
use ferry_proto::ParseError;

use super::{Flow, Session};
use crate::error::{Error, Result};

impl Session {
    pub(super) async fn hash(&mut self, _path: String) -> Result<Flow> {
        Err(Error::Parse(ParseError::Unknown("HASH".into())))
    }

    pub(super) async fn rang(&mut self, _start: u64, _end: u64) -> Result<Flow> {
        Err(Error::Parse(ParseError::Unknown("RANG".into())))
    }

    pub(super) async fn xhash(
        &mut self,
        _algo: HashAlgo,
        _path: String,
        _range: Option<(u64, u64)>,
    ) -> Result<Flow> {
        Err(Error::Parse(ParseError::Unknown("XHASH".into())))
    }

    pub(super) async fn opts_hash(&mut self, _algo: Option<String>) -> Result<Flow> {
        Err(Error::Parse(ParseError::Unknown("OPTS HASH".into())))
    }
}
