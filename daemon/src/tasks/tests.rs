//! The store's rules over the memory backend, on tokio's paused clock; the Redis
//! backend is held to the same ones in `tests/tests/tasks_redis.rs`.

use super::*;

const RENEW: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(5);

fn config() -> TaskConfig {
    TaskConfig {
        max: 8,
        max_per_owner: 4,
        ttl_max: Duration::from_secs(3600),
        lease: LEASE,
        renew_every: RENEW,
    }
}

fn store() -> Arc<TaskStore> {
    Arc::new(TaskStore::memory(
        config(),
        Duration::from_secs(1),
        "daemon-a".into(),
    ))
}

fn answer(text: &str) -> Finished {
    Finished {
        outcome: TaskOutcome::Result(json!({"content": [{"type": "text", "text": text}]})),
        message: None,
    }
}

/// Runs `task` on its own until its token is cancelled, then ends with "stopped".
fn run_until_cancelled(
    store: &Arc<TaskStore>,
    task: &Arc<TaskHandle>,
) -> tokio::task::JoinHandle<()> {
    let (store, task) = (store.clone(), task.clone());
    tokio::spawn(async move {
        let token = task.cancel.clone();
        store
            .run(task, async move {
                token.cancelled().await;
                answer("stopped")
            })
            .await;
    })
}

