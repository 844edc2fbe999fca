use clap::{Parser, Subcommand};
use exai_agent::config::{AgentConfig, Endpoint, Flags};
use exai_agent::daemons::Daemons;
use exai_agent::dashboard::{self, Dashboard};
use exai_agent::health::{self, AgentChecks, Health};
use exai_agent::http_server::{self, Handler};
use exai_agent::listener;
use exai_agent::metrics::{Families, Registry};
use exai_agent::sink::{Discard, EventSink};
use exai_process::probe;
use exai_process::settings::ProcessEnv;
use exai_process::stop::{Signals, Stop};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
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
    exai_process::logging::init("info");
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

fn run_healthcheck(flags: &Flags, timeout: Duration) -> ExitCode {
    let health = match AgentConfig::load(&ProcessEnv, flags) {
        Ok(config) => config.health,
        Err(e) => {
            eprintln!("exai-agent healthcheck: invalid setting: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !health.enabled {
        eprintln!("exai-agent healthcheck: HEALTH_CHECK_ENABLED is false, so there is no {LIVE_PATH} to ask");
        return ExitCode::FAILURE;
    }
    probe::healthcheck("exai-agent", health.addr, LIVE_PATH, timeout)
}

/// What the healthcheck asks: 200 whenever the agent serves, whatever it monitors (a
/// missing daemon or a failing Redis makes the agent degraded, not dead).
const LIVE_PATH: &str = "/health/live";

async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let registry = Registry::new();
    let families = Arc::new(Families::new(&registry));
    let daemons = Arc::new(Daemons::new(families.clone(), config.daemons));

    // Bind everything before serving anything, so a bad start fails as a whole.
    let events = listener::bind(&config.events_socket)?;
    let metrics_listener = bind_if("METRICS_PORT", config.metrics).await?;
    let health_listener = bind_if("HEALTH_CHECK_PORT", config.health).await?;
    let dashboard_listener = bind_if("MONITORING_PORT", config.monitoring).await?;
    info!(socket = %config.events_socket.display(), version = exai_agent::VERSION, "listening for daemons");
    for key in &config.ignored {
        info!(setting = key, "not read by the agent: health reports Redis and Supabase as the daemons see them (EXAI_HEALTH_PROBE_* adds the agent's own probe)");
    }

    let mut signals = Signals::new()?;
    let tasks = Stop::new();
    let (publish, findings) = watch::channel(Arc::default());
    tasks.spawn(
        AgentChecks::new(config.health_checks.clone(), families.clone())
            .run(publish, tasks.token()),
    );
    let health = Arc::new(Health::new(
        config.health_checks.clone(),
        daemons.clone(),
        findings,
    ));
    if let Some(listener) = metrics_listener {
        info!(addr = %listener.local_addr()?, "metrics listening");
        tasks.spawn(http_server::serve(
            listener,
            metrics_handler(registry.clone(), config.metrics.addr.ip().is_loopback()),
            tasks.token(),
        ));
    }
    if let Some(listener) = health_listener {
        info!(addr = %listener.local_addr()?, "health listening");
        tasks.spawn(http_server::serve(
            listener,
            health::server::handler(health.clone(), config.health.addr.ip().is_loopback()),
            tasks.token(),
        ));
    }
    let mut sink: Arc<dyn EventSink> = Arc::new(Discard);
    if let Some(listener) = dashboard_listener {
        let dashboard = Arc::new(Dashboard::new(
            config.dashboard.clone(),
            &registry,
            daemons.clone(),
            health.clone(),
        ));
        info!(addr = %listener.local_addr()?, "dashboard listening");
        let stop = tasks.token();
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
        sink = dashboard;
    }
    tasks.spawn(expire_departed(daemons.clone(), tasks.token()));
    tasks.spawn(listener::serve(
        events,
        daemons,
        sink,
        config.pipe_max_connections,
        tasks.token(),
    ));

    signals.next().await;
    info!("shutting down");
    tasks.finish(STOP_WITHIN).await;
    Ok(())
}

/// Longest the servers get to close their connections at shutdown (each server already
/// bounds its own; this bounds them all).
const STOP_WITHIN: Duration = Duration::from_secs(10);

async fn bind_if(
    setting: &'static str,
    endpoint: Endpoint,
) -> Result<Option<tokio::net::TcpListener>, http_server::BindError> {
    match endpoint.enabled {
        true => http_server::bind(setting, endpoint.addr).await.map(Some),
        false => Ok(None),
    }
}

/// Removes the records (and series) of daemons gone for longer than their time to live.
async fn expire_departed(daemons: Arc<Daemons>, cancel: CancellationToken) {
    let ttl = daemons.config().ttl;
    let period = (ttl / 2).clamp(Duration::from_millis(100), Duration::from_secs(10));
    let mut every = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        for name in daemons.expire(std::time::Instant::now()) {
            info!(daemon = %name, "removing the series of a daemon gone past its time to live");
        }
    }
}

/// `loopback_only`: bound to a loopback address, so a `Host` naming anything else is a
/// DNS-rebinding page, not a local scraper.
fn metrics_handler(registry: Registry, loopback_only: bool) -> Handler {
    Arc::new(move |req| {
        if loopback_only && !http_server::loopback_host(&req) {
            return http_server::foreign_host();
        }
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
