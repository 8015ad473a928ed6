//! An S3-compatible object store client: the operations an FTP backend needs, on top of
//! `aws-sdk-s3` (hyper + rustls with the `ring` provider; no aws-lc, no OpenSSL).
//!
//! Keys: every method takes and returns keys *relative to the configured prefix*
//! ([`S3Config::prefix`]); [`Bucket::key`] shows the full key that goes on the wire. A key is
//! never interpreted as a path here: `a/../b` is just a name.
//!
//! Retries (the SDK's "standard" strategy: exponential backoff with jitter, starting at 200 ms,
//! at most 5 s apart, [`S3Config::max_attempts`] attempts in all, 3 by default) on transient
//! failures only: connection errors, timeouts, HTTP 5xx, throttling. They are on for the
//! operations that can be repeated without changing the outcome: head, get, the lists, delete,
//! put (a whole object), `upload_part` and `upload_part_copy` (of one part number), complete,
//! abort and CopyObject. They are off for `create_multipart` (a repeat would leave a second
//! upload behind) and for the conditional writes (`put_if_absent`, `complete_multipart_if_absent`:
//! a repeat of one that succeeded would report a failed precondition). A GET body that breaks
//! off midway is picked up again from the last byte delivered, with `If-Match` on the object's
//! ETag, by [`ObjectReader::next_chunk`].
//!
//! Timeouts ([`S3Timeouts`]): connect; the time to the response's first byte (`request` for
//! small requests, `transfer` for the ones that carry or copy data); and a stalled body (less
//! than 1 byte/s for `stall`), up or down. So a server that goes away gives
//! [`S3Error::Unavailable`] in bounded time, never a hang.
//!
//! Credentials come from [`S3Config`], else from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
//! (and `AWS_SESSION_TOKEN`); the secret never appears in `Debug` output or logs.
//!
//! What SeaweedFS does differently from AWS (checked against `weed mini` 4.48; see
//! `scripts/seaweedfs.sh`): ListObjectsV2 without a delimiter is in depth-first tree order
//! (`a/b` right after `a`, before `a-b`), not byte order; ListParts lists a part number twice
//! when it was uploaded twice ([`Bucket::list_parts`] keeps one); ListMultipartUploads ignores
//! the delimiter, is unsorted and its markers do not page ([`Bucket::list_multipart_uploads`]
//! copes); the ETag of an UploadPartCopy part is not the MD5 of the copied bytes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{self as s3t, MetadataDirective};
use aws_smithy_http_client::tls;
use bytes::Bytes;

/// S3 allows at most this many parts in one multipart upload.
pub const MAX_PARTS: i32 = 10_000;
/// The smallest size of a part that is not the last one.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The largest part, and the largest object CopyObject copies in one request.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// The default size of the parts of a multipart copy.
pub const DEFAULT_COPY_PART_SIZE: u64 = 512 * 1024 * 1024;
/// How many UploadPartCopy requests a multipart copy keeps in flight.
const COPY_CONCURRENCY: usize = 4;
/// DeleteObjects takes at most this many keys.
const DELETE_BATCH: usize = 1000;

/// How long to wait for what.
#[derive(Clone, Debug)]
pub struct S3Timeouts {
    /// Establishing a connection (TCP and TLS).
    pub connect: Duration,
    /// From sending a small request (head, list, delete, create, abort) to its response's first
    /// byte, per attempt.
    pub request: Duration,
    /// The same for the requests that carry or copy data (put, upload part, part copy, copy,
    /// complete), per attempt.
    pub transfer: Duration,
    /// A request or response body that moves less than one byte a second for this long fails
    /// (then a GET body resumes, an upload is retried).
    pub stall: Duration,
}

impl Default for S3Timeouts {
    fn default() -> Self {
        S3Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            transfer: Duration::from_secs(600),
            stall: Duration::from_secs(20),
        }
    }
}

/// Where the bucket is and how to reach it.
#[derive(Clone)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible server; `None` for AWS itself (from the region).
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Prepended to every key; a `/` is added when it does not end with one (empty: none).
    pub prefix: String,
    /// Both or neither; when neither, the `AWS_*` environment variables.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// `endpoint/bucket/key` rather than `bucket.endpoint/key` (most non-AWS servers need it).
    pub path_style: bool,
    pub timeouts: S3Timeouts,
    /// Attempts in all for the operations that retry (1 = no retries).
    pub max_attempts: u32,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: "us-east-1".to_string(),
            bucket: String::new(),
            prefix: String::new(),
            access_key_id: None,
            secret_access_key: None,
            path_style: false,
            timeouts: S3Timeouts::default(),
            max_attempts: 3,
        }
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("path_style", &self.path_style)
            .field("timeouts", &self.timeouts)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl S3Config {
    /// From the environment: `S3_ENDPOINT` (optional; when set, path-style addressing unless
    /// `S3_PATH_STYLE=false`), `S3_BUCKET` (required), `AWS_REGION` (default `us-east-1`),
    /// `S3_PREFIX` (default none). Credentials stay unset here: [`Bucket::connect`] reads them.
    pub fn from_env() -> Result<S3Config, S3Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let bucket =
            var("S3_BUCKET").ok_or_else(|| S3Error::Invalid("S3_BUCKET is not set".to_string()))?;
        let endpoint = var("S3_ENDPOINT");
        let path_style = match var("S3_PATH_STYLE").as_deref() {
            Some("false" | "0" | "no") => false,
            Some(_) => true,
            None => endpoint.is_some(),
        };
        Ok(S3Config {
            endpoint,
            region: var("AWS_REGION").unwrap_or_else(|| "us-east-1".to_string()),
            bucket,
            prefix: var("S3_PREFIX").unwrap_or_default(),
            path_style,
            ..S3Config::default()
        })
    }
}

