//! The MCP server proper, on rmcp: initialize and version negotiation, tools, progress,
//! cancellation. Each request is counted exactly and sampled as an event here, whatever
//! transport brought it.

pub mod compat;
pub mod correlation;
pub mod era;
mod tasks;

pub use tasks::http_session_owner;

use crate::providers::CallProgress;
use crate::tools::{self, InvalidParams, ToolOutput, Tools};
use crate::EventEmitter;
use exai_proto::{
    CorrelationId, EventKind, McpMethod, RequestStatus, SampleClass, Tool, Transport,
};
// Logging (`logging/setLevel`) is part of every protocol revision this server speaks
// (up to 2025-11-25); rmcp deprecates it only for the 2026 draft.
#[allow(deprecated)]
use rmcp::model::SetLevelRequestParams;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
    CustomRequest, CustomResult, DiscoverResult, ErrorCode, ErrorData, GetTaskParams,
    GetTaskResult, InitializeRequestParams, InitializeResult, ListToolsResult, MetaObject,
    PaginatedRequestParams, ProgressNotificationParam, ProgressToken, ProtocolVersion,
    RequestMetaObject, ServerCapabilities, ServerConfig, ToolAnnotations, UpdateTaskParams,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::{RoleServer, ServerHandler};
use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Shared by every session.
pub struct McpCore {
    pub tools: Tools,
    pub emitter: EventEmitter,
    /// How often a running tool call reports progress when the client asked for it.
    pub progress_every: Duration,
    /// Tool calls under way: shutdown waits for them, then cancels them.
    pub calls: CallsInFlight,
    /// Tasks spawned for requests (progress notes), drained at shutdown.
    pub tasks: TaskTracker,
}

impl McpCore {
    /// Tool calls under way now.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.count.load(Relaxed)
    }

    /// Completes when no tool call is under way.
    pub async fn calls_finished(&self) {
        loop {
            let idle = self.calls.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.calls_in_flight() == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Tool calls under way, and the signal that cancels them at shutdown.
pub struct CallsInFlight {
    count: AtomicUsize,
    idle: Notify,
    /// Fired once the shutdown grace is over: calls still running end with an error.
    cancel: CancellationToken,
    /// The grace, for the error's text.
    grace: Duration,
}

impl CallsInFlight {
    pub fn new(cancel: CancellationToken, grace: Duration) -> Self {
        Self {
            count: AtomicUsize::new(0),
            idle: Notify::new(),
            cancel,
            grace,
        }
    }

    fn enter(&self) -> CallGuard<'_> {
        self.count.fetch_add(1, Relaxed);
        CallGuard(self)
    }

    /// What a call cancelled at shutdown answers.
    fn cancelled_at_shutdown(&self) -> ToolOutput {
        ToolOutput::error(format!(
            "the server is shutting down: this call was cancelled after the {} s grace period (EXAI_SHUTDOWN_GRACE_S); send it again once the server is back",
            self.grace.as_secs()
        ))
    }
}

/// Counts one call as under way for as long as it lives.
struct CallGuard<'a>(&'a CallsInFlight);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Relaxed) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// One session's handler; cheap to clone.
#[derive(Clone)]
pub struct McpHandler {
    core: Arc<McpCore>,
    /// The session as the owner of its tasks, which go when it does.
    session: Arc<tasks::SessionTasks>,
}

impl McpHandler {
    pub fn new(core: Arc<McpCore>) -> Self {
        let session = Arc::new(tasks::SessionTasks::new(core.tools.tasks().clone()));
        Self { core, session }
    }

    fn count(
        &self,
        ctx: &RequestContext<RoleServer>,
        method: McpMethod,
        tool: Tool,
        status: RequestStatus,
        started: Instant,
        correlation: &CorrelationId,
    ) {
        count_request(
            &self.core.emitter,
            transport(ctx),
            method,
            tool,
            status,
            started,
            correlation,
        );
    }

