//! Tasks in this daemon's memory: the backend when there is no `REDIS_URL`. The same
//! rules as the Redis backend (`redis/`), under one lock, on tokio's clock so that
//! tests can move time.

use super::view::{lapsed, Finished, TaskError, TaskOutcome, TaskStatus, TaskView};
use super::{eviction_rank, Cancel, Limits, NewTask, Renewal};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub(crate) struct MemoryTasks {
    /// A working task not renewed for this long has failed.
    lease: Duration,
    tasks: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    owner: String,
    view: TaskView,
    /// Its result was fetched: dropping it loses nothing a client still wants.
    fetched: bool,
    /// The daemon running it, for the message if it stops renewing.
    runner: String,
    outcome: Option<TaskOutcome>,
    created: Instant,
    expires: Instant,
    lease_until: Instant,
}

impl Entry {
    /// A working task whose lease ran out is failed, and says so.
    fn settle(&mut self, now: Instant, lease: Duration) {
        if self.view.status == TaskStatus::Working && now >= self.lease_until {
            let end = lapsed(&self.runner, lease);
            self.end(&end);
        }
    }

    fn end(&mut self, end: &Finished) {
        self.view.status = end.status();
        self.view.status_message = end.message.clone();
        self.view.updated_unix_ms = now_unix_ms();
        self.outcome = Some(end.outcome.clone());
    }

    fn rank(&self, now: Instant) -> Option<u8> {
        eviction_rank(self.view.status, self.fetched, now < self.lease_until)
    }
}

fn now_unix_ms() -> u64 {
    crate::clock::now_unix_us() / 1000
}

impl MemoryTasks {
    pub fn new(lease: Duration) -> Self {
        Self {
            lease,
            tasks: Mutex::default(),
        }
    }

