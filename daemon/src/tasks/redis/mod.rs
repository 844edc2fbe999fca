//! Tasks in Redis, chosen by `REDIS_URL` as conversations are: every daemon sharing the
//! Redis reads, fetches and cancels every task, whichever daemon runs it.
//!
//! Keys (every one expires with its task, so a dead daemon leaves nothing forever):
//! - `exai:task:<id>`, a hash: `owner`, `tool`, `status`, `message`, `created`,
//!   `updated` and `ttl` (milliseconds, Redis's clock), `fetched` (`0`/`1`), `runner`
//!   (the daemon running it), `result` (`{"result": CallToolResult}` or
//!   `{"error": JSON-RPC error}`); `PEXPIRE` its TTL.
//! - `exai:task:<id>:lease`: the runner's name, `PX EXAI_TASK_LEASE_MS`, renewed by the
//!   runner. A working task without it has lost its daemon: the first read records it
//!   failed.
//! - `exai:tasks:owner:<owner>` and `exai:tasks:all`: sorted sets of task ids scored by
//!   their expiry, to count and list them; members past their score are dropped first.
//!
//! Every step that reads and then writes is one Lua script, so two daemons never both
//! take the last place or both end one task; scripts take the time from Redis (`TIME`),
//! so daemons' clocks need not agree. Scripts touch keys they compute (a task's lease,
//! an evicted task's owner set): one Redis, not a Redis Cluster.

use super::view::{lapsed, Finished, TaskError, TaskOutcome, TaskStatus, TaskView};
use super::{Cancel, Limits, NewTask, Renewal};
use crate::cause::Cause;
use redis::aio::ConnectionManager;
use std::time::Duration;

mod scripts;

use scripts::{CANCEL, CREATE, DROP_OWNER, FINISH, GET, HELD, LIST, PRELUDE, RENEW};

const TASK: &str = "exai:task:";
const OWNER: &str = "exai:tasks:owner:";
const ALL: &str = "exai:tasks:all";

pub(crate) struct RedisTasks {
    conn: ConnectionManager,
    lease: Duration,
    /// The URL without its password, for errors.
    shown_url: String,
    /// What a task whose lease ran out is failed with, `%s` for its runner.
    lapsed_format: String,
}

/// A task's fields as the scripts return them, `FIELDS` order, then its result.
type Fields = Vec<Option<String>>;

fn task_key(id: &str) -> String {
    format!("{TASK}{id}")
}

fn lease_key(id: &str) -> String {
    format!("{TASK}{id}:lease")
}

fn owner_key(owner: &str) -> String {
    format!("{OWNER}{owner}")
}

