//! Tasks in a real `redis-server` shared by two stores, as two daemons behind a balancer
//! share it: a task started through one is read, cancelled and fetched through the
//! other; the daemon running it sees a cancel made through the other and stops the
//! work; a task whose daemon stops renewing its lease reads failed; quotas hold across
//! both; every key expires; a Redis that is away refuses new tasks, saying so.

use exai_daemon::config::TaskConfig;
use exai_daemon::tasks::{
    Fetched, Finished, TaskError, TaskHandle, TaskOutcome, TaskStatus, TaskStore,
};
use exai_tests::redis::{RedisServer, Reply};
use exai_tests::PATIENCE;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

const RENEW: Duration = Duration::from_millis(100);
const LEASE: Duration = Duration::from_millis(600);

fn config(max: usize, max_per_owner: usize) -> TaskConfig {
    TaskConfig {
        max,
        max_per_owner,
        ttl_max: Duration::from_secs(3600),
        lease: LEASE,
        renew_every: RENEW,
    }
}

fn daemon(redis: &RedisServer, name: &str, config: TaskConfig) -> Arc<TaskStore> {
    let store = TaskStore::redis(
        &redis.url(),
        Duration::from_millis(500),
        config,
        Duration::from_secs(1),
        name.to_string(),
    )
    .expect("a store for a good URL");
    Arc::new(store)
}

fn answer(text: &str) -> Finished {
    Finished {
        outcome: TaskOutcome::Result(json!({"content": [{"type": "text", "text": text}]})),
        message: None,
    }
}

/// Runs `task` on `store` until `finish` sends its end or its token is cancelled.
fn run(
    store: &Arc<TaskStore>,
    task: &Arc<TaskHandle>,
) -> (oneshot::Sender<Finished>, tokio::task::JoinHandle<()>) {
    let (finish, finished) = oneshot::channel();
    let (store, task) = (store.clone(), task.clone());
    let running = tokio::spawn(async move {
        let token = task.cancel.clone();
        store
            .run(task, async move {
                tokio::select! {
                    Ok(end) = finished => end,
                    _ = token.cancelled() => answer("stopped"),
                }
            })
            .await;
    });
    (finish, running)
}

/// Polls `check` until it gives a value, or fails the test after [`PATIENCE`].
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn keys(redis: &RedisServer, pattern: &str) -> Vec<String> {
    match redis.command(&["KEYS", pattern]) {
        Reply::Array(keys) => keys.iter().filter_map(Reply::text).collect(),
        other => panic!("KEYS answered {other:?}"),
    }
}

#[tokio::test]
async fn a_task_started_through_one_daemon_is_read_and_fetched_through_another() {
    let redis = RedisServer::start();
    let (a, b) = (
        daemon(&redis, "daemon-a", config(8, 4)),
        daemon(&redis, "daemon-b", config(8, 4)),
    );
    let task = a.create("alice", "chat", None).await.unwrap();
    let (finish, running) = run(&a, &task);

    let seen = b.get("alice", &task.id).await.unwrap();
    assert_eq!(
        (seen.status, seen.tool.as_str()),
        (TaskStatus::Working, "chat")
    );
    assert_eq!(seen.created_unix_ms, task.created.created_unix_ms);
    let listed = b.list("alice").await.unwrap();
    assert_eq!(listed.iter().map(|t| &t.id).collect::<Vec<_>>(), [&task.id]);
    assert!(matches!(
        b.result("alice", &task.id).await.unwrap(),
        Fetched::Working(_)
    ));

    // The progress daemon A writes with each renewal reaches B.
    task.progress.thinking(10);
    let message = eventually("B to see A's progress", || async {
        let view = b.get("alice", &task.id).await.unwrap();
        view.status_message.filter(|m| m.starts_with("thinking"))
    })
    .await;
    assert!(message.starts_with("thinking"), "{message}");

    finish.send(answer("done")).unwrap();
    let waited = tokio::time::timeout(PATIENCE, b.wait("alice", &task.id))
        .await
        .expect("B sees A's task end")
        .unwrap();
    assert_eq!(waited.status, TaskStatus::Completed);
    assert_eq!(
        b.result("alice", &task.id).await.unwrap(),
        Fetched::Ended(waited, Some(answer("done").outcome))
    );
    assert_eq!(
        a.cancel("alice", &task.id).await.unwrap_err(),
        TaskError::Terminal(task.id.clone(), "completed")
    );
    running.await.unwrap();
}

