//! The task methods of MCP 2025-11-25, reached under the names `compat` gives them: a
//! task-augmented `tools/call` starts the tool as a task and answers `{task}` at once;
//! `tasks/get` reports it, `tasks/result` waits for and returns its result, `tasks/list`
//! shows the session's tasks, `tasks/cancel` stops it (aborting the model call).
//!
//! The owner of a task is the MCP session that started it ([`SessionTasks`]): no other
//! session can read, fetch or cancel it, or tell that it exists. A session's tasks are
//! cancelled and dropped when it ends.

use super::compat::{CALL_AS_TASK, TASK_METHODS, TASK_PARAM};
use super::McpHandler;
use super::{call_tool_result, correlation, count_request, headers, invalid_params, transport};
use crate::tasks::{Fetched, Finished, TaskError, TaskOutcome, TaskStatus, TaskStore, TaskView};
use exai_proto::{McpMethod, RequestStatus, Tool};
use rmcp::model::{CustomResult, ErrorCode, ErrorData};
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

mod modern;
mod owner;

pub(super) use modern::runs_as_task;
pub use owner::http_session_owner;
pub(super) use owner::SessionTasks;

/// The key under which a task's related messages name it.
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskMethod {
    Call,
    Get,
    Result,
    List,
    Cancel,
}

impl TaskMethod {
    /// The task method `method` names: renamed by `compat`, or under its own name (rmcp
    /// routes `tasks/result` and `tasks/list` here unrenamed too).
    pub(super) fn of(method: &str) -> Option<Self> {
        if method == CALL_AS_TASK {
            return Some(TaskMethod::Call);
        }
        let at = TASK_METHODS
            .iter()
            .position(|(name, renamed)| method == *name || method == *renamed)?;
        Some(
            [
                TaskMethod::Get,
                TaskMethod::Result,
                TaskMethod::List,
                TaskMethod::Cancel,
            ][at],
        )
    }

    fn label(self) -> McpMethod {
        match self {
            TaskMethod::Call => McpMethod::ToolsCall,
            TaskMethod::Get => McpMethod::TasksGet,
            TaskMethod::Result => McpMethod::TasksResult,
            TaskMethod::List => McpMethod::TasksList,
            TaskMethod::Cancel => McpMethod::TasksCancel,
        }
    }
}

#[derive(Deserialize)]
struct CallParams {
    name: String,
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
    task: TaskParams,
}

#[derive(Deserialize)]
struct TaskParams {
    /// How long the client wants the task kept, in milliseconds.
    #[serde(default)]
    ttl: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskIdParams {
    task_id: String,
}

fn iso8601(unix_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A task as the protocol shows it.
fn task_json(view: &TaskView, poll_interval_ms: u64) -> Value {
    let mut task = json!({
        "taskId": view.id,
        "status": view.status.as_str(),
        "createdAt": iso8601(view.created_unix_ms),
        "lastUpdatedAt": iso8601(view.updated_unix_ms),
        "ttl": view.ttl_ms,
        "pollInterval": poll_interval_ms,
    });
    if let Some(message) = &view.status_message {
        task["statusMessage"] = message.as_str().into();
    }
    task
}

fn params<T: for<'de> Deserialize<'de>>(
    method: &str,
    params: Option<Value>,
) -> Result<T, ErrorData> {
    serde_json::from_value(params.unwrap_or(Value::Null))
        .map_err(|e| ErrorData::invalid_params(format!("invalid params for {method}: {e}"), None))
}

impl McpHandler {
    fn store(&self) -> &Arc<TaskStore> {
        self.core.tools.tasks()
    }

    pub(super) async fn task_request(
        &self,
        method: TaskMethod,
        params: Option<Value>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        let started = Instant::now();
        let correlation = correlation::from_request(&ctx.meta, headers(&ctx));
        let owner = self.owner(&ctx);
        let result = match method {
            TaskMethod::Call => self.start_task(params, &ctx, correlation, owner).await,
            TaskMethod::Get => {
                let TaskIdParams { task_id } = self::params("tasks/get", params)?;
                let view = self.store().get(&owner, &task_id).await;
                view.map(|v| self.task_json(&v)).map_err(task_error)
            }
            TaskMethod::Result => self.task_result(params, &ctx, &owner).await,
            TaskMethod::List => self.list_tasks(&owner).await,
            TaskMethod::Cancel => {
                let TaskIdParams { task_id } = self::params("tasks/cancel", params)?;
                let view = self.store().cancel(&owner, &task_id).await;
                view.map(|v| self.task_json(&v)).map_err(task_error)
            }
        };
        // A started task is counted when it ends, with its outcome and whole duration.
        if !(method == TaskMethod::Call && result.is_ok()) {
            let status = match &result {
                Ok(_) => RequestStatus::Success,
                Err(_) => RequestStatus::Error,
            };
            let tool = if method == TaskMethod::Call {
                Tool::Chat
            } else {
                Tool::None
            };
            self.count(&ctx, method.label(), tool, status, started, &correlation);
        }
        result.map(CustomResult)
    }

    fn task_json(&self, view: &TaskView) -> Value {
        task_json(view, self.store().poll_interval.as_millis() as u64)
    }

    /// Checks the call, creates the task, and runs the tool on its own.
    async fn start_task(
        &self,
        params: Option<Value>,
        ctx: &RequestContext<RoleServer>,
        correlation: exai_proto::CorrelationId,
        owner: String,
    ) -> Result<Value, ErrorData> {
        let CallParams {
            name,
            arguments,
            task,
        } = self::params("tools/call", params)?;
        let spec = crate::tools::specs().into_iter().find(|s| s.name == name);
        if spec.as_ref().is_some_and(|s| !s.task_support) {
            return Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("tool {name} does not run as a task (execution.taskSupport is forbidden); call it without \"{TASK_PARAM}\""),
                None,
            ));
        }
        let call = self.checked_call(&name, arguments)?;
        let ttl = task.ttl.map(Duration::from_millis);
        let created = self
            .launch(call, ttl, transport(ctx), correlation, owner)
            .await?;
        Ok(json!({"task": self.task_json(&created)}))
    }

