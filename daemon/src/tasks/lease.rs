//! The daemon running a task keeps its lease: every `EXAI_TASK_RENEW_MS` it renews it
//! and writes the work's progress; a renewal that finds the task ended (cancelled
//! through another daemon, expired, dropped with its session, or failed because an
//! earlier renewal came too late) cancels the work, which aborts the model call and
//! returns its place. So a cancel made anywhere takes effect within one renewal.

use super::{Finished, Renewal, TaskHandle, TaskStore};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use tokio::time::{Instant, MissedTickBehavior};

/// Attempts at recording how a task ended, a renewal interval apart, before the lease
/// is left to say it.
const FINISH_ATTEMPTS: u32 = 3;

impl TaskStore {
    /// Runs `work` as `task`'s work (which watches `task.cancel`), keeping its lease
    /// meanwhile, then records how it ended. A task cut short by shutdown is recorded
    /// failed, saying so.
    pub async fn run(&self, task: Arc<TaskHandle>, work: impl Future<Output = Finished>) {
        let finished = tokio::select! {
            finished = work => finished,
            never = self.keep_lease(&task) => match never {},
        };
        let end = if self.root.is_cancelled() {
            Finished::failed(
                "the server running this task shut down before it ended; start it again".into(),
            )
        } else {
            finished
        };
        self.record_end(&task, &end).await;
        self.local().remove(&task.id);
        task.done.send_replace(true);
    }

    async fn keep_lease(&self, task: &TaskHandle) -> Infallible {
        let every = self.config.renew_every;
        let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Created with a lease: the first renewal is due one interval later.
        let mut renewed = Instant::now();
        loop {
            ticks.tick().await;
            if task.cancel.is_cancelled() {
                // The work is ending; its end is recorded next.
                return std::future::pending().await;
            }
            let sent = Instant::now();
            let message = task.describe_progress();
            let renewal = on_backend!(self, b => b.renew(&task.id, &self.runner, &message));
            match renewal {
                Ok(Renewal::Working) => renewed = sent,
                Ok(Renewal::Ended) => {
                    tracing::info!(task = %task.id, "task ended elsewhere (cancelled, expired or dropped): its work stops");
                    task.cancel.cancel();
                }
                Err(e) if sent.duration_since(renewed) >= self.config.lease => {
                    tracing::warn!(task = %task.id, error = %e,
                        "task lease lost: the store has not answered for a whole lease; its work stops");
                    task.cancel.cancel();
                }
                Err(e) => {
                    tracing::debug!(task = %task.id, error = %e, "task lease not renewed this time");
                }
            }
        }
    }

    async fn record_end(&self, task: &TaskHandle, end: &Finished) {
        for attempt in 1..=FINISH_ATTEMPTS {
            match on_backend!(self, b => b.finish(&task.id, &self.runner, end)) {
                // Not recorded when it had ended already (cancelled first): that stands.
                Ok(_) => return,
                Err(e) if attempt == FINISH_ATTEMPTS || self.root.is_cancelled() => {
                    tracing::warn!(task = %task.id, error = %e,
                        "cannot record how a task ended; it will read failed once its lease runs out");
                    return;
                }
                Err(_) => tokio::time::sleep(self.config.renew_every).await,
            }
        }
    }
}