#[tokio::test]
async fn a_cancel_through_another_daemon_stops_the_work_where_it_runs() {
    let redis = RedisServer::start();
    let (a, b) = (
        daemon(&redis, "daemon-a", config(8, 4)),
        daemon(&redis, "daemon-b", config(8, 4)),
    );
    let task = a.create("alice", "chat", None).await.unwrap();
    let (_finish, running) = run(&a, &task);

    let cancelled = b.cancel("alice", &task.id).await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    assert_eq!(
        cancelled.status_message.as_deref(),
        Some("cancelled by the client")
    );
    // A learns at its next renewal: its token (which aborts the model call) fires.
    tokio::time::timeout(PATIENCE, task.cancel.cancelled())
        .await
        .expect("daemon A cancels the work");
    running.await.unwrap();
    let Fetched::Ended(view, outcome) = a.result("alice", &task.id).await.unwrap() else {
        panic!("not ended");
    };
    assert_eq!(
        (view.status, outcome),
        (TaskStatus::Cancelled, None),
        "the work's late answer is not kept"
    );
}

#[tokio::test]
async fn a_task_whose_daemon_stops_renewing_reads_failed_after_the_lease() {
    let redis = RedisServer::start();
    let (a, b) = (
        daemon(&redis, "daemon-a", config(8, 4)),
        daemon(&redis, "daemon-b", config(8, 4)),
    );
    let task = a.create("alice", "chat", None).await.unwrap();
    let (_finish, running) = run(&a, &task);
    // Renewed past its first lease: still working.
    tokio::time::sleep(LEASE * 2).await;
    assert_eq!(
        b.get("alice", &task.id).await.unwrap().status,
        TaskStatus::Working
    );

    // Daemon A dies: nothing renews the lease any more.
    running.abort();
    let _ = running.await;
    let failed = tokio::time::timeout(PATIENCE, b.wait("alice", &task.id))
        .await
        .expect("read failed once the lease ran out")
        .unwrap();
    assert_eq!(failed.status, TaskStatus::Failed);
    let message = failed.status_message.unwrap();
    assert!(
        message.starts_with("the daemon running this task (daemon-a) stopped"),
        "{message}"
    );
    let Fetched::Ended(_, Some(TaskOutcome::Error(error))) =
        b.result("alice", &task.id).await.unwrap()
    else {
        panic!("no error recorded");
    };
    assert_eq!(
        (error["code"].as_i64(), error["message"].as_str()),
        (Some(-32603), Some(message.as_str()))
    );
}

#[tokio::test]
async fn another_owner_reads_a_task_as_unknown_through_either_daemon() {
    let redis = RedisServer::start();
    let (a, b) = (
        daemon(&redis, "daemon-a", config(8, 4)),
        daemon(&redis, "daemon-b", config(8, 4)),
    );
    let task = a.create("alice", "chat", None).await.unwrap();
    let (_finish, running) = run(&a, &task);
    for store in [&a, &b] {
        let unknown = TaskError::Unknown(task.id.clone());
        assert_eq!(store.get("bob", &task.id).await.unwrap_err(), unknown);
        assert_eq!(store.result("bob", &task.id).await.unwrap_err(), unknown);
        assert_eq!(store.cancel("bob", &task.id).await.unwrap_err(), unknown);
        assert_eq!(store.list("bob").await.unwrap(), vec![]);
    }
    assert_eq!(
        b.get("alice", &task.id).await.unwrap().status,
        TaskStatus::Working,
        "bob's cancel did nothing"
    );
    let summary = b.summary("bob").await;
    assert_eq!(
        (summary["backend"].as_str(), summary["held"].as_u64()),
        (Some("redis"), Some(1))
    );
    assert_eq!(summary["tasks"], json!([]));

    // Alice's session ends on B: her task is dropped, and A stops its work.
    assert_eq!(b.drop_owner("alice").await.unwrap(), 1);
    tokio::time::timeout(PATIENCE, task.cancel.cancelled())
        .await
        .expect("daemon A stops the dropped task's work");
    running.await.unwrap();
    assert_eq!(
        keys(&redis, "exai:task*"),
        Vec::<String>::new(),
        "nothing left of it"
    );
}

