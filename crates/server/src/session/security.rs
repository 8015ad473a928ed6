//! FTPS commands (RFC 4217): AUTH TLS, PBSZ, PROT, CCC, and the control-connection upgrade.

use ferry_proto::Reply;

use super::{Flow, Session, State};
use crate::config::TlsMode;
use crate::error::{Error, Result};
use crate::stream::Stream;

impl Session {
    pub(super) async fn auth(&mut self, mechanism: String) -> Result<Flow> {
        if self.shared.tls.is_none() {
            return Err(Error::Policy("TLS is switched off on this server"));
        }
        if !matches!(mechanism.as_str(), "TLS" | "SSL" | "TLS-C" | "TLS-P") {
            return Err(Error::Parse(ferry_proto::ParseError::Unsupported(format!(
                "AUTH {mechanism} not supported; use AUTH TLS"
            ))));
        }
        if self.stream.is_tls() {
            return Err(Error::BadSequence("Already using TLS"));
        }
        if matches!(self.state, State::LoggedIn(_)) {
            return Err(Error::BadSequence("AUTH must come before login"));
        }
        self.reply(Reply::new(
            234,
            format!("AUTH {mechanism} ok, starting TLS"),
        ))
        .await?;
        // Bytes that followed AUTH in clear must not be taken as commands sent under TLS
        // (the STARTTLS command-injection flaw).
        self.framer = ferry_proto::LineFramer::new(self.shared.config.max_line);
        self.state = State::AwaitingUser;
        // TLS-P (old drafts) implies protected data.
        if mechanism == "TLS-P" {
            self.prot_private = true;
        }
        match self.start_tls().await {
            Ok(()) => Ok(Flow::Continue),
            Err(e) => {
                tracing::info!(error = %e, "TLS handshake failed");
                Ok(Flow::Close)
            }
        }
    }

    /// Runs the server side of the TLS handshake on the control connection.
    pub(super) async fn start_tls(&mut self) -> std::io::Result<()> {
        let Some(tls) = self.shared.tls.as_ref() else {
            return Err(std::io::Error::other("TLS is not configured"));
        };
        let Some(tcp) = self.stream.take_plain() else {
            return Err(std::io::Error::other("control connection is not plain TCP"));
        };
        // Entered before the handshake: the sessions it issues may be offered by a sibling
        // connection's data connection as soon as the client has them.
        self.tls_sessions = Some(tls.sessions.register(self.token, self.peer.ip()));
        let tls_stream = tls
            .accept_control(tcp, self.token, self.shared.config.data_timeout)
            .await?;
        self.stream = Stream::Tls(Box::new(tls_stream));
        Ok(())
    }

    pub(super) async fn pbsz(&mut self, _size: u64) -> Result<Flow> {
        if !self.stream.is_tls() {
            return Err(Error::BadSequence("PBSZ needs AUTH TLS first"));
        }
        // RFC 4217 §8: a streaming protection mechanism has buffer size 0.
        self.ok(200, "PBSZ=0").await
    }

    pub(super) async fn prot(&mut self, level: char) -> Result<Flow> {
        if !self.stream.is_tls() {
            return Err(Error::BadSequence("PROT needs AUTH TLS first"));
        }
        match level {
            'P' => {
                self.prot_private = true;
                self.ok(200, "Protection level set to P").await
            }
            'C' if self.shared.config.tls == TlsMode::Required => Err(Error::ProtRequired),
            'C' => {
                self.prot_private = false;
                self.ok(200, "Protection level set to C").await
            }
            _ => {
                self.reply(Reply::new(536, "Only PROT C and PROT P are supported"))
                    .await?;
                Ok(Flow::Continue)
            }
        }
    }

    pub(super) async fn ccc(&mut self) -> Result<Flow> {
        if !self.stream.is_tls() {
            return Err(Error::BadSequence("CCC needs AUTH TLS first"));
        }
        // Going back to clear text would expose every later command; refused.
        Err(Error::Policy(
            "CCC not allowed: the control connection stays encrypted",
        ))
    }
}
