use clap::Parser;
use exai_agent::config::{AgentConfig, Flags};
use exai_agent::http_server::{self, Handler};
use exai_agent::listener;
use exai_agent::pipe_metrics::PipeMetrics;
use exai_agent::sink::FanOut;
use exai_proto::settings::ProcessEnv;
use prometheus::{Encoder, Registry, TextEncoder};
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// exai observability agent: turns the daemons' events into metrics, health and a dashboard.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    flags: Flags,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let config = match AgentConfig::load(&ProcessEnv, &cli.flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("exai-agent: invalid setting: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("exai-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exai-agent: {e:#}");
            ExitCode::FAILURE
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

async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let registry = Registry::new();
    let pipe = Arc::new(PipeMetrics::new(&registry));

    // Bind everything before serving anything, so a bad start fails as a whole.
    let events = listener::bind(&config.events_socket)?;
    let metrics_listener = match config.metrics.enabled {
        true => Some(http_server::bind("METRICS_PORT", config.metrics.addr).await?),
        false => None,
    };
    info!(socket = %config.events_socket.display(), version = exai_agent::VERSION, "listening for daemons");

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    if let Some(listener) = metrics_listener {
        info!(addr = %listener.local_addr()?, "metrics listening");
        tasks.spawn(http_server::serve(
            listener,
            metrics_handler(registry.clone()),
            cancel.child_token(),
        ));
    }
    tasks.spawn(listener::serve(
        events,
        Arc::new(FanOut::default()),
        pipe,
        cancel.child_token(),
    ));
    tasks.close();

    shutdown_signal().await;
    info!("shutting down");
    cancel.cancel();
    tasks.wait().await;
    Ok(())
}

fn metrics_handler(registry: Registry) -> Handler {
    Arc::new(move |req| {
        if req.uri().path() != "/metrics" {
            return http_server::text(
                404,
                "text/plain; charset=utf-8",
                "not found; try /metrics\n",
            );
        }
        let mut body = Vec::new();
        match TextEncoder::new().encode(&registry.gather(), &mut body) {
            Ok(()) => http_server::text(200, "text/plain; version=0.0.4; charset=utf-8", body),
            Err(e) => http_server::text(
                500,
                "text/plain; charset=utf-8",
                format!("cannot render metrics: {e}\n"),
            ),
        }
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
