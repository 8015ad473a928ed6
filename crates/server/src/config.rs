//! Server configuration: the TOML file as written (`ConfigFile`), merged with command-line
//! overrides and validated into the typed [`Config`] the server runs with.
//!
//! Every number is checked against its allowed range (the constants below, each with the reason
//! for its bounds) when the file is read, and a value outside is an error that names the key
//! and the range: nothing is clamped silently, and no value can reach the arithmetic that would
//! overflow with it (`Instant + timeout` panics near 2^63 s; `Semaphore::new` above 2^61
//! permits; each parallel login allocates its ~19 MiB argon2 area at start).

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// `ferry.toml` as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub passive_ports: Option<String>,
    pub passive_address: Option<IpAddr>,
    pub idle_timeout_secs: Option<u64>,
    pub data_timeout_secs: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
    pub max_sessions: Option<usize>,
    pub max_sessions_per_ip: Option<usize>,
    pub max_unauthenticated: Option<usize>,
    pub max_unauthenticated_per_ip: Option<usize>,
    pub login_timeout_secs: Option<u64>,
    pub login_cache_secs: Option<u64>,
    pub sync_uploads: Option<bool>,
    pub max_line: Option<usize>,
    pub max_parallel_logins: Option<usize>,
    pub blocking_threads: Option<usize>,
    pub log: Option<String>,
    pub tls: Option<TlsMode>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub implicit_tls_listen: Option<String>,
    pub tls_require_session_reuse: Option<bool>,
    pub plaintext_logins_from: Option<Vec<IpNet>>,
    pub max_login_failures: Option<u32>,
    pub lockout_secs: Option<u64>,
    pub default_quota: Option<String>,
    pub default_max_files: Option<u64>,
    /// Where users' files live: "local" (the default) or "s3".
    pub storage: Option<StorageKind>,
    pub s3: Option<S3File>,
}

/// The `storage` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Local,
    S3,
}

/// The `[s3]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3File {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub path_style: Option<bool>,
    pub part_size_mib: Option<u64>,
    pub rename_max_objects: Option<usize>,
    pub abandoned_upload_hours: Option<u64>,
    pub multipart_copy_threshold_mib: Option<u64>,
}

/// Where users' files live, validated.
#[derive(Clone)]
pub enum StorageConfig {
    /// Each user's home directory on the local file system.
    Local,
    /// Each user's home under `PREFIX/homes/NAME/` in an S3 bucket.
    S3(S3Settings),
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageConfig::Local => f.write_str("Local"),
            StorageConfig::S3(s) => f
                .debug_struct("S3")
                .field("endpoint", &s.endpoint)
                .field("bucket", &s.bucket)
                .field("prefix", &s.prefix)
                .finish_non_exhaustive(),
        }
    }
}

/// The `[s3]` table, validated. Credentials, when not here, come from the `AWS_*`
/// environment variables; they are never logged.
#[derive(Clone)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub path_style: bool,
    /// Size of an upload's parts: what an interrupted upload keeps is a whole number of them.
    pub part_size: u64,
    /// Most objects a directory rename copies; a bigger directory is refused (550).
    pub rename_max_objects: usize,
    /// Unfinished uploads older than this are aborted (their parts deleted).
    pub abandoned_upload_age: Duration,
    /// Objects above this are copied (renamed) part by part, not with one CopyObject.
    pub multipart_copy_threshold: u64,
}

/// `[s3] part_size_mib`: S3's smallest part is 5 MiB; 512 MiB parts make 10,000-part objects of
/// 5 TiB (S3's largest), and memory per upload is about one part.
pub const S3_PART_SIZE_MIB: RangeInclusive<u64> = 5..=512;
/// `[s3] rename_max_objects`: a directory rename copies each object.
pub const S3_RENAME_MAX_OBJECTS: RangeInclusive<usize> = 1..=1_000_000;
/// `[s3] multipart_copy_threshold_mib`: CopyObject copies at most 5 GiB; a lower threshold
/// copies smaller objects in parts too (in parts of 512 MiB, or of the threshold when smaller).
pub const S3_MULTIPART_COPY_THRESHOLD_MIB: RangeInclusive<u64> = 5..=5 * 1024;
/// `[s3] abandoned_upload_hours`: an hour to a year.
pub const S3_ABANDONED_UPLOAD_HOURS: RangeInclusive<u64> = 1..=24 * 366;

