//! `compose/docker-compose.yml` on a real Docker engine, for `tests/tests/compose.rs` and
//! `tests/tests/compose_fleet.rs`: which Compose tool this machine has, the images the
//! stack needs (built here, since no registry can be reached), the variables a test run
//! gives the files, a project that takes itself down with its volumes when dropped, a
//! load of chats that counts what failed, and what HAProxy's statistics say.

mod balancer;
mod images;
mod load;
mod project;

pub use balancer::{BalancerStats, ServerRow};
pub use images::{ensure_images, Images};
pub use load::{ChatLoad, Failure, LoadResult};
pub use project::Project;

use crate::fake_postgrest::FakePostgrest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The Compose tool, or `None` after saying why the test is skipped: no engine answers.
/// With EXAI_REQUIRE_DOCKER=1 (set by .ci/run) a missing engine fails the test instead.
pub fn tool_or_skip(test: &str) -> Option<ComposeTool> {
    match detect() {
        Ok(tool) => Some(tool),
        Err(why) if std::env::var("EXAI_REQUIRE_DOCKER").as_deref() == Ok("1") => {
            panic!("EXAI_REQUIRE_DOCKER=1, but {why}")
        }
        Err(why) => {
            show(&format!(
                "{test} skipped: {why} (EXAI_REQUIRE_DOCKER=1 makes this a failure)\n"
            ));
            None
        }
    }
}

/// Writes to stderr past the test harness's capture, so a table shows in a passing run.
pub fn show(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// The repository's root, where `compose/` is.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository's root")
        .to_path_buf()
}

/// `NAME=value` lines of compose/.env.example.
pub fn example_env() -> BTreeMap<String, String> {
    std::fs::read_to_string(repo().join("compose/.env.example"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The example's defaults, with the test's images, the stand-ins for the providers and
/// Supabase (tests/compose/fakes.yml), and every host port left to Docker (other programs
/// on this machine may hold 8079, 8000, …).
pub fn test_variables(images: &Images, bin_dir: &Path) -> Vec<(String, String)> {
    let mut env = example_env();
    let test_values = [
        ("EXAI_IMAGE", images.exai.clone()),
        ("EXAI_REDIS_IMAGE", images.redis.clone()),
        ("EXAI_PROMETHEUS_IMAGE", images.prometheus.clone()),
        ("EXAI_HAPROXY_IMAGE", images.haproxy.clone()),
        ("EXAI_DAEMON_PORT", String::new()),
        ("EXAI_METRICS_PORT", String::new()),
        ("EXAI_DASHBOARD_PORT", String::new()),
        ("EXAI_HEALTH_PORT", String::new()),
        ("EXAI_PROMETHEUS_PORT", String::new()),
        ("EXAI_BALANCER_PORT", String::new()),
        ("EXAI_BALANCER_STATS_PORT", String::new()),
        ("GLM_API_KEY", "test-glm-key".into()),
        ("GLM_API_URL", "http://fake-llm:8090/api/paas/v4".into()),
        ("KIMI_API_KEY", "test-kimi-key".into()),
        ("KIMI_API_URL", "http://fake-llm:8090/v1".into()),
        ("SUPABASE_URL", "http://fake-postgrest:8091".into()),
        ("SUPABASE_SERVICE_ROLE_KEY", FakePostgrest::KEY.into()),
        ("EXAI_TEST_BASE_IMAGE", images.base.clone()),
        (
            "EXAI_TEST_FAKE_LLM",
            bin_dir.join("fake-llm").display().to_string(),
        ),
        (
            "EXAI_TEST_FAKE_POSTGREST",
            bin_dir.join("fake-postgrest").display().to_string(),
        ),
    ];
    for (k, v) in test_values {
        env.insert(k.to_string(), v);
    }
    env.into_iter().collect()
}

/// How Compose is run here: the `docker compose` plugin when it works, else the older
/// standalone `docker-compose` (1.29 on Debian 12), which reads the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeTool {
    Plugin,
    Standalone,
}

impl ComposeTool {
    pub fn command(self) -> Command {
        match self {
            Self::Plugin => {
                let mut cmd = Command::new("docker");
                cmd.arg("compose");
                cmd
            }
            Self::Standalone => Command::new("docker-compose"),
        }
    }

    pub fn spelling(self) -> &'static str {
        match self {
            Self::Plugin => "docker compose",
            Self::Standalone => "docker-compose",
        }
    }
}

/// The Compose tool, when a Docker engine answers and a tool is installed; otherwise why
/// not, in words for a skip message.
pub fn detect() -> Result<ComposeTool, String> {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(format!(
                "no Docker engine answers (docker info: {})",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
        Err(e) => return Err(format!("no docker command ({e})")),
    }
    if succeeds(Command::new("docker").args(["compose", "version"])) {
        Ok(ComposeTool::Plugin)
    } else if succeeds(Command::new("docker-compose").arg("version")) {
        Ok(ComposeTool::Standalone)
    } else {
        Err("neither `docker compose` nor `docker-compose` is installed".into())
    }
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|out| out.status.success())
}

/// Runs `cmd`; its stdout, or a panic that shows what it said.
pub(crate) fn run(cmd: &mut Command) -> String {
    match try_run(cmd) {
        Ok(stdout) => stdout,
        Err(said) => panic!("{said}"),
    }
}

/// Runs `cmd`; its stdout, or everything it said when it failed.
pub(crate) fn try_run(cmd: &mut Command) -> Result<String, String> {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The directory of this run's binaries and every image built from them (or cached):
/// what a compose test starts from.
pub fn built_images() -> (PathBuf, Images) {
    let bin_dir = crate::process::bin_path("exai-daemon")
        .parent()
        .expect("binary directory")
        .to_path_buf();
    let images = ensure_images(&repo(), &bin_dir);
    (bin_dir, images)
}

/// `docker ARGS`: its stdout; a failure panics with what it said.
pub fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args))
}

/// Everything container `id` wrote to stdout and stderr, every run of it.
pub fn docker_logs(id: &str) -> String {
    let out = Command::new("docker")
        .args(["logs", id])
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker logs {id}: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `docker inspect -f FORMAT ID`, trimmed.
pub fn inspect(id: &str, format: &str) -> String {
    run(Command::new("docker").args(["inspect", "-f", format, id]))
        .trim()
        .to_string()
}

/// `docker volume inspect -f FORMAT NAME`, trimmed.
pub fn inspect_volume(name: &str, format: &str) -> String {
    run(Command::new("docker").args(["volume", "inspect", "-f", format, name]))
        .trim()
        .to_string()
}
