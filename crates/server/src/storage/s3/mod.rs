//! The S3 backend: each user's home is the key prefix `PREFIX/homes/NAME/` of one bucket.
//!
//! How the FTP promises map onto objects, and where they differ from a disk:
//! - **Files** are objects; **directories** are key prefixes, with an empty marker object
//!   (`dir/`) made by MKD so that an empty directory exists and a directory outlives its last
//!   file. The home itself always exists.
//! - **Uploads** are written to the object only when complete: small ones (under one part) as
//!   one PutObject, larger ones as a multipart upload of `part_size` parts (one part in memory,
//!   one in flight, whatever the file's size). Readers see the old object until the new one is
//!   complete: every overwrite is atomic, not only the ones of an existing file.
//! - **Resume.** An interrupted upload stays a pending multipart upload, keeping its whole
//!   parts (the bytes of a last, partial part are not kept: S3 parts but the last must be at
//!   least 5 MiB). SIZE answers the bytes those parts hold, exactly what is durably stored, so
//!   every client's resume (REST + STOR, APPE after SIZE) continues it from there. A REST
//!   offset inside an earlier part cannot be continued (parts are not readable before the
//!   upload completes) and is refused with 554.
//! - **APPE to an object, REST n + STOR of one** start a multipart upload whose first part is
//!   the object's first bytes, copied server-side (UploadPartCopy) when they make a part of at
//!   least 5 MiB, read and re-sent when fewer.
//! - **Renames** copy and delete (server-side). A directory rename copies each object, at most
//!   `rename_max_objects`, and is not atomic: a failure midway leaves both names partly filled.
//! - **Times** are S3's LastModified; MFMT is refused (objects' times cannot be set).
//! - **HASH** SHA-256 of an object uploaded in one piece answers from the digest stored with it
//!   (`x-amz-meta-sha256`) without reading it; anything else is read and hashed.

pub mod client;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferry_proto::listing::{Entry, EntryKind};
use ferry_proto::VirtualPath;
use sha2::Digest as _;

pub use client::{Bucket, CompletedPart, ObjectMeta, ObjectReader, S3Config, S3Error, S3Timeouts};

use super::claims::Claims;
use super::{
    Completed, Freed, Reader, Replacement, Result, StorageError, UploadMode, UploadPlan, Writer,
};
use crate::config::S3Settings;

/// The metadata key of the SHA-256 an upload in one piece stores with its object.
const SHA256_META: &str = "sha256";
/// S3's smallest part but the last.
const MIN_PART: u64 = 5 << 20;

impl From<S3Error> for StorageError {
    fn from(e: S3Error) -> StorageError {
        let kind = match &e {
            S3Error::NotFound => io::ErrorKind::NotFound,
            S3Error::Denied(_) => io::ErrorKind::PermissionDenied,
            S3Error::PreconditionFailed => io::ErrorKind::AlreadyExists,
            S3Error::Invalid(_) => io::ErrorKind::InvalidInput,
            S3Error::Unavailable(_) | S3Error::Other(_) => io::ErrorKind::Other,
        };
        // The text goes to the log only (a reply shows the kind's fixed text).
        if matches!(
            e,
            S3Error::Unavailable(_) | S3Error::Other(_) | S3Error::Denied(_)
        ) {
            tracing::warn!(error = %e, "object storage");
        }
        StorageError::Io(io::Error::new(kind, e.to_string()))
    }
}

/// The bucket, and the homes open in it.
pub struct S3Storage {
    bucket: Bucket,
    settings: S3Settings,
    homes: Mutex<HashMap<String, Weak<HomeShared>>>,
}

impl S3Storage {
    /// Connects (the bucket must answer) and aborts uploads abandoned longer than the
    /// configured age.
    pub async fn connect(settings: &S3Settings) -> std::result::Result<S3Storage, String> {
        let cfg = S3Config {
            endpoint: settings.endpoint.clone(),
            region: settings.region.clone(),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            access_key_id: settings.access_key_id.clone(),
            secret_access_key: settings.secret_access_key.clone(),
            path_style: settings.path_style,
            ..S3Config::default()
        };
        let threshold = settings.multipart_copy_threshold;
        let bucket = Bucket::connect(&cfg)
            .await
            .and_then(|b| b.with_copy_threshold(threshold, threshold.min(512 << 20)))
            .map_err(|e| e.to_string())?;
        Ok(S3Storage {
            bucket,
            settings: settings.clone(),
            homes: Mutex::new(HashMap::new()),
        })
    }