impl S3File {
    fn validate(self) -> Result<S3Settings, String> {
        let bucket = self
            .bucket
            .filter(|b| !b.is_empty())
            .ok_or("storage = \"s3\" needs [s3] bucket")?;
        let part_mib = count(
            "[s3] part_size_mib",
            self.part_size_mib,
            8,
            &S3_PART_SIZE_MIB,
        )?;
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(
                "[s3] access_key_id and secret_access_key go together (or neither: AWS_* \
                 environment variables)"
                    .into(),
            );
        }
        Ok(S3Settings {
            path_style: self.path_style.unwrap_or(self.endpoint.is_some()),
            endpoint: self.endpoint,
            region: self.region.unwrap_or_else(|| "us-east-1".to_owned()),
            bucket,
            prefix: self.prefix.unwrap_or_default(),
            access_key_id: self.access_key_id,
            secret_access_key: self.secret_access_key,
            part_size: part_mib << 20,
            rename_max_objects: count(
                "[s3] rename_max_objects",
                self.rename_max_objects,
                10_000,
                &S3_RENAME_MAX_OBJECTS,
            )?,
            multipart_copy_threshold: count(
                "[s3] multipart_copy_threshold_mib",
                self.multipart_copy_threshold_mib,
                5 * 1024,
                &S3_MULTIPART_COPY_THRESHOLD_MIB,
            )? << 20,
            abandoned_upload_age: Duration::from_secs(
                count(
                    "[s3] abandoned_upload_hours",
                    self.abandoned_upload_hours,
                    24,
                    &S3_ABANDONED_UPLOAD_HOURS,
                )? * 3600,
            ),
        })
    }
}

/// The `storage` key and the `[s3]` table, validated (also for `ferryd user`, which reads the
/// same file).
pub fn storage_config(
    kind: Option<StorageKind>,
    s3: Option<S3File>,
) -> Result<StorageConfig, String> {
    Ok(match kind {
        Some(StorageKind::S3) => StorageConfig::S3(s3.unwrap_or_default().validate()?),
        Some(StorageKind::Local) | None => StorageConfig::Local,
    })
}

/// How much TLS the server insists on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Every login and every data connection encrypted, from every address.
    Required,
    /// FTPS offered; logins in clear only from `plaintext_logins_from`.
    Optional,
    /// No FTPS; logins in clear only from `plaintext_logins_from`.
    Off,
}

impl ConfigFile {
    /// Reads `path`; a missing default file is an empty config, a missing named file an error.
    pub fn load(path: Option<&Path>) -> Result<ConfigFile, String> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("ferry.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(ConfigFile::default())
            }
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Inclusive range; `None` lets the kernel choose any free port.
    pub passive_ports: Option<(u16, u16)>,
    pub passive_address: Option<IpAddr>,
    pub idle_timeout: Duration,
    pub data_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    /// Connections not logged in yet, server-wide and per address: their own, smaller budget
    /// within `max_sessions`, so a flood of them cannot take the slots of users who log in.
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_ip: usize,
    /// From connect to a successful PASS: a connection that has not logged in by then gets
    /// 421 and is closed.
    pub login_timeout: Duration,
    /// How long a password argon2 accepted is recognised without argon2 (zero: never).
    pub login_cache: Duration,
    /// Flush every completed upload (the file, then its directory) to stable storage before
    /// the 226, so a 226 survives a power loss.
    pub sync_uploads: bool,
    pub max_line: usize,
    pub max_parallel_logins: usize,
    /// Threads for blocking work (disk, password hashing, file hashing, uploads); uploads may
    /// hold at most half of them (see [`Config::upload_threads`]).
    pub blocking_threads: usize,
    pub log: String,
    pub tls: TlsMode,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub implicit_tls_listen: Option<SocketAddr>,
    pub tls_require_session_reuse: bool,
    pub plaintext_logins_from: Vec<IpNet>,
    /// Failed logins from one address before it is locked out.
    pub max_login_failures: u32,
    pub lockout: Duration,
    /// Quota of users without their own (`None` = unlimited).
    pub default_quota: Option<u64>,
    pub default_max_files: Option<u64>,
    pub storage: StorageConfig,
}

