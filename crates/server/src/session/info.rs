//! Commands that report rather than act: FEAT and OPTS (RFC 2389), HELP, STAT without a path
//! (RFC 959 §4.1.3), ALLO, SITE and CLNT (the client's name, which FileZilla and others send
//! before login; no RFC defines it).

use ferry_proto::command::DataType;
use ferry_proto::reply::Escaped;
use ferry_proto::{ParseError, Reply};

use super::{Flow, Session, State};
use crate::error::{Error, Result};
use crate::size::format_size;

/// FEAT lines (RFC 2389 §3.2: each starts with one space).
const FEATURES: &[&str] = &[
    " EPRT",
    " EPSV",
    " MDTM",
    // draft-somers-ftp-mfxx: the facts MFF can set, in MLST's fact-list form.
    " MFF modify;",
    " MFMT",
    " MLST type*;size*;modify*;perm*;unique*;",
    " PASV",
    " REST STREAM",
    " SIZE",
    " TVFS",
    " UTF8",
];

const HELP_COMMANDS: &[&str] = &[
    " ABOR ACCT ALLO APPE AUTH CCC  CDUP CLNT CWD  DELE EPRT EPSV FEAT HASH",
    " HELP LIST MDTM MFF  MFMT MKD  MLSD MLST MODE NLST NOOP OPTS PASS PASV",
    " PBSZ PORT PROT PWD  QUIT RANG REST RETR RMD  RNFR RNTO SITE SIZE STAT",
    " STOR STOU STRU SYST TYPE USER XCRC XCUP XCWD XMD5 XMKD XPWD XRMD XSHA1",
    " XSHA256 XSHA512",
];

/// Longest client name kept from CLNT, in characters; the rest is cut (and marked).
const MAX_CLIENT_NAME: usize = 128;

/// A CLNT name made safe for a log line and a reply: at most [`MAX_CLIENT_NAME`] characters,
/// escaped like every other client text in logs and replies ([`Escaped`]: control characters
/// and the invisible ones that reorder text become `\u{..}`), so a client cannot forge or hide
/// log lines with it.
fn client_name_for_log(name: &str) -> String {
    let cut = name.char_indices().nth(MAX_CLIENT_NAME).map(|(i, _)| i);
    let kept = cut.map_or(name, |i| &name[..i]);
    let mut out = Escaped(kept).to_string();
    if cut.is_some() {
        out.push_str("...");
    }
    out
}

impl Session {
    pub(super) async fn feat(&mut self) -> Result<Flow> {
        let mut lines = vec!["Features:".to_owned()];
        if self.shared.tls.is_some() {
            lines.extend([" AUTH TLS", " PBSZ", " PROT"].map(str::to_owned));
        }
        lines.extend(FEATURES.iter().map(|f| (*f).to_owned()));
        // The '*' marks the algorithm HASH uses now (draft-bryan-ftpext-hash §3.1).
        let selected = match &self.state {
            State::LoggedIn(c) => c.hash_algo,
            _ => ferry_proto::command::HashAlgo::Sha256,
        };
        lines.push(crate::hash::feat_line(selected));
        lines.push("End".to_owned());
        self.reply(Reply::multi(211, lines)).await?;
        Ok(Flow::Continue)
    }

    /// CLNT: remembered for STAT and logged once, the first time (a client that repeats it
    /// cannot fill the log).
    pub(super) async fn clnt(&mut self, name: String) -> Result<Flow> {
        let shown = client_name_for_log(&name);
        if self.client_name.is_none() {
            tracing::info!(client = %shown, "client name");
        }
        self.client_name = Some(shown.into_boxed_str());
        self.ok(200, "Noted").await
    }

    pub(super) async fn help(&mut self, topic: Option<String>) -> Result<Flow> {
        match topic.map(|t| t.to_ascii_uppercase()) {
            None => {
                let mut lines = vec!["The following commands are recognized:".to_owned()];
                lines.extend(HELP_COMMANDS.iter().map(|l| (*l).to_owned()));
                lines.push("Help OK".to_owned());
                self.reply(Reply::multi(214, lines)).await?;
                Ok(Flow::Continue)
            }
            Some(t) if t == "SITE" => self.ok(214, "SITE commands: HELP QUOTA").await,
            Some(t)
                if HELP_COMMANDS
                    .iter()
                    .any(|l| l.split_whitespace().any(|c| c == t)) =>
            {
                self.ok(214, &format!("{t} is supported")).await
            }
            Some(t) => Err(Error::Parse(ParseError::Unknown(t))),
        }
    }

