//! `ferry`: see `ferry --help`, and `ferry_client::exit` for the exit codes.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use ferry_client::cli::Cli;
use ferry_client::{cli, exit, shell};

fn main() -> ExitCode {
    let args = Cli::parse();
    let filter = match args.global.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: error: cannot start the runtime: {e}");
            return ExitCode::from(exit::OTHER);
        }
    };
    let result = match (args.command, args.url) {
        (Some(cmd), _) => rt.block_on(cli::run(cmd, &args.global)),
        (None, Some(url)) => shell::run(&rt, &args.global, &url),
        (None, None) => {
            let _ = Cli::command().print_help();
            return ExitCode::from(exit::USAGE);
        }
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("ferry: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
