//! Tool calls that run as tasks: the client gets a task id at once and polls, fetches the
//! result or cancels, instead of holding one request open through a long thinking call.
//! The API here knows no protocol revision: `mcp::tasks` speaks MCP 2025-11-25 over it.
//!
//! Where task state lives: in the conversation store's backend, Redis when `REDIS_URL`
//! is set (`redis/`; every daemon sharing it reads, fetches and cancels every task),
//! this daemon's memory otherwise (`memory.rs`). What cannot be shared stays with the
//! daemon running the task ([`TaskHandle`]): the cancellation token that aborts the
//! model call, and the call's progress. That daemon renews the task's lease every
//! `EXAI_TASK_RENEW_MS`, writing the progress with it and learning of a cancel made
//! elsewhere (`lease.rs`); a working task whose lease ran out (`EXAI_TASK_LEASE_MS`) is
//! read as failed, so a dead daemon's task never reads "working" for long.
//!
//! Every task has an owner, an opaque string the protocol layer gives (an MCP
//! session, say). A task is invisible to anyone else: another owner's id reads as an
//! unknown one. Bounds: `EXAI_TASKS_MAX` over all owners, `EXAI_TASKS_MAX_PER_OWNER`
//! each, and each task's TTL (at most `EXAI_TASK_TTL_MAX_S`). When a bound is reached,
//! a task that holds nothing anyone wants (cancelled, or its result fetched) makes room,
//! else the oldest finished task whose result was never fetched; working tasks are never
//! dropped. So no owner can hold places with results it never comes back for.

/// Calls the same method on whichever backend there is.
macro_rules! on_backend {
    ($store:expr, $b:ident => $call:expr) => {
        match &$store.backend {
            $crate::tasks::Backend::Memory($b) => $call.await,
            $crate::tasks::Backend::Redis($b) => $call.await,
        }
    };
}

mod lease;
mod memory;
mod redis;
mod view;

use memory::MemoryTasks;
use redis::RedisTasks;
pub use view::{Finished, TaskError, TaskOutcome, TaskStatus, TaskView};

use crate::config::TaskConfig;
use crate::providers::CallProgress;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The message of a task its owner cancelled.
pub const CANCELLED: &str = "cancelled by the client";

/// How often a wait for a task this daemon does not run looks at the store again.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// Where task state lives.
pub(crate) enum Backend {
    Memory(MemoryTasks),
    Redis(RedisTasks),
}

/// A task about to be created.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewTask<'a> {
    pub id: &'a str,
    pub owner: &'a str,
    pub tool: &'a str,
    pub ttl: Duration,
    /// The daemon that will run it.
    pub runner: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max: usize,
    pub max_per_owner: usize,
}

/// What a cancel found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cancel {
    Unknown,
    Cancelled(TaskView),
    /// It had ended already, so.
    Ended(TaskStatus),
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// The task is still this daemon's and working: its lease is renewed.
    Working,
    /// Cancelled, failed, expired or dropped: the work must stop.
    Ended,
}

/// Which task makes room first when a bound is reached: the lowest rank, then the
/// oldest. `None`: never (working, its daemon alive).
pub(crate) fn eviction_rank(status: TaskStatus, fetched: bool, lease_alive: bool) -> Option<u8> {
    match status {
        TaskStatus::Cancelled => Some(0),
        TaskStatus::Completed | TaskStatus::Failed if fetched => Some(0),
        TaskStatus::Completed | TaskStatus::Failed => Some(1),
        TaskStatus::Working if lease_alive => None,
        TaskStatus::Working => Some(1),
    }
}

/// A task this daemon runs: what only it can hold.
#[derive(Debug)]
pub struct TaskHandle {
    pub id: String,
    pub owner: String,
    pub tool: &'static str,
    /// Cancels the work: the model call is aborted and its place returned.
    pub cancel: CancellationToken,
    /// What the model call is doing, written to the store at each renewal.
    pub progress: CallProgress,
    /// The task as created.
    pub created: TaskView,
    started: tokio::time::Instant,
    /// Set once the work ended and its end was recorded.
    done: watch::Sender<bool>,
}

impl TaskHandle {
    fn describe_progress(&self) -> String {
        self.progress
            .view()
            .describe(self.started.elapsed().as_secs())
    }
}

/// A task's result as fetched.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// Not ended yet.
    Working(TaskView),
    /// Ended; the outcome is `None` for a cancelled task.
    Ended(TaskView, Option<TaskOutcome>),
}

/// How many tasks an owner may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// `EXAI_TASKS_MAX_PER_OWNER`: an owner is one client (a session).
    PerOwner,
    /// The store's bound alone: an owner shared by every client (stateless requests,
    /// until clients have names of their own).
    Store,
}

