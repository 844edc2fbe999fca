//! How a program stops: the signals that ask it to (SIGTERM from `docker stop` or
//! Kubernetes, SIGINT from Ctrl-C), and [`Stop`], the one token every server of the
//! program watches with one bounded wait for all of them.

use std::future::Future;
use std::io;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// SIGTERM and SIGINT, each time one comes: the first starts the stop, a second may
/// hurry it (the daemon's drain ends).
pub struct Signals {
    term: Signal,
    interrupt: Signal,
}

impl Signals {
    /// Listens from now on: a signal before this call still has its default effect.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT.
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// The servers and background tasks of a program, stopped together: each watches a
/// child of one token, and [`Stop::finish`] waits for all of them under one limit.
#[derive(Default)]
pub struct Stop {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Stop {
    pub fn new() -> Self {
        Self::default()
    }

    /// What a server watches: cancelled when the program stops.
    pub fn token(&self) -> CancellationToken {
        self.cancel.child_token()
    }

    /// Runs `task` until the stop, counted in the wait of [`Stop::finish`].
    pub fn spawn<F>(&self, task: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Cancels every task and waits up to `within` for them to end; `false` when some
    /// were still running then (they are dropped with the runtime).
    pub async fn finish(self, within: Duration) -> bool {
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(within, self.tasks.wait())
            .await
            .is_ok()
        {
            return true;
        }
        tracing::warn!(
            still_running = self.tasks.len(),
            ?within,
            "stopping without waiting longer for every task"
        );
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_task_that_watches_the_token_ends_and_one_that_does_not_is_left() {
        let stop = Stop::new();
        let token = stop.token();
        stop.spawn(async move { token.cancelled().await });
        assert!(stop.finish(Duration::from_secs(1)).await);

        let stop = Stop::new();
        stop.spawn(std::future::pending::<()>());
        assert!(!stop.finish(Duration::from_secs(1)).await);
    }
}