impl Config {
    /// How many uploads may hold a blocking thread at once. An upload keeps its thread while
    /// it waits for the client's bytes, so without a bound a few hundred slow or stalled
    /// uploads could take every thread and stop logins, opens and listings for everyone.
    pub fn upload_threads(&self) -> usize {
        self.blocking_threads / 2
    }

    /// May a password travel in clear from this address?
    pub fn plaintext_login_allowed(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.tls != TlsMode::Required
            && self
                .plaintext_logins_from
                .iter()
                .any(|net| net.contains(&ip))
    }
}

pub const DEFAULT_LISTEN: &str = "0.0.0.0:2121";
pub const DEFAULT_DATA_DIR: &str = "./ferry-data";

const MINUTE: u64 = 60;
const DAY: u64 = 24 * 60 * MINUTE;

/// `idle_timeout_secs`: an idle control connection keeps a session slot and a socket, and the
/// value also bounds a reply write and a transfer's stall. No client needs a day of silence, and
/// `Instant::now() + timeout`, computed for every command, cannot overflow with it.
pub const IDLE_TIMEOUT_SECS: RangeInclusive<u64> = 1..=DAY;
/// `data_timeout_secs`: how long a data connection (and its TLS handshake) may take to come;
/// the passive port stays taken meanwhile. A day, as the idle timeout, for the same overflow.
pub const DATA_TIMEOUT_SECS: RangeInclusive<u64> = 1..=DAY;
/// `shutdown_grace_secs`: how long a stopping server waits for running sessions; 0 closes them
/// at once. A day, as the timeouts above (service managers kill a slow stop long before that:
/// systemd after 90 s unless told otherwise).
pub const SHUTDOWN_GRACE_SECS: RangeInclusive<u64> = 0..=DAY;
/// `lockout_secs`: how long an address that kept failing logins is refused. A week is already
/// a ban; longer belongs in a firewall. At least a second, or the lockout would be none.
pub const LOCKOUT_SECS: RangeInclusive<u64> = 1..=7 * DAY;
/// `max_sessions`: each session holds at least one file descriptor, and Linux allows a process
/// 2^20 of them by default (`fs.nr_open`); the semaphore behind it takes at most 2^61 permits.
pub const MAX_SESSIONS: RangeInclusive<usize> = 1..=1_000_000;
/// `max_sessions_per_ip`: at most what the whole server allows.
pub const MAX_SESSIONS_PER_IP: RangeInclusive<usize> = 1..=1_000_000;
/// `max_unauthenticated`, `max_unauthenticated_per_ip`: like the session limits.
pub const MAX_UNAUTHENTICATED: RangeInclusive<usize> = 1..=1_000_000;
/// `login_timeout_secs`: at least long enough to type a password; at most an hour (a client
/// that has not logged in within it is not going to).
pub const LOGIN_TIMEOUT_SECS: RangeInclusive<u64> = 5..=3600;
/// `login_cache_secs`: 0 turns the cache off; a day is the longest a process-local, memory-only
/// record of a verified password may stand in for argon2.
pub const LOGIN_CACHE_SECS: RangeInclusive<u64> = 0..=DAY;
/// `max_line`: 512 bytes hold any command with a short path (the default, 8192, also holds the
/// longest path `VirtualPath` takes, 4096 bytes); a session may buffer a line this long, so
/// 1 MiB is the most (10,000 sessions with 1 MiB each are already 10 GiB).
pub const MAX_LINE: RangeInclusive<usize> = 512..=1 << 20;
/// `max_parallel_logins`: each one gets a ~19 MiB argon2 work area, allocated at start (64
/// areas are 1.2 GiB), and runs on a blocking thread; more parallel argon2 than cores buys no
/// speed, so 64 covers large machines.
pub const MAX_PARALLEL_LOGINS: RangeInclusive<usize> = 1..=64;
/// `blocking_threads`: uploads may take half of them, so 4 leaves 2 for logins, disk calls
/// and hashing; each thread reserves a stack (2 MiB), so 4096 is already 8 GiB of address space.
pub const BLOCKING_THREADS: RangeInclusive<usize> = 4..=4096;
/// `max_login_failures`: failures from one address within 15 minutes before it is locked out.
/// 0 would lock out at the first mistake; 10,000 is eleven guesses a second for the whole
/// window, an attack by any measure (the count is a u32 that must not wrap).
pub const MAX_LOGIN_FAILURES: RangeInclusive<u32> = 1..=10_000;
/// `passive_ports`: both ends; port 0 means "any" to the kernel, never a port of a range.
pub const PASSIVE_PORTS: RangeInclusive<u16> = 1..=u16::MAX;

