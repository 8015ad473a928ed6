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
        let mut uploading = self.lock();
        // A directory being renamed or deleted on storage where that takes a while (S3) is
        // claimed itself: nothing is uploaded into it meanwhile.
        if is_below_a_claim(&uploading, target) || !uploading.insert(target.clone()) {
            return Err(StorageError::UploadInProgress);
        }
        Ok(UploadClaim {
            claims: self.clone(),
            path: target.clone(),
        })
    }

    /// Claims `path` for a change that takes time (a delete or rename on S3): refused (450)
    /// while an upload writes it or a name below it, and no upload to it or below it starts
    /// until the claim is dropped.
    pub fn claim_tree(self: &Arc<Self>, path: &VirtualPath) -> Result<UploadClaim> {
        let mut uploading = self.lock();
        if is_uploading(&uploading, path)
            || is_below_a_claim(&uploading, path)
            || !uploading.insert(path.clone())
        {
            return Err(StorageError::UploadInProgress);
        }
        Ok(UploadClaim {
            claims: self.clone(),
            path: path.clone(),
        })
    }
}

/// Whether a claimed name is a directory above `path`.
fn is_below_a_claim(uploading: &HashSet<VirtualPath>, path: &VirtualPath) -> bool {
    uploading.iter().any(|p| {
        path.as_str()
            .strip_prefix(p.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
            || p.is_root()
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::root().resolve(s).expect("valid path")
    }

    /// A directory claimed for a slow rename or delete keeps uploads out of it; a directory
    /// with an upload below it cannot be claimed; names that only share a prefix are free.
    #[test]
    fn a_claimed_directory_keeps_uploads_out() {
        let claims = Arc::new(Claims::default());
        let dir = claims.claim_tree(&vp("d")).expect("claim d");
        assert!(claims.claim(&vp("d/x")).is_err());
        assert!(claims.claim(&vp("d/e/x")).is_err());
        let other = claims.claim(&vp("dx")).expect("a sibling is free");
        drop(dir);
        let upload = claims.claim(&vp("d/x")).expect("free again");
        assert!(matches!(
            claims.claim_tree(&vp("d")),
            Err(StorageError::UploadInProgress)
        ));
        assert!(claims.claim_tree(&vp("d/x")).is_err());
        drop((upload, other));
        claims.claim_tree(&vp("d")).expect("nothing below it now");
    }
}
