//! USER and PASS (RFC 959 §4.1.1): the way from [`State::AwaitingUser`] to [`State::LoggedIn`].
//!
//! The password check itself runs on the blocking pool inside [`crate::auth::Authenticator`];
//! unknown users and wrong passwords get the same reply after the same work.

use ferry_proto::command::{DataType, HashAlgo, Secret};
use ferry_proto::reply::Escaped;
use ferry_proto::{Reply, VirtualPath};

use super::{Client, Flow, Session, State};
use crate::error::{Error, Result};

impl Session {
    pub(super) async fn user(&mut self, name: String) -> Result<Flow> {
        if let State::LoggedIn(_) = self.state {
            return Err(Error::NotLoggedIn("Already logged in; cannot change user"));
        }
        if !self.stream.is_tls() && !self.shared.config.plaintext_login_allowed(self.peer.ip()) {
            let text = if self.shared.tls.is_some() {
                "Login in clear text refused from your address: use FTPS (AUTH TLS)"
            } else {
                "Login in clear text refused from your address"
            };
            return Err(Error::NotLoggedIn(text));
        }
        // The name is the client's own text: `Reply::write_to` escapes its control characters.
        self.reply(Reply::new(331, format!("Password required for {name}")))
            .await?;
        self.state = State::AwaitingPass { user: name };
        Ok(Flow::Continue)
    }

    pub(super) async fn pass(&mut self, pass: Secret) -> Result<Flow> {
        let user = match std::mem::replace(&mut self.state, State::AwaitingUser) {
            State::AwaitingPass { user } => user,
            State::AwaitingUser => return Err(Error::BadSequence("Login with USER first")),
            logged_in @ State::LoggedIn(_) => {
                self.state = logged_in;
                return Err(Error::BadSequence("Already logged in"));
            }
        };
        let ip = self.peer.ip();
        if self.shared.guard.locked(ip).is_some() {
            self.reply(Reply::new(
                421,
                "Too many failed logins from your address; try again later",
            ))
            .await?;
            return Ok(Flow::Close);
        }
        let account = match self.shared.auth.login(&user, &pass.0).await {
            Ok(account) => account,
            Err(e) => {
                let penalty = self.shared.guard.failure(ip, &user);
                tracing::info!(user = %Escaped(&user), reason = %e, delay_ms = penalty.delay.as_millis() as u64, "login failed");
                tokio::time::sleep(penalty.delay).await;
                if penalty.locked {
                    tracing::warn!(%ip, lockout_secs = self.shared.config.lockout.as_secs(), "address locked out after repeated login failures");
                    self.reply(Reply::new(
                        421,
                        "Too many failed logins from your address; try again later",
                    ))
                    .await?;
                    return Ok(Flow::Close);
                }
                return Err(Error::NotLoggedIn("Login incorrect"));
            }
        };
        self.shared.guard.success(ip, &user);
        let (shared, acct) = (self.shared.clone(), account.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let files = shared
                .storage
                .open_home(&acct.home, &acct.name)
                .map_err(|e| format!("home directory unavailable: {e}"))?;
            let usage = shared
                .quotas
                .attach(&acct)
                .map_err(|e| format!("usage unavailable: {e}"))?;
            Ok::<_, String>((files, usage))
        })
        .await;
        let (files, usage) = match opened {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::error!(user = %Escaped(&user), error = %e, "login failed");
                return Err(Error::NotLoggedIn("Home directory unavailable"));
            }
            Err(_) => return Err(Error::NotLoggedIn("Home directory unavailable")),
        };
        tracing::Span::current().record("user", account.name.as_str());
        self.limits.logged_in();
        tracing::info!(user = %Escaped(&account.name), "login");
        if let Some(registration) = &self.tls_sessions {
            registration.logged_in(&account.name);
        }
        self.state = State::LoggedIn(Box::new(Client {
            account,
            files,
            cwd: VirtualPath::root(),
            data_type: DataType::Image,
            rest: 0,
            rename_from: None,
            epsv_all: false,
            data: None,
            parked: None,
            hash_algo: HashAlgo::Sha256,
            range: None,
            usage,
            resume_offer: None,
        }));
        self.reply(Reply::new(230, "Login successful")).await?;
        Ok(Flow::Continue)
    }
}
