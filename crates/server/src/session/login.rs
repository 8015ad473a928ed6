//! USER and PASS (RFC 959 §4.1.1): the way from [`State::AwaitingUser`] to [`State::LoggedIn`].
//!
//! The password check itself runs on the blocking pool inside [`crate::auth::Authenticator`];
//! unknown users and wrong passwords get the same reply after the same work.

use ferry_proto::command::{DataType, Secret};
use ferry_proto::{Reply, VirtualPath};

use super::{Client, Flow, Session, State};
use crate::error::{Error, Result};
use crate::vfs::Vfs;

impl Session {
    pub(super) async fn user(&mut self, name: String) -> Result<Flow> {
        if let State::LoggedIn(_) = self.state {
            return Err(Error::NotLoggedIn("Already logged in; cannot change user"));
        }
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
        let account = match self.shared.auth.login(&user, &pass.0).await {
            Ok(account) => account,
            Err(e) => {
                tracing::info!(user = %user, reason = %e, "login failed");
                return Err(Error::NotLoggedIn("Login incorrect"));
            }
        };
        let home = account.home.clone();
        let vfs = match tokio::task::spawn_blocking(move || Vfs::open(&home)).await {
            Ok(Ok(vfs)) => vfs,
            Ok(Err(e)) => {
                tracing::error!(user = %user, error = %e, "home directory unavailable");
                return Err(Error::NotLoggedIn("Home directory unavailable"));
            }
            Err(_) => return Err(Error::NotLoggedIn("Home directory unavailable")),
        };
        tracing::Span::current().record("user", account.name.as_str());
        tracing::info!(user = %account.name, "login");
        self.state = State::LoggedIn(Box::new(Client {
            account,
            vfs,
            cwd: VirtualPath::root(),
            data_type: DataType::Image,
            rest: 0,
            rename_from: None,
            epsv_all: false,
            data: None,
        }));
        self.reply(Reply::new(230, "Login successful")).await?;
        Ok(Flow::Continue)
    }
}
