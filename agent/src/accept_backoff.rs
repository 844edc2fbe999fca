//! What an accept loop does when `accept` fails: most often the process is out of file
//! descriptors (EMFILE), and the connection stays in the kernel's backlog, so trying
//! again at once fails again at once — a core spinning and a log line each time. It
//! backs off instead, 5 ms doubling to 1 s (as Go's net/http does), and logs at most one
//! line a second saying how many failed.

use std::io;
use std::time::{Duration, Instant};

const FIRST_PAUSE: Duration = Duration::from_millis(5);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct AcceptBackoff {
    pause: Option<Duration>,
    /// Failures since the last line logged, and when it was.
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl AcceptBackoff {
    /// A connection was accepted: the next failure starts the backoff afresh.
    pub fn accepted(&mut self) {
        self.pause = None;
    }

    /// Records a failed `accept` on `what` and returns how long to wait before the next,
    /// logging if a second has passed since the last line.
    pub fn failed(&mut self, what: &str, error: &io::Error) -> Duration {
        let pause = match self.pause {
            None => FIRST_PAUSE,
            Some(p) => (p * 2).min(LONGEST_PAUSE),
        };
        self.pause = Some(pause);
        self.unlogged += 1;
        if self.logged_at.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            self.logged_at = Some(Instant::now());
            let failures = std::mem::take(&mut self.unlogged);
            let retry_in_ms = pause.as_millis() as u64;
            let out_of_descriptors = [rustix::io::Errno::MFILE, rustix::io::Errno::NFILE]
                .iter()
                .any(|e| error.raw_os_error() == Some(e.raw_os_error()));
            if out_of_descriptors {
                tracing::error!(%error, failures, retry_in_ms, listener = what,
                    "accepting connections failed: out of file descriptors; raise the limit (ulimit -n)");
            } else {
                tracing::warn!(%error, failures, retry_in_ms, listener = what,
                    "accepting connections failed");
            }
        }
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_to_a_second_and_reset_on_success() {
        let mut b = AcceptBackoff::default();
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<u64> = (0..10)
            .map(|_| b.failed("test", &e).as_millis() as u64)
            .collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.accepted();
        assert_eq!(b.failed("test", &e), FIRST_PAUSE);
    }
}
