//! What an accept loop does when `accept` fails: most often the process is out of file
//! descriptors (EMFILE), and the connection stays in the kernel's backlog, so trying
//! again at once fails again at once — a core spinning and a log line each time. It
//! backs off instead, 5 ms doubling to 1 s (as Go's net/http does), and logs at most one
//! line a second saying how many failed.

use crate::throttle::Throttle;
use std::future::Future;
use std::io;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const FIRST_PAUSE: Duration = Duration::from_millis(5);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct AcceptBackoff {
    /// The listener, as its log lines name it.
    what: String,
    /// What to do about too few descriptors, in this program's settings.
    remedy: &'static str,
    pause: Option<Duration>,
    warnings: Throttle,
}

impl AcceptBackoff {
    /// `remedy` ends the line logged when the process is out of descriptors.
    pub fn new(what: impl Into<String>, remedy: &'static str) -> Self {
        Self {
            what: what.into(),
            remedy,
            pause: None,
            warnings: Throttle::new(Duration::from_secs(1)),
        }
    }

    /// The next connection `accept` gives, pausing after each failure; `None` once
    /// `stop` fires. The accept loop of every server of both programs.
    pub async fn next<T, A, F>(&mut self, stop: &CancellationToken, mut accept: A) -> Option<T>
    where
        A: FnMut() -> F,
        F: Future<Output = io::Result<T>>,
    {
        loop {
            let error = tokio::select! {
                _ = stop.cancelled() => return None,
                accepted = accept() => match accepted {
                    Ok(connection) => {
                        self.accepted();
                        return Some(connection);
                    }
                    Err(error) => error,
                },
            };
            let pause = self.failed(&error);
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// A connection was accepted: the next failure starts the backoff afresh.
    pub fn accepted(&mut self) {
        self.pause = None;
    }

    /// Records a failed `accept` and returns how long to wait before the next, logging
    /// if a second has passed since the last line.
    pub fn failed(&mut self, error: &io::Error) -> Duration {
        let pause = match self.pause {
            None => FIRST_PAUSE,
            Some(p) => (p * 2).min(LONGEST_PAUSE),
        };
        self.pause = Some(pause);
        if let Some(failures) = self.warnings.due() {
            let retry_in_ms = pause.as_millis() as u64;
            let listener = self.what.as_str();
            if out_of_descriptors(error) {
                tracing::error!(%error, failures, retry_in_ms, listener,
                    "accepting connections failed: out of file descriptors; {}", self.remedy);
            } else {
                tracing::warn!(%error, failures, retry_in_ms, listener,
                    "accepting connections failed");
            }
        }
        pause
    }
}

fn out_of_descriptors(error: &io::Error) -> bool {
    [rustix::io::Errno::MFILE, rustix::io::Errno::NFILE]
        .iter()
        .any(|e| error.raw_os_error() == Some(e.raw_os_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn next_pauses_after_failures_and_ends_on_stop() {
        let mut b = AcceptBackoff::new("test", "raise the limit");
        let stop = CancellationToken::new();
        let mut tries = 0;
        let got = b
            .next(&stop, || {
                tries += 1;
                let result = match tries {
                    1..=3 => Err(io::Error::from(io::ErrorKind::ConnectionAborted)),
                    n => Ok(n),
                };
                std::future::ready(result)
            })
            .await;
        assert_eq!(got, Some(4));
        assert_eq!(b.pause, None, "an accepted connection resets the backoff");
        stop.cancel();
        let pending = b.next(&stop, std::future::pending::<io::Result<()>>).await;
        assert_eq!(pending, None);
    }

    #[test]
    fn pauses_double_to_a_second_and_reset_on_success() {
        let mut b = AcceptBackoff::new("test", "raise the limit");
        let e = io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        assert!(out_of_descriptors(&e));
        let pauses: Vec<u64> = (0..10).map(|_| b.failed(&e).as_millis() as u64).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.accepted();
        assert_eq!(b.failed(&e), FIRST_PAUSE);
    }
}
