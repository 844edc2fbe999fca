use anyhow::Context;
use clap::{Parser, Subcommand};
use exai_daemon::chat::{ChatService, ModelChoice};
use exai_daemon::config::{default_daemon_name, DaemonConfig, Flags};
use exai_daemon::mcp::{CallsInFlight, McpCore};
use exai_daemon::pipe_writer::{self, DaemonIdentity, WriterConfig};
use exai_daemon::providers::catalogue::{Catalogue, CatalogueHandle};
use exai_daemon::providers::discovery;
use exai_daemon::providers::{InflightLimits, ProviderClient, ProviderConfig, RetryPolicy};
use exai_daemon::server::{self, Occupancy, Server, ShutdownStages};
use exai_daemon::storage::memory::MemoryStore;
use exai_daemon::storage::redis::RedisStore;
use exai_daemon::storage::{ConversationStore, Journal};
use exai_daemon::supabase::Persistence;
use exai_daemon::tasks::TaskStore;
use exai_daemon::tools::Tools;
use exai_daemon::views::DependencyViews;
use exai_daemon::{bridge, EventEmitter, Totals};
use exai_process::settings::ProcessEnv;
use exai_process::{probe, stop::Signals};
use exai_proto::Provider;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// exai MCP daemon: serves MCP clients over WebSocket and Streamable HTTP, and ships
/// sampled events to exai-agent.
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
    /// Relay MCP between stdio and a running daemon, for clients that spawn stdio servers.
    /// Sends EXAI_WS_TOKEN as a bearer token when it is set.
    Bridge {
        /// The daemon's WebSocket URL
        #[arg(default_value = "ws://127.0.0.1:8079/mcp")]
        url: String,
    },
    /// Exit 0 when the daemon on EXAI_WS_HOST:EXAI_WS_PORT answers 200 on /healthz (or
    /// /readyz with --ready), 1 otherwise: a container healthcheck that needs nothing
    /// else in the image.
    Healthcheck {
        /// Seconds allowed for the connect and for the answer
        #[arg(long, default_value_t = 2)]
        timeout: u64,
        /// Ask /readyz (taking work, not draining) instead of /healthz (serving)
        #[arg(long)]
        ready: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    exai_process::logging::init("info,rmcp=error");
    match &cli.command {
        Some(Command::Bridge { url }) => return run_bridge(url),
        Some(Command::Healthcheck { timeout, ready }) => {
            let path = if *ready { "/readyz" } else { "/healthz" };
            return run_healthcheck(&cli.flags, path, Duration::from_secs(*timeout));
        }
        None => {}
    }
    let config = match DaemonConfig::load(&ProcessEnv, &cli.flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("exai-daemon: invalid setting: {e}");
            return ExitCode::from(2);
        }
    };
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exai-daemon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_bridge(url: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("exai-daemon bridge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let token = std::env::var("EXAI_WS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    match runtime.block_on(bridge::run(url, token.as_deref())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exai-daemon bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_healthcheck(flags: &Flags, path: &str, timeout: Duration) -> ExitCode {
    match DaemonConfig::load(&ProcessEnv, flags) {
        Ok(config) => probe::healthcheck("exai-daemon", config.server.addr, path, timeout),
        Err(e) => {
            eprintln!("exai-daemon healthcheck: invalid setting: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut config: DaemonConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        // From here a SIGTERM during start-up is kept for the drain, not fatal.
        let mut signals = Signals::new().context("cannot listen for SIGTERM and SIGINT")?;
        let catalogue = Arc::new(CatalogueHandle::new(Catalogue::new(config.models.entries.clone())));
        let emitter = EventEmitter::new(config.sampling, config.event_queue_capacity, Totals::new(&[]));
        discovery::announce(&catalogue.snapshot(), &emitter);

        let listener = server::bind(config.server.addr).await?;
        let addr = listener.local_addr().context("cannot read the bound address")?;
        let name = config.name.clone().unwrap_or_else(|| default_daemon_name(addr.port()));
        let identity = DaemonIdentity::current(name);
        info!(daemon = %identity.name, instance = %identity.instance_id, pid = identity.pid, version = %identity.version,
            events_socket = %config.events_socket.display(), "exai-daemon starting");
        exai_daemon::fd_limit::fit(&mut config.server.limits, config.limits.global).log();

        // One root: a child per subsystem, stopped in order at shutdown.
        let root = CancellationToken::new();
        let stages = ShutdownStages::new(&root, config.shutdown_grace);

        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .context("cannot build the HTTP client")?;
        let retry = RetryPolicy { max_attempts: config.limits.max_attempts, ..RetryPolicy::default() };
        let provider = |provider, settings: &exai_daemon::config::ProviderSettings| {
            ProviderClient::new(
                ProviderConfig {
                    provider,
                    base_url: settings.base_url.clone(),
                    key: settings.key.clone(),
                    unavailable_reason: settings.missing_key.clone(),
                    call_timeout: config.limits.call_timeout,
                    connect_timeout: Duration::from_secs(10),
                    retry: retry.clone(),
                },
                http.clone(),
            )
        };
        let providers = vec![provider(Provider::Kimi, &config.kimi), provider(Provider::Glm, &config.glm)];
        for p in &providers {
            match p.unavailable() {
                None => info!(provider = %p.provider(), base_url = %exai_daemon::redact::redact_url(p.base_url()), "provider available"),
                Some(why) => info!(provider = %p.provider(), reason = why, "provider unavailable"),
            }
        }
        let limits = Arc::new(InflightLimits::new(config.limits.global, config.limits.kimi, config.limits.glm, config.limits.max_wait).with_max_waiting_bytes(config.limits.max_waiting_bytes));
        // Background work besides serving: the Redis probe and the Supabase uploader.
        // Stopped after the server, so the last answers' turns are spooled.
        let background_cancel = root.child_token();
        let background = TaskTracker::new();
        let store: Arc<dyn ConversationStore> = match &config.storage.redis_url {
            Some(url) => {
                info!(url = %exai_daemon::config::redact_url(url.expose()), "conversations in Redis");
                let journal_dir = config.storage.journal_dir(&identity.name);
                let journal = Journal::open(&journal_dir, config.storage.journal_max_bytes, config.storage.timeout)
                    .with_context(|| format!("cannot open the storage journal {}", journal_dir.display()))?;
                Arc::new(RedisStore::start(url.expose(), config.conversations.ttl, config.storage.timeout, background_cancel.child_token(), &background)?
                    .with_journal(journal, config.conversations.max_turns, background_cancel.child_token(), &background))
            }
            None => Arc::new(MemoryStore::new(
                config.conversations.ttl,
                MEMORY_STORE_MAX_THREADS,
                config.conversations.memory_max_bytes,
            )),
        };
        if let Some(file) = &config.models.file {
            info!(file = %file.display(), models = config.models.entries.len(), "model catalogue read");
        }
        if config.models.refresh.is_some() {
            background.spawn(discovery::run(providers.clone(), catalogue.clone(), emitter.clone(),
                config.models.refresh, background_cancel.child_token()));
        }
        let mut chat = ChatService::new(
            providers,
            limits,
            store,
            emitter.clone(),
            ModelChoice { catalogue, default_model: config.models.default_model.clone() },
            config.conversations.max_turns,
            config.storage.timeout,
        );
        let mut persistence = None;
        if let Some(supabase) = &config.supabase {
            let started = Persistence::start(supabase, http.clone(), emitter.clone(), &background, background_cancel.child_token())
                .context("cannot open the Supabase spool")?;
            chat = chat.with_persistence(started.clone());
            persistence = Some(started);
        }
        let chat = Arc::new(chat);
        // Tasks live where conversations do, so every daemon sharing the Redis sees them.
        let runner = format!("{}, instance {}", identity.name, identity.instance_id.get(..8).unwrap_or_default());
        let tasks = Arc::new(match &config.storage.redis_url {
            Some(url) => TaskStore::redis(url.expose(), config.storage.timeout, config.tasks.clone(), config.server.progress_every, runner)?,
            None => TaskStore::memory(config.tasks.clone(), config.server.progress_every, runner),
        });
        let core = Arc::new(McpCore {
            tools: Tools::new(chat.clone(), emitter.clone(), tasks.clone(), config.server.max_result_bytes, config.models.refresh),
            emitter: emitter.clone(),
            progress_every: config.server.progress_every,
            calls: CallsInFlight::new(stages.calls.clone(), config.shutdown_grace),
            tasks: TaskTracker::new(),
        });

        // The server stops first; the pipe writer only once the last answers are out, so
        // their events and the final heartbeat reach the agent.
        let writer_cancel = root.child_token();
        // Every place and count of the MCP edge: the server fills it, the heartbeat and
        // `status` read it.
        let occupancy = Occupancy::new(&config.server.limits);
        let views = Arc::new(HeartbeatViews { chat: chat.clone(), occupancy: occupancy.clone() });
        let writer = tokio::spawn(pipe_writer::run(emitter.clone(), identity, views.clone(), WriterConfig::new(config.events_socket.clone()), writer_cancel.clone()));
        let server = Server::new(config.server.clone(), core.clone(), stages.clone(), occupancy.clone());
        core.tools.report_connections(Box::new(move || occupancy.report()));
        info!(%addr, token_required = config.server.token.is_some(),
            max_connections = config.server.limits.max_connections,
            max_pending_connections = config.server.limits.max_pending,
            "MCP listening (WebSocket on / and /mcp, Streamable HTTP on /mcp)");
        let serving = tokio::spawn(server.serve(listener));

        signals.next().await;
        // 0. The drain: /readyz says 503 while everything is still served, so balancers
        //    take the daemon out of rotation before it stops accepting. A second signal
        //    ends it early.
        stages.draining.cancel();
        info!(drain = ?config.drain, "draining: /readyz answers 503; still serving until the drain ends (EXAI_DRAIN_S)");
        tokio::select! {
            _ = tokio::time::sleep(config.drain) => {}
            _ = signals.next() => info!("a second signal: ending the drain now"),
        }
        info!("shutting down");
        // Tasks are nobody's open request: their model calls stop with the server.
        tasks.cancel_all();
        // 1. No new connections; calls get the grace, then are cancelled and answered;
        //    sessions close. 2. Background work stops and the spool is flushed. 3. The
        //    pipe writer sends the final heartbeat, counting every request answered.
        stages.accepting.cancel();
        let _ = serving.await;
        core.tasks.close();
        core.tasks.wait().await;
        background_cancel.cancel();
        background.close();
        background.wait().await;
        if let Some(persistence) = &persistence {
            persistence.close(SPOOL_CLOSE_WITHIN).await;
        }
        writer_cancel.cancel();
        let _ = writer.await;
        root.cancel();
        info!("exai-daemon stopped");
        Ok(())
    });
    // A blocking task stuck on a dead disk must not hold the exit.
    runtime.shutdown_timeout(RUNTIME_STOP_WITHIN);
    result
}

/// What the heartbeat reads of the running daemon: its dependencies as the chat service
/// sees them, and the Streamable HTTP sessions open (counted with WebSocket ones).
struct HeartbeatViews {
    chat: Arc<ChatService>,
    occupancy: Arc<Occupancy>,
}

impl DependencyViews for HeartbeatViews {
    fn storage(&self) -> exai_proto::StorageView {
        self.chat.storage()
    }

    fn supabase(&self) -> exai_proto::SupabaseView {
        self.chat.supabase()
    }

    fn http_sessions(&self) -> u32 {
        u32::try_from(self.occupancy.http_sessions()).unwrap_or(u32::MAX)
    }
}

/// Longest blocking tasks still running are waited for once everything else stopped.
const RUNTIME_STOP_WITHIN: Duration = Duration::from_secs(1);

/// Longest the last turns queued for the spool's disk are waited for at shutdown.
const SPOOL_CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// Conversations the in-memory store keeps (the embedded default; Redis has no such cap).
const MEMORY_STORE_MAX_THREADS: usize = 20_000;
