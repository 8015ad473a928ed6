//! The names uploads are writing, per home: every backend keeps the same rule.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use ferry_proto::VirtualPath;

use super::{Result, StorageError};

/// The targets of the uploads running in one home ([`UploadClaim`]). A delete or rename holds
/// the lock from its check to its change, so it cannot slip between an upload's claim and its
/// bytes.
#[derive(Debug, Default)]
pub struct Claims {
    uploading: Mutex<HashSet<VirtualPath>>,
}

impl Claims {
    pub fn lock(&self) -> MutexGuard<'_, HashSet<VirtualPath>> {
        self.uploading.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `target` as being uploaded to; [`StorageError::UploadInProgress`] (450) if another
    /// upload already writes it.
    pub fn claim(self: &Arc<Self>, target: &VirtualPath) -> Result<UploadClaim> {
        if !self.lock().insert(target.clone()) {
            return Err(StorageError::UploadInProgress);
        }
        Ok(UploadClaim {
            claims: self.clone(),
            path: target.clone(),
        })
    }
}

/// Whether an upload writes `path` or a name below it.
pub fn is_uploading(uploading: &HashSet<VirtualPath>, path: &VirtualPath) -> bool {
    uploading.iter().any(|p| {
        p.as_str()
            .strip_prefix(path.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// A name an upload is writing. While it is held, another upload to the name, a DELE of it,
/// and a rename of it (or of a directory above it, or onto it) get 450 "file busy": two
/// writers would interleave their bytes, and a file deleted under a running upload would be
/// released from the quota twice (by the delete, then by the upload's settlement).
pub struct UploadClaim {
    claims: Arc<Claims>,
    path: VirtualPath,
}

impl std::fmt::Debug for UploadClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("UploadClaim").field(&self.path).finish()
    }
}

impl Drop for UploadClaim {
    fn drop(&mut self) {
        self.claims.lock().remove(&self.path);
    }
}