    fn count_simple<T>(
        &self,
        ctx: &RequestContext<RoleServer>,
        method: McpMethod,
        started: Instant,
        result: &Result<T, ErrorData>,
    ) {
        let status = if result.is_ok() {
            RequestStatus::Success
        } else {
            RequestStatus::Error
        };
        let correlation = correlation::from_request(&ctx.meta, headers(ctx));
        self.count(ctx, method, Tool::None, status, started, &correlation);
    }
}

/// Counts a request exactly and samples it as an event.
fn count_request(
    emitter: &EventEmitter,
    transport: Transport,
    method: McpMethod,
    tool: Tool,
    status: RequestStatus,
    started: Instant,
    correlation: &CorrelationId,
) {
    emitter.totals().request(transport, method, tool, status);
    let duration_us = started.elapsed().as_micros() as u64;
    emitter.record(SampleClass::Requests, correlation, || {
        EventKind::McpRequest {
            transport,
            method,
            tool,
            status,
            duration_us,
        }
    });
}

fn headers(ctx: &RequestContext<RoleServer>) -> Option<&http::HeaderMap> {
    ctx.extensions
        .get::<http::request::Parts>()
        .map(|p| &p.headers)
}

/// Streamable HTTP puts the request's parts in the context; WebSocket does not.
fn transport(ctx: &RequestContext<RoleServer>) -> Transport {
    if ctx.extensions.get::<http::request::Parts>().is_some() {
        Transport::Http
    } else {
        Transport::WebSocket
    }
}

/// How long a client may keep `server/discover`'s answer.
const DISCOVER_TTL_MS: u64 = 60_000;

const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "logging/setLevel",
];

/// A tool's output as an MCP result: text, `structuredContent`, and `_meta` with the
/// request's correlation id.
fn call_tool_result(
    output: ToolOutput,
    correlation: &CorrelationId,
    era: era::Era,
) -> CallToolResult {
    let mut meta = output.meta;
    meta.insert("correlation_id".into(), correlation.as_str().into());
    if era == era::Era::Stateless {
        meta.insert(era::SERVER_INFO_KEY.into(), era::server_info_json());
    }
    let content = vec![ContentBlock::text(output.text)];
    let mut result = if output.is_error {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    };
    result.structured_content = output.structured;
    result.with_meta(Some(MetaObject(meta)))
}