    /// Aborts the multipart uploads under `homes/` older than the configured age (their
    /// parts are deleted). Returns how many.
    pub async fn abort_abandoned(&self) -> std::result::Result<usize, S3Error> {
        let cutoff = SystemTime::now() - self.settings.abandoned_upload_age;
        let mut aborted = 0;
        for pending in self.bucket.list_multipart_uploads("homes/").await? {
            if pending.initiated.is_none_or(|t| t >= cutoff) {
                continue;
            }
            // Begun long ago but still growing (a huge upload, or one resumed day after
            // day): its newest part says when it was last worked on.
            let parts = self
                .bucket
                .list_parts(&pending.key, &pending.upload_id)
                .await?;
            if parts
                .iter()
                .any(|p| p.last_modified.is_none_or(|t| t >= cutoff))
            {
                continue;
            }
            self.bucket
                .abort_multipart(&pending.key, &pending.upload_id)
                .await?;
            aborted += 1;
        }
        Ok(aborted)
    }

    pub fn bucket_name(&self) -> &str {
        self.bucket.name()
    }

    /// The home of user `name`.
    pub fn open_home(&self, name: &str) -> S3Home {
        let mut homes = self.homes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = homes.get(name).and_then(Weak::upgrade) {
            return S3Home { shared };
        }
        homes.retain(|_, w| w.strong_count() > 0);
        let shared = Arc::new(HomeShared {
            bucket: self.bucket.clone(),
            root: format!("homes/{name}/"),
            claims: Arc::default(),
            part_size: self.settings.part_size,
            rename_max_objects: self.settings.rename_max_objects,
        });
        homes.insert(name.to_owned(), Arc::downgrade(&shared));
        S3Home { shared }
    }

    /// Bytes and objects under the home of `name`, and the bytes of its unfinished uploads.
    pub async fn scan_usage(&self, name: &str) -> Result<(u64, u64)> {
        self.open_home(name).scan_usage().await
    }
}

/// A user's home in the bucket.
#[derive(Clone, Debug)]
pub struct S3Home {
    shared: Arc<HomeShared>,
}

#[derive(Debug)]
struct HomeShared {
    bucket: Bucket,
    /// `homes/NAME/`, relative to the bucket's prefix.
    root: String,
    claims: Arc<Claims>,
    part_size: u64,
    rename_max_objects: usize,
}

/// An unfinished upload of a key: its id, and its parts from 1 on without gaps.
struct Pending {
    upload_id: String,
    parts: Vec<(CompletedPart, u64)>,
}

/// Whole parts only: a part under S3's minimum (the last one sent by a completion that then
/// failed) could never be followed by another.
fn continuable(listed: &[client::PartInfo]) -> Vec<(CompletedPart, u64)> {
    let mut parts = Vec::new();
    for (i, p) in listed.iter().enumerate() {
        if usize::try_from(p.part_number).ok() != Some(i + 1) || p.size < MIN_PART {
            break;
        }
        parts.push((CompletedPart::from(p), p.size));
    }
    parts
}

impl Pending {
    fn size(&self) -> u64 {
        self.parts.iter().map(|(_, size)| size).sum()
    }
}

fn seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn file_entry(name: &str, meta: &ObjectMeta) -> Entry {
    object_entry(name, meta.size, Some(meta.last_modified))
}

fn object_entry(name: &str, size: u64, modified: Option<SystemTime>) -> Entry {
    Entry {
        name: name.to_owned(),
        kind: EntryKind::File,
        size,
        mtime: modified.map(seconds).unwrap_or(0),
        mode: 0o644,
        nlink: 1,
        unique: (0, 0),
    }
}

fn dir_entry(name: &str, modified: Option<SystemTime>) -> Entry {
    Entry {
        name: name.to_owned(),
        kind: EntryKind::Dir,
        size: 0,
        mtime: modified
            .map(seconds)
            .unwrap_or_else(|| seconds(SystemTime::now())),
        mode: 0o755,
        nlink: 2,
        unique: (0, 0),
    }
}

fn kind(kind: io::ErrorKind) -> StorageError {
    StorageError::kind(kind)
}

/// Names a bucket key may hold. A backslash is refused (553): on a disk it is an ordinary
/// character, but some S3 servers (SeaweedFS) take it for a separator, so `a\\b` would name
/// `a/b`, another object than the one the user asked for.
fn check(path: &VirtualPath) -> Result<()> {
    if path.as_str().contains('\\') {
        return Err(StorageError::Io(io::Error::new(
            io::ErrorKind::InvalidFilename,
            "backslash in an object name",
        )));
    }
    Ok(())
}

impl S3Home {
    fn bucket(&self) -> &Bucket {
        &self.shared.bucket
    }