/// Why an operation failed, as the layer above needs to tell.
#[derive(thiserror::Error, Debug)]
pub enum S3Error {
    /// No such object (or multipart upload).
    #[error("not found")]
    NotFound,
    /// A conditional request's condition did not hold (the object exists, or changed).
    #[error("precondition failed")]
    PreconditionFailed,
    /// Refused: bad credentials, signature, or permissions.
    #[error("access denied: {0}")]
    Denied(String),
    /// The server could not be reached or kept failing: connection refused, timeouts, 5xx
    /// after the retries.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A request the server (or this module) rejects as malformed: bad range, part too small,
    /// bad metadata, no such bucket.
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("{0}")]
    Other(String),
}

/// What HEAD tells about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub last_modified: SystemTime,
    /// Without the quotes.
    pub etag: String,
    /// User metadata (`x-amz-meta-*`), names in lower case.
    pub metadata: BTreeMap<String, String>,
}

/// A part uploaded (or copied) into a multipart upload, as `complete_multipart` needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: i32,
    /// Without the quotes.
    pub etag: String,
}

/// A part as ListParts reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartInfo {
    pub part_number: i32,
    pub size: u64,
    /// Without the quotes.
    pub etag: String,
    pub last_modified: Option<SystemTime>,
}

impl From<&PartInfo> for CompletedPart {
    fn from(p: &PartInfo) -> Self {
        CompletedPart {
            part_number: p.part_number,
            etag: p.etag.clone(),
        }
    }
}

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingUpload {
    /// Relative to the prefix.
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<SystemTime>,
}

/// An object in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    /// Relative to the prefix.
    pub key: String,
    pub size: u64,
    pub last_modified: Option<SystemTime>,
}

/// One page of ListObjectsV2 (at most 1,000 entries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Relative to the prefix, each ending with the delimiter.
    pub common_prefixes: Vec<String>,
    pub objects: Vec<ListedObject>,
    /// Pass to the next call for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// A handle on one bucket (and prefix). Cheap to clone.
#[derive(Clone)]
pub struct Bucket {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Empty, or ending with `/`.
    prefix: String,
    /// For error messages only.
    endpoint: String,
    timeouts: S3Timeouts,
    copy_threshold: u64,
    copy_part_size: u64,
    max_attempts: u32,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket")
            .field("endpoint", &self.inner.endpoint)
            .field("bucket", &self.inner.bucket)
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

/// How a request is sent: small or carrying data (which timeout), retried or not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Small,
    Transfer,
    SmallOnce,
    TransferOnce,
}

