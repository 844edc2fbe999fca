//! The four tools — `chat`, `listmodels`, `version`, `status` — as plain functions over
//! JSON, so the MCP transport only adapts types. Arguments are validated here (`args`): a
//! bad one is the caller's error (-32602), a failed model call is a result with
//! `isError`. Each result is text for the calling model plus `structuredContent` that
//! matches the tool's `outputSchema` (`specs`).

mod args;
mod output;
mod reports;
mod specs;

pub use args::{check_continuation_id, CONTINUATION_ID_MAX_BYTES};
pub use specs::{specs, tool_label, Hints, ToolSpec, PROTOCOL_VERSIONS};

/// The `chat` tool's arguments, checked (for the fuzz target; the tools use it inside).
pub fn parse_chat(args: &Map<String, Value>) -> Result<crate::chat::ChatArgs, InvalidParams> {
    args::chat(args)
}

use crate::chat::{ChatArgs, ChatError, ChatService};
use crate::providers::CallProgress;
use crate::tasks::TaskStore;
use crate::EventEmitter;
use exai_proto::CorrelationId;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What a tool call produced: text for the client, `isError`, `structuredContent` and
/// the little `_meta` a client (not the model) needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    pub is_error: bool,
    pub structured: Option<Value>,
    pub meta: Map<String, Value>,
}

impl ToolOutput {
    pub(crate) fn error(text: String) -> Self {
        Self {
            text,
            is_error: true,
            structured: None,
            meta: Map::new(),
        }
    }

    pub(crate) fn structured(text: String, structured: Value) -> Self {
        Self {
            text,
            is_error: false,
            structured: Some(structured),
            meta: Map::new(),
        }
    }
}

/// The caller's mistake, answered with JSON-RPC -32602.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidParams {
    #[error("unknown tool {0:?}; tools/list names the tools this server has")]
    UnknownTool(String),
    #[error("invalid arguments for {tool}: {why}")]
    BadArguments { tool: &'static str, why: String },
}

/// A tool call whose arguments were checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Chat(ChatArgs),
    ListModels,
    Version,
    Status,
}

impl Call {
    pub fn tool(&self) -> &'static str {
        match self {
            Call::Chat(_) => "chat",
            Call::ListModels => "listmodels",
            Call::Version => "version",
            Call::Status => "status",
        }
    }
}

pub struct Tools {
    chat: Arc<ChatService>,
    emitter: EventEmitter,
    tasks: Arc<TaskStore>,
    started: Instant,
    max_result_bytes: usize,
    /// EXAI_MODELS_REFRESH_S; `None` when off.
    models_refresh: Option<Duration>,
    /// The server's connection and session counts, for `status`; set once it exists.
    connections: std::sync::OnceLock<ConnectionReport>,
}

/// Reads the server's connection and session counts as JSON.
pub type ConnectionReport = Box<dyn Fn() -> Value + Send + Sync>;

impl Tools {
    pub fn new(
        chat: Arc<ChatService>,
        emitter: EventEmitter,
        tasks: Arc<TaskStore>,
        max_result_bytes: usize,
        models_refresh: Option<Duration>,
    ) -> Self {
        Self {
            chat,
            emitter,
            tasks,
            started: Instant::now(),
            max_result_bytes,
            models_refresh,
            connections: std::sync::OnceLock::new(),
        }
    }

    /// Lets `status` show the server's connections and sessions.
    pub fn report_connections(&self, report: ConnectionReport) {
        let _ = self.connections.set(report);
    }

    pub fn tasks(&self) -> &Arc<TaskStore> {
        &self.tasks
    }

    /// Checks a call's arguments. Unknown tools and bad arguments are the caller's error.
    pub fn parse(
        &self,
        name: &str,
        arguments: Option<&Map<String, Value>>,
    ) -> Result<Call, InvalidParams> {
        let empty = Map::new();
        let args = arguments.unwrap_or(&empty);
        match name {
            "chat" => args::chat(args).map(Call::Chat),
            "listmodels" => args::none("listmodels", args).map(|()| Call::ListModels),
            "version" => args::none("version", args).map(|()| Call::Version),
            "status" => args::none("status", args).map(|()| Call::Status),
            other => Err(InvalidParams::UnknownTool(other.to_string())),
        }
    }

    /// Runs a checked call for `owner`, whose tasks `status` shows.
    pub async fn run(
        &self,
        call: Call,
        correlation: &CorrelationId,
        cancel: &CancellationToken,
        progress: Option<&CallProgress>,
        owner: &str,
    ) -> ToolOutput {
        let output = match call {
            Call::Chat(args) => {
                // Boxed: a chat's state (the model call, the history) is large, and every
                // call's future — spawned, so copied whole — would carry its size.
                return Box::pin(self.chat(args, correlation, cancel, progress)).await;
            }
            Call::ListModels => self.listmodels(),
            Call::Version => reports::version(),
            Call::Status => Box::pin(self.status(owner)).await,
        };
        output::truncate(output, self.max_result_bytes)
    }

    /// [`parse`](Self::parse), then [`run`](Self::run).
    pub async fn call(
        &self,
        name: &str,
        arguments: Option<&Map<String, Value>>,
        correlation: &CorrelationId,
        cancel: &CancellationToken,
        progress: Option<&CallProgress>,
        owner: &str,
    ) -> Result<ToolOutput, InvalidParams> {
        let call = self.parse(name, arguments)?;
        Ok(self.run(call, correlation, cancel, progress, owner).await)
    }

    async fn chat(
        &self,
        args: ChatArgs,
        correlation: &CorrelationId,
        cancel: &CancellationToken,
        progress: Option<&CallProgress>,
    ) -> ToolOutput {
        match self.chat.chat(args, correlation, cancel, progress).await {
            Ok(answer) => output::chat(answer, self.max_result_bytes),
            Err(e) => ToolOutput::error(chat_error_text(&e)),
        }
    }
}

fn chat_error_text(e: &ChatError) -> String {
    match e {
        ChatError::Cancelled => "cancelled by the client".into(),
        other => other.to_string(),
    }
}