impl ServerHandler for McpHandler {
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                // 2026-07-28's tasks extension; `compat` shows 2025 clients their own
                // `tasks` capability instead.
                .enable_tasks()
                .build(),
        )
        .with_server_info(era::server_info())
        .with_instructions(
            "Chat with Kimi and GLM models: call listmodels to see what is available, then chat.",
        )
    }

    /// The revisions this server implements: 2024-11-05 to 2025-11-25 with an initialize
    /// handshake, and 2026-07-28, stateless, whose every request names its revision.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(era::supported())
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let started = Instant::now();
        ctx.peer.set_peer_info(request.clone());
        let result = self.negotiate_initialize(&request);
        self.count_simple(&ctx, McpMethod::Initialize, started, &result);
        result
    }

    async fn ping(&self, ctx: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        let result = Ok(());
        self.count_simple(&ctx, McpMethod::Ping, Instant::now(), &result);
        result
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let started = Instant::now();
        let object = |v: serde_json::Value| match v {
            serde_json::Value::Object(map) => Arc::new(map),
            _ => Arc::new(serde_json::Map::new()),
        };
        let listed = tools::specs()
            .into_iter()
            .map(|spec| {
                let hints = ToolAnnotations::with_title(spec.title)
                    .read_only(spec.hints.read_only)
                    .destructive(spec.hints.destructive)
                    .idempotent(spec.hints.idempotent)
                    .open_world(spec.hints.open_world);
                rmcp::model::Tool::new(spec.name, spec.description, object(spec.input_schema))
                    .with_title(spec.title)
                    .with_raw_output_schema(object(spec.output_schema))
                    .with_annotations(hints)
            })
            .collect();
        let mut listed = ListToolsResult::with_all_items(listed);
        if era::Era::of(&ctx.meta) == era::Era::Stateless {
            listed.ttl_ms = Some(era::TOOLS_TTL_MS);
            listed.cache_scope = Some(rmcp::model::CacheScope::Private);
            era::stamp(&mut listed.meta);
        }
        let result = Ok(listed);
        self.count_simple(&ctx, McpMethod::ToolsList, started, &result);
        result
    }

    /// Accepted: the daemon logs through tracing on its own terms, so the level a client
    /// asks for is acknowledged, not applied to the process.
    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        tracing::debug!(level = ?request.level, "client asked for a logging level");
        let result = Ok(());
        self.count_simple(&ctx, McpMethod::LoggingSetLevel, Instant::now(), &result);
        result
    }

    /// The revisions served, the capabilities (the tasks extension among them) and
    /// `serverInfo` in `_meta`. Fresh for a minute: nothing in it changes while the
    /// daemon runs, and every daemon of a fleet answers the same.
    async fn discover(&self, ctx: RequestContext<RoleServer>) -> Result<DiscoverResult, ErrorData> {
        let started = Instant::now();
        let result = Ok(DiscoverResult::from_server_info(
            self.supported_protocol_versions().into_owned(),
            self.get_info(),
        )
        .with_ttl_ms(DISCOVER_TTL_MS));
        self.count_simple(&ctx, McpMethod::Other, started, &result);
        result
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        self.get_modern_task(request, ctx).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.cancel_modern_task(request, ctx).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.update_modern_task(request, ctx).await
    }

    /// Methods rmcp could not route: unknown ones (-32601), or known ones whose params
    /// did not parse (-32602).
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        let method = request.method.as_str();
        if let Some(task_method) = tasks::TaskMethod::of(method) {
            return self.task_request(task_method, request.params, ctx).await;
        }
        let result = if KNOWN_METHODS.contains(&method) {
            Err(ErrorData::invalid_params(
                format!("invalid params for {method}"),
                None,
            ))
        } else {
            Err(method_not_found(method))
        };
        self.count_simple(&ctx, McpMethod::Other, Instant::now(), &result);
        result
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if tasks::runs_as_task(&request, &ctx) {
            return self.start_modern_task(request, &ctx).await;
        }
        let owner = self.owner(&ctx);
        let site = CallSite {
            meta: &ctx.meta,
            headers: headers(&ctx),
            transport: transport(&ctx),
            ct: &ctx.ct,
            peer: Some(&ctx.peer),
            owner: &owner,
        };
        self.core.call_tool(request, site).await
    }
}

/// Where a `tools/call` came from: what the call reads of its request besides the
/// params. rmcp builds it from a request's context; a plain HTTP call answered in
/// place (`server::direct`) from the POST itself.
pub struct CallSite<'a> {
    pub meta: &'a RequestMetaObject,
    pub headers: Option<&'a http::HeaderMap>,
    pub transport: Transport,
    /// Cancelled by `notifications/cancelled` or when the session goes.
    pub ct: &'a CancellationToken,
    /// Where progress notifications go; none means the call cannot send any.
    pub peer: Option<&'a Peer<RoleServer>>,
    /// Whose tasks the call may see (`status`): its session's
    /// ([`http_session_owner`] over Streamable HTTP).
    pub owner: &'a str,
}