#[tokio::test(start_paused = true)]
async fn a_task_run_here_completes_and_its_result_is_fetched() {
    let store = store();
    let task = store.create("alice", "chat", None).await.unwrap();
    assert_eq!(
        task.created.ttl_ms, 3_600_000,
        "the default TTL is the maximum"
    );
    assert_eq!(task.created.status, TaskStatus::Working);
    assert!(matches!(
        store.result("alice", &task.id).await.unwrap(),
        Fetched::Working(_)
    ));
    store.run(task.clone(), async { answer("done") }).await;
    let view = store.wait("alice", &task.id).await.unwrap();
    assert_eq!(view.status, TaskStatus::Completed);
    assert_eq!(
        store.result("alice", &task.id).await.unwrap(),
        Fetched::Ended(view, Some(answer("done").outcome))
    );
    assert!(
        store.running_here(&task.id).is_none(),
        "forgotten once ended"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancel_here_stops_the_work_at_once() {
    let store = store();
    let task = store.create("alice", "chat", None).await.unwrap();
    let running = run_until_cancelled(&store, &task);
    let view = store.cancel("alice", &task.id).await.unwrap();
    assert_eq!(view.status, TaskStatus::Cancelled);
    assert!(task.cancel.is_cancelled());
    running.await.unwrap();
    let Fetched::Ended(view, outcome) = store.result("alice", &task.id).await.unwrap() else {
        panic!("not ended");
    };
    assert_eq!(
        (view.status, outcome),
        (TaskStatus::Cancelled, None),
        "the late answer does not revive it"
    );
    assert_eq!(
        store.cancel("alice", &task.id).await.unwrap_err(),
        TaskError::Terminal(task.id.clone(), "cancelled")
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancel_recorded_in_the_store_stops_the_work_within_one_renewal() {
    let store = store();
    let task = store.create("alice", "chat", None).await.unwrap();
    let running = run_until_cancelled(&store, &task);
    // As another daemon would: in the store only, not through this daemon's handle.
    let Backend::Memory(backend) = &store.backend else {
        unreachable!()
    };
    assert!(matches!(
        backend.cancel("alice", &task.id).await.unwrap(),
        Cancel::Cancelled(_)
    ));
    assert!(!task.cancel.is_cancelled());
    tokio::time::sleep(RENEW).await;
    tokio::task::yield_now().await;
    assert!(task.cancel.is_cancelled(), "seen at the next renewal");
    running.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_task_whose_daemon_stopped_renewing_reads_failed_after_the_lease() {
    let store = store();
    let task = store.create("alice", "chat", None).await.unwrap();
    let running = run_until_cancelled(&store, &task);
    tokio::time::sleep(RENEW * 3).await;
    assert_eq!(
        store.get("alice", &task.id).await.unwrap().status,
        TaskStatus::Working,
        "renewed"
    );
    // The daemon running it dies: nothing renews its lease any more.
    running.abort();
    let _ = running.await;
    let waited = tokio::time::timeout(LEASE * 2, store.wait("alice", &task.id))
        .await
        .expect("ended within the lease")
        .unwrap();
    assert_eq!(waited.status, TaskStatus::Failed);
    let message = waited.status_message.unwrap();
    assert!(message.contains("(daemon-a) stopped"), "{message}");
    let Fetched::Ended(_, Some(TaskOutcome::Error(error))) =
        store.result("alice", &task.id).await.unwrap()
    else {
        panic!("no error recorded");
    };
    assert_eq!(error["message"], message.as_str());
}

#[tokio::test(start_paused = true)]
async fn progress_is_written_with_each_renewal() {
    let store = store();
    let task = store.create("alice", "chat", None).await.unwrap();
    let running = run_until_cancelled(&store, &task);
    task.progress.thinking(100);
    tokio::time::sleep(RENEW * 2).await;
    // Read past the handle, as another daemon reads the store.
    store.local().clear();
    let view = store.get("alice", &task.id).await.unwrap();
    let message = view.status_message.unwrap();
    assert!(message.starts_with("thinking"), "{message}");
    task.cancel.cancel();
    running.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn another_owner_reads_a_task_as_unknown() {
    let store = store();
    let task = store.create("alice", "chat", None).await.unwrap();
    let never = uuid::Uuid::new_v4().to_string();
    let as_unknown = |e: TaskError, id: &str| e.to_string().replace(id, "ID");
    let theirs = store.get("bob", &task.id).await.unwrap_err();
    let nobodys = store.get("bob", &never).await.unwrap_err();
    assert_eq!(theirs, TaskError::Unknown(task.id.clone()));
    assert_eq!(as_unknown(theirs, &task.id), as_unknown(nobodys, &never));
    assert_eq!(
        store.result("bob", &task.id).await.unwrap_err(),
        TaskError::Unknown(task.id.clone())
    );
    assert_eq!(
        store.cancel("bob", &task.id).await.unwrap_err(),
        TaskError::Unknown(task.id.clone())
    );
    assert!(!task.cancel.is_cancelled());
    assert_eq!(store.list("bob").await.unwrap(), vec![]);
    assert_eq!(store.list("alice").await.unwrap().len(), 1);
    assert_eq!(
        store.get("alice", "exai:task:x").await.unwrap_err(),
        TaskError::Unknown("exai:task:x".into()),
        "not an id"
    );
    let summary = store.summary("bob").await;
    assert_eq!(
        (summary["held"].as_u64(), summary["working"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(summary["tasks"], json!([]));
}

#[tokio::test(start_paused = true)]
async fn an_owner_that_leaves_takes_its_tasks_with_it() {
    let store = store();
    let task = store.create("alice", "chat", None).await.unwrap();
    let running = run_until_cancelled(&store, &task);
    store.create("bob", "chat", None).await.unwrap();
    assert_eq!(store.drop_owner("alice").await.unwrap(), 1);
    assert!(task.cancel.is_cancelled(), "its work stopped");
    running.await.unwrap();
    assert_eq!(
        store.get("alice", &task.id).await.unwrap_err(),
        TaskError::Unknown(task.id.clone())
    );
    assert_eq!(store.held().await.unwrap(), 1, "bob's is kept");
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_records_the_tasks_it_cut_short_as_failed() {
    let store = store();
    let task = store.create("alice", "chat", None).await.unwrap();
    let running = run_until_cancelled(&store, &task);
    store.cancel_all();
    running.await.unwrap();
    let view = store.get("alice", &task.id).await.unwrap();
    assert_eq!(view.status, TaskStatus::Failed);
    assert!(
        view.status_message.unwrap().contains("shut down"),
        "says why"
    );
}

#[tokio::test(start_paused = true)]
async fn a_ttl_is_kept_within_its_bounds() {
    let store = store();
    let long = store
        .create("alice", "chat", Some(Duration::from_secs(1_000_000)))
        .await
        .unwrap();
    assert_eq!(long.created.ttl_ms, 3_600_000);
    let short = store
        .create("alice", "chat", Some(Duration::from_millis(1)))
        .await
        .unwrap();
    assert_eq!(short.created.ttl_ms, 1000);
}

#[tokio::test(start_paused = true)]
async fn a_quota_as_large_as_the_store_is_reported_as_the_store_being_full() {
    let store = TaskStore::memory(
        TaskConfig {
            max: 1,
            max_per_owner: 1,
            ..config()
        },
        Duration::from_secs(1),
        "daemon-a".into(),
    );
    store.create("alice", "chat", None).await.unwrap();
    assert_eq!(
        store.create("alice", "chat", None).await.unwrap_err(),
        TaskError::Full { max: 1 }
    );
}
