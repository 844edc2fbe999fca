//! Tool calls that run as tasks (MCP 2025-11-25): the client gets a task id at once and
//! polls, fetches the result or cancels, instead of holding one request open through a
//! long thinking call. Tasks are bounded in number (`EXAI_TASKS_MAX`) and age (each
//! lives its TTL, at most `EXAI_TASK_TTL_MAX_S`, from creation); `status` lists them.
//! The protocol side is in `mcp::tasks`.

use crate::providers::CallProgress;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
// Tokio's clock, so tests can move time; the same as std's outside them.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Working,
    Completed,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Working => "working",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        self != TaskStatus::Working
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    /// The tool's result (`CallToolResult` as JSON), `isError` ones included.
    Result(Value),
    /// The JSON-RPC error the request would have got.
    Error(Value),
}

#[derive(Debug)]
struct TaskState {
    status: TaskStatus,
    status_message: Option<String>,
    updated_unix_ms: u64,
    outcome: Option<TaskOutcome>,
}

/// One task.
#[derive(Debug)]
pub struct TaskRecord {
    pub id: String,
    /// The MCP session that created it: `tasks/list` shows a session its own tasks.
    pub session: u64,
    pub tool: &'static str,
    created: Instant,
    created_unix_ms: u64,
    /// Kept this long from creation, then dropped (and cancelled, if still working).
    pub ttl: Duration,
    /// Cancels the work: the model call is aborted and its place returned.
    pub cancel: CancellationToken,
    /// What the model call is doing, for `statusMessage`.
    pub progress: CallProgress,
    /// Its result was fetched: when the store is full, such a task makes room.
    fetched: AtomicBool,
    state: Mutex<TaskState>,
    done: watch::Sender<bool>,
}

/// What a client sees of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub id: String,
    pub status: TaskStatus,
    pub status_message: Option<String>,
    pub created_unix_ms: u64,
    pub updated_unix_ms: u64,
    pub ttl_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("too many tasks ({max}, EXAI_TASKS_MAX) working or holding results not yet fetched; fetch or cancel earlier ones, or wait for them to expire")]
    Full { max: usize },
    #[error("task {0:?} is already {1}")]
    Terminal(String, &'static str),
}

impl TaskRecord {
    fn state(&self) -> std::sync::MutexGuard<'_, TaskState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> TaskStatus {
        self.state().status
    }

    pub fn view(&self) -> TaskView {
        let state = self.state();
        let status_message = match state.status {
            TaskStatus::Working => Some(
                self.progress
                    .view()
                    .describe(self.created.elapsed().as_secs()),
            ),
            _ => state.status_message.clone(),
        };
        TaskView {
            id: self.id.clone(),
            status: state.status,
            status_message,
            created_unix_ms: self.created_unix_ms,
            updated_unix_ms: state.updated_unix_ms,
            ttl_ms: self.ttl.as_millis() as u64,
        }
    }

    pub fn outcome(&self) -> Option<TaskOutcome> {
        self.state().outcome.clone()
    }

    /// Notes that the client has the result.
    pub fn mark_fetched(&self) {
        self.fetched.store(true, Relaxed);
    }

    /// Whether dropping it loses nothing a client still wants: cancelled, or ended and
    /// its result fetched.
    fn spent(&self) -> bool {
        match self.status() {
            TaskStatus::Working => false,
            TaskStatus::Cancelled => true,
            _ => self.fetched.load(Relaxed),
        }
    }

    /// Waits until the task is completed, failed or cancelled.
    pub async fn finished(&self) {
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|d| *d).await;
    }

    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.created) >= self.ttl
    }
}

/// The tasks of every session.
#[derive(Debug)]
pub struct TaskStore {
    max: usize,
    ttl_max: Duration,
    /// Suggested to clients as `pollInterval`.
    pub poll_interval: Duration,
    tasks: Mutex<HashMap<String, Arc<TaskRecord>>>,
    /// Parent of every task's token: cancelled at shutdown.
    root: CancellationToken,
}