    /// The object key of a file path (never the home itself).
    fn key(&self, path: &VirtualPath) -> String {
        format!("{}{}", self.shared.root, path.to_relative())
    }

    /// The key prefix of a directory path, ending with `/` (the home: the root itself).
    fn dir_prefix(&self, path: &VirtualPath) -> String {
        if path.is_root() {
            self.shared.root.clone()
        } else {
            format!("{}{}/", self.shared.root, path.to_relative())
        }
    }

    fn name_of(path: &VirtualPath) -> &str {
        path.file_name().unwrap_or("/")
    }

    /// Whether the directory exists: its marker, or anything below it. (`Some(time)` of the
    /// marker when it has one.)
    async fn dir_state(&self, path: &VirtualPath) -> Result<Option<Option<SystemTime>>> {
        if path.is_root() {
            return Ok(Some(None));
        }
        let prefix = self.dir_prefix(path);
        let page = self.bucket().list_page(&prefix, Some("/"), None).await?;
        if let Some(marker) = page.objects.iter().find(|o| o.key == prefix) {
            return Ok(Some(marker.last_modified));
        }
        Ok((!page.objects.is_empty() || !page.common_prefixes.is_empty()).then_some(None))
    }

    /// The unfinished upload of `key` (the newest, if several), with its parts. One begun
    /// before the object's last change (`object_time`) is stale: its abort failed, or the
    /// process died between an upload's completion and the abort.
    async fn pending(&self, key: &str, object_time: Option<SystemTime>) -> Result<Option<Pending>> {
        let mut uploads = self.bucket().list_multipart_uploads(key).await?;
        uploads.retain(|u| u.key == key);
        let Some(newest) = uploads.into_iter().max_by_key(|u| u.initiated) else {
            return Ok(None);
        };
        if let (Some(begun), Some(changed)) = (newest.initiated, object_time) {
            if begun < changed {
                let _ = self.bucket().abort_multipart(key, &newest.upload_id).await;
                return Ok(None);
            }
        }
        let mut listed = self.bucket().list_parts(key, &newest.upload_id).await?;
        listed.sort_by_key(|p| p.part_number);
        Ok(Some(Pending {
            upload_id: newest.upload_id,
            parts: continuable(&listed),
        }))
    }

    /// Aborts every unfinished upload of `key`; returns the bytes their parts held.
    async fn drop_pending(&self, key: &str) -> u64 {
        let Ok(uploads) = self.bucket().list_multipart_uploads(key).await else {
            return 0;
        };
        let mut freed = 0;
        for u in uploads.into_iter().filter(|u| u.key == key) {
            if let Ok(parts) = self.bucket().list_parts(key, &u.upload_id).await {
                freed += parts.iter().map(|p| p.size).sum::<u64>();
            }
            let _ = self.bucket().abort_multipart(key, &u.upload_id).await;
        }
        freed
    }

    pub async fn stat(&self, path: &VirtualPath) -> Result<Entry> {
        check(path)?;
        if !path.is_root() {
            if let Some(meta) = self.bucket().head(&self.key(path)).await? {
                return Ok(file_entry(Self::name_of(path), &meta));
            }
        }
        match self.dir_state(path).await? {
            Some(modified) => Ok(dir_entry(Self::name_of(path), modified)),
            None => Err(kind(io::ErrorKind::NotFound)),
        }
    }

    /// For SIZE: the object (or, for an upload never completed, a file of the bytes it kept),
    /// and the size of its unfinished upload.
    pub async fn stat_with_unfinished(&self, path: &VirtualPath) -> Result<(Entry, Option<u64>)> {
        check(path)?;
        if path.is_root() {
            return Ok((self.stat(path).await?, None));
        }
        let key = self.key(path);
        let object = self.bucket().head(&key).await?;
        let unfinished = self
            .pending(&key, object.as_ref().map(|m| m.last_modified))
            .await?
            .map(|p| p.size());
        // The HEAD above answers for a file; only without an object is a directory looked for.
        let found = match &object {
            Some(meta) => Ok(file_entry(Self::name_of(path), meta)),
            None => self.stat(path).await,
        };
        match (found, unfinished) {
            (Ok(entry), unfinished) => Ok((entry, unfinished)),
            (Err(e), Some(size)) if e.is_not_found() => {
                Ok((object_entry(Self::name_of(path), size, None), Some(size)))
            }
            (Err(e), _) => Err(e),
        }
    }