impl McpCore {
    /// Runs one `tools/call`, counts it exactly and samples it as an event.
    pub async fn call_tool(
        &self,
        request: CallToolRequestParams,
        site: CallSite<'_>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = Instant::now();
        let _call = self.calls.enter();
        let correlation = correlation::from_request(site.meta, site.headers);
        let tool = tools::tool_label(&request.name);
        let span =
            tracing::info_span!("tools/call", correlation_id = %correlation, tool = %request.name);
        let progress = CallProgress::default();
        // The arguments are checked, then their JSON dropped: a call waiting for a model
        // place holds one copy of its prompt, not two.
        let CallToolRequestParams {
            name, arguments, ..
        } = request;
        let parsed = self.tools.parse(&name, arguments.as_ref());
        drop(arguments);
        let outcome = async {
            let call = parsed?;
            let work = futures_util::FutureExt::map(
                self.tools
                    .run(call, &correlation, site.ct, Some(&progress), site.owner),
                Ok,
            );
            let work = async {
                match (site.peer, site.meta.get_progress_token()) {
                    (Some(peer), Some(token)) => {
                        with_progress(
                            work,
                            peer,
                            token,
                            self.progress_every,
                            &progress,
                            &self.tasks,
                        )
                        .await
                    }
                    _ => work.await,
                }
            };
            // At shutdown, once the grace is over, the call is dropped (which aborts the
            // model's HTTP request and frees its places) and answered with an error.
            tokio::select! {
                outcome = work => outcome,
                _ = self.calls.cancel.cancelled() => {
                    tracing::info!("model call cancelled: the server is shutting down");
                    Ok(self.calls.cancelled_at_shutdown())
                }
            }
        }
        .instrument(span)
        .await;
        let (status, response) = match outcome {
            Err(invalid) => (RequestStatus::Error, Err(invalid_params(invalid))),
            Ok(output) => {
                let status = if site.ct.is_cancelled() {
                    RequestStatus::Cancelled
                } else if output.is_error {
                    RequestStatus::ToolError
                } else {
                    RequestStatus::Success
                };
                (
                    status,
                    Ok(call_tool_result(output, &correlation, era::Era::of(site.meta)).into()),
                )
            }
        };
        count_request(
            &self.emitter,
            site.transport,
            McpMethod::ToolsCall,
            tool,
            status,
            started,
            &correlation,
        );
        response
    }
}

/// Counts a request answered by the transport itself, before rmcp.
pub fn count_early(emitter: &EventEmitter, transport: Transport) {
    emitter.totals().request(
        transport,
        McpMethod::Other,
        Tool::None,
        RequestStatus::Error,
    );
    emitter.record_uncorrelated(SampleClass::Requests, || EventKind::McpRequest {
        transport,
        method: McpMethod::Other,
        tool: Tool::None,
        status: RequestStatus::Error,
        duration_us: 0,
    });
}

pub(crate) fn method_not_found(method: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::METHOD_NOT_FOUND,
        format!("method not found: {method}"),
        None,
    )
}

fn invalid_params(e: InvalidParams) -> ErrorData {
    ErrorData::invalid_params(e.to_string(), None)
}

/// Runs `work`, sending `notifications/progress` with the client's token (its JSON type
/// kept) right away and then every `every`, until it finishes; each says whether the
/// model is thinking or answering. Each note is sent on its own task with a deadline, and
/// a tick is skipped while the previous note is still on its way: a client that stops
/// reading must not stall the work (which holds the model call's places and watches its
/// deadline and cancellation).
async fn with_progress<T>(
    work: impl Future<Output = T>,
    peer: &Peer<RoleServer>,
    token: ProgressToken,
    every: Duration,
    progress: &CallProgress,
    tasks: &TaskTracker,
) -> T {
    tokio::pin!(work);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut sent = 0u32;
    let mut pending: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            done = &mut work => {
                if let Some(note) = pending {
                    note.abort();
                }
                return done;
            }
            _ = ticks.tick() => {
                if pending.as_ref().is_some_and(|p| !p.is_finished()) {
                    continue;
                }
                sent += 1;
                let message = progress.view().describe(started.elapsed().as_secs());
                let note = ProgressNotificationParam::new(token.clone(), f64::from(sent))
                    .with_message(message);
                let peer = peer.clone();
                pending = Some(tasks.spawn(async move {
                    // A client that cannot be told is not waited for.
                    let _ = tokio::time::timeout(every, peer.notify_progress(note)).await;
                }));
            }
        }
    }
}