impl RedisTasks {
    /// Tasks in the Redis at `url`, connected on first use; `timeout` bounds each
    /// connection attempt and each answer.
    pub fn new(url: &str, timeout: Duration, lease: Duration) -> Result<Self, TaskError> {
        // Made as the conversation store makes its own: lazily, one attempt per command,
        // each bounded by `timeout`.
        let (conn, shown_url) =
            crate::storage::redis::connect::connect(url, timeout).map_err(|e| {
                TaskError::Unavailable {
                    message: e.message,
                    cause: Some(Cause::new(e.cause)),
                }
            })?;
        Ok(Self {
            conn,
            lease,
            lapsed_format: lapsed("%s", lease).message.unwrap_or_default(),
            shown_url,
        })
    }

    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, TaskError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(format!("{PRELUDE}{script}")).arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        for arg in args {
            cmd.arg(*arg);
        }
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(|e| self.failed(e))
    }

    fn failed(&self, e: redis::RedisError) -> TaskError {
        let why = if e.is_timeout() {
            "no answer in time (EXAI_STORAGE_TIMEOUT_MS)".to_string()
        } else if e.is_connection_refusal() {
            "it refused the connection".to_string()
        } else {
            crate::redact::redact_urls_in(&e.to_string())
        };
        TaskError::Unavailable {
            message: format!("Redis at {}: {why}", self.shown_url),
            cause: Some(Cause::new(e)),
        }
    }

    pub async fn create(&self, new: NewTask<'_>, limits: Limits) -> Result<TaskView, TaskError> {
        let ttl_ms = new.ttl.as_millis().to_string();
        let lease_ms = self.lease.as_millis().to_string();
        let (max, per_owner) = (limits.max.to_string(), limits.max_per_owner.to_string());
        let (owner_set, task, lease) = (owner_key(new.owner), task_key(new.id), lease_key(new.id));
        let reply: Vec<String> = self
            .eval(
                CREATE,
                &[ALL, &owner_set, &task, &lease],
                &[
                    new.id, new.owner, new.tool, &ttl_ms, new.runner, &lease_ms, &max, &per_owner,
                    TASK, OWNER,
                ],
            )
            .await?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                let now = reply
                    .get(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_default();
                Ok(TaskView {
                    id: new.id.to_string(),
                    tool: new.tool.to_string(),
                    status: TaskStatus::Working,
                    status_message: None,
                    created_unix_ms: now,
                    updated_unix_ms: now,
                    ttl_ms: new.ttl.as_millis() as u64,
                })
            }
            Some("owner_quota") => Err(TaskError::OwnerQuota {
                max: limits.max_per_owner,
            }),
            Some("full") => Err(TaskError::Full { max: limits.max }),
            other => Err(self.damaged(new.id, &format!("create answered {other:?}"))),
        }
    }

    fn damaged(&self, id: &str, why: &str) -> TaskError {
        TaskError::Unavailable {
            message: format!(
                "task {id:?} in Redis at {} is damaged: {why}",
                self.shown_url
            ),
            cause: None,
        }
    }

    fn view(&self, id: &str, f: &[Option<String>]) -> Result<TaskView, TaskError> {
        let field = |i: usize| f.get(i).cloned().flatten();
        let number = |i: usize| field(i).and_then(|n| n.parse::<u64>().ok());
        let status = field(2)
            .as_deref()
            .and_then(TaskStatus::parse)
            .ok_or_else(|| self.damaged(id, "no status"))?;
        Ok(TaskView {
            id: id.to_string(),
            tool: field(1).unwrap_or_default(),
            status,
            status_message: field(3),
            created_unix_ms: number(4).unwrap_or_default(),
            updated_unix_ms: number(5).unwrap_or_default(),
            ttl_ms: number(6).unwrap_or_default(),
        })
    }

    async fn read(
        &self,
        owner: &str,
        id: &str,
        fetch: bool,
    ) -> Result<Option<(TaskView, Option<TaskOutcome>)>, TaskError> {
        let reply: Option<Fields> = self
            .eval(
                GET,
                &[&task_key(id)],
                &[owner, &self.lapsed_format, if fetch { "1" } else { "0" }],
            )
            .await?;
        let Some(fields) = reply else {
            return Ok(None);
        };
        let view = self.view(id, &fields)?;
        let outcome = match fields.get(9).cloned().flatten() {
            Some(json) => Some(
                serde_json::from_str(&json)
                    .map_err(|e| self.damaged(id, &format!("its result: {e}")))?,
            ),
            None => None,
        };
        Ok(Some((view, outcome)))
    }

    pub async fn get(&self, owner: &str, id: &str) -> Result<Option<TaskView>, TaskError> {
        Ok(self.read(owner, id, false).await?.map(|(view, _)| view))
    }

    pub async fn fetch(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<Option<(TaskView, Option<TaskOutcome>)>, TaskError> {
        self.read(owner, id, true).await
    }

    pub async fn cancel(&self, owner: &str, id: &str) -> Result<Cancel, TaskError> {
        let reply: Option<Fields> = self
            .eval(
                CANCEL,
                &[&task_key(id)],
                &[owner, &self.lapsed_format, super::CANCELLED],
            )
            .await?;
        let Some(reply) = reply else {
            return Ok(Cancel::Unknown);
        };
        match reply.first().cloned().flatten().as_deref() {
            Some("cancelled") => Ok(Cancel::Cancelled(self.view(id, &reply[1..])?)),
            Some("ended") => {
                let status = reply.get(1).cloned().flatten();
                let status = status.as_deref().and_then(TaskStatus::parse);
                Ok(Cancel::Ended(
                    status.ok_or_else(|| self.damaged(id, "no status"))?,
                ))
            }
            other => Err(self.damaged(id, &format!("cancel answered {other:?}"))),
        }
    }

    pub async fn list(&self, owner: &str) -> Result<Vec<TaskView>, TaskError> {
        let reply: Vec<Fields> = self
            .eval(
                LIST,
                &[&owner_key(owner)],
                &[owner, &self.lapsed_format, TASK],
            )
            .await?;
        let mut views = reply
            .iter()
            .map(|f| {
                let id = f.first().cloned().flatten().unwrap_or_default();
                self.view(&id, &f[1..])
            })
            .collect::<Result<Vec<_>, _>>()?;
        views.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        Ok(views)
    }

    pub async fn renew(&self, id: &str, runner: &str, message: &str) -> Result<Renewal, TaskError> {
        let lease_ms = self.lease.as_millis().to_string();
        let working: i64 = self
            .eval(
                RENEW,
                &[&task_key(id), &lease_key(id)],
                &[runner, &lease_ms, message],
            )
            .await?;
        Ok(if working == 1 {
            Renewal::Working
        } else {
            Renewal::Ended
        })
    }

    pub async fn finish(&self, id: &str, runner: &str, end: &Finished) -> Result<bool, TaskError> {
        let result = serde_json::to_string(&end.outcome).map_err(|e| TaskError::Unavailable {
            message: format!("task {id:?}'s result cannot be written: {e}"),
            cause: Some(Cause::new(e)),
        })?;
        let ended: i64 = self
            .eval(
                FINISH,
                &[&task_key(id), &lease_key(id)],
                &[
                    runner,
                    end.status().as_str(),
                    end.message.as_deref().unwrap_or_default(),
                    &result,
                ],
            )
            .await?;
        Ok(ended == 1)
    }

    pub async fn drop_owner(&self, owner: &str) -> Result<Vec<String>, TaskError> {
        self.eval(DROP_OWNER, &[&owner_key(owner), ALL], &[TASK, owner])
            .await
    }

    pub async fn held(&self) -> Result<usize, TaskError> {
        self.eval(HELD, &[ALL], &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_redis_refuses_a_task_and_says_where() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = RedisTasks::new(
            &format!("redis://:sekrit@127.0.0.1:{port}"),
            Duration::from_millis(200),
            Duration::from_secs(5),
        )
        .unwrap();
        let new = NewTask {
            id: "t",
            owner: "o",
            tool: "chat",
            ttl: Duration::from_secs(60),
            runner: "r",
        };
        let limits = Limits {
            max: 1,
            max_per_owner: 1,
        };
        let err = store.create(new, limits).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("task storage unavailable: Redis at redis://")
                && text.contains("refused the connection"),
            "{text}"
        );
        assert!(!text.contains("sekrit"), "{text}");
        assert!(matches!(err, TaskError::Unavailable { cause: Some(_), .. }));
    }
}