impl Bucket {
    /// Builds the client and checks that the bucket answers (HeadBucket). The error names the
    /// endpoint, the bucket and the cause.
    pub async fn connect(cfg: &S3Config) -> Result<Bucket, S3Error> {
        let endpoint = cfg
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("AWS S3 ({})", cfg.region));
        let context = |e: S3Error| match e {
            S3Error::NotFound => S3Error::Invalid(format!(
                "bucket {:?} at {endpoint}: no such bucket",
                cfg.bucket
            )),
            S3Error::PreconditionFailed => S3Error::Other(format!(
                "bucket {:?} at {endpoint}: unexpected precondition failure",
                cfg.bucket
            )),
            S3Error::Denied(m) => {
                S3Error::Denied(format!("bucket {:?} at {endpoint}: {m}", cfg.bucket))
            }
            S3Error::Unavailable(m) => {
                S3Error::Unavailable(format!("bucket {:?} at {endpoint}: {m}", cfg.bucket))
            }
            S3Error::Invalid(m) => {
                S3Error::Invalid(format!("bucket {:?} at {endpoint}: {m}", cfg.bucket))
            }
            S3Error::Other(m) => {
                S3Error::Other(format!("bucket {:?} at {endpoint}: {m}", cfg.bucket))
            }
        };
        if cfg.bucket.is_empty() {
            return Err(S3Error::Invalid("no bucket configured".to_string()));
        }
        if cfg.max_attempts == 0 {
            return Err(S3Error::Invalid(
                "max_attempts must be at least 1".to_string(),
            ));
        }
        let credentials = credentials(cfg).map_err(context)?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(cfg.path_style)
            .retry_config(retry_config(cfg.max_attempts))
            .timeout_config(timeout_config(&cfg.timeouts, cfg.timeouts.request))
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(cfg.timeouts.stall)
                    .build(),
            )
            // Checksums only where S3 requires them (DeleteObjects): the optional CRC headers
            // and aws-chunked trailers are where S3-compatible servers differ most.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(ep) = &cfg.endpoint {
            builder = builder.endpoint_url(ep.trim_end_matches('/'));
        }
        let mut prefix = cfg.prefix.trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let bucket = Bucket {
            inner: Arc::new(Inner {
                client: aws_sdk_s3::Client::from_conf(builder.build()),
                bucket: cfg.bucket.clone(),
                prefix,
                endpoint: endpoint.clone(),
                timeouts: cfg.timeouts.clone(),
                copy_threshold: MAX_PART_SIZE,
                copy_part_size: DEFAULT_COPY_PART_SIZE,
                max_attempts: cfg.max_attempts,
            }),
        };
        let req = bucket
            .inner
            .client
            .head_bucket()
            .bucket(&bucket.inner.bucket);
        req.customize()
            .config_override(bucket.over(Kind::Small))
            .send()
            .await
            .map_err(|e| map_err("HeadBucket", "", e))
            .map_err(context)?;
        Ok(bucket)
    }

    /// The same bucket, copying objects larger than `threshold` bytes with multipart
    /// UploadPartCopy in parts of `part_size` (or larger, to stay within 10,000 parts).
    /// Defaults: 5 GiB (CopyObject's limit) and 512 MiB.
    pub fn with_copy_threshold(&self, threshold: u64, part_size: u64) -> Result<Bucket, S3Error> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) || threshold > MAX_PART_SIZE {
            return Err(S3Error::Invalid(format!(
                "copy threshold {threshold} / part size {part_size} out of range"
            )));
        }
        let mut inner = (*self.inner).clone();
        inner.copy_threshold = threshold;
        inner.copy_part_size = part_size;
        Ok(Bucket {
            inner: Arc::new(inner),
        })
    }

    /// The full key for a key relative to the prefix.
    pub fn key(&self, relative: &str) -> String {
        format!("{}{}", self.inner.prefix, relative)
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.inner.bucket
    }

    fn strip<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(self.inner.prefix.as_str())
    }

    /// The full key for a relative one, refusing the empty key and over-long keys.
    fn full(&self, relative: &str) -> Result<String, S3Error> {
        if relative.is_empty() {
            return Err(S3Error::Invalid("empty key".to_string()));
        }
        let full = self.key(relative);
        if full.len() > 1024 {
            return Err(S3Error::Invalid(format!(
                "key is {} bytes long, S3 allows 1024",
                full.len()
            )));
        }
        Ok(full)
    }

    /// The per-request settings of a kind of request: its timeout, retries or none.
    fn over(&self, kind: Kind) -> aws_sdk_s3::config::Builder {
        let t = &self.inner.timeouts;
        let over = aws_sdk_s3::Config::builder();
        match kind {
            Kind::Small => over,
            Kind::Transfer => over.timeout_config(timeout_config(t, t.transfer)),
            Kind::SmallOnce => over.retry_config(RetryConfig::disabled()),
            Kind::TransferOnce => over
                .retry_config(RetryConfig::disabled())
                .timeout_config(timeout_config(t, t.transfer)),
        }
    }

    /// Size, time, ETag and user metadata; `None` when there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, S3Error> {
        let full = self.full(key)?;
        let req = self
            .inner
            .client
            .head_object()
            .bucket(&self.inner.bucket)
            .key(&full);
        match req
            .customize()
            .config_override(self.over(Kind::Small))
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectMeta {
                size: size_of(out.content_length, "HeadObject", key)?,
                last_modified: out
                    .last_modified
                    .and_then(|t| SystemTime::try_from(t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                etag: unquote(out.e_tag.as_deref()),
                metadata: out.metadata.unwrap_or_default().into_iter().collect(),
            })),
            Err(e) => match map_err("HeadObject", key, e) {
                S3Error::NotFound => Ok(None),
                e => Err(e),
            },
        }
    }

    /// The bytes `start..end_exclusive` of an object (to its end when `None`), as a stream of
    /// chunks: memory stays bounded whatever the size. `start` equal to the object's size gives
    /// an empty stream; beyond it, [`S3Error::Invalid`].
    pub async fn get_range(
        &self,
        key: &str,
        start: u64,
        end_exclusive: Option<u64>,
    ) -> Result<ObjectReader, S3Error> {
        self.get_range_of(key, start, end_exclusive, None).await
    }

    /// [`Bucket::get_range`] of the version with ETag `etag` only ([`S3Error::PreconditionFailed`]
    /// once the object has changed): the bytes a HEAD before it described.
    pub async fn get_range_of(
        &self,
        key: &str,
        start: u64,
        end_exclusive: Option<u64>,
        etag: Option<&str>,
    ) -> Result<ObjectReader, S3Error> {
        let full = self.full(key)?;
        if let Some(end) = end_exclusive {
            if end < start {
                return Err(S3Error::Invalid(format!(
                    "range {start}..{end} is backwards"
                )));
            }
            if end == start {
                // Nothing to read, but the object must exist.
                let meta = self.head(key).await?.ok_or(S3Error::NotFound)?;
                return Ok(ObjectReader::empty(self, full, meta.size, start, meta.etag));
            }
        }
        match self.get_once(&full, key, start, end_exclusive, etag).await {
            Ok(r) => Ok(r),
            Err(S3Error::Invalid(m)) if m.contains("HTTP 416") => {
                // 416: S3 has no bytes to give for `start..`; fine if that is exactly the end.
                let meta = self.head(key).await?.ok_or(S3Error::NotFound)?;
                if start == meta.size {
                    Ok(ObjectReader::empty(self, full, meta.size, start, meta.etag))
                } else {
                    Err(S3Error::Invalid(format!(
                        "range start {start} is beyond the end of {key} ({} bytes)",
                        meta.size
                    )))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// One GET of `start..end` (to the end when `None`), `If-Match` when an ETag is given.
    async fn get_once(
        &self,
        full: &str,
        key: &str,
        start: u64,
        end_exclusive: Option<u64>,
        if_match: Option<&str>,
    ) -> Result<ObjectReader, S3Error> {
        let mut req = self
            .inner
            .client
            .get_object()
            .bucket(&self.inner.bucket)
            .key(full);
        let ranged = start > 0 || end_exclusive.is_some();
        if ranged {
            // No Range header for a whole object: a range on an empty object is a 416.
            req = req.range(match end_exclusive {
                Some(end) => format!("bytes={start}-{}", end - 1),
                None => format!("bytes={start}-"),
            });
        }
        if let Some(etag) = if_match {
            req = req.if_match(format!("\"{etag}\""));
        }
        let out = req
            .customize()
            .config_override(self.over(Kind::Small))
            .send()
            .await
            .map_err(|e| map_err("GetObject", key, e))?;
        let len = size_of(out.content_length, "GetObject", key)?;
        let total = if ranged {
            out.content_range
                .as_deref()
                .and_then(|r| r.rsplit('/').next())
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| {
                    S3Error::Other(format!(
                        "GetObject {key}: ranged response without a usable Content-Range ({:?})",
                        out.content_range
                    ))
                })?
        } else {
            len
        };
        Ok(ObjectReader {
            bucket: self.clone(),
            key: full.to_string(),
            size: total,
            pos: start,
            end: start + len,
            etag: unquote(out.e_tag.as_deref()),
            body: Some(out.body),
            resumes_left: self.inner.max_attempts.saturating_sub(1),
        })
    }

    /// Writes a whole object (replacing any), with user metadata.
    pub async fn put(
        &self,
        key: &str,
        body: Bytes,
        meta: &[(String, String)],
    ) -> Result<(), S3Error> {
        self.put_inner(key, body, meta, false).await
    }

    /// Writes a whole object only if there is none by that name yet
    /// ([`S3Error::PreconditionFailed`] if there is). Not retried.
    pub async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        meta: &[(String, String)],
    ) -> Result<(), S3Error> {
        self.put_inner(key, body, meta, true).await
    }

    async fn put_inner(
        &self,
        key: &str,
        body: Bytes,
        meta: &[(String, String)],
        if_absent: bool,
    ) -> Result<(), S3Error> {
        let full = self.full(key)?;
        let len =
            i64::try_from(body.len()).map_err(|_| S3Error::Invalid("body too large".into()))?;
        let mut req = self
            .inner
            .client
            .put_object()
            .bucket(&self.inner.bucket)
            .key(&full)
            .content_length(len)
            .set_metadata(metadata(meta)?)
            .body(ByteStream::from(body));
        let kind = if if_absent {
            req = req.if_none_match("*");
            Kind::TransferOnce
        } else {
            Kind::Transfer
        };
        req.customize()
            .config_override(self.over(kind))
            .send()
            .await
            .map_err(|e| map_err("PutObject", key, e))?;
        Ok(())
    }

    /// Starts a multipart upload; the metadata is the final object's. Not retried.
    pub async fn create_multipart(
        &self,
        key: &str,
        meta: &[(String, String)],
    ) -> Result<String, S3Error> {
        let full = self.full(key)?;
        let req = self
            .inner
            .client
            .create_multipart_upload()
            .bucket(&self.inner.bucket)
            .key(&full)
            .set_metadata(metadata(meta)?);
        let out = req
            .customize()
            .config_override(self.over(Kind::SmallOnce))
            .send()
            .await
            .map_err(|e| map_err("CreateMultipartUpload", key, e))?;
        out.upload_id.filter(|id| !id.is_empty()).ok_or_else(|| {
            S3Error::Other(format!(
                "CreateMultipartUpload {key}: no upload id in the response"
            ))
        })
    }

    /// Uploads part `part_number` (1..=10,000; all but the last at least 5 MiB). Uploading the
    /// same number again replaces it (on AWS; SeaweedFS keeps both, completes with the one
    /// whose ETag is given).
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, S3Error> {
        let full = self.full(key)?;
        check_part_number(part_number)?;
        let len =
            i64::try_from(body.len()).map_err(|_| S3Error::Invalid("part too large".into()))?;
        let req = self
            .inner
            .client
            .upload_part()
            .bucket(&self.inner.bucket)
            .key(&full)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(len)
            .body(ByteStream::from(body));
        let out = req
            .customize()
            .config_override(self.over(Kind::Transfer))
            .send()
            .await
            .map_err(|e| map_err("UploadPart", key, e))?;
        Ok(CompletedPart {
            part_number,
            etag: etag_of(out.e_tag.as_deref(), "UploadPart", key)?,
        })
    }

    /// Fills part `part_number` with bytes of another object, server-side: all of it, or
    /// `start..end_exclusive`. This is how APPE keeps the existing bytes without reading them.
    pub async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        source_key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<CompletedPart, S3Error> {
        self.upload_part_copy_inner(key, upload_id, part_number, source_key, range, None)
            .await
    }

    async fn upload_part_copy_inner(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        source_key: &str,
        range: Option<(u64, u64)>,
        source_etag: Option<&str>,
    ) -> Result<CompletedPart, S3Error> {
        let full = self.full(key)?;
        let source = self.full(source_key)?;
        check_part_number(part_number)?;
        let mut req = self
            .inner
            .client
            .upload_part_copy()
            .bucket(&self.inner.bucket)
            .key(&full)
            .upload_id(upload_id)
            .part_number(part_number)
            .copy_source(copy_source(&self.inner.bucket, &source));
        if let Some((start, end)) = range {
            if end <= start {
                return Err(S3Error::Invalid(format!(
                    "copy range {start}..{end} is empty"
                )));
            }
            req = req.copy_source_range(format!("bytes={start}-{}", end - 1));
        }
        if let Some(etag) = source_etag {
            req = req.copy_source_if_match(format!("\"{etag}\""));
        }
        let out = req
            .customize()
            .config_override(self.over(Kind::Transfer))
            .send()
            .await
            .map_err(|e| map_err("UploadPartCopy", key, e))?;
        let etag = out.copy_part_result.and_then(|r| r.e_tag);
        Ok(CompletedPart {
            part_number,
            etag: etag_of(etag.as_deref(), "UploadPartCopy", key)?,
        })
    }

    /// The parts uploaded so far, by part number, all pages: where an interrupted upload
    /// resumes. Where the server lists a part number twice (SeaweedFS, after a part was
    /// uploaded again), the one modified last is kept (the first listed on a tie).
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>, S3Error> {
        let full = self.full(key)?;
        let mut by_number: BTreeMap<i32, PartInfo> = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let req = self
                .inner
                .client
                .list_parts()
                .bucket(&self.inner.bucket)
                .key(&full)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone());
            let out = req
                .customize()
                .config_override(self.over(Kind::Small))
                .send()
                .await
                .map_err(|e| map_err("ListParts", key, e))?;
            for p in out.parts.unwrap_or_default() {
                let part_number = p.part_number.ok_or_else(|| {
                    S3Error::Other(format!("ListParts {key}: a part without a number"))
                })?;
                let info = PartInfo {
                    part_number,
                    size: size_of(p.size, "ListParts", key)?,
                    etag: etag_of(p.e_tag.as_deref(), "ListParts", key)?,
                    last_modified: p.last_modified.and_then(|t| SystemTime::try_from(t).ok()),
                };
                match by_number.get(&part_number) {
                    Some(seen) if seen.last_modified >= info.last_modified => {
                        if seen.etag != info.etag {
                            tracing::debug!(key, part_number, "ListParts: part listed twice");
                        }
                    }
                    _ => {
                        by_number.insert(part_number, info);
                    }
                }
            }
            if out.is_truncated != Some(true) {
                break;
            }
            let next = out.next_part_number_marker.filter(|m| !m.is_empty());
            if next.is_none() || next == marker {
                return Err(S3Error::Other(format!(
                    "ListParts {key}: truncated page without a new marker"
                )));
            }
            marker = next;
        }
        Ok(by_number.into_values().collect())
    }

    /// Makes the object from the parts (sorted here by number). Retried: completing an
    /// upload that was completed already succeeds on AWS and SeaweedFS alike.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<(), S3Error> {
        self.complete_inner(key, upload_id, parts, false).await
    }

    /// The same, only if there is no object by that name yet
    /// ([`S3Error::PreconditionFailed`] if there is; the upload stays open). Not retried.
    pub async fn complete_multipart_if_absent(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<(), S3Error> {
        self.complete_inner(key, upload_id, parts, true).await
    }

    async fn complete_inner(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        if_absent: bool,
    ) -> Result<(), S3Error> {
        let full = self.full(key)?;
        if parts.is_empty() {
            return Err(S3Error::Invalid(format!(
                "CompleteMultipartUpload {key}: no parts"
            )));
        }
        let mut sorted = parts.to_vec();
        sorted.sort_by_key(|p| p.part_number);
        let upload = s3t::CompletedMultipartUpload::builder()
            .set_parts(Some(
                sorted
                    .iter()
                    .map(|p| {
                        s3t::CompletedPart::builder()
                            .part_number(p.part_number)
                            .e_tag(format!("\"{}\"", p.etag))
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let mut req = self
            .inner
            .client
            .complete_multipart_upload()
            .bucket(&self.inner.bucket)
            .key(&full)
            .upload_id(upload_id)
            .multipart_upload(upload);
        let kind = if if_absent {
            req = req.if_none_match("*");
            Kind::TransferOnce
        } else {
            Kind::Transfer
        };
        req.customize()
            .config_override(self.over(kind))
            .send()
            .await
            .map_err(|e| map_err("CompleteMultipartUpload", key, e))?;
        Ok(())
    }

    /// Drops an upload and its parts. Aborting one that is gone already is not an error.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let full = self.full(key)?;
        let req = self
            .inner
            .client
            .abort_multipart_upload()
            .bucket(&self.inner.bucket)
            .key(&full)
            .upload_id(upload_id);
        match req
            .customize()
            .config_override(self.over(Kind::Small))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match map_err("AbortMultipartUpload", key, e) {
                S3Error::NotFound => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Every pending multipart upload whose key starts with `prefix` (relative), all pages.
    /// SeaweedFS returns them unsorted and its markers do not page, so pages are followed by
    /// marker while they bring new uploads, and the result is sorted by key and time.
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<PendingUpload>, S3Error> {
        let full_prefix = self.key(prefix);
        let mut seen: HashMap<String, PendingUpload> = HashMap::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let req = self
                .inner
                .client
                .list_multipart_uploads()
                .bucket(&self.inner.bucket)
                .prefix(&full_prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone());
            let out = req
                .customize()
                .config_override(self.over(Kind::Small))
                .send()
                .await
                .map_err(|e| map_err("ListMultipartUploads", prefix, e))?;
            let mut new = 0usize;
            let mut last: Option<(String, String)> = None;
            for u in out.uploads.unwrap_or_default() {
                let (Some(full_key), Some(upload_id)) = (u.key, u.upload_id) else {
                    continue;
                };
                last = Some((full_key.clone(), upload_id.clone()));
                let Some(key) = self.strip(&full_key) else {
                    continue;
                };
                if seen.contains_key(&upload_id) {
                    continue;
                }
                new += 1;
                seen.insert(
                    upload_id.clone(),
                    PendingUpload {
                        key: key.to_string(),
                        upload_id,
                        initiated: u.initiated.and_then(|t| SystemTime::try_from(t).ok()),
                    },
                );
            }
            if out.is_truncated != Some(true) || new == 0 {
                break;
            }
            let (last_key, last_id) = last.unwrap_or_default();
            key_marker = out
                .next_key_marker
                .filter(|m| !m.is_empty())
                .or(Some(last_key));
            id_marker = out
                .next_upload_id_marker
                .filter(|m| !m.is_empty())
                .or(Some(last_id));
        }
        let mut all: Vec<PendingUpload> = seen.into_values().collect();
        all.sort_by(|a, b| (&a.key, a.initiated).cmp(&(&b.key, b.initiated)));
        Ok(all)
    }

    /// One page of the objects whose keys start with `prefix` (relative); with a delimiter,
    /// the names below the next delimiter are folded into `common_prefixes`. Start with
    /// `continuation = None`, then pass the page's `next` until it is `None`.
    pub async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
    ) -> Result<ListPage, S3Error> {
        let req = self
            .inner
            .client
            .list_objects_v2()
            .bucket(&self.inner.bucket)
            .prefix(self.key(prefix))
            .set_delimiter(delimiter.map(str::to_string))
            .set_continuation_token(continuation);
        let out = req
            .customize()
            .config_override(self.over(Kind::Small))
            .send()
            .await
            .map_err(|e| map_err("ListObjectsV2", prefix, e))?;
        let mut page = ListPage::default();
        for p in out.common_prefixes.unwrap_or_default() {
            if let Some(rel) = p.prefix.as_deref().and_then(|p| self.strip(p)) {
                page.common_prefixes.push(rel.to_string());
            }
        }
        for o in out.contents.unwrap_or_default() {
            let Some(rel) = o.key.as_deref().and_then(|k| self.strip(k)) else {
                continue;
            };
            page.objects.push(ListedObject {
                key: rel.to_string(),
                size: size_of(o.size, "ListObjectsV2", rel)?,
                last_modified: o.last_modified.and_then(|t| SystemTime::try_from(t).ok()),
            });
        }
        if out.is_truncated == Some(true) {
            page.next = Some(
                out.next_continuation_token
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        S3Error::Other(format!(
                            "ListObjectsV2 {prefix}: truncated page without a token"
                        ))
                    })?,
            );
        }
        Ok(page)
    }

    /// Copies an object (with its user metadata) of `size` bytes: CopyObject up to the copy
    /// threshold (5 GiB), above it a multipart upload of UploadPartCopy parts, each on the
    /// condition that the source still has the ETag it had at the start (aborted on failure).
    pub async fn copy(&self, from: &str, to: &str, size: u64) -> Result<(), S3Error> {
        let source = self.full(from)?;
        let full = self.full(to)?;
        if size <= self.inner.copy_threshold {
            let req = self
                .inner
                .client
                .copy_object()
                .bucket(&self.inner.bucket)
                .key(&full)
                .copy_source(copy_source(&self.inner.bucket, &source))
                .metadata_directive(MetadataDirective::Copy);
            req.customize()
                .config_override(self.over(Kind::Transfer))
                .send()
                .await
                .map_err(|e| map_err("CopyObject", from, e))?;
            return Ok(());
        }
        let meta = self.head(from).await?.ok_or(S3Error::NotFound)?;
        let size = meta.size;
        let part_size = self
            .inner
            .copy_part_size
            .max(size.div_ceil(MAX_PARTS as u64));
        let pairs: Vec<(String, String)> = meta.metadata.into_iter().collect();
        let upload_id = self.create_multipart(to, &pairs).await?;
        let result = self
            .copy_parts(from, to, &upload_id, size, part_size, &meta.etag)
            .await;
        let result = match result {
            Ok(parts) => self.complete_multipart(to, &upload_id, &parts).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            if let Err(e) = self.abort_multipart(to, &upload_id).await {
                tracing::warn!(key = to, error = %e, "could not abort a failed multipart copy");
            }
        }
        result
    }

    async fn copy_parts(
        &self,
        from: &str,
        to: &str,
        upload_id: &str,
        size: u64,
        part_size: u64,
        etag: &str,
    ) -> Result<Vec<CompletedPart>, S3Error> {
        let mut ranges = Vec::new();
        let mut start = 0;
        while start < size {
            let end = (start + part_size).min(size);
            ranges.push((start, end));
            start = end;
        }
        let mut parts = Vec::with_capacity(ranges.len());
        let mut tasks = tokio::task::JoinSet::new();
        let mut next = ranges.into_iter().enumerate();
        loop {
            while tasks.len() < COPY_CONCURRENCY {
                let Some((i, range)) = next.next() else { break };
                let (this, from, to, id, etag) = (
                    self.clone(),
                    from.to_string(),
                    to.to_string(),
                    upload_id.to_string(),
                    etag.to_string(),
                );
                let number =
                    i32::try_from(i + 1).map_err(|_| S3Error::Invalid("too many parts".into()))?;
                tasks.spawn(async move {
                    this.upload_part_copy_inner(&to, &id, number, &from, Some(range), Some(&etag))
                        .await
                });
            }
            match tasks.join_next().await {
                None => break,
                Some(Ok(Ok(part))) => parts.push(part),
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(S3Error::Other(format!("part copy task failed: {e}"))),
            }
        }
        Ok(parts)
    }

    /// Deletes an object; deleting one that does not exist is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), S3Error> {
        let full = self.full(key)?;
        let req = self
            .inner
            .client
            .delete_object()
            .bucket(&self.inner.bucket)
            .key(&full);
        match req
            .customize()
            .config_override(self.over(Kind::Small))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match map_err("DeleteObject", key, e) {
                S3Error::NotFound => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Deletes many objects, 1,000 per DeleteObjects request. The first key the server could
    /// not delete makes the error.
    pub async fn delete_many(&self, keys: &[String]) -> Result<(), S3Error> {
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|k| {
                    s3t::ObjectIdentifier::builder()
                        .key(self.full(k)?)
                        .build()
                        .map_err(|e| S3Error::Invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let delete = s3t::Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| S3Error::Invalid(e.to_string()))?;
            let req = self
                .inner
                .client
                .delete_objects()
                .bucket(&self.inner.bucket)
                .delete(delete);
            let out = req
                .customize()
                .config_override(self.over(Kind::Small))
                .send()
                .await
                .map_err(|e| map_err("DeleteObjects", "", e))?;
            if let Some(err) = out.errors.unwrap_or_default().into_iter().next() {
                return Err(S3Error::Other(format!(
                    "DeleteObjects: {}: {} {}",
                    err.key.unwrap_or_default(),
                    err.code.unwrap_or_default(),
                    err.message.unwrap_or_default()
                )));
            }
        }
        Ok(())
    }
}

/// The body of a GET: chunks as they arrive. If the connection breaks before the last byte,
/// the rest is requested again (from where it broke, on the condition that the object still
/// has the same ETag), up to `max_attempts - 1` times per reader.
pub struct ObjectReader {
    bucket: Bucket,
    /// Full key.
    key: String,
    size: u64,
    pos: u64,
    end: u64,
    etag: String,
    body: Option<ByteStream>,
    resumes_left: u32,
}

impl fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectReader")
            .field("key", &self.key)
            .field("size", &self.size)
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish()
    }
}