    pub async fn open_read(&self, path: &VirtualPath) -> Result<(Reader, u64)> {
        check(path)?;
        if path.is_root() {
            return Err(kind(io::ErrorKind::IsADirectory));
        }
        let key = self.key(path);
        match self.bucket().head(&key).await? {
            Some(meta) => {
                let size = meta.size;
                Ok((
                    Reader::S3(S3Reader {
                        bucket: self.bucket().clone(),
                        key,
                        meta,
                    }),
                    size,
                ))
            }
            None if self.dir_state(path).await?.is_some() => Err(kind(io::ErrorKind::IsADirectory)),
            None => Err(kind(io::ErrorKind::NotFound)),
        }
    }

    /// The parent directory of `path` must exist (as on a disk: no upload or MKD into nothing).
    async fn parent_must_exist(&self, path: &VirtualPath) -> Result<()> {
        let parent = path.parent().unwrap_or_else(VirtualPath::root);
        if parent.is_root() {
            return Ok(());
        }
        if self.bucket().head(&self.key(&parent)).await?.is_some() {
            return Err(kind(io::ErrorKind::NotADirectory));
        }
        match self.dir_state(&parent).await? {
            Some(_) => Ok(()),
            None => Err(kind(io::ErrorKind::NotFound)),
        }
    }

    /// See the module documentation and [`super::local::LocalHome::open_upload`]: the same
    /// rules, with the pending upload in the part file's place.
    pub async fn open_upload(&self, target: &VirtualPath, mode: UploadMode) -> Result<UploadPlan> {
        check(target)?;
        if target.is_root() {
            return Err(kind(io::ErrorKind::IsADirectory));
        }
        let claim = self.shared.claims.claim(target)?;
        self.parent_must_exist(target).await?;
        let key = self.key(target);
        let object = self.bucket().head(&key).await?;
        if object.is_none() && self.dir_state(target).await?.is_some() {
            return Err(kind(io::ErrorKind::IsADirectory));
        }
        let pending = self
            .pending(&key, object.as_ref().map(|m| m.last_modified))
            .await?;
        let old_size = object.as_ref().map(|m| m.size);
        let mut upload = S3Upload::new(self, key.clone());
        upload.overwrites = object.is_some();
        let (start, released) = match (mode, pending) {
            // Continue the unfinished upload where its parts end.
            (UploadMode::Appe { offered }, Some(p))
                if object.is_none() || offered == Some(p.size()) =>
            {
                let size = p.size();
                upload.resume(p, size)?;
                (size, 0)
            }
            (UploadMode::Appe { .. }, Some(p)) => {
                return Err(StorageError::UnfinishedUpload { received: p.size() })
            }
            (UploadMode::Stor { rest }, Some(p)) if rest > 0 => {
                let size = p.size();
                if rest > size {
                    return Err(StorageError::RestPastEnd);
                }
                if rest < size {
                    // The parts after `rest` cannot be removed from the upload (S3 has no
                    // such call) and would count again after another interruption.
                    return Err(StorageError::RestInsidePart { resumable: size });
                }
                upload.resume(p, rest)?;
                (rest, 0)
            }
            // A new upload from 0 replaces the unfinished one.
            (UploadMode::Stor { .. }, Some(p)) => {
                let freed = p.size();
                let _ = self.bucket().abort_multipart(&key, &p.upload_id).await;
                (0, freed)
            }
            (UploadMode::Appe { .. }, None) => match &object {
                Some(meta) => {
                    upload.start_from(meta.size).await?;
                    (meta.size, 0)
                }
                None => (0, 0),
            },
            (UploadMode::Stor { rest }, None) if rest > 0 => match &object {
                Some(meta) if rest <= meta.size => {
                    upload.start_from(rest).await?;
                    (rest, 0)
                }
                _ => return Err(StorageError::RestPastEnd),
            },
            (UploadMode::Stor { .. }, None) => (0, 0),
        };
        if object.is_some() && upload.upload_id.is_none() && !upload.carries_old {
            // An overwrite is a pending upload from its first byte on: SIZE answers what it
            // has stored (0 so far), never the old object's size, which a resume (curl -C -,
            // lftp reput) would take as the new version's first bytes.
            upload.begin().await?;
        }
        // The object is created when the upload completes, also when it resumes one.
        let new_file = object.is_none();
        upload.replaced = match old_size {
            // The object's bytes before `start` live on in the new version.
            Some(size) if upload.carries_old => size - start.min(size),
            Some(size) => size,
            None => 0,
        };
        Ok(UploadPlan {
            writer: Writer::S3(Box::new(upload)),
            written: target.clone(),
            replaces: object.map(|m| Replacement {
                target: target.clone(),
                old_size: Some(m.size),
            }),
            start_size: start,
            released,
            new_file,
            claim,
        })
    }