    /// The tasks, those past their TTL dropped.
    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        tasks.retain(|_, t| now < t.expires);
        tasks
    }

    /// The task `id` if `owner` owns it, settled.
    fn owned<'a>(
        &self,
        tasks: &'a mut HashMap<String, Entry>,
        owner: &str,
        id: &str,
    ) -> Option<&'a mut Entry> {
        let entry = tasks.get_mut(id).filter(|t| t.owner == owner)?;
        entry.settle(Instant::now(), self.lease);
        Some(entry)
    }

    /// Makes room among the tasks `among` selects, or says there is none.
    fn make_room(
        tasks: &mut HashMap<String, Entry>,
        among: impl Fn(&Entry) -> bool,
        bound: usize,
    ) -> bool {
        let now = Instant::now();
        if tasks.values().filter(|t| among(t)).count() < bound {
            return true;
        }
        let victim = tasks
            .iter()
            .filter(|(_, t)| among(t))
            .filter_map(|(id, t)| Some(((t.rank(now)?, t.created), id.clone())))
            .min()
            .map(|(_, id)| id);
        match victim {
            Some(id) => tasks.remove(&id).is_some(),
            None => false,
        }
    }

    pub async fn create(&self, new: NewTask<'_>, limits: Limits) -> Result<TaskView, TaskError> {
        let mut tasks = self.tasks();
        if !Self::make_room(&mut tasks, |t| t.owner == new.owner, limits.max_per_owner) {
            return Err(TaskError::OwnerQuota {
                max: limits.max_per_owner,
            });
        }
        if !Self::make_room(&mut tasks, |_| true, limits.max) {
            return Err(TaskError::Full { max: limits.max });
        }
        let now = Instant::now();
        let now_ms = now_unix_ms();
        let view = TaskView {
            id: new.id.to_string(),
            tool: new.tool.to_string(),
            status: TaskStatus::Working,
            status_message: None,
            created_unix_ms: now_ms,
            updated_unix_ms: now_ms,
            ttl_ms: new.ttl.as_millis() as u64,
        };
        tasks.insert(
            new.id.to_string(),
            Entry {
                owner: new.owner.to_string(),
                view: view.clone(),
                fetched: false,
                runner: new.runner.to_string(),
                outcome: None,
                created: now,
                expires: now + new.ttl,
                lease_until: now + self.lease,
            },
        );
        Ok(view)
    }

    pub async fn get(&self, owner: &str, id: &str) -> Result<Option<TaskView>, TaskError> {
        let mut tasks = self.tasks();
        Ok(self.owned(&mut tasks, owner, id).map(|t| t.view.clone()))
    }

    pub async fn fetch(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<Option<(TaskView, Option<TaskOutcome>)>, TaskError> {
        let mut tasks = self.tasks();
        Ok(self.owned(&mut tasks, owner, id).map(|t| {
            if t.view.status.is_terminal() {
                t.fetched = true;
            }
            (t.view.clone(), t.outcome.clone())
        }))
    }

    pub async fn cancel(&self, owner: &str, id: &str) -> Result<Cancel, TaskError> {
        let mut tasks = self.tasks();
        let Some(task) = self.owned(&mut tasks, owner, id) else {
            return Ok(Cancel::Unknown);
        };
        if task.view.status.is_terminal() {
            return Ok(Cancel::Ended(task.view.status));
        }
        task.view.status = TaskStatus::Cancelled;
        task.view.status_message = Some(super::CANCELLED.into());
        task.view.updated_unix_ms = now_unix_ms();
        Ok(Cancel::Cancelled(task.view.clone()))
    }

    pub async fn list(&self, owner: &str) -> Result<Vec<TaskView>, TaskError> {
        let mut tasks = self.tasks();
        let now = Instant::now();
        let mut mine: Vec<(Instant, TaskView)> = tasks
            .values_mut()
            .filter(|t| t.owner == owner)
            .map(|t| {
                t.settle(now, self.lease);
                (t.created, t.view.clone())
            })
            .collect();
        mine.sort_by_key(|(created, _)| *created);
        Ok(mine.into_iter().map(|(_, view)| view).collect())
    }

    pub async fn renew(&self, id: &str, runner: &str, message: &str) -> Result<Renewal, TaskError> {
        let mut tasks = self.tasks();
        match tasks.get_mut(id) {
            Some(t) if t.view.status == TaskStatus::Working && t.runner == runner => {
                t.lease_until = Instant::now() + self.lease;
                t.view.status_message = Some(message.to_string());
                Ok(Renewal::Working)
            }
            _ => Ok(Renewal::Ended),
        }
    }

    pub async fn finish(&self, id: &str, runner: &str, end: &Finished) -> Result<bool, TaskError> {
        let mut tasks = self.tasks();
        match tasks.get_mut(id) {
            Some(t) if t.view.status == TaskStatus::Working && t.runner == runner => {
                t.end(end);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub async fn drop_owner(&self, owner: &str) -> Result<Vec<String>, TaskError> {
        let mut tasks = self.tasks();
        let ids: Vec<String> = tasks
            .iter()
            .filter(|(_, t)| t.owner == owner)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            tasks.remove(id);
        }
        Ok(ids)
    }

    pub async fn held(&self) -> Result<usize, TaskError> {
        Ok(self.tasks().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LEASE: Duration = Duration::from_secs(5);
    const LIMITS: Limits = Limits {
        max: 4,
        max_per_owner: 2,
    };

    fn new<'a>(id: &'a str, owner: &'a str) -> NewTask<'a> {
        NewTask {
            id,
            owner,
            tool: "chat",
            ttl: Duration::from_secs(3600),
            runner: "daemon-a",
        }
    }

    fn done() -> Finished {
        Finished {
            outcome: TaskOutcome::Result(json!({"content": []})),
            message: None,
        }
    }

    async fn renew(store: &MemoryTasks, ids: &[&str]) {
        for id in ids {
            store.renew(id, "daemon-a", "thinking").await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_owner_holds_at_most_its_quota_of_working_tasks() {
        let store = MemoryTasks::new(LEASE);
        store.create(new("a1", "alice"), LIMITS).await.unwrap();
        store.create(new("a2", "alice"), LIMITS).await.unwrap();
        assert_eq!(
            store.create(new("a3", "alice"), LIMITS).await.unwrap_err(),
            TaskError::OwnerQuota { max: 2 }
        );
        // Another owner is not held back by alice's quota.
        store.create(new("b1", "bob"), LIMITS).await.unwrap();
        assert_eq!(store.held().await.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn results_never_fetched_make_room_oldest_first() {
        let store = MemoryTasks::new(LEASE);
        for id in ["a1", "a2"] {
            store.create(new(id, "alice"), LIMITS).await.unwrap();
            tokio::time::advance(Duration::from_millis(10)).await;
            assert!(store.finish(id, "daemon-a", &done()).await.unwrap());
        }
        // Alice is at her quota, with two results she never fetched: the older goes.
        store.create(new("a3", "alice"), LIMITS).await.unwrap();
        assert_eq!(store.get("alice", "a1").await.unwrap(), None);
        assert!(store.get("alice", "a2").await.unwrap().is_some());

        // The store is full (a2, a3, b1, c1): a new owner's task takes the place of the
        // oldest finished one, whoever owns it; working tasks are never dropped.
        store.create(new("b1", "bob"), LIMITS).await.unwrap();
        store.create(new("c1", "carol"), LIMITS).await.unwrap();
        store.create(new("d1", "dave"), LIMITS).await.unwrap();
        assert_eq!(store.get("alice", "a2").await.unwrap(), None);
        renew(&store, &["a3", "b1", "c1", "d1"]).await;
        assert_eq!(
            store.create(new("e1", "erin"), LIMITS).await.unwrap_err(),
            TaskError::Full { max: 4 }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetched_result_goes_before_one_never_fetched() {
        let store = MemoryTasks::new(LEASE);
        for id in ["a1", "a2"] {
            store.create(new(id, "alice"), LIMITS).await.unwrap();
            tokio::time::advance(Duration::from_millis(10)).await;
            store.finish(id, "daemon-a", &done()).await.unwrap();
        }
        let (view, outcome) = store.fetch("alice", "a2").await.unwrap().unwrap();
        assert_eq!(view.status, TaskStatus::Completed);
        assert_eq!(outcome, Some(done().outcome));
        store.create(new("a3", "alice"), LIMITS).await.unwrap();
        assert!(store.get("alice", "a1").await.unwrap().is_some());
        assert_eq!(store.get("alice", "a2").await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn another_owner_cannot_tell_a_task_exists() {
        let store = MemoryTasks::new(LEASE);
        store.create(new("a1", "alice"), LIMITS).await.unwrap();
        assert_eq!(store.get("bob", "a1").await.unwrap(), None);
        assert_eq!(store.fetch("bob", "a1").await.unwrap(), None);
        assert!(matches!(
            store.cancel("bob", "a1").await.unwrap(),
            Cancel::Unknown
        ));
        assert_eq!(store.list("bob").await.unwrap(), vec![]);
        assert_eq!(
            store.get("alice", "a1").await.unwrap().unwrap().status,
            TaskStatus::Working,
            "bob's cancel did nothing"
        );
        assert_eq!(store.drop_owner("bob").await.unwrap(), Vec::<String>::new());
        assert_eq!(store.drop_owner("alice").await.unwrap(), vec!["a1"]);
        assert_eq!(store.held().await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_whose_lease_runs_out_reads_failed_and_says_why() {
        let store = MemoryTasks::new(LEASE);
        store.create(new("a1", "alice"), LIMITS).await.unwrap();
        tokio::time::advance(Duration::from_secs(4)).await;
        renew(&store, &["a1"]).await;
        tokio::time::advance(Duration::from_secs(4)).await;
        let view = store.get("alice", "a1").await.unwrap().unwrap();
        assert_eq!(view.status, TaskStatus::Working, "renewed 4 s ago");
        assert_eq!(view.status_message.as_deref(), Some("thinking"));

        tokio::time::advance(Duration::from_secs(1)).await;
        let view = store.get("alice", "a1").await.unwrap().unwrap();
        assert_eq!(view.status, TaskStatus::Failed);
        let message = view.status_message.unwrap();
        assert!(
            message.starts_with("the daemon running this task (daemon-a) stopped"),
            "{message}"
        );
        let (_, outcome) = store.fetch("alice", "a1").await.unwrap().unwrap();
        assert!(matches!(outcome, Some(TaskOutcome::Error(e)) if e["code"] == -32603));
        // The runner, should it come back, finds its task ended and stops.
        assert_eq!(
            store.renew("a1", "daemon-a", "late").await.unwrap(),
            Renewal::Ended
        );
        assert!(!store.finish("a1", "daemon-a", &done()).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_task_stays_cancelled() {
        let store = MemoryTasks::new(LEASE);
        store.create(new("a1", "alice"), LIMITS).await.unwrap();
        let Cancel::Cancelled(view) = store.cancel("alice", "a1").await.unwrap() else {
            panic!("not cancelled");
        };
        assert_eq!(
            view.status_message.as_deref(),
            Some("cancelled by the client")
        );
        assert_eq!(
            store.renew("a1", "daemon-a", "thinking").await.unwrap(),
            Renewal::Ended,
            "the runner learns at its next renewal"
        );
        assert!(!store.finish("a1", "daemon-a", &done()).await.unwrap());
        assert!(matches!(
            store.cancel("alice", "a1").await.unwrap(),
            Cancel::Ended(TaskStatus::Cancelled)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_lives_its_ttl() {
        let store = MemoryTasks::new(LEASE);
        let short = NewTask {
            ttl: Duration::from_secs(2),
            ..new("a1", "alice")
        };
        store.create(short, LIMITS).await.unwrap();
        store.finish("a1", "daemon-a", &done()).await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(store.get("alice", "a1").await.unwrap(), None);
        assert_eq!(store.held().await.unwrap(), 0);
    }
}
