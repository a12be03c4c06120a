//! The `troved` binary: parse the command line, set up logging, run.
// Functions stay short enough to read at once: the threshold (80 lines) is in clippy.toml.
#![warn(clippy::too_many_lines)]

use clap::Parser;
use tokio::net::TcpListener;
use troved::config::{Cli, Command, LocalCommand, SimCommand};
use troved::server::Server;

fn main() -> std::process::ExitCode {
    // Everything troved writes (the log, the vault, the cloud's state, their `-wal` and
    // `-shm`, snapshots) is the operator's alone, whatever the caller's umask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: could not start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", error_chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause said once: many of our errors put
/// their cause in their own message too (`event store: {0}`), and printing the cause
/// again would repeat it.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(cfg) => {
            let cfg = *cfg;
            // Before anything opens files: the connection limit is sized from it.
            troved::net::raise_open_files_limit();
            let listener = TcpListener::bind(cfg.listen).await?;
            let server = Server::start(&cfg, listener, shutdown_signal()).await?;
            Ok(server.wait().await?)
        }
        Command::History(args) => troved::cli::history::run(args).await,
        Command::Audit(cmd) => troved::cli::audit::run(cmd).await,
        Command::Projections(cmd) => troved::cli::projections::run(cmd).await,
        Command::Migrate(args) => troved::cli::migrate::run(args).await,
        Command::Backups(cmd) => troved::cli::backups::run(cmd).await,
        Command::Sim(SimCommand::List { data_dir }) => {
            println!("{}", troved::sim::list_json(&data_dir)?);
            Ok(())
        }
        Command::Local(LocalCommand::List {
            data_dir,
            local_root,
        }) => {
            let root = local_root.unwrap_or_else(|| data_dir.join("local"));
            println!("{}", troved::local::provider::list_json(&root)?);
            Ok(())
        }
        Command::Sim(SimCommand::Check {
            data_dir,
            event_store,
        }) => {
            let url = event_store.as_ref().map(|u| u.as_str());
            troved::cli::sim::check(&data_dir, url).await
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