/// The tasks of every owner, and the ones this daemon runs.
pub struct TaskStore {
    backend: Backend,
    config: TaskConfig,
    /// Suggested to clients as `pollInterval`.
    pub poll_interval: Duration,
    /// This daemon, as the tasks it runs name their runner.
    runner: String,
    /// The tasks this daemon runs, by id.
    local: Mutex<HashMap<String, Arc<TaskHandle>>>,
    /// Parent of every local task's token: cancelled at shutdown.
    root: CancellationToken,
}

/// Task ids are UUIDs; anything else is unknown without asking the backend (and cannot
/// name another kind of key).
fn is_task_id(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok()
}

impl TaskStore {
    /// `runner` names this daemon to readers of a task whose lease ran out.
    fn new(backend: Backend, config: TaskConfig, poll_interval: Duration, runner: String) -> Self {
        Self {
            backend,
            config,
            poll_interval,
            runner,
            local: Mutex::default(),
            root: CancellationToken::new(),
        }
    }

    /// In this daemon's memory.
    pub fn memory(config: TaskConfig, poll_interval: Duration, runner: String) -> Self {
        let backend = Backend::Memory(MemoryTasks::new(config.lease));
        Self::new(backend, config, poll_interval, runner)
    }

    /// In the Redis at `url`; `timeout` bounds each of its answers.
    pub fn redis(
        url: &str,
        timeout: Duration,
        config: TaskConfig,
        poll_interval: Duration,
        runner: String,
    ) -> Result<Self, TaskError> {
        let backend = Backend::Redis(RedisTasks::new(url, timeout, config.lease)?);
        Ok(Self::new(backend, config, poll_interval, runner))
    }