impl ObjectReader {
    fn empty(bucket: &Bucket, key: String, size: u64, at: u64, etag: String) -> ObjectReader {
        ObjectReader {
            bucket: bucket.clone(),
            key,
            size,
            pos: at,
            end: at,
            etag,
            body: None,
            resumes_left: 0,
        }
    }

    /// The whole object's size (not just the range's).
    pub fn object_size(&self) -> u64 {
        self.size
    }

    /// The object's ETag (without quotes).
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// Bytes of the range not yet returned.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// The next chunk; `None` after the last byte of the range.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, S3Error> {
        loop {
            if self.pos >= self.end {
                return Ok(None);
            }
            let failure = match self.body.as_mut() {
                None => "no body".to_string(),
                Some(body) => match body.next().await {
                    Some(Ok(chunk)) if chunk.is_empty() => continue,
                    Some(Ok(mut chunk)) => {
                        let left = self.end - self.pos;
                        if chunk.len() as u64 > left {
                            // More than the server said it would send: keep to the range.
                            chunk.truncate(usize::try_from(left).unwrap_or(usize::MAX));
                        }
                        self.pos += chunk.len() as u64;
                        return Ok(Some(chunk));
                    }
                    Some(Err(e)) => DisplayErrorContext(&e).to_string(),
                    None => format!("body ended {} bytes early", self.end - self.pos),
                },
            };
            self.body = None;
            if self.resumes_left == 0 {
                return Err(S3Error::Unavailable(format!(
                    "GetObject {}: reading the body at byte {}: {failure}",
                    self.key, self.pos
                )));
            }
            self.resumes_left -= 1;
            tracing::debug!(key = %self.key, pos = self.pos, %failure, "GET body broke off, resuming");
            let rel = self
                .bucket
                .strip(&self.key)
                .unwrap_or(self.key.as_str())
                .to_string();
            let again = self
                .bucket
                .get_once(&self.key, &rel, self.pos, Some(self.end), Some(&self.etag))
                .await?;
            self.body = again.body;
        }
    }
}

