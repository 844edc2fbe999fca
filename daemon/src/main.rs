use anyhow::Context;
use clap::Parser;
use exai_daemon::config::{DaemonConfig, Flags};
use exai_daemon::pipe_writer::{self, DaemonIdentity, WriterConfig};
use exai_daemon::{EventEmitter, Totals};
use exai_proto::settings::ProcessEnv;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// exai MCP daemon: serves MCP clients and ships sampled events to exai-agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    flags: Flags,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let config = match DaemonConfig::load(&ProcessEnv, &cli.flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("exai-daemon: invalid setting: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exai-daemon: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EXAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn run(config: DaemonConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let emitter = EventEmitter::new(
            config.sampling,
            config.event_queue_capacity,
            Totals::new(&[]),
        );
        let identity = DaemonIdentity::current();
        info!(instance = %identity.instance_id, pid = identity.pid, version = %identity.version,
            events_socket = %config.events_socket.display(), "exai-daemon starting");
        let cancel = CancellationToken::new();
        let writer = tokio::spawn(pipe_writer::run(
            emitter.clone(),
            identity,
            WriterConfig::new(config.events_socket.clone()),
            cancel.child_token(),
        ));
        shutdown_signal().await;
        info!("shutting down");
        cancel.cancel();
        let _ = writer.await;
        Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
