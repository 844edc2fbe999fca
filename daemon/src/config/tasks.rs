//! Bounds on tool calls run as tasks, and the lease by which a daemon shows it is still
//! running one.

use exai_process::settings::{SettingError, Settings};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct TaskConfig {
    /// Tasks kept at once, working or finished, over every owner (EXAI_TASKS_MAX).
    pub max: usize,
    /// Tasks one owner (an MCP session) may hold at once (EXAI_TASKS_MAX_PER_OWNER), so
    /// that one client cannot take every place; at most `max`.
    pub max_per_owner: usize,
    /// Longest a task is kept from its creation, and the default (EXAI_TASK_TTL_MAX_S).
    pub ttl_max: Duration,
    /// A working task whose daemon has not renewed its lease for this long is reported
    /// failed (EXAI_TASK_LEASE_MS): the longest a dead daemon's task reads "working".
    pub lease: Duration,
    /// How often the daemon running a task renews its lease, writes its progress and
    /// looks for a cancel made through another daemon (EXAI_TASK_RENEW_MS); at most half
    /// the lease, so one late renewal does not lose it.
    pub renew_every: Duration,
}

pub(super) fn load(s: &Settings) -> Result<TaskConfig, SettingError> {
    let max = s.get_checked("EXAI_TASKS_MAX", None, 64usize, |n| match n {
        1..=10_000 => Ok(()),
        _ => Err("expected 1 to 10000 tasks".into()),
    })?;
    let max_per_owner = s.get_checked("EXAI_TASKS_MAX_PER_OWNER", None, 16usize, |n| match n {
        1..=10_000 => Ok(()),
        _ => Err("expected 1 to 10000 tasks".into()),
    })?;
    let ttl_max =
        Duration::from_secs(
            s.get_checked("EXAI_TASK_TTL_MAX_S", None, 3600u64, |n| match n {
                1..=86_400 => Ok(()),
                _ => Err("expected 1 to 86400 seconds".into()),
            })?,
        );
    let lease = s.get_checked("EXAI_TASK_LEASE_MS", None, 5000u64, |n| match n {
        200..=600_000 => Ok(()),
        _ => Err("expected 200 to 600000 ms".into()),
    })?;
    let renew = s.get_checked("EXAI_TASK_RENEW_MS", None, 1000u64.min(lease / 2), |n| {
        if (50..=lease / 2).contains(n) {
            Ok(())
        } else {
            Err(format!(
                "expected 50 ms to half of EXAI_TASK_LEASE_MS ({} ms)",
                lease / 2
            ))
        }
    })?;
    Ok(TaskConfig {
        max,
        // A quota above the whole store would never bind.
        max_per_owner: max_per_owner.min(max),
        ttl_max,
        lease: Duration::from_millis(lease),
        renew_every: Duration::from_millis(renew),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_from<const N: usize>(env: [(&str, &str); N]) -> Result<TaskConfig, SettingError> {
        load(&Settings::new(&env))
    }

    #[test]
    fn the_defaults_bound_each_owner_and_renew_five_times_a_lease() {
        let config = load_from([]).unwrap();
        assert_eq!(
            config,
            TaskConfig {
                max: 64,
                max_per_owner: 16,
                ttl_max: Duration::from_secs(3600),
                lease: Duration::from_secs(5),
                renew_every: Duration::from_secs(1),
            }
        );
    }

    #[test]
    fn a_quota_above_the_store_is_the_store() {
        let config = load_from([("EXAI_TASKS_MAX", "4")]).unwrap();
        assert_eq!((config.max, config.max_per_owner), (4, 4));
    }

    #[test]
    fn a_renewal_must_come_at_least_twice_a_lease() {
        let short = load_from([("EXAI_TASK_LEASE_MS", "600")]).unwrap();
        assert_eq!(short.renew_every, Duration::from_millis(300));
        let err = load_from([
            ("EXAI_TASK_LEASE_MS", "1000"),
            ("EXAI_TASK_RENEW_MS", "800"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("EXAI_TASK_RENEW_MS=\"800\": expected 50 ms to half"),
            "{err}"
        );
        assert!(load_from([("EXAI_TASKS_MAX_PER_OWNER", "0")]).is_err());
    }
}