/// Credentials from the config or the environment.
fn credentials(cfg: &S3Config) -> Result<Credentials, S3Error> {
    match (&cfg.access_key_id, &cfg.secret_access_key) {
        (Some(id), Some(secret)) => Ok(Credentials::new(id, secret, None, None, "ferry-config")),
        (None, None) => {
            let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                (Some(id), Some(secret)) => Ok(Credentials::new(
                    id,
                    secret,
                    var("AWS_SESSION_TOKEN"),
                    None,
                    "ferry-environment",
                )),
                _ => Err(S3Error::Invalid(
                    "no credentials: set access_key_id and secret_access_key, or \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                        .to_string(),
                )),
            }
        }
        _ => Err(S3Error::Invalid(
            "access_key_id and secret_access_key must be given together".to_string(),
        )),
    }
}

fn retry_config(max_attempts: u32) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(max_attempts)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(5))
}

fn timeout_config(t: &S3Timeouts, first_byte: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(t.connect)
        .read_timeout(first_byte)
        .build()
}

fn check_part_number(n: i32) -> Result<(), S3Error> {
    if (1..=MAX_PARTS).contains(&n) {
        Ok(())
    } else {
        Err(S3Error::Invalid(format!(
            "part number {n} is not in 1..=10000"
        )))
    }
}