    /// A task's call, its arguments checked and their JSON dropped: a task waiting for a
    /// model place holds one copy of its prompt.
    pub(super) fn checked_call(
        &self,
        name: &str,
        arguments: Option<Map<String, Value>>,
    ) -> Result<crate::tools::Call, ErrorData> {
        self.core
            .tools
            .parse(name, arguments.as_ref())
            .map_err(invalid_params)
    }

    /// Creates a task for a checked call and runs the tool on its own, counted when it
    /// ends; returns the task as created. Both protocol eras start tasks here.
    pub(super) async fn launch(
        &self,
        call: crate::tools::Call,
        ttl: Option<Duration>,
        transport: exai_proto::Transport,
        correlation: exai_proto::CorrelationId,
        owner: String,
    ) -> Result<TaskView, ErrorData> {
        let tool_name = call.tool();
        // A stateless request's tasks are the fleet's: bounded by the store, and not
        // ended with this handler (rmcp makes one per stateless request).
        let shared = owner == modern::STATELESS_OWNER;
        let quota = match shared {
            true => crate::tasks::Quota::Store,
            false => crate::tasks::Quota::PerOwner,
        };
        let record = self
            .store()
            .create_for(&owner, quota, tool_name, ttl)
            .await
            .map_err(|e| match e {
                TaskError::Unavailable { .. } => ErrorData::internal_error(
                    format!(
                        "{e}; call the tool without \"{TASK_PARAM}\" to have its answer directly"
                    ),
                    None,
                ),
                other => task_error(other),
            })?;
        if !shared {
            self.session.owned(&owner);
        }
        let core = self.core.clone();
        let task = record.clone();
        let span = tracing::info_span!("task", correlation_id = %correlation, tool = tool_name, task = %record.id);
        self.core.tasks.spawn(
            async move {
                let started = Instant::now();
                let mut status = RequestStatus::Success;
                let work = async {
                    let output = core
                        .tools
                        .run(
                            call,
                            &correlation,
                            &task.cancel,
                            Some(&task.progress),
                            &owner,
                        )
                        .await;
                    status = if task.cancel.is_cancelled() {
                        RequestStatus::Cancelled
                    } else if output.is_error {
                        RequestStatus::ToolError
                    } else {
                        RequestStatus::Success
                    };
                    let message = output
                        .is_error
                        .then(|| output.text.lines().next().unwrap_or_default().to_string());
                    let mut result =
                        call_tool_result(output, &correlation, super::era::Era::Handshake);
                    // Serialized here, not by rmcp for a peer: no 2026 `resultType`.
                    result.result_type = None;
                    let json = serde_json::to_value(&result).unwrap_or_default();
                    Finished {
                        outcome: TaskOutcome::Result(json),
                        message,
                    }
                };
                core.tools.tasks().run(task.clone(), work).await;
                count_request(
                    &core.emitter,
                    transport,
                    McpMethod::ToolsCall,
                    crate::tools::tool_label(tool_name),
                    status,
                    started,
                    &correlation,
                );
            }
            .instrument(span),
        );
        Ok(record.created.clone())
    }

