use clap::{Parser, Subcommand};
use exai_agent::config::{AgentConfig, Endpoint, Flags};
use exai_agent::dashboard::{self, Dashboard};
use exai_agent::health::{self, link::DaemonLink, HealthChecker};
use exai_agent::http_server::{self, Handler};
use exai_agent::metrics::instances::Instances;
use exai_agent::metrics::pipe::PipeMetrics;
use exai_agent::metrics::service::ServiceMetrics;
use exai_agent::metrics::Registry;
use exai_agent::sink::{EventSink, FanOut, Increases};
use exai_agent::{healthcheck, listener};
use exai_proto::settings::ProcessEnv;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// exai observability agent: turns the daemons' events into metrics, health and a dashboard.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    flags: Flags,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exit 0 when the agent on HEALTH_CHECK_HOST:HEALTH_CHECK_PORT answers /health/live,
    /// 1 otherwise: a container healthcheck that needs nothing else in the image.
    Healthcheck {
        /// Seconds allowed for the connect and for the answer
        #[arg(long, default_value_t = 2)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if let Some(Command::Healthcheck { timeout }) = cli.command {
        return run_healthcheck(&cli.flags, Duration::from_secs(timeout));
    }
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

fn run_healthcheck(flags: &Flags, timeout: Duration) -> ExitCode {
    let health = match AgentConfig::load(&ProcessEnv, flags) {
        Ok(config) => config.health,
        Err(e) => {
            eprintln!("exai-agent healthcheck: invalid setting: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !health.enabled {
        eprintln!("exai-agent healthcheck: HEALTH_CHECK_ENABLED is false, so there is no /health/live to ask");
        return ExitCode::FAILURE;
    }
    let addr = healthcheck::target(health.addr);
    match healthcheck::probe_live(addr, timeout) {
        Ok(()) => {
            println!("exai-agent on {addr} is live");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("exai-agent healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let registry = Registry::new();
    let instances = Arc::new(Instances::new(config.max_instances, config.instance_ttl));
    let pipe = Arc::new(PipeMetrics::new(&registry, instances.clone()));
    let service = Arc::new(ServiceMetrics::new(&registry));
    let link = Arc::new(DaemonLink::default());

    // Bind everything before serving anything, so a bad start fails as a whole.
    let events = listener::bind(&config.events_socket)?;
    let metrics_listener = bind_if("METRICS_PORT", config.metrics).await?;
    let health_listener = bind_if("HEALTH_CHECK_PORT", config.health).await?;
    let dashboard_listener = bind_if("MONITORING_PORT", config.monitoring).await?;
    info!(socket = %config.events_socket.display(), version = exai_agent::VERSION, "listening for daemons");

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (publish, health) =
        watch::channel(Arc::new(health::not_checked_yet(&config.health_checks)));
    let checker = HealthChecker::new(config.health_checks.clone(), link.clone(), service.clone());
    tasks.spawn(checker.run(publish, cancel.child_token()));
    if let Some(listener) = metrics_listener {
        info!(addr = %listener.local_addr()?, "metrics listening");
        tasks.spawn(http_server::serve(
            listener,
            metrics_handler(registry.clone()),
            cancel.child_token(),
        ));
    }
    if let Some(listener) = health_listener {
        info!(addr = %listener.local_addr()?, "health listening");
        tasks.spawn(http_server::serve(
            listener,
            health::server::handler(health.clone(), config.health_checks.timezone),
            cancel.child_token(),
        ));
    }
    let dashboard = Arc::new(Dashboard::new(
        config.dashboard.clone(),
        &registry,
        pipe.clone(),
        health.clone(),
        config.health_checks.timezone,
    ));
    if let Some(listener) = dashboard_listener {
        info!(addr = %listener.local_addr()?, "dashboard listening");
        let stop = cancel.child_token();
        tasks.spawn(http_server::serve_with(
            listener,
            dashboard::server::handler(
                dashboard.clone(),
                config.monitoring.addr.ip().is_loopback(),
                stop.clone(),
            ),
            stop.clone(),
            Some(dashboard::SEND_BUFFER),
        ));
        tasks.spawn(dashboard.clone().run(stop));
    }
    let mut sinks: Vec<Arc<dyn EventSink>> = vec![service.clone(), link];
    if config.monitoring.enabled {
        sinks.push(dashboard.clone());
    }
    let sink = Arc::new(Increases::new(FanOut(sinks)));
    tasks.spawn(expire_departed(
        instances,
        pipe.clone(),
        service,
        dashboard,
        sink.clone(),
        cancel.child_token(),
    ));
    tasks.spawn(listener::serve(events, sink, pipe, cancel.child_token()));
    tasks.close();

    shutdown_signal().await;
    info!("shutting down");
    cancel.cancel();
    tasks.wait().await;
    Ok(())
}

async fn bind_if(
    setting: &'static str,
    endpoint: Endpoint,
) -> Result<Option<tokio::net::TcpListener>, http_server::BindError> {
    match endpoint.enabled {
        true => http_server::bind(setting, endpoint.addr).await.map(Some),
        false => Ok(None),
    }
}

/// Removes the series of daemons gone for longer than their time to live.
async fn expire_departed(
    instances: Arc<Instances>,
    pipe: Arc<PipeMetrics>,
    service: Arc<ServiceMetrics>,
    dashboard: Arc<Dashboard>,
    sink: Arc<Increases<FanOut>>,
    cancel: CancellationToken,
) {
    let ttl = instances.ttl();
    let period = (ttl / 2).clamp(Duration::from_millis(100), Duration::from_secs(10));
    let mut every = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        instances.expire(std::time::Instant::now(), |gone| {
            info!(instance = %gone.instance_id, "removing the series of a daemon gone past its time to live");
            pipe.forget(&gone.instance_id, &gone.label);
            service.forget(std::slice::from_ref(gone));
            dashboard.forget(&gone.instance_id);
            sink.forget(&gone.instance_id);
        });
    }
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
        http_server::text(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            registry.render(),
        )
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