/// User metadata for a request: names of letters, digits, `-` and `_`; values of printable
/// ASCII (they travel as HTTP headers).
fn metadata(meta: &[(String, String)]) -> Result<Option<HashMap<String, String>>, S3Error> {
    if meta.is_empty() {
        return Ok(None);
    }
    let mut map = HashMap::with_capacity(meta.len());
    for (k, v) in meta {
        let name_ok = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(S3Error::Invalid(format!("metadata name {k:?}")));
        }
        if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(S3Error::Invalid(format!(
                "metadata value for {k:?} is not printable ASCII"
            )));
        }
        map.insert(k.to_ascii_lowercase(), v.clone());
    }
    Ok(Some(map))
}

/// `bucket/key` for x-amz-copy-source, the key percent-encoded (but for `/`).
fn copy_source(bucket: &str, key: &str) -> String {
    let mut s = String::with_capacity(bucket.len() + key.len() + 8);
    s.push_str(bucket);
    s.push('/');
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_string()
}

fn etag_of(etag: Option<&str>, op: &str, key: &str) -> Result<String, S3Error> {
    let e = unquote(etag);
    if e.is_empty() {
        return Err(S3Error::Other(format!(
            "{op} {key}: no ETag in the response"
        )));
    }
    Ok(e)
}

