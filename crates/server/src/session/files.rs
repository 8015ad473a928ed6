//! Commands that touch the file system but move no file data: PWD, CWD/CDUP, MKD, RMD, DELE,
//! RNFR/RNTO (RFC 959 §4.1.3), SIZE, MDTM, MLST (RFC 3659), MFMT and MFF
//! (draft-somers-ftp-mfxx) and STAT with a path.
//! Every file operation goes through the user's [`crate::storage::Home`].

use ferry_proto::listing::{self, EntryKind};
use ferry_proto::path::quote_for_257;
use ferry_proto::reply::Escaped;
use ferry_proto::{FileTime, Reply};

use super::listing::{list_path_arg, Framing, ListKind};
use super::{Flow, Session};
use crate::error::{Error, Result};

impl Session {
    pub(super) async fn pwd(&mut self) -> Result<Flow> {
        let cwd = quote_for_257(&self.client()?.cwd);
        self.ok(257, &format!("{cwd} is the current directory"))
            .await
    }

    pub(super) async fn cwd(&mut self, arg: &str) -> Result<Flow> {
        let (files, path) = self.resolve(arg)?;
        // The directory must also open for reading, or the user would be stuck in a
        // directory they cannot list; opening it is enough, nothing is read.
        let is_dir = files.is_listable_dir(&path).await?;
        if !is_dir {
            return Err(Error::WrongKind("Not a directory"));
        }
        let shown = quote_for_257(&path);
        self.client()?.cwd = path;
        self.ok(250, &format!("Directory changed to {shown}")).await
    }

    pub(super) async fn mkd(&mut self, arg: String) -> Result<Flow> {
        let (files, path) = self.resolve(&arg)?;
        files.mkdir(&path).await?;
        self.ok(257, &format!("{} created", quote_for_257(&path)))
            .await
    }

    pub(super) async fn rmd(&mut self, arg: String) -> Result<Flow> {
        let (files, path) = self.resolve(&arg)?;
        files.rmdir(&path).await?;
        self.ok(250, "Directory removed").await
    }

    pub(super) async fn dele(&mut self, arg: String) -> Result<Flow> {
        let (files, path) = self.resolve(&arg)?;
        let freed = files.remove_file(&path).await?;
        self.give_back(freed)?;
        self.ok(250, "File deleted").await
    }

    pub(super) async fn rnfr(&mut self, arg: String) -> Result<Flow> {
        let (files, path) = self.resolve(&arg)?;
        files.exists(&path).await?;
        self.client()?.rename_from = Some(path);
        self.ok(350, "Ready for RNTO").await
    }

    pub(super) async fn rnto(&mut self, arg: String) -> Result<Flow> {
        let from = self
            .client()?
            .rename_from
            .take()
            .ok_or(Error::BadSequence("RNFR required first"))?;
        let (files, to) = self.resolve(&arg)?;
        let freed = files.rename(&from, &to).await?;
        self.give_back(freed)?;
        self.ok(250, "Rename successful").await
    }

    /// Returns the space a delete or a replacing rename freed to the user's quota at once.
    fn give_back(&mut self, freed: crate::storage::Freed) -> Result<()> {
        let usage = &self.client()?.usage;
        usage.release_bytes(freed.bytes);
        if freed.file {
            usage.release_file();
        }
        usage.persist_soon();
        Ok(())
    }

    /// SIZE (RFC 3659 §4). For a file whose overwrite was interrupted it answers how much of
    /// the new version has arrived, not the old version's size that RETR still serves: SIZE
    /// is what clients resume an upload from (curl `-C -`, lftp `reput`), and from the old
    /// size they would splice two versions or take the upload for complete.
    pub(super) async fn size(&mut self, arg: String) -> Result<Flow> {
        let (files, path) = self.resolve(&arg)?;
        let (entry, unfinished) = files.stat_with_unfinished(&path).await?;
        if entry.kind != EntryKind::File {
            return Err(Error::WrongKind("Not a regular file"));
        }
        let size = match unfinished {
            Some(received) => {
                self.client()?.resume_offer = Some((path, received));
                received
            }
            None => entry.size,
        };
        self.ok(213, &size.to_string()).await
    }

    pub(super) async fn mdtm(&mut self, arg: String) -> Result<Flow> {
        let (files, path) = self.resolve(&arg)?;
        let entry = files.stat(&path).await?;
        if entry.kind != EntryKind::File {
            return Err(Error::WrongKind("Not a regular file"));
        }
        self.ok(213, &listing::format_mdtm(entry.mtime)).await
    }

    /// MFMT (draft-somers-ftp-mfxx §3): "213 Modify=time; path", with the path as given.
    pub(super) async fn mfmt(&mut self, time: FileTime, arg: String) -> Result<Flow> {
        self.set_modified(time, &arg).await?;
        self.ok(213, &format!("Modify={time}; {arg}")).await
    }

    /// MFF (draft-somers-ftp-mfxx §4) with its one served fact; the reply names the facts set.
    pub(super) async fn mff(&mut self, modify: FileTime, arg: String) -> Result<Flow> {
        self.set_modified(modify, &arg).await?;
        self.ok(213, &format!("modify={modify}; {arg}")).await
    }

    async fn set_modified(&mut self, time: FileTime, arg: &str) -> Result<()> {
        let (files, path) = self.resolve(arg)?;
        files.set_modified(&path, time).await?;
        Ok(())
    }

    pub(super) async fn mlst(&mut self, arg: Option<String>) -> Result<Flow> {
        let (files, path) = self.resolve(arg.as_deref().unwrap_or("."))?;
        let mut entry = files.stat(&path).await?;
        entry.name = path.as_str().to_owned();
        let mut facts = String::from(" ");
        listing::mlsx_facts_selected(&entry, self.mlst_facts, &mut facts);
        let lines = vec![format!("Listing {path}"), facts, "End".to_owned()];
        self.reply(Reply::multi(250, lines)).await?;
        Ok(Flow::Continue)
    }

    /// STAT with a path: the LIST output over the control connection (RFC 959 §4.1.3), as one
    /// 213 reply written in steps like any listing (`listing.rs`): each step's lines are
    /// written (with the control connection's timeout) before the next step is read.
    pub(super) async fn stat_path(&mut self, arg: String) -> Result<Flow> {
        let (_, path) = self.resolve(list_path_arg(&arg).unwrap_or("."))?;
        let mut listing = self
            .open_listing(&path, path.as_str(), ListKind::List, Framing::Reply)
            .await?;
        // "213-Status of ...:": the text is one line (paths hold no control characters).
        let mut head = Reply::new(213, format!("Status of {path}:")).to_bytes();
        if let Some(sep) = head.get_mut(3) {
            *sep = b'-';
        }
        super::listing::cap_send_buffer(&self.stream);
        self.send(&head).await?;
        let end = loop {
            match listing.next().await {
                Ok(Some(text)) => self.send(text).await?,
                Ok(None) => break "End of status",
                // The reply is under way: it is ended, not replaced by an error reply.
                Err(e) => {
                    tracing::warn!(path = %Escaped(path.as_str()), error = %e, "STAT listing cut short");
                    break "End of status (listing incomplete)";
                }
            }
        };
        self.reply(Reply::new(213, end)).await?;
        Ok(Flow::Continue)
    }
}