    /// STOU: the first free name of `base`, `base.1`, ...
    pub async fn create_unique(&self, base: &VirtualPath) -> Result<UploadPlan> {
        check(base)?;
        for n in 0..super::UNIQUE_TRIES {
            let candidate = super::unique_name(base, n)?;
            match self.stat(&candidate).await {
                // An interrupted upload of the name holds it too (it can be resumed).
                Err(e) if e.is_not_found() => {
                    if self.pending(&self.key(&candidate), None).await?.is_some() {
                        continue;
                    }
                }
                Err(e) => return Err(e),
                Ok(_) => continue,
            }
            match self
                .open_upload(&candidate, UploadMode::Stor { rest: 0 })
                .await
            {
                Ok(mut plan) => {
                    if let Writer::S3(up) = &mut plan.writer {
                        // Refused at completion if another name took it meanwhile.
                        up.if_absent = true;
                    }
                    return Ok(plan);
                }
                Err(StorageError::UploadInProgress) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(kind(io::ErrorKind::AlreadyExists))
    }

    pub async fn complete_upload(&self, writer: Option<Writer>, ok: bool) -> Result<Completed> {
        match writer {
            Some(Writer::S3(upload)) => upload.complete(ok).await,
            _ => Err(StorageError::Io(io::Error::other(
                "upload state lost before completion",
            ))),
        }
    }

    pub async fn mkdir(&self, path: &VirtualPath) -> Result<()> {
        check(path)?;
        if path.is_root() || self.stat(path).await.is_ok() {
            return Err(kind(io::ErrorKind::AlreadyExists));
        }
        self.parent_must_exist(path).await?;
        let marker = self.dir_prefix(path);
        self.bucket().put(&marker, Bytes::new(), &[]).await?;
        Ok(())
    }

    pub async fn rmdir(&self, path: &VirtualPath) -> Result<()> {
        check(path)?;
        if path.is_root() {
            return Err(kind(io::ErrorKind::PermissionDenied));
        }
        if self.bucket().head(&self.key(path)).await?.is_some() {
            return Err(kind(io::ErrorKind::NotADirectory));
        }
        let prefix = self.dir_prefix(path);
        let page = self.bucket().list_page(&prefix, Some("/"), None).await?;
        let has_marker = page.objects.iter().any(|o| o.key == prefix);
        let others =
            page.objects.iter().filter(|o| o.key != prefix).count() + page.common_prefixes.len();
        if others > 0 {
            return Err(kind(io::ErrorKind::DirectoryNotEmpty));
        }
        if !has_marker {
            return Err(kind(io::ErrorKind::NotFound));
        }
        self.bucket().delete(&prefix).await?;
        Ok(())
    }

    pub async fn remove_file(&self, path: &VirtualPath) -> Result<Freed> {
        check(path)?;
        if path.is_root() {
            return Err(kind(io::ErrorKind::IsADirectory));
        }
        // Held until the object is gone: no upload of the name starts meanwhile.
        let _claim = self.shared.claims.claim_tree(path)?;
        let key = self.key(path);
        let Some(meta) = self.bucket().head(&key).await? else {
            if self.dir_state(path).await?.is_some() {
                return Err(kind(io::ErrorKind::IsADirectory));
            }
            // An upload interrupted before it created the object: DELE drops what it kept.
            if self.pending(&key, None).await?.is_some() {
                return Ok(Freed {
                    bytes: self.drop_pending(&key).await,
                    file: false,
                });
            }
            return Err(kind(io::ErrorKind::NotFound));
        };
        self.bucket().delete(&key).await?;
        let parts = self.drop_pending(&key).await;
        Ok(Freed {
            bytes: meta.size + parts,
            file: true,
        })
    }

    pub async fn exists(&self, path: &VirtualPath) -> Result<()> {
        self.stat(path).await.map(drop)
    }

    pub async fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> Result<Freed> {
        check(from)?;
        check(to)?;
        if from.is_root() || to.is_root() {
            return Err(kind(io::ErrorKind::PermissionDenied));
        }
        if from == to {
            return self.stat(from).await.map(|_| Freed::default());
        }
        // Held until the copy and delete are done: no upload of either name, or into a
        // directory being moved, starts meanwhile.
        let _claims = (
            self.shared.claims.claim_tree(from)?,
            self.shared.claims.claim_tree(to)?,
        );
        self.parent_must_exist(to).await?;
        let (from_key, to_key) = (self.key(from), self.key(to));
        if let Some(meta) = self.bucket().head(&from_key).await? {
            if self.dir_state(to).await?.is_some() {
                return Err(kind(io::ErrorKind::IsADirectory));
            }
            let replaced = self.bucket().head(&to_key).await?;
            self.bucket().copy(&from_key, &to_key, meta.size).await?;
            self.bucket().delete(&from_key).await?;
            let parts = self.drop_pending(&from_key).await + self.drop_pending(&to_key).await;
            return Ok(match replaced {
                Some(old) => Freed {
                    bytes: old.size + parts,
                    file: true,
                },
                None => Freed {
                    bytes: parts,
                    file: false,
                },
            });
        }
        if self.dir_state(from).await?.is_none() {
            return Err(kind(io::ErrorKind::NotFound));
        }
        self.rename_dir(from, to).await?;
        // Unfinished uploads below the old name would offer their sizes at the new one's
        // files (whose old bytes they are not): dropped, as a part file follows its file.
        let mut freed = 0;
        let src = self.dir_prefix(from);
        if let Ok(uploads) = self.bucket().list_multipart_uploads(&src).await {
            for u in uploads {
                freed += self.drop_pending(&u.key).await;
            }
        }
        Ok(Freed {
            bytes: freed,
            file: false,
        })
    }

    /// Copies every object below `from` to the same place below `to`, then deletes the
    /// originals: at most `rename_max_objects`, counted before anything is copied.
    async fn rename_dir(&self, from: &VirtualPath, to: &VirtualPath) -> Result<()> {
        if self.stat(to).await.is_ok() {
            return Err(kind(io::ErrorKind::AlreadyExists));
        }
        let (src, dst) = (self.dir_prefix(from), self.dir_prefix(to));
        if dst.starts_with(&src) {
            return Err(kind(io::ErrorKind::InvalidInput));
        }
        let mut objects = Vec::new();
        let mut next = None;
        loop {
            let page = self.bucket().list_page(&src, None, next).await?;
            objects.extend(page.objects.into_iter().map(|o| (o.key, o.size)));
            if objects.len() > self.shared.rename_max_objects {
                return Err(StorageError::TooManyObjects {
                    limit: self.shared.rename_max_objects,
                });
            }
            next = page.next;
            if next.is_none() {
                break;
            }
        }
        // The new directory's marker first: it keeps existing when it is emptied later.
        self.bucket().put(&dst, Bytes::new(), &[]).await?;
        for (key, size) in &objects {
            let Some(rest) = key.strip_prefix(&src) else {
                continue;
            };
            let to = format!("{dst}{rest}");
            if key.ends_with('/') {
                // A directory marker is made anew (some servers keep them as directories,
                // which CopyObject does not copy).
                self.bucket().put(&to, Bytes::new(), &[]).await?;
            } else {
                self.bucket().copy(key, &to, *size).await?;
            }
        }
        for (key, _) in &objects {
            self.bucket().delete(key).await?;
        }
        Ok(())
    }

    /// One page of the directory `path`: its subdirectories and files (the marker left out),
    /// and where the next page starts.
    pub async fn list_page(
        &self,
        path: &VirtualPath,
        continuation: Option<String>,
    ) -> Result<(Vec<Entry>, Option<String>)> {
        check(path)?;
        let prefix = self.dir_prefix(path);
        let page = self
            .bucket()
            .list_page(&prefix, Some("/"), continuation)
            .await?;
        let mut entries = Vec::with_capacity(page.common_prefixes.len() + page.objects.len());
        for dir in &page.common_prefixes {
            let name = dir
                .strip_prefix(&prefix)
                .unwrap_or("")
                .trim_end_matches('/');
            if !name.is_empty() {
                entries.push(dir_entry(name, None));
            }
        }
        for object in &page.objects {
            let name = object.key.strip_prefix(&prefix).unwrap_or("");
            if !name.is_empty() {
                entries.push(object_entry(name, object.size, object.last_modified));
            }
        }
        // Folded prefixes and objects come as two lists: one order for the listing.
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok((entries, page.next))
    }

    /// Bytes and objects of the home, and the parts of its unfinished uploads (bytes only).
    pub async fn scan_usage(&self) -> Result<(u64, u64)> {
        let (mut bytes, mut files) = (0u64, 0u64);
        let mut next = None;
        loop {
            let page = self
                .bucket()
                .list_page(&self.shared.root, None, next)
                .await?;
            for object in &page.objects {
                if !object.key.ends_with('/') {
                    bytes += object.size;
                    files += 1;
                }
            }
            next = page.next;
            if next.is_none() {
                break;
            }
        }
        for pending in self
            .bucket()
            .list_multipart_uploads(&self.shared.root)
            .await?
        {
            if let Ok(parts) = self
                .bucket()
                .list_parts(&pending.key, &pending.upload_id)
                .await
            {
                bytes += parts.iter().map(|p| p.size).sum::<u64>();
            }
        }
        Ok((bytes, files))
    }
}

/// An object opened for reading: its metadata from HEAD; the bytes are fetched by ranged GETs.
#[derive(Debug)]
pub struct S3Reader {
    bucket: Bucket,
    key: String,
    meta: ObjectMeta,
}

impl S3Reader {
    /// The stream of bytes from `offset` on.
    pub async fn stream(&self, offset: u64) -> io::Result<ObjectStream> {
        // The version the HEAD before the 150 described, or an error (451): never the start
        // of a newer version cut to the old size.
        let reader = self
            .bucket
            .get_range_of(
                &self.key,
                offset,
                Some(self.meta.size),
                Some(&self.meta.etag),
            )
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(ObjectStream {
            reader,
            chunk: Bytes::new(),
        })
    }

    /// The SHA-256 stored with the object when it was uploaded in one piece, if any.
    pub fn stored_sha256(&self) -> Option<(&str, u64)> {
        self.meta
            .metadata
            .get(SHA256_META)
            .map(String::as_str)
            .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|d| (d, self.meta.size))
    }
}

/// Bytes of an object, read chunk by chunk (at most one chunk held).
#[derive(Debug)]
pub struct ObjectStream {
    reader: ObjectReader,
    chunk: Bytes,
}

impl ObjectStream {
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.reader.next_chunk().await {
                Ok(Some(chunk)) => self.chunk = chunk,
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

/// An upload to an object: the part being filled, the parts sent, and how it completes.
#[derive(Debug)]
pub struct S3Upload {
    bucket: Bucket,
    key: String,
    part_size: u64,
    /// The multipart upload, once there is one (a small upload never has one).
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    /// Bytes in `parts`.
    sent: u64,
    /// The part being filled.
    buf: Vec<u8>,
    /// SHA-256 of every byte, when they all pass through this upload (from offset 0).
    digest: Option<sha2::Sha256>,
    /// The new version starts with the old object's first bytes (APPE, REST + STOR).
    carries_old: bool,
    /// Bytes of the old object its replacement gives back.
    replaced: u64,
    /// STOU: complete only if no object has the name yet.
    if_absent: bool,
    /// An object had the name when the upload opened.
    overwrites: bool,
}

impl S3Upload {
    fn new(home: &S3Home, key: String) -> S3Upload {
        S3Upload {
            bucket: home.bucket().clone(),
            key,
            part_size: home.shared.part_size,
            upload_id: None,
            parts: Vec::new(),
            sent: 0,
            buf: Vec::new(),
            digest: Some(sha2::Sha256::new()),
            carries_old: false,
            replaced: 0,
            if_absent: false,
            overwrites: false,
        }
    }

    /// Continues `pending` with its parts up to `offset`, which must be where one ends.
    fn resume(&mut self, pending: Pending, offset: u64) -> Result<()> {
        let mut kept = 0u64;
        let mut parts = Vec::new();
        for (part, size) in pending.parts {
            if kept == offset {
                break;
            }
            kept += size;
            parts.push(part);
        }
        if kept != offset {
            return Err(StorageError::RestInsidePart { resumable: kept });
        }
        self.upload_id = Some(pending.upload_id);
        self.parts = parts;
        self.sent = offset;
        if offset > 0 {
            // Earlier bytes went through another upload: no digest of the whole.
            self.digest = None;
        }
        Ok(())
    }

    /// Starts a new version whose first `keep` bytes are the object's: copied server-side
    /// when they make a part of their own, else read into the first part.
    async fn start_from(&mut self, keep: u64) -> Result<()> {
        self.carries_old = true;
        self.digest = None;
        if keep == 0 {
            return Ok(());
        }
        if keep >= MIN_PART {
            let id = self.bucket.create_multipart(&self.key, &[]).await?;
            self.upload_id = Some(id.clone());
            // One copied part per 5 GiB (UploadPartCopy's largest).
            const MAX_COPY_PART: u64 = 5 << 30;
            let mut start = 0;
            while start < keep {
                let end = (start + MAX_COPY_PART).min(keep);
                // A last copied piece under 5 MiB would be a small part before others.
                let end = if keep - end < MIN_PART { keep } else { end };
                let number = self.next_part_number()?;
                let part = self
                    .bucket
                    .upload_part_copy(&self.key, &id, number, &self.key, Some((start, end)))
                    .await?;
                self.parts.push(part);
                start = end;
            }
            self.sent = keep;
        } else {
            let mut stream = self
                .bucket
                .get_range(&self.key, 0, Some(keep))
                .await
                .map_err(StorageError::from)?;
            while let Some(chunk) = stream.next_chunk().await? {
                self.buf.extend_from_slice(&chunk);
            }
        }
        Ok(())
    }

    /// Starts the multipart upload (before any part is full).
    async fn begin(&mut self) -> Result<()> {
        let id = self.bucket.create_multipart(&self.key, &[]).await?;
        self.upload_id = Some(id);
        Ok(())
    }

    fn next_part_number(&self) -> Result<i32> {
        i32::try_from(self.parts.len() + 1)
            .ok()
            .filter(|n| *n <= 10_000)
            .ok_or_else(|| {
                StorageError::Io(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    "upload has 10,000 parts",
                ))
            })
    }

    /// Sends the first `len` bytes of the buffer as the next part.
    async fn send_part(&mut self, len: usize) -> io::Result<()> {
        let id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self
                    .bucket
                    .create_multipart(&self.key, &[])
                    .await
                    .map_err(to_io)?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        // The buffer itself becomes the body (no copy); a part's buffer is allocated once, at
        // its size (see `write`).
        let body = if len == self.buf.len() {
            Bytes::from(std::mem::take(&mut self.buf))
        } else {
            let rest = self.buf.split_off(len);
            Bytes::from(std::mem::replace(&mut self.buf, rest))
        };
        let number = self.next_part_number().map_err(storage_to_io)?;
        let part = self
            .bucket
            .upload_part(&self.key, &id, number, body)
            .await
            .map_err(to_io)?;
        self.parts.push(part);
        self.sent += len as u64;
        Ok(())
    }

    /// Takes `data` in order; sends every full part.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(d) = &mut self.digest {
            d.update(data);
        }
        // Filled up to one part and never past it: a buffer that grew by doubling would hold
        // up to twice the part size.
        let part = usize::try_from(self.part_size).unwrap_or(usize::MAX);
        let mut rest = data;
        while !rest.is_empty() {
            if self.buf.capacity() < part {
                self.buf.reserve_exact(part - self.buf.len());
            }
            let take = rest.len().min(part.saturating_sub(self.buf.len()));
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() >= part {
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    /// Ends the upload: with `ok`, the object is (re)placed whole; without, what whole parts
    /// hold stays as the unfinished upload for a resume.
    async fn complete(mut self: Box<Self>, ok: bool) -> Result<Completed> {
        if !ok {
            // What whole parts hold stays pending; the object, if any, is as it was.
            return Ok(Completed {
                size: self.sent,
                replaced: 0,
                target_exists: self.overwrites,
            });
        }
        let size = self.sent + self.buf.len() as u64;
        // Under one part with nothing sent yet: one PutObject (with the digest) serves, and a
        // multipart upload begun for the overwrite is dropped after it.
        let single = self.parts.is_empty() && (self.buf.len() as u64) < self.part_size;
        match self.upload_id.clone() {
            Some(id) if single => {
                self.put_whole().await?;
                let _ = self.bucket.abort_multipart(&self.key, &id).await;
            }
            None => self.put_whole().await?,
            Some(id) => {
                if !self.buf.is_empty() || self.parts.is_empty() {
                    let len = self.buf.len();
                    self.send_part(len).await?;
                }
                if self.if_absent {
                    self.bucket
                        .complete_multipart_if_absent(&self.key, &id, &self.parts)
                        .await?;
                } else {
                    self.bucket
                        .complete_multipart(&self.key, &id, &self.parts)
                        .await?;
                }
            }
        }
        Ok(Completed {
            size,
            replaced: self.replaced,
            target_exists: true,
        })
    }

    /// The whole object in one PutObject, with its SHA-256 when every byte passed through.
    async fn put_whole(&mut self) -> Result<()> {
        let meta: Vec<(String, String)> = self
            .digest
            .take()
            .map(|d| {
                let hex: String = d.finalize().iter().map(|b| format!("{b:02x}")).collect();
                vec![(SHA256_META.to_owned(), hex)]
            })
            .unwrap_or_default();
        let body = Bytes::from(std::mem::take(&mut self.buf));
        if self.if_absent {
            self.bucket.put_if_absent(&self.key, body, &meta).await?;
        } else {
            self.bucket.put(&self.key, body, &meta).await?;
        }
        Ok(())
    }
}

fn to_io(e: S3Error) -> io::Error {
    io::Error::other(e.to_string())
}

fn storage_to_io(e: StorageError) -> io::Error {
    match e {
        StorageError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}