    /// The task's result once it has one; waits while it works (until the client
    /// cancels this request).
    async fn task_result(
        &self,
        params: Option<Value>,
        ctx: &RequestContext<RoleServer>,
        owner: &str,
    ) -> Result<Value, ErrorData> {
        let TaskIdParams { task_id } = self::params("tasks/result", params)?;
        tokio::select! {
            waited = self.store().wait(owner, &task_id) => { waited.map_err(task_error)?; }
            _ = ctx.ct.cancelled() => {
                return Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "cancelled by the client", None));
            }
        }
        let fetched = self
            .store()
            .result(owner, &task_id)
            .await
            .map_err(task_error)?;
        let related = json!({RELATED_TASK: {"taskId": task_id}});
        match fetched {
            Fetched::Ended(view, Some(TaskOutcome::Result(mut result)))
                if view.status == TaskStatus::Completed =>
            {
                let meta = result
                    .as_object_mut()
                    .map(|r| r.entry("_meta").or_insert_with(|| json!({})));
                if let Some(Value::Object(meta)) = meta {
                    meta.extend(related.as_object().cloned().unwrap_or_default());
                }
                Ok(result)
            }
            Fetched::Ended(_, Some(TaskOutcome::Error(error))) => {
                let error: ErrorData = serde_json::from_value(error).unwrap_or_else(|_| {
                    ErrorData::new(ErrorCode::INTERNAL_ERROR, "the task failed", None)
                });
                Err(error)
            }
            Fetched::Ended(view, _) | Fetched::Working(view) => Err(ErrorData::invalid_params(
                format!(
                    "task {task_id:?} was {}; it has no result",
                    view.status.as_str()
                ),
                Some(related),
            )),
        }
    }

    async fn list_tasks(&self, owner: &str) -> Result<Value, ErrorData> {
        let tasks = self.store().list(owner).await.map_err(task_error)?;
        let tasks: Vec<Value> = tasks.iter().map(|t| self.task_json(t)).collect();
        Ok(json!({"tasks": tasks}))
    }
}

fn task_error(e: TaskError) -> ErrorData {
    match e {
        TaskError::Unknown(_) | TaskError::Terminal(..) => {
            ErrorData::invalid_params(e.to_string(), None)
        }
        TaskError::Full { .. } | TaskError::OwnerQuota { .. } => {
            ErrorData::new(ErrorCode(-32000), e.to_string(), None)
        }
        TaskError::Unavailable { .. } => ErrorData::internal_error(e.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_shows_the_2025_11_25_fields() {
        let view = TaskView {
            id: "t-1".into(),
            tool: "chat".into(),
            status: TaskStatus::Working,
            status_message: Some("thinking: 3 s elapsed".into()),
            created_unix_ms: 1_764_000_000_000,
            updated_unix_ms: 1_764_000_000_500,
            ttl_ms: 60_000,
        };
        assert_eq!(
            task_json(&view, 2000),
            json!({"taskId": "t-1", "status": "working", "statusMessage": "thinking: 3 s elapsed",
                   "createdAt": "2025-11-24T16:00:00.000Z", "lastUpdatedAt": "2025-11-24T16:00:00.500Z",
                   "ttl": 60000, "pollInterval": 2000})
        );
        assert_eq!(TaskMethod::of("tasks/result"), Some(TaskMethod::Result));
        assert_eq!(
            TaskMethod::of("exai/tasks/cancel"),
            Some(TaskMethod::Cancel)
        );
        assert_eq!(TaskMethod::of(CALL_AS_TASK), Some(TaskMethod::Call));
        assert_eq!(TaskMethod::of("tasks/update"), None);
    }
}