fn size_of(len: Option<i64>, op: &str, key: &str) -> Result<u64, S3Error> {
    len.and_then(|l| u64::try_from(l).ok())
        .ok_or_else(|| S3Error::Other(format!("{op} {key}: missing or negative size")))
}

/// What an SDK failure means for the layer above.
fn map_err<E>(op: &str, key: &str, err: SdkError<E, HttpResponse>) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let what = if key.is_empty() {
        op.to_string()
    } else {
        format!("{op} {key}")
    };
    match &err {
        SdkError::ConstructionFailure(_) => {
            S3Error::Invalid(format!("{what}: {}", DisplayErrorContext(&err)))
        }
        SdkError::TimeoutError(_) => S3Error::Unavailable(format!("{what}: timed out")),
        SdkError::DispatchFailure(d) if d.is_user() => {
            S3Error::Invalid(format!("{what}: {}", DisplayErrorContext(&err)))
        }
        SdkError::DispatchFailure(_) => {
            S3Error::Unavailable(format!("{what}: {}", DisplayErrorContext(&err)))
        }
        SdkError::ResponseError(_) | SdkError::ServiceError(_) => {
            let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            let code = err.code().unwrap_or("");
            let message = err.message().unwrap_or("");
            classify(&what, status, code, message)
        }
        _ => S3Error::Other(format!("{what}: {}", DisplayErrorContext(&err))),
    }
}

