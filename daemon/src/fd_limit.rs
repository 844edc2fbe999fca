//! Fitting the connection caps to the process's descriptor limit (`RLIMIT_NOFILE`). Each
//! client connection is a descriptor: caps above the limit mean `accept` fails with
//! EMFILE instead of a client being told 503. At start the soft limit is raised towards
//! the hard one as far as the caps need (as Go's runtime and nginx's
//! `worker_rlimit_nofile` do); if that is not enough, default caps are lowered to fit,
//! and caps set explicitly are kept with a warning.

use crate::config::ConnectionLimits;

/// Descriptors the daemon needs besides its clients: stdio, the runtime's, the listener,
/// the event socket, spool and cursor files, Redis; model calls add one each.
const RESERVE: usize = 32;

/// What fitting did, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// The limit was enough (after raising it from `raised_from`, if set).
    Fits {
        limit: u64,
        raised_from: Option<u64>,
    },
    /// Default caps lowered to fit `limit`.
    Lowered {
        limit: u64,
        connections: usize,
        pending: usize,
    },
    /// Caps set explicitly need more than `limit`: kept, `accept` may fail and back off.
    TooHigh { limit: u64, needed: u64 },
    /// The limit could not be read.
    Unknown,
}

/// Fits `limits` to the descriptor limit; `model_calls` is the global in-flight limit.
pub fn fit(limits: &mut ConnectionLimits, model_calls: usize) -> Fit {
    let reserve = RESERVE + model_calls;
    let needed = (limits.max_connections + limits.max_pending + reserve) as u64;
    let Some((soft, hard)) = read() else {
        return Fit::Unknown;
    };
    let mut limit = soft;
    let mut raised_from = None;
    if soft < needed && soft < hard {
        let wanted = needed.min(hard);
        if raise(wanted) {
            limit = wanted;
            raised_from = Some(soft);
        }
    }
    if limit >= needed {
        return Fit::Fits { limit, raised_from };
    }
    if !limits.caps_from_defaults {
        return Fit::TooHigh { limit, needed };
    }
    let available = (limit as usize).saturating_sub(reserve).max(2);
    limits.max_pending = limits.max_pending.min((available / 8).max(1));
    limits.max_connections = (available - limits.max_pending).max(1);
    Fit::Lowered {
        limit,
        connections: limits.max_connections,
        pending: limits.max_pending,
    }
}

impl Fit {
    /// One line at start saying what was done.
    pub fn log(&self) {
        match self {
            Fit::Fits { limit, raised_from: Some(from) } => tracing::info!(
                from, to = limit, "raised the soft descriptor limit (RLIMIT_NOFILE) to fit the connection caps"
            ),
            Fit::Fits { .. } | Fit::Unknown => {}
            Fit::Lowered { limit, connections, pending } => tracing::warn!(
                limit, max_connections = connections, max_pending_connections = pending,
                "the descriptor limit (RLIMIT_NOFILE) is below the default connection caps: lowered EXAI_WS_MAX_CONNECTIONS and EXAI_WS_MAX_PENDING_CONNECTIONS to fit; raise the limit (ulimit -n) for more"
            ),
            Fit::TooHigh { limit, needed } => tracing::warn!(
                limit, needed,
                "EXAI_WS_MAX_CONNECTIONS + EXAI_WS_MAX_PENDING_CONNECTIONS need more descriptors than RLIMIT_NOFILE allows: past it accept fails (and backs off) instead of answering 503; raise the limit (ulimit -n) or lower the settings"
            ),
        }
    }
}

#[cfg(unix)]
fn read() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    // rlim_t is u64 on the 64-bit targets, narrower on some 32-bit ones.
    #[allow(clippy::useless_conversion)]
    Some((u64::from(lim.rlim_cur), u64::from(lim.rlim_max)))
}

#[cfg(unix)]
fn raise(to: u64) -> bool {
    let Some((_, hard)) = read() else {
        return false;
    };
    let as_rlim = |n: u64| libc::rlim_t::try_from(n).unwrap_or(libc::RLIM_INFINITY);
    let lim = libc::rlimit {
        rlim_cur: as_rlim(to),
        rlim_max: as_rlim(hard),
    };
    // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard
    // one needs no privilege.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 }
}

#[cfg(not(unix))]
fn read() -> Option<(u64, u64)> {
    None
}

#[cfg(not(unix))]
fn raise(_: u64) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_limit_fits_or_the_defaults_are_lowered() {
        let mut limits = crate::config::DaemonConfig::load(&[("X", "1")], &Default::default())
            .unwrap()
            .server
            .limits;
        let fit = fit(&mut limits, 24);
        let (soft, _) = read().unwrap();
        match fit {
            Fit::Fits { limit, .. } => assert!(
                limit >= (limits.max_connections + limits.max_pending + RESERVE + 24) as u64
            ),
            Fit::Lowered { limit, .. } => {
                assert_eq!(limit, soft);
                assert!(
                    limits.max_connections + limits.max_pending + RESERVE + 24 <= soft as usize
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
