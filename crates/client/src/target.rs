//! `ftp://user:password@host:port/path` URLs (RFC 1738 §3.2, as curl and lftp read them).
//!
//! The path is percent-decoded to UTF-8 and taken relative to the login directory: in
//! `ftp://h/docs/a.txt` the file is `docs/a.txt`; a leading `%2F` (or `//`) makes it absolute.
//! `ftps://` asks for explicit FTPS (AUTH TLS) and fails if the server does not offer it.

use percent_encoding::percent_decode_str;

use crate::error::{Error, Result};

pub const DEFAULT_PORT: u16 = 21;

#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Remote path relative to the login directory ("" = the login directory itself).
    pub path: String,
    /// The URL said `ftps://`.
    pub require_tls: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        write!(f, "Target({})", self.display())
    }
}

impl Target {
    pub fn parse(input: &str) -> Result<Target> {
        let with_scheme = if input.contains("://") {
            input.to_owned()
        } else {
            format!("ftp://{input}")
        };
        let url = url::Url::parse(&with_scheme)
            .map_err(|e| Error::Usage(format!("invalid URL {:?}: {e}", redact(input))))?;
        let require_tls = match url.scheme() {
            "ftp" => false,
            "ftps" => true,
            other => {
                return Err(Error::Usage(format!(
                    "unsupported URL scheme {other:?} (use ftp:// or ftps://)"
                )))
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(Error::Usage(format!("no host in {:?}", redact(input)))),
        };
        let decode = |s: &str| -> Result<String> {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| Error::Usage("URL is not valid UTF-8 once decoded".into()))
        };
        let user = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = url.password().map(decode).transpose()?;
        let raw_path = url.path();
        let rel = raw_path.strip_prefix('/').unwrap_or(raw_path);
        let path = decode(rel)?;
        if path.contains(['\r', '\n', '\0']) {
            return Err(Error::Usage("path contains a line break or NUL".into()));
        }
        Ok(Target {
            host,
            port: url.port().unwrap_or(DEFAULT_PORT),
            user,
            password,
            path,
            require_tls,
        })
    }

    /// `host:port`, the key of the known-hosts file.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A printable form without the password.
    pub fn display(&self) -> String {
        let scheme = if self.require_tls { "ftps" } else { "ftp" };
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}{}/{}", self.host_port(), self.path)
    }

    /// The same server and credentials with another path.
    pub fn with_path(&self, path: &str) -> Target {
        let mut t = self.clone();
        t.path = path.to_owned();
        t
    }

    /// Whether two targets name the same login on the same server (so one connection serves both).
    pub fn same_server(&self, other: &Target) -> bool {
        self.host == other.host && self.port == other.port && self.user == other.user
    }
}

/// The input with any `:password@` part masked, for error messages.
fn redact(input: &str) -> String {
    if let Some(scheme_end) = input.find("://") {
        let rest = &input[scheme_end + 3..];
        let auth_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}://{}:****{}",
                    &input[..scheme_end],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
    }
    input.to_owned()
}

/// Joins a remote directory and a name with `/`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir == "." {
        name.to_owned()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The last component of a remote path (`a/b/c.txt` -> `c.txt`).
pub fn basename(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_credentials_port_and_decoded_path() {
        let t =
            Target::parse("ftp://al%40ice:p%3Aw@127.0.0.1:2121/donn%C3%A9es/r%C3%A9sum%C3%A9.txt")
                .expect("parses");
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 2121);
        assert_eq!(t.user.as_deref(), Some("al@ice"));
        assert_eq!(t.password.as_deref(), Some("p:w"));
        assert_eq!(t.path, "données/résumé.txt");
        assert!(!t.require_tls);
        assert!(!format!("{t:?}").contains("p:w"));
    }

    #[test]
    fn defaults_and_schemes() {
        let t = Target::parse("example.com").expect("parses");
        assert_eq!((t.port, t.path.as_str(), t.user.clone()), (21, "", None));
        assert!(Target::parse("ftps://h/x").expect("parses").require_tls);
        assert!(matches!(Target::parse("http://h/x"), Err(Error::Usage(_))));
        let t = Target::parse("ftp://h/%2Fetc/x").expect("parses");
        assert_eq!(t.path, "/etc/x");
        let t = Target::parse("ftp://h/dir with space/").expect("parses");
        assert_eq!(t.path, "dir with space/");
        assert!(Target::parse("ftp://h/a%0D%0ADELE%20x").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("ftp://u:secret@h/x"), "ftp://u:****@h/x");
        assert_eq!(redact("ftp://u@h/x"), "ftp://u@h/x");
    }

    #[test]
    fn joins_and_basenames() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("d/", "a"), "d/a");
        assert_eq!(join("d", "a"), "d/a");
        assert_eq!(basename("a/b/c.txt"), "c.txt");
        assert_eq!(basename("a/b/"), "b");
        assert_eq!(basename("c"), "c");
    }
}
