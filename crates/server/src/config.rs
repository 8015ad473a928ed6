//! Server configuration: the TOML file as written (`ConfigFile`), merged with command-line
//! overrides and validated into the typed [`Config`] the server runs with.

use std::net::{IpAddr, SocketAddr};
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
        let max_line = file.max_line.unwrap_or(8192);
        if !(512..=1 << 20).contains(&max_line) {
            return Err("max_line must be between 512 and 1048576".into());
        }
        let secs = |v: Option<u64>, default: u64, name: &str| -> Result<Duration, String> {
            match v.unwrap_or(default) {
                0 => Err(format!("{name} must be at least 1")),
                n => Ok(Duration::from_secs(n)),
            }
        };
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
        Ok(Config {
            default_quota,
            default_max_files: file.default_max_files,
            tls,
            tls_cert: file.tls_cert,
            tls_key: file.tls_key,
            implicit_tls_listen,
            tls_require_session_reuse: file.tls_require_session_reuse.unwrap_or(true),
            plaintext_logins_from: file.plaintext_logins_from.unwrap_or(loopback),
            max_login_failures: file.max_login_failures.unwrap_or(10).max(1),
            lockout: Duration::from_secs(file.lockout_secs.unwrap_or(300)),
            listen,
            data_dir: data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            passive_ports,
            passive_address: file.passive_address,
            idle_timeout: secs(file.idle_timeout_secs, 300, "idle_timeout_secs")?,
            data_timeout: secs(file.data_timeout_secs, 30, "data_timeout_secs")?,
            shutdown_grace: Duration::from_secs(file.shutdown_grace_secs.unwrap_or(30)),
            max_sessions: file.max_sessions.unwrap_or(10_000).max(1),
            max_sessions_per_ip: file.max_sessions_per_ip.unwrap_or(1_000).max(1),
            max_line,
            max_parallel_logins: file.max_parallel_logins.unwrap_or(2).max(1),
            blocking_threads: file.blocking_threads.unwrap_or(512).max(4),
            log: file.log.unwrap_or_else(|| "info".into()),
        })
    }
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("passive_ports '{s}' must look like 14000-14999");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
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