/// `value` if `allowed` holds it, else the error naming `key` and the range.
fn in_range<T: PartialOrd + Display>(
    key: &str,
    value: T,
    allowed: &RangeInclusive<T>,
) -> Result<T, String> {
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{key} = {value} is out of range ({}..={})",
            allowed.start(),
            allowed.end()
        ))
    }
}

/// A key in seconds: its value or `default`, checked against `allowed`.
fn secs(
    key: &str,
    value: Option<u64>,
    default: u64,
    allowed: &RangeInclusive<u64>,
) -> Result<Duration, String> {
    in_range(key, value.unwrap_or(default), allowed).map(Duration::from_secs)
}

/// A count: its value or `default`, checked against `allowed`.
fn count<T: PartialOrd + Display>(
    key: &str,
    value: Option<T>,
    default: T,
    allowed: &RangeInclusive<T>,
) -> Result<T, String> {
    in_range(key, value.unwrap_or(default), allowed)
}

impl Config {
    /// Merges the file with command-line overrides (which win) and checks every value.
    pub fn resolve(
        file: ConfigFile,
        listen: Option<String>,
        data_dir: Option<PathBuf>,
    ) -> Result<Config, String> {
        let listen = listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| format!("listen address '{listen}' is not IP:PORT"))?;
        let passive_ports = file
            .passive_ports
            .as_deref()
            .map(parse_port_range)
            .transpose()?;
        let implicit_tls_listen = file
            .implicit_tls_listen
            .map(|a| {
                a.parse()
                    .map_err(|_| format!("implicit_tls_listen '{a}' is not IP:PORT"))
            })
            .transpose()?;
        let tls = file.tls.unwrap_or(TlsMode::Optional);
        if tls == TlsMode::Off && implicit_tls_listen.is_some() {
            return Err("implicit_tls_listen needs tls = \"optional\" or \"required\"".into());
        }
        let loopback: Vec<IpNet> = ["127.0.0.0/8", "::1/128"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        let default_quota = match file.default_quota.as_deref() {
            Some(q) => {
                crate::size::parse_size(q).map_err(|e| format!("default_quota '{q}': {e}"))?
            }
            None => None,
        };
        let storage = storage_config(file.storage, file.s3)?;
        Ok(Config {
            storage,
            default_quota,
            default_max_files: file.default_max_files,
            tls,
            tls_cert: file.tls_cert,
            tls_key: file.tls_key,
            implicit_tls_listen,
            tls_require_session_reuse: file.tls_require_session_reuse.unwrap_or(true),
            plaintext_logins_from: file.plaintext_logins_from.unwrap_or(loopback),
            max_login_failures: count(
                "max_login_failures",
                file.max_login_failures,
                10,
                &MAX_LOGIN_FAILURES,
            )?,
            lockout: secs("lockout_secs", file.lockout_secs, 300, &LOCKOUT_SECS)?,
            listen,
            data_dir: data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            passive_ports,
            passive_address: file.passive_address,
            idle_timeout: secs(
                "idle_timeout_secs",
                file.idle_timeout_secs,
                300,
                &IDLE_TIMEOUT_SECS,
            )?,
            data_timeout: secs(
                "data_timeout_secs",
                file.data_timeout_secs,
                30,
                &DATA_TIMEOUT_SECS,
            )?,
            shutdown_grace: secs(
                "shutdown_grace_secs",
                file.shutdown_grace_secs,
                30,
                &SHUTDOWN_GRACE_SECS,
            )?,
            max_sessions: count("max_sessions", file.max_sessions, 10_000, &MAX_SESSIONS)?,
            max_sessions_per_ip: count(
                "max_sessions_per_ip",
                file.max_sessions_per_ip,
                1_000,
                &MAX_SESSIONS_PER_IP,
            )?,
            max_unauthenticated: count(
                "max_unauthenticated",
                file.max_unauthenticated,
                1_000,
                &MAX_UNAUTHENTICATED,
            )?,
            max_unauthenticated_per_ip: count(
                "max_unauthenticated_per_ip",
                file.max_unauthenticated_per_ip,
                64,
                &MAX_UNAUTHENTICATED,
            )?,
            login_timeout: secs(
                "login_timeout_secs",
                file.login_timeout_secs,
                60,
                &LOGIN_TIMEOUT_SECS,
            )?,
            login_cache: secs(
                "login_cache_secs",
                file.login_cache_secs,
                900,
                &LOGIN_CACHE_SECS,
            )?,
            sync_uploads: file.sync_uploads.unwrap_or(true),
            max_line: count("max_line", file.max_line, 8192, &MAX_LINE)?,
            max_parallel_logins: count(
                "max_parallel_logins",
                file.max_parallel_logins,
                2,
                &MAX_PARALLEL_LOGINS,
            )?,
            blocking_threads: count(
                "blocking_threads",
                file.blocking_threads,
                512,
                &BLOCKING_THREADS,
            )?,
            log: file.log.unwrap_or_else(|| "info".into()),
        })
    }
}

