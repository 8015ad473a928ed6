//! `ferryd`: run the FTP server, or manage its users.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferry_server::auth::Authenticator;
use ferry_server::config::{Config, ConfigFile, TlsMode, DEFAULT_DATA_DIR};
use ferry_server::quota::QuotaRegistry;
use ferry_server::server::Server;
use ferry_server::storage::Storage;
use ferry_server::store::Store;
use ferry_server::tls::{CertSource, Tls};
use ferry_server::users_cli::{self, UserCommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "ferryd", version, about = "Ferry: a multi-user FTP server")]
struct Cli {
    /// Directory for the user database and default homes [default: ./ferry-data]
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Configuration file [default: ./ferry.toml if present]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server
    Serve {
        /// Address to listen on [default: 0.0.0.0:2121]
        #[arg(long)]
        listen: Option<String>,
    },
    /// Manage users
    #[command(subcommand)]
    User(UserCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve { listen } => serve(cli.config, cli.data_dir, listen),
        Cmd::User(cmd) => ConfigFile::load(cli.config.as_deref()).and_then(|file| {
            let storage = ferry_server::config::storage_config(file.storage, file.s3)?;
            let data_dir = cli
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            users_cli::run(cmd, &data_dir, &storage)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ferryd: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn serve(
    config_path: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
) -> Result<(), String> {
    let file = ConfigFile::load(config_path.as_deref())?;
    let config = Config::resolve(file, listen, data_dir)?;
    init_logging(&config.log);
    raise_fd_limit();
    let store = std::sync::Arc::new(Store::open(&config.data_dir).map_err(|e| e.to_string())?);
    if let Some((name, password, home)) = users_cli::ensure_first_user(&store, &config.data_dir)? {
        println!(
            "created first user: name={name} password={password} home={}",
            home.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(config.blocking_threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    let storage = std::sync::Arc::new(
        runtime
            .block_on(Storage::from_config(&config.storage))
            .map_err(|e| format!("storage: {e}"))?,
    );
    let quotas = QuotaRegistry::new(
        store.clone(),
        storage.clone(),
        config.default_quota,
        config.default_max_files,
    );
    let auth = Authenticator::new(store, config.max_parallel_logins, config.login_cache)
        .map_err(|e| e.to_string())?;
    let tls = match config.tls {
        TlsMode::Off => None,
        TlsMode::Optional | TlsMode::Required => {
            let (tls, source) = Tls::load(
                config.tls_cert.as_deref(),
                config.tls_key.as_deref(),
                &config.data_dir,
                config.tls_require_session_reuse,
            )?;
            let origin = match source {
                CertSource::Created(p) => format!("created self-signed {}", p.display()),
                CertSource::Existing(p) | CertSource::Configured(p) => p.display().to_string(),
            };
            println!("tls certificate: {origin} sha256={}", tls.fingerprint);
            Some(tls)
        }
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let implicit = match config.implicit_tls_listen {
            Some(a) => {
                let l = tokio::net::TcpListener::bind(a)
                    .await
                    .map_err(|e| format!("cannot listen on {a}: {e}"))?;
                let bound = l.local_addr().map_err(|e| e.to_string())?;
                println!("ferryd implicit ftps on {bound}");
                Some(l)
            }
            None => None,
        };
        // The one line scripts and tests wait for; stdout so it is not mixed with logs.
        println!("ferryd listening on {addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tracing::info!(%addr, data_dir = %config.data_dir.display(), "listening");
        let shutdown = CancellationToken::new();
        tokio::spawn(signal_shutdown(shutdown.clone()));
        if let Storage::S3(s3) = &*storage {
            tracing::info!(bucket = %s3.bucket_name(), "storage: S3");
            tokio::spawn(abort_abandoned_uploads(storage.clone(), shutdown.clone()));
        }
        Server::new(config, auth, tls, quotas, storage, shutdown)
            .serve(listener, implicit)
            .await;
        Ok::<(), String>(())
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    tracing::info!("stopped");
    Ok(())
}

async fn signal_shutdown(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    token.cancel();
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// Each session holds a socket; allow as many as the hard limit permits.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            tracing::info!(from = soft, to = hard, "raised open-file limit");
        }
    }
}

/// Aborts unfinished S3 uploads past their age, at start and then every hour, until shutdown.
async fn abort_abandoned_uploads(storage: std::sync::Arc<Storage>, shutdown: CancellationToken) {
    let Storage::S3(s3) = &*storage else {
        return;
    };
    loop {
        match s3.abort_abandoned().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(aborted = n, "abandoned uploads aborted"),
            Err(e) => tracing::warn!(error = %e, "cannot clean up abandoned uploads"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