    pub(super) async fn opts(&mut self, opt: String) -> Result<Flow> {
        let upper = opt.to_ascii_uppercase();
        let mut words = upper.split_whitespace();
        match (words.next(), words.next()) {
            // Names are always UTF-8 here (RFC 2640 §3.2); OFF is accepted and changes nothing.
            (Some("UTF8" | "UTF-8"), Some("ON" | "OFF") | None) => {
                self.ok(200, "Always in UTF8 mode").await
            }
            (Some("MLST"), facts) => {
                // The original case of the list does not matter: fact names are case-insensitive.
                self.mlst_facts = ferry_proto::listing::Facts::parse(facts.unwrap_or(""));
                let names = self.mlst_facts.names();
                self.ok(200, &format!("MLST OPTS {names}")).await
            }
            (Some("HASH"), algo) => self.opts_hash(algo.map(str::to_owned)).await,
            _ => Err(Error::BadArgument(format!("Option not understood: {opt}"))),
        }
    }

    pub(super) async fn stat_server(&mut self) -> Result<Flow> {
        let mut lines = vec![
            "Ferry FTP server status:".to_owned(),
            format!("Connected to {}", self.peer.ip()),
        ];
        if let Some(name) = &self.client_name {
            lines.push(format!("Client: {name}"));
        }
        if let State::LoggedIn(c) = &self.state {
            lines.push(format!("Logged in as {}", c.account.name));
            lines.push(match c.data_type {
                DataType::Ascii => "TYPE: ASCII".to_owned(),
                DataType::Image => "TYPE: BINARY".to_owned(),
            });
        }
        lines.push(format!(
            "Session timeout in seconds is {}",
            self.shared.config.idle_timeout.as_secs()
        ));
        match &self.transfer {
            Some(t) => lines.push(t.status()),
            None => lines.push("No data connection".to_owned()),
        }
        lines.push("End of status".to_owned());
        self.reply(Reply::multi(211, lines)).await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn allo(&mut self, arg: String) -> Result<Flow> {
        // "ALLO n" or "ALLO n R m" (RFC 959 §4.1.3).
        let size = arg
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok());
        let Some(size) = size else {
            return Err(Error::BadArgument("ALLO needs a size in bytes".into()));
        };
        let usage = self.client()?.usage.snapshot();
        if let Some(left) = usage.remaining_bytes() {
            if size > left {
                let text = format!("Insufficient storage: {} of quota left", format_size(left));
                self.reply(Reply::new(552, text)).await?;
                return Ok(Flow::Continue);
            }
        }
        self.ok(202, "No storage allocation necessary").await
    }

    pub(super) async fn site(&mut self, arg: String) -> Result<Flow> {
        let sub = arg
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match sub.as_str() {
            "QUOTA" => {
                let c = self.client()?.usage.snapshot();
                let bytes_limit = match c.max_bytes {
                    Some(m) => format!("{} ({m} bytes)", format_size(m)),
                    None => "unlimited".to_owned(),
                };
                let files_limit = match c.max_files {
                    Some(m) => m.to_string(),
                    None => "unlimited".to_owned(),
                };
                let lines = vec![
                    "Disk quota:".to_owned(),
                    format!(
                        " bytes: {} ({} bytes) used of {bytes_limit}",
                        format_size(c.used_bytes),
                        c.used_bytes
                    ),
                    format!(" files: {} used of {files_limit}", c.used_files),
                    "End".to_owned(),
                ];
                self.reply(Reply::multi(200, lines)).await?;
                Ok(Flow::Continue)
            }
            "HELP" => {
                let lines = vec![
                    "SITE commands:".to_owned(),
                    " HELP".to_owned(),
                    " QUOTA".to_owned(),
                    "End".to_owned(),
                ];
                self.reply(Reply::multi(214, lines)).await?;
                Ok(Flow::Continue)
            }
            _ => Err(Error::Parse(ParseError::Unsupported(format!(
                "Unknown SITE command {sub}"
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_are_escaped_and_capped() {
        let long = "x".repeat(MAX_CLIENT_NAME + 1);
        let capped = format!("{}...", "x".repeat(MAX_CLIENT_NAME));
        let fits = "y".repeat(MAX_CLIENT_NAME);
        let cases = [
            ("FileZilla 3.66.4", "FileZilla 3.66.4"),
            ("evil\x1b[31m red", "evil\\u{1b}[31m red"),
            ("tab\there", "tab\\u{9}here"),
            ("a\u{202e}gpj.exe", "a\\u{202e}gpj.exe"),
            ("数据 \\ ok", "数据 \\ ok"),
            (long.as_str(), capped.as_str()),
            (fits.as_str(), fits.as_str()),
        ];
        for (name, want) in cases {
            assert_eq!(client_name_for_log(name), want, "{name:?}");
        }
    }

    /// Every line of HELP fits the columns, and the command list is sorted and complete for
    /// the commands added with MFMT.
    #[test]
    fn help_lists_new_commands() {
        let all: Vec<&str> = HELP_COMMANDS
            .iter()
            .flat_map(|l| l.split_whitespace())
            .collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        assert_eq!(all, sorted);
        for c in ["CLNT", "MFF", "MFMT", "HASH"] {
            assert!(all.contains(&c), "{c}");
        }
    }
}