/// `passive_ports = "LO-HI"`: an inclusive range of ports in [`PASSIVE_PORTS`], LO <= HI.
fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!(
            "passive_ports = \"{s}\" is not a port range like \"14000-14999\" (ports {}..={}, low <= high)",
            PASSIVE_PORTS.start(),
            PASSIVE_PORTS.end()
        )
    };
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if !PASSIVE_PORTS.contains(&lo) || !PASSIVE_PORTS.contains(&hi) || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let file: ConfigFile =
            toml::from_str("listen = \"127.0.0.1:21\"\npassive_ports = \"14000-14010\"")
                .expect("valid toml");
        let c = Config::resolve(file, Some("127.0.0.1:0".into()), None).expect("valid");
        assert_eq!(c.listen, "127.0.0.1:0".parse().expect("addr"));
        assert_eq!(c.passive_ports, Some((14000, 14010)));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.idle_timeout, Duration::from_secs(300));
        assert_eq!((c.blocking_threads, c.upload_threads()), (512, 256));
    }

    #[test]
    fn bad_values_are_errors() {
        let bad = |t: &str| Config::resolve(toml::from_str(t).expect("toml"), None, None).is_err();
        assert!(bad("passive_ports = \"10-5\""));
        assert!(bad("listen = \"nowhere\""));
        assert!(bad("idle_timeout_secs = 0"));
        assert!(toml::from_str::<ConfigFile>("no_such_key = 1").is_err());
        assert!(bad("tls = \"off\"\nimplicit_tls_listen = \"127.0.0.1:0\""));
        assert!(toml::from_str::<ConfigFile>("tls = \"sometimes\"").is_err());
        assert!(bad("default_quota = \"lots\""));
        let file: ConfigFile = toml::from_str("default_quota = \"5GiB\"").expect("toml");
        assert_eq!(
            Config::resolve(file, None, None).expect("ok").default_quota,
            Some(5 << 30)
        );
    }

    /// Each value just outside its key's range is an error naming the key and the range; the
    /// values at both ends are accepted.
    #[test]
    fn numbers_out_of_range_are_errors_naming_the_key() {
        let resolve = |t: &str| Config::resolve(toml::from_str(t).expect("toml"), None, None);
        let huge = i64::MAX;
        let cases = [
            ("idle_timeout_secs", 0, "(1..=86400)"),
            ("idle_timeout_secs", 86_401, "(1..=86400)"),
            ("idle_timeout_secs", huge, "(1..=86400)"),
            ("data_timeout_secs", huge, "(1..=86400)"),
            ("shutdown_grace_secs", huge, "(0..=86400)"),
            ("lockout_secs", 0, "(1..=604800)"),
            ("lockout_secs", huge, "(1..=604800)"),
            ("max_sessions", 0, "(1..=1000000)"),
            ("max_sessions", 1 << 62, "(1..=1000000)"),
            ("max_sessions_per_ip", 1 << 62, "(1..=1000000)"),
            ("max_line", 0, "(512..=1048576)"),
            ("max_line", 1 << 40, "(512..=1048576)"),
            ("max_parallel_logins", 0, "(1..=64)"),
            ("max_parallel_logins", 100, "(1..=64)"),
            ("blocking_threads", 3, "(4..=4096)"),
            ("blocking_threads", 1 << 62, "(4..=4096)"),
            ("max_login_failures", 0, "(1..=10000)"),
            ("max_login_failures", 10_001, "(1..=10000)"),
            ("login_cache_secs", 86_401, "(0..=86400)"),
        ];
        for (key, value, range) in cases {
            let err = resolve(&format!("{key} = {value}")).expect_err(key);
            assert_eq!(err, format!("{key} = {value} is out of range {range}"));
        }
        for bound in [
            "idle_timeout_secs = 86400\ndata_timeout_secs = 1\nshutdown_grace_secs = 0",
            "lockout_secs = 604800\nmax_sessions = 1000000\nmax_sessions_per_ip = 1",
            "max_line = 512\nmax_parallel_logins = 64\nblocking_threads = 4096",
            "max_line = 1048576\nmax_parallel_logins = 1\nblocking_threads = 4",
            "max_login_failures = 10000\npassive_ports = \"1-65535\"",
            "login_cache_secs = 0",
            "login_cache_secs = 86400",
            "passive_ports = \"65535-65535\"",
        ] {
            resolve(bound).unwrap_or_else(|e| panic!("{bound:?}: {e}"));
        }
        for ports in ["0-10", "10-5", "1-65536", "x", "5", "-5", "1-2-3"] {
            let err = resolve(&format!("passive_ports = \"{ports}\"")).expect_err(ports);
            assert!(
                err.starts_with(&format!("passive_ports = \"{ports}\"")),
                "{err}"
            );
            assert!(err.contains("1..=65535"), "{err}");
        }
        // Negative numbers are refused by the TOML types already.
        assert!(toml::from_str::<ConfigFile>("max_sessions = -1").is_err());
    }

    /// The largest values leave the arithmetic done with them far from its limits.
    #[test]
    fn upper_bounds_keep_arithmetic_safe() {
        use tokio::sync::Semaphore;
        assert!(*MAX_SESSIONS.end() <= Semaphore::MAX_PERMITS);
        assert!(*BLOCKING_THREADS.end() / 2 <= Semaphore::MAX_PERMITS);
        assert!(*MAX_PARALLEL_LOGINS.end() <= Semaphore::MAX_PERMITS);
        let longest = [&IDLE_TIMEOUT_SECS, &DATA_TIMEOUT_SECS, &LOCKOUT_SECS]
            .map(|r| Duration::from_secs(*r.end()));
        for d in longest {
            assert!(std::time::Instant::now().checked_add(d * 1000).is_some());
        }
        let defaults = Config::resolve(ConfigFile::default(), None, None).expect("defaults");
        assert_eq!(defaults.max_line, 8192);
    }

    #[test]
    fn plaintext_logins_default_to_loopback_only() {
        let c = Config::resolve(ConfigFile::default(), None, None).expect("defaults");
        assert!(c.plaintext_login_allowed("127.0.0.1".parse().expect("ip")));
        assert!(c.plaintext_login_allowed("127.0.0.2".parse().expect("ip")));
        assert!(c.plaintext_login_allowed("::1".parse().expect("ip")));
        assert!(c.plaintext_login_allowed("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(!c.plaintext_login_allowed("192.0.2.7".parse().expect("ip")));
        let file: ConfigFile =
            toml::from_str("plaintext_logins_from = [\"127.0.0.1/32\"]").expect("toml");
        let c = Config::resolve(file, None, None).expect("valid");
        assert!(!c.plaintext_login_allowed("127.0.0.2".parse().expect("ip")));
        let file: ConfigFile = toml::from_str("tls = \"required\"").expect("toml");
        let c = Config::resolve(file, None, None).expect("valid");
        assert!(!c.plaintext_login_allowed("127.0.0.1".parse().expect("ip")));
    }
}
