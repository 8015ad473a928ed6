//! Where the user name and password come from, in order of precedence:
//!
//! 1. the URL (`ftp://user:password@host/`),
//! 2. `--user USER[:PASSWORD]`,
//! 3. `FERRY_PASSWORD` in the environment (for the user from 1. or 2.),
//! 4. `~/.netrc` (or `$NETRC`): `machine HOST login USER password PASS`, then `default`,
//! 5. a no-echo prompt on the terminal,
//! 6. no user at all: `anonymous`.
//!
//! Passwords live in [`Secret`] so `Debug` never shows them; they are never logged.

use std::io::IsTerminal;
use std::path::PathBuf;

use ferry_proto::command::Secret;

use crate::error::{Error, Result};
use crate::target::Target;

#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: Secret,
}

/// Resolves the credentials for `target` (see the module doc for the order).
pub fn resolve(target: &Target, user_flag: Option<&str>) -> Result<Credentials> {
    let (flag_user, flag_pw) = match user_flag {
        Some(u) => match u.split_once(':') {
            Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
            None => (Some(u.to_owned()), None),
        },
        None => (None, None),
    };
    let user = target.user.clone().or(flag_user);
    let password = target.password.clone().or(flag_pw);
    if let (Some(user), Some(pw)) = (&user, password) {
        return Ok(creds(user, pw));
    }
    if let Some(user) = &user {
        if let Ok(pw) = std::env::var("FERRY_PASSWORD") {
            return Ok(creds(user, pw));
        }
    }
    if let Some((u, p)) = netrc_lookup(&target.host, user.as_deref()) {
        return Ok(creds(&u, p));
    }
    match user {
        Some(user) if user == "anonymous" || user == "ftp" => Ok(creds(&user, "ferry@".into())),
        Some(user) => {
            if !std::io::stdin().is_terminal() {
                return Err(Error::Login(format!(
                    "no password for {user}: give it in the URL, FERRY_PASSWORD or ~/.netrc \
                     (no terminal to ask on)"
                )));
            }
            let pw = rpassword::prompt_password(format!("Password for {user}@{}: ", target.host))
                .map_err(|e| Error::Login(format!("cannot read the password: {e}")))?;
            Ok(creds(&user, pw))
        }
        None => {
            let pw = std::env::var("FERRY_PASSWORD").unwrap_or_else(|_| "ferry@".into());
            Ok(creds("anonymous", pw))
        }
    }
}

fn creds(user: &str, pw: String) -> Credentials {
    Credentials {
        user: user.to_owned(),
        password: Secret(pw),
    }
}

fn netrc_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NETRC") {
        return Some(PathBuf::from(p));
    }
    dirs::home_dir().map(|h| h.join(".netrc"))
}

fn netrc_lookup(host: &str, user: Option<&str>) -> Option<(String, String)> {
    let text = std::fs::read_to_string(netrc_path()?).ok()?;
    parse_netrc(&text, host, user)
}

/// Finds the login for `host` (and `user`, if given) in netrc text; `default` matches any host.
pub fn parse_netrc(text: &str, host: &str, user: Option<&str>) -> Option<(String, String)> {
    let mut tokens = text.split_whitespace();
    let mut entries: Vec<(Option<String>, Option<String>, Option<String>)> = Vec::new();
    while let Some(tok) = tokens.next() {
        match tok {
            "machine" => entries.push((tokens.next().map(str::to_owned), None, None)),
            "default" => entries.push((None, None, None)),
            "login" => {
                if let (Some(e), Some(v)) = (entries.last_mut(), tokens.next()) {
                    e.1 = Some(v.to_owned());
                }
            }
            "password" => {
                if let (Some(e), Some(v)) = (entries.last_mut(), tokens.next()) {
                    e.2 = Some(v.to_owned());
                }
            }
            "account" => {
                tokens.next();
            }
            "macdef" => {
                // A macro runs to the next blank line; a whitespace tokenizer cannot see that,
                // so stop here rather than misread the macro body.
                break;
            }
            _ => {}
        }
    }
    let matches = |e: &&(Option<String>, Option<String>, Option<String>)| {
        e.1.is_some() && e.2.is_some() && user.is_none_or(|u| e.1.as_deref() == Some(u))
    };
    let found = entries
        .iter()
        .filter(|e| e.0.as_deref() == Some(host))
        .find(matches)
        .or_else(|| entries.iter().filter(|e| e.0.is_none()).find(matches))?;
    Some((found.1.clone()?, found.2.clone()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netrc_machine_then_default() {
        let text = "machine a.example login al password pw1\n\
                    machine b.example\n  login bo\n  password pw2\n\
                    default login anonymous password x@";
        assert_eq!(
            parse_netrc(text, "b.example", None),
            Some(("bo".into(), "pw2".into()))
        );
        assert_eq!(
            parse_netrc(text, "a.example", Some("al")),
            Some(("al".into(), "pw1".into()))
        );
        assert_eq!(
            parse_netrc(text, "a.example", Some("zed")),
            None,
            "default has another login"
        );
        assert_eq!(
            parse_netrc(text, "c.example", None),
            Some(("anonymous".into(), "x@".into()))
        );
    }
}