impl TaskStore {
    pub fn new(max: usize, ttl_max: Duration, poll_interval: Duration) -> Self {
        Self {
            max,
            ttl_max,
            poll_interval,
            tasks: Mutex::default(),
            root: CancellationToken::new(),
        }
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TaskRecord>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops tasks past their TTL, cancelling those still working.
    fn sweep(tasks: &mut HashMap<String, Arc<TaskRecord>>) {
        let now = Instant::now();
        tasks.retain(|_, t| {
            let keep = !t.expired(now);
            if !keep {
                t.cancel.cancel();
            }
            keep
        });
    }

    /// A new working task of `session`, kept `ttl_ms` (at most the configured maximum,
    /// which is also the default).
    pub fn create(
        &self,
        session: u64,
        tool: &'static str,
        ttl_ms: Option<u64>,
    ) -> Result<Arc<TaskRecord>, TaskError> {
        let ttl = ttl_ms
            .map(Duration::from_millis)
            .unwrap_or(self.ttl_max)
            .clamp(Duration::from_secs(1), self.ttl_max);
        let mut tasks = self.tasks();
        Self::sweep(&mut tasks);
        if tasks.len() >= self.max {
            // Full: the oldest spent task makes room; working tasks and results not yet
            // fetched are kept.
            let oldest_spent = tasks
                .values()
                .filter(|t| t.spent())
                .min_by_key(|t| t.created)
                .map(|t| t.id.clone());
            match oldest_spent {
                Some(id) => {
                    tasks.remove(&id);
                }
                None => return Err(TaskError::Full { max: self.max }),
            }
        }
        let now_ms = crate::clock::now_unix_us() / 1000;
        let (done, _) = watch::channel(false);
        let record = Arc::new(TaskRecord {
            id: uuid::Uuid::new_v4().to_string(),
            session,
            tool,
            created: Instant::now(),
            created_unix_ms: now_ms,
            ttl,
            cancel: self.root.child_token(),
            progress: CallProgress::default(),
            fetched: AtomicBool::new(false),
            state: Mutex::new(TaskState {
                status: TaskStatus::Working,
                status_message: None,
                updated_unix_ms: now_ms,
                outcome: None,
            }),
            done,
        });
        tasks.insert(record.id.clone(), record.clone());
        Ok(record)
    }

    pub fn get(&self, id: &str) -> Option<Arc<TaskRecord>> {
        let mut tasks = self.tasks();
        Self::sweep(&mut tasks);
        tasks.get(id).cloned()
    }

    /// The tasks `session` created, oldest first.
    pub fn list(&self, session: u64) -> Vec<Arc<TaskRecord>> {
        let mut tasks = self.tasks();
        Self::sweep(&mut tasks);
        let mut mine: Vec<_> = tasks
            .values()
            .filter(|t| t.session == session)
            .cloned()
            .collect();
        mine.sort_by_key(|t| t.created);
        mine
    }

    /// Records how the work ended, unless the task was cancelled first.
    pub fn finish(&self, task: &TaskRecord, outcome: TaskOutcome, message: Option<String>) {
        let mut state = task.state();
        if state.status.is_terminal() {
            return;
        }
        state.status = match outcome {
            TaskOutcome::Result(_) => TaskStatus::Completed,
            TaskOutcome::Error(_) => TaskStatus::Failed,
        };
        state.status_message = message;
        state.outcome = Some(outcome);
        state.updated_unix_ms = crate::clock::now_unix_us() / 1000;
        drop(state);
        task.done.send_replace(true);
    }

    /// Cancels a working task: its model call is aborted at once.
    pub fn cancel(&self, task: &TaskRecord) -> Result<(), TaskError> {
        let mut state = task.state();
        if state.status.is_terminal() {
            return Err(TaskError::Terminal(task.id.clone(), state.status.as_str()));
        }
        state.status = TaskStatus::Cancelled;
        state.status_message = Some("cancelled by the client".into());
        state.updated_unix_ms = crate::clock::now_unix_us() / 1000;
        drop(state);
        task.cancel.cancel();
        task.done.send_replace(true);
        Ok(())
    }

    /// Cancels every task, at shutdown.
    pub fn cancel_all(&self) {
        self.root.cancel();
    }

    /// For `status`: the bounds, counts by status, and each task with a shortened id (a
    /// full id is a capability to read the task's result).
    pub fn summary(&self) -> Value {
        let mut tasks: Vec<Arc<TaskRecord>> = {
            let mut tasks = self.tasks();
            Self::sweep(&mut tasks);
            tasks.values().cloned().collect()
        };
        tasks.sort_by_key(|t| t.created);
        let mut counts = [0usize; 4];
        let listed: Vec<Value> = tasks
            .iter()
            .map(|t| {
                let view = t.view();
                counts[view.status as usize] += 1;
                json!({"task": format!("{}…", &t.id[..8]), "tool": t.tool, "status": view.status.as_str(),
                       "age_s": t.created.elapsed().as_secs(), "status_message": view.status_message})
            })
            .collect();
        json!({"max": self.max, "ttl_max_s": self.ttl_max.as_secs(),
               "working": counts[0], "completed": counts[1], "failed": counts[2], "cancelled": counts[3],
               "tasks": listed})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max: usize) -> TaskStore {
        TaskStore::new(max, Duration::from_secs(60), Duration::from_secs(1))
    }

    #[test]
    fn tasks_are_bounded_in_number() {
        let s = store(2);
        let a = s.create(1, "chat", None).unwrap();
        s.create(2, "chat", Some(5_000)).unwrap();
        assert_eq!(
            s.create(1, "chat", None).unwrap_err(),
            TaskError::Full { max: 2 }
        );
        assert_eq!(s.list(1).len(), 1);
        assert_eq!(a.ttl, Duration::from_secs(60), "the default is the maximum");
        assert_eq!(s.get(&a.id).unwrap().id, a.id);
        assert!(s.get("no-such-task").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_are_bounded_in_age() {
        let s = store(8);
        let long = s.create(1, "chat", Some(10_000_000)).unwrap();
        assert_eq!(long.ttl, Duration::from_secs(60), "capped at the maximum");
        let short = s.create(1, "chat", Some(2_000)).unwrap();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(s.get(&short.id).is_none(), "past its TTL");
        assert!(short.cancel.is_cancelled(), "and its work stopped");
        assert!(s.get(&long.id).is_some());
    }

    #[tokio::test]
    async fn a_task_ends_once() {
        let s = store(8);
        let t = s.create(1, "chat", None).unwrap();
        s.cancel(&t).unwrap();
        t.finished().await;
        assert!(t.cancel.is_cancelled());
        s.finish(&t, TaskOutcome::Result(json!({"content": []})), None);
        assert_eq!(
            t.status(),
            TaskStatus::Cancelled,
            "a late result does not revive it"
        );
        assert!(matches!(
            s.cancel(&t),
            Err(TaskError::Terminal(_, "cancelled"))
        ));

        let done = s.create(1, "chat", None).unwrap();
        s.finish(&done, TaskOutcome::Result(json!({"content": []})), None);
        assert_eq!(done.view().status, TaskStatus::Completed);
        let summary = s.summary();
        assert_eq!(
            (summary["completed"].as_u64(), summary["cancelled"].as_u64()),
            (Some(1), Some(1))
        );
    }
}