    pub fn config(&self) -> &TaskConfig {
        &self.config
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TaskHandle>>> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running_here(&self, id: &str) -> Option<Arc<TaskHandle>> {
        self.local().get(id).cloned()
    }

    /// A working task this daemon runs shows its progress as of now.
    fn freshen(&self, mut view: TaskView) -> TaskView {
        if view.status == TaskStatus::Working {
            if let Some(task) = self.running_here(&view.id) {
                view.status_message = Some(task.describe_progress());
            }
        }
        view
    }

    /// A new working task of `owner`, kept `ttl` (at most the configured maximum, which
    /// is also the default), to be run here with [`run`](Self::run) at once.
    pub async fn create(
        &self,
        owner: &str,
        tool: &'static str,
        ttl: Option<Duration>,
    ) -> Result<Arc<TaskHandle>, TaskError> {
        self.create_for(owner, Quota::PerOwner, tool, ttl).await
    }

    /// [`create`](Self::create), bounded as `quota` says.
    pub async fn create_for(
        &self,
        owner: &str,
        quota: Quota,
        tool: &'static str,
        ttl: Option<Duration>,
    ) -> Result<Arc<TaskHandle>, TaskError> {
        let ttl = ttl
            .unwrap_or(self.config.ttl_max)
            .clamp(Duration::from_secs(1), self.config.ttl_max);
        let id = uuid::Uuid::new_v4().to_string();
        let new = NewTask {
            id: &id,
            owner,
            tool,
            ttl,
            runner: &self.runner,
        };
        let limits = Limits {
            max: self.config.max,
            max_per_owner: match quota {
                Quota::PerOwner => self.config.max_per_owner,
                Quota::Store => self.config.max,
            },
        };
        let created = match on_backend!(self, b => b.create(new, limits)) {
            // A quota as large as the store is the store's bound, named as such.
            Err(TaskError::OwnerQuota { .. }) if limits.max_per_owner >= limits.max => {
                Err(TaskError::Full { max: limits.max })
            }
            other => other,
        }?;
        let (done, _) = watch::channel(false);
        let task = Arc::new(TaskHandle {
            id,
            owner: owner.to_string(),
            tool,
            cancel: self.root.child_token(),
            progress: CallProgress::default(),
            created,
            started: tokio::time::Instant::now(),
            done,
        });
        self.local().insert(task.id.clone(), task.clone());
        Ok(task)
    }

    /// The task, as `owner` may see it.
    pub async fn get(&self, owner: &str, id: &str) -> Result<TaskView, TaskError> {
        let unknown = || TaskError::Unknown(id.to_string());
        if !is_task_id(id) {
            return Err(unknown());
        }
        let view = on_backend!(self, b => b.get(owner, id))?.ok_or_else(unknown)?;
        Ok(self.freshen(view))
    }

    /// Waits until the task has ended, wherever it runs; then it is as [`get`](Self::get)
    /// reads it. A caller that stops waiting drops this future.
    pub async fn wait(&self, owner: &str, id: &str) -> Result<TaskView, TaskError> {
        loop {
            let view = self.get(owner, id).await?;
            if view.status.is_terminal() {
                return Ok(view);
            }
            match self.running_here(id) {
                Some(task) => {
                    let mut done = task.done.subscribe();
                    // The end is recorded before `done` is set; a cancel from elsewhere
                    // is seen by the store first, hence the poll as well.
                    tokio::select! {
                        _ = done.wait_for(|d| *d) => {}
                        _ = tokio::time::sleep(WAIT_POLL) => {}
                    }
                }
                None => tokio::time::sleep(WAIT_POLL).await,
            }
        }
    }

    /// The task's result if it has ended (noting that it was fetched: it may then make
    /// room for others), or the task as it is.
    pub async fn result(&self, owner: &str, id: &str) -> Result<Fetched, TaskError> {
        let unknown = || TaskError::Unknown(id.to_string());
        if !is_task_id(id) {
            return Err(unknown());
        }
        let (view, outcome) = on_backend!(self, b => b.fetch(owner, id))?.ok_or_else(unknown)?;
        Ok(if view.status.is_terminal() {
            Fetched::Ended(view, outcome)
        } else {
            Fetched::Working(self.freshen(view))
        })
    }

    /// Cancels a working task. Run here, its model call is aborted at once; run by
    /// another daemon, that one sees the cancel at its next renewal.
    pub async fn cancel(&self, owner: &str, id: &str) -> Result<TaskView, TaskError> {
        if !is_task_id(id) {
            return Err(TaskError::Unknown(id.to_string()));
        }
        match on_backend!(self, b => b.cancel(owner, id))? {
            Cancel::Unknown => Err(TaskError::Unknown(id.to_string())),
            Cancel::Ended(status) => Err(TaskError::Terminal(id.to_string(), status.as_str())),
            Cancel::Cancelled(view) => {
                if let Some(task) = self.running_here(id) {
                    task.cancel.cancel();
                }
                Ok(view)
            }
        }
    }

    /// `owner`'s tasks, oldest first.
    pub async fn list(&self, owner: &str) -> Result<Vec<TaskView>, TaskError> {
        let views = on_backend!(self, b => b.list(owner))?;
        Ok(views.into_iter().map(|v| self.freshen(v)).collect())
    }

    /// Cancels and drops every task of `owner`, when it is gone (its session ended).
    /// Returns how many there were.
    pub async fn drop_owner(&self, owner: &str) -> Result<usize, TaskError> {
        let dropped = on_backend!(self, b => b.drop_owner(owner))?;
        for id in &dropped {
            if let Some(task) = self.running_here(id) {
                task.cancel.cancel();
            }
        }
        Ok(dropped.len())
    }

    /// Tasks held now, every owner's.
    pub async fn held(&self) -> Result<usize, TaskError> {
        on_backend!(self, b => b.held())
    }

    /// Cancels every task this daemon runs, at shutdown: each is recorded failed.
    pub fn cancel_all(&self) {
        self.root.cancel();
    }

    /// For `status`: the bounds, the backend, how many tasks every owner holds, and
    /// `owner`'s tasks with shortened ids (a full id is a capability to read a result).
    pub async fn summary(&self, owner: &str) -> Value {
        let mut summary = json!({
            "backend": self.backend_name(),
            "max": self.config.max,
            "max_per_owner": self.config.max_per_owner,
            "ttl_max_s": self.config.ttl_max.as_secs(),
            "lease_ms": self.config.lease.as_millis() as u64,
            "running_here": self.local().len(),
        });
        // At once: against a stalled Redis, `status` waits one timeout, not two.
        match tokio::join!(self.held(), self.list(owner)) {
            (Ok(held), Ok(mine)) => {
                let now_ms = crate::clock::now_unix_us() / 1000;
                let mut counts = [0usize; 4];
                let listed: Vec<Value> = mine
                    .iter()
                    .map(|t| {
                        counts[t.status as usize] += 1;
                        json!({"task": format!("{}…", t.id.get(..8).unwrap_or(&t.id)), "tool": t.tool,
                               "status": t.status.as_str(), "status_message": t.status_message,
                               "age_s": now_ms.saturating_sub(t.created_unix_ms) / 1000})
                    })
                    .collect();
                for (status, n) in TaskStatus::ALL.iter().zip(counts) {
                    summary[status.as_str()] = n.into();
                }
                summary["held"] = held.into();
                summary["tasks"] = listed.into();
            }
            (Err(e), _) | (_, Err(e)) => summary["error"] = e.to_string().into(),
        }
        summary
    }
}

#[cfg(test)]
mod tests;
