//! What a task is, as every backend stores it and every protocol revision reads it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Working,
    Completed,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 4] = [
        TaskStatus::Working,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Working => "working",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        self != TaskStatus::Working
    }
}

/// How a task ended: what the request would have been answered, had it not been a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskOutcome {
    /// The tool's result (`CallToolResult` as JSON), `isError` ones included.
    Result(Value),
    /// The JSON-RPC error.
    Error(Value),
}

/// What a client sees of a task, without its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub id: String,
    pub tool: String,
    pub status: TaskStatus,
    /// While working, what the work is doing (as of its last renewal, or now when it runs
    /// in this daemon); once ended, why, when there is something to say.
    pub status_message: Option<String>,
    pub created_unix_ms: u64,
    pub updated_unix_ms: u64,
    pub ttl_ms: u64,
}

/// How the work ended, as the daemon running it records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub outcome: TaskOutcome,
    /// A result is `completed`, an error `failed`; this says why in a line.
    pub message: Option<String>,
}

impl Finished {
    pub fn status(&self) -> TaskStatus {
        match self.outcome {
            TaskOutcome::Result(_) => TaskStatus::Completed,
            TaskOutcome::Error(_) => TaskStatus::Failed,
        }
    }

    /// Failed with JSON-RPC internal error `message`.
    pub fn failed(message: String) -> Self {
        Self {
            outcome: TaskOutcome::Error(json!({"code": -32603, "message": message})),
            message: Some(message),
        }
    }
}

/// What a task that stopped being renewed is failed with: the daemon running it died,
/// or lost its way to the store, and its work is lost.
pub(super) fn lapsed(runner: &str, lease: Duration) -> Finished {
    Finished::failed(format!(
        "the daemon running this task ({runner}) stopped: it did not renew the task's lease within {} ms (EXAI_TASK_LEASE_MS), so its work is lost; start the task again",
        lease.as_millis()
    ))
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TaskError {
    /// No such task, it expired, or it belongs to another owner: the three read the same,
    /// so a task id reveals nothing to whoever does not own it.
    #[error("unknown task {0:?}: no such task, or it expired")]
    Unknown(String),
    #[error("too many tasks ({max}, EXAI_TASKS_MAX) working or holding results not yet fetched; fetch or cancel earlier ones, or wait for them to expire")]
    Full { max: usize },
    #[error("this session already holds {max} tasks (EXAI_TASKS_MAX_PER_OWNER) working or holding results not yet fetched; fetch or cancel earlier ones first")]
    OwnerQuota { max: usize },
    #[error("task {0:?} is already {1}")]
    Terminal(String, &'static str),
    /// The backend did not answer: a task cannot be made, read or ended now. A call can
    /// still be made without a task.
    #[error("task storage unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        cause: Option<crate::cause::Cause>,
    },
}