#[tokio::test]
async fn quotas_hold_across_daemons_and_unfetched_results_make_room() {
    let redis = RedisServer::start();
    let (a, b) = (
        daemon(&redis, "daemon-a", config(3, 2)),
        daemon(&redis, "daemon-b", config(3, 2)),
    );
    let first = a.create("alice", "chat", None).await.unwrap();
    let (finish_first, first_running) = run(&a, &first);
    let second = b.create("alice", "chat", None).await.unwrap();
    let (_finish_second, _second_running) = run(&b, &second);
    assert_eq!(
        a.create("alice", "chat", None).await.unwrap_err(),
        TaskError::OwnerQuota { max: 2 },
        "alice's two working tasks, one on each daemon"
    );
    let bobs = b.create("bob", "chat", None).await.unwrap();
    let (_finish_bob, _bob_running) = run(&b, &bobs);
    assert_eq!(
        a.create("carol", "chat", None).await.unwrap_err(),
        TaskError::Full { max: 3 },
        "three working tasks fill the store"
    );

    // Alice's first ends and she never fetches it: the next task takes its place.
    finish_first.send(answer("never fetched")).unwrap();
    first_running.await.unwrap();
    let carols = a.create("carol", "chat", None).await.unwrap();
    assert_eq!(
        b.get("alice", &first.id).await.unwrap_err(),
        TaskError::Unknown(first.id.clone())
    );
    assert_eq!(b.held().await.unwrap(), 3);
    assert_eq!(
        b.get("carol", &carols.id).await.unwrap().status,
        TaskStatus::Working
    );
}

#[tokio::test]
async fn every_key_of_a_task_expires_with_it() {
    let redis = RedisServer::start();
    let a = daemon(&redis, "daemon-a", config(8, 4));
    let task = a
        .create("alice", "chat", Some(Duration::from_secs(2)))
        .await
        .unwrap();
    let ttl_of = |key: &str| redis.command(&["PTTL", key]).integer();
    let task_key = format!("exai:task:{}", task.id);
    assert!((1..=2000).contains(&ttl_of(&task_key)), "the task's TTL");
    assert!(
        (1..=LEASE.as_millis() as i64).contains(&ttl_of(&format!("{task_key}:lease"))),
        "the lease"
    );
    let owner_keys = keys(&redis, "exai:tasks:owner:*");
    assert_eq!(owner_keys.len(), 1);
    assert!(
        (1..=2000).contains(&ttl_of(&owner_keys[0])),
        "the owner's set"
    );

    let (finish, running) = run(&a, &task);
    finish.send(answer("done")).unwrap();
    running.await.unwrap();
    eventually("the task's keys and its owner's set to expire", || async {
        let left = [
            keys(&redis, "exai:task:*"),
            keys(&redis, "exai:tasks:owner:*"),
        ];
        left.iter().all(Vec::is_empty).then_some(())
    })
    .await;
    assert_eq!(
        a.get("alice", &task.id).await.unwrap_err(),
        TaskError::Unknown(task.id.clone())
    );
    assert_eq!(a.held().await.unwrap(), 0);
}

#[tokio::test]
async fn a_redis_that_is_away_refuses_new_tasks_saying_so() {
    let mut redis = RedisServer::start();
    let a = daemon(&redis, "daemon-a", config(8, 4));
    a.create("alice", "chat", None).await.unwrap();
    redis.kill();
    let err = a.create("alice", "chat", None).await.unwrap_err();
    assert!(matches!(err, TaskError::Unavailable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "task storage unavailable: Redis at {}",
            redis.url()
        )),
        "{text}"
    );
    redis.restart();
    let again = eventually("a task once Redis is back", || async {
        a.create("alice", "chat", None).await.ok()
    })
    .await;
    assert_eq!(again.created.status, TaskStatus::Working);
}