fn classify(what: &str, status: u16, code: &str, message: &str) -> S3Error {
    let detail = format!("{what}: HTTP {status} {code} {message}")
        .trim_end()
        .to_string();
    match (status, code) {
        (_, "NoSuchBucket") => S3Error::Invalid(detail),
        (_, "NoSuchKey" | "NoSuchUpload" | "NotFound") | (404, _) => S3Error::NotFound,
        (_, "PreconditionFailed" | "ConditionalRequestConflict") | (412, _) => {
            S3Error::PreconditionFailed
        }
        (
            _,
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "AllAccessDisabled",
        )
        | (401 | 403, _) => S3Error::Denied(detail),
        (_, "SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout")
        | (429, _)
        | (500..=599, _) => S3Error::Unavailable(detail),
        (400..=499, _) => S3Error::Invalid(detail),
        _ => S3Error::Other(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_secret() {
        let cfg = S3Config {
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI/K7MDENG".into()),
            ..S3Config::default()
        };
        let shown = format!("{cfg:?}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn copy_source_is_percent_encoded() {
        assert_eq!(copy_source("b", "a/b c+d%é"), "b/a/b%20c%2Bd%25%C3%A9");
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(
            classify("x", 404, "NoSuchKey", ""),
            S3Error::NotFound
        ));
        assert!(matches!(
            classify("x", 404, "NoSuchUpload", ""),
            S3Error::NotFound
        ));
        assert!(matches!(
            classify("x", 404, "NoSuchBucket", ""),
            S3Error::Invalid(_)
        ));
        assert!(matches!(
            classify("x", 412, "PreconditionFailed", ""),
            S3Error::PreconditionFailed
        ));
        assert!(matches!(
            classify("x", 403, "SignatureDoesNotMatch", ""),
            S3Error::Denied(_)
        ));
        assert!(matches!(
            classify("x", 503, "SlowDown", ""),
            S3Error::Unavailable(_)
        ));
        assert!(matches!(
            classify("x", 416, "InvalidRange", ""),
            S3Error::Invalid(_)
        ));
        assert!(matches!(
            classify("x", 400, "EntityTooSmall", ""),
            S3Error::Invalid(_)
        ));
    }

    #[test]
    fn metadata_is_checked() {
        assert!(metadata(&[("Owner".into(), "alice".into())]).is_ok());
        assert!(metadata(&[("a b".into(), "x".into())]).is_err());
        assert!(metadata(&[("a".into(), "line\nbreak".into())]).is_err());
        assert!(metadata(&[("a".into(), "é".into())]).is_err());
    }
}
