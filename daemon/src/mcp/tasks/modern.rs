//! The tasks extension of MCP 2026-07-28 (`io.modelcontextprotocol/tasks`, SEP-2663),
//! on the same store as the 2025 shapes. Task creation is the server's choice: a
//! `tools/call` of a tool that runs as a task (`chat`) becomes one when the request
//! declares the extension among its client capabilities; `tasks/get` polls it and
//! carries its result or error once it ended; `tasks/cancel` stops it, whichever daemon
//! runs it; `tasks/update` has nothing to take (no task of this server asks for input).
//!
//! A stateless request has no session to own its tasks: they belong to the fleet's one
//! authorization context (the daemon's token), and a task id — a random UUID, unknown
//! unless the creating call returned it — is the capability to read or cancel it.

use super::super::{correlation, era, headers, transport, McpHandler};
use super::task_error;
use crate::tasks::{Fetched, TaskOutcome, TaskStatus, TaskView};
use exai_proto::{McpMethod, RequestStatus, Tool};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, CreateTaskResult, DetailedTask,
    ErrorData, GetTaskParams, GetTaskResult, JsonObject, Task, TaskPayload, UpdateTaskParams,
};
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use serde_json::Value;
use std::time::Instant;

/// The owner of every task a stateless request starts.
pub const STATELESS_OWNER: &str = "stateless";

/// Whether a 2026 `tools/call` becomes a task: its client takes tasks and the tool runs
/// as one.
pub(in crate::mcp) fn runs_as_task(
    request: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> bool {
    era::Era::of(&ctx.meta) == era::Era::Stateless
        && ctx
            .meta
            .client_capabilities()
            .is_some_and(|caps| caps.supports_tasks())
        && crate::tools::specs()
            .iter()
            .any(|spec| spec.task_support && spec.name == request.name)
}

impl McpHandler {
    /// Starts a 2026 `tools/call` as a task: answered at once with the task's handle.
    pub(in crate::mcp) async fn start_modern_task(
        &self,
        request: CallToolRequestParams,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let correlation = correlation::from_request(&ctx.meta, headers(ctx));
        let CallToolRequestParams {
            name, arguments, ..
        } = request;
        let call = self.checked_call(&name, arguments)?;
        let created = self
            .launch(
                call,
                None,
                transport(ctx),
                correlation,
                STATELESS_OWNER.into(),
            )
            .await?;
        let mut result = CreateTaskResult::new(self.modern_task(&created));
        let mut meta = None;
        era::stamp(&mut meta);
        result.meta = meta;
        Ok(CallToolResponse::Task(result))
    }

    /// `tasks/get`: the task's state, with its result or error once it ended.
    pub(in crate::mcp) async fn get_modern_task(
        &self,
        request: GetTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let started = Instant::now();
        let owner = self.owner(&ctx);
        let outcome = self.modern_task_state(&owner, &request.task_id).await;
        let result = outcome.map(|task| {
            let mut result = GetTaskResult::new(task);
            era::stamp(&mut result.meta);
            result
        });
        self.count_task(&ctx, McpMethod::TasksGet, started, &result);
        result
    }

    /// `tasks/cancel`: acknowledged once the cancellation is recorded; the daemon running
    /// the task stops its model call (at once here, within a lease renewal elsewhere).
    pub(in crate::mcp) async fn cancel_modern_task(
        &self,
        request: CancelTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let started = Instant::now();
        let owner = self.owner(&ctx);
        let result = match self.store().cancel(&owner, &request.task_id).await {
            Ok(_) => Ok(()),
            // Cancelling what already ended changes nothing: acknowledged.
            Err(crate::tasks::TaskError::Terminal(..)) => Ok(()),
            Err(e) => Err(task_error(e)),
        };
        self.count_task(&ctx, McpMethod::TasksCancel, started, &result);
        result
    }

    /// `tasks/update`: no task of this server waits for input, so there is nothing to
    /// deliver; an unknown task is said to be unknown.
    pub(in crate::mcp) async fn update_modern_task(
        &self,
        request: UpdateTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let started = Instant::now();
        let owner = self.owner(&ctx);
        let result = match self.store().get(&owner, &request.task_id).await {
            Ok(view) => Err(ErrorData::invalid_params(
                format!(
                    "task {:?} is {} and asks for no input: tasks/update has nothing to deliver",
                    view.id,
                    view.status.as_str()
                ),
                None,
            )),
            Err(e) => Err(task_error(e)),
        };
        self.count_task(&ctx, McpMethod::Other, started, &result);
        result
    }

    async fn modern_task_state(&self, owner: &str, id: &str) -> Result<DetailedTask, ErrorData> {
        let view = self.store().get(owner, id).await.map_err(task_error)?;
        let payload = match view.status {
            TaskStatus::Working => TaskPayload::Working,
            TaskStatus::Cancelled => TaskPayload::Cancelled,
            TaskStatus::Completed | TaskStatus::Failed => {
                match self.store().result(owner, id).await.map_err(task_error)? {
                    Fetched::Ended(_, Some(TaskOutcome::Result(result))) => {
                        TaskPayload::Completed {
                            result: object(result),
                        }
                    }
                    Fetched::Ended(_, Some(TaskOutcome::Error(error))) => TaskPayload::Failed {
                        error: object(error),
                    },
                    Fetched::Ended(..) => TaskPayload::Cancelled,
                    Fetched::Working(_) => TaskPayload::Working,
                }
            }
        };
        Ok(DetailedTask::new(self.modern_task(&view), payload))
    }

    /// A task as 2026-07-28 shows it.
    fn modern_task(&self, view: &TaskView) -> Task {
        let mut task = Task::new(
            view.id.clone(),
            rmcp::model::TaskStatus::Working,
            super::iso8601(view.created_unix_ms),
            super::iso8601(view.updated_unix_ms),
        )
        .with_ttl_ms(view.ttl_ms)
        .with_poll_interval_ms(self.store().poll_interval.as_millis() as u64);
        task.status = match view.status {
            TaskStatus::Working => rmcp::model::TaskStatus::Working,
            TaskStatus::Completed => rmcp::model::TaskStatus::Completed,
            TaskStatus::Failed => rmcp::model::TaskStatus::Failed,
            TaskStatus::Cancelled => rmcp::model::TaskStatus::Cancelled,
        };
        if let Some(message) = &view.status_message {
            task = task.with_status_message(message.clone());
        }
        task
    }

    fn count_task<T>(
        &self,
        ctx: &RequestContext<RoleServer>,
        method: McpMethod,
        started: Instant,
        result: &Result<T, ErrorData>,
    ) {
        let status = match result {
            Ok(_) => RequestStatus::Success,
            Err(_) => RequestStatus::Error,
        };
        let correlation = correlation::from_request(&ctx.meta, headers(ctx));
        self.count(ctx, method, Tool::None, status, started, &correlation);
    }
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => {
            let mut map = JsonObject::new();
            map.insert("value".into(), other);
            map
        }
    }
}
