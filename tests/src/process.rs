//! The real `exai-agent` and `exai-daemon` binaries as child processes.

use crate::metrics::Scrape;
use crate::{wait_for, PATIENCE};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Where cargo put the workspace binaries: next to the test executable's `deps/`.
pub fn bin_path(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("EXAI_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A child process whose stderr is collected line by line.
pub struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    name: &'static str,
}

impl Proc {
    pub fn spawn(name: &'static str, args: &[&str], env: &[(&str, String)]) -> Self {
        Self::spawn_with_nofile(name, args, env, None)
    }

    /// Like [`Proc::spawn`], with the open-file limit (soft and hard) set to `nofile` by
    /// `prlimit`, which then runs the binary in its place (same pid).
    pub fn spawn_with_nofile(
        name: &'static str,
        args: &[&str],
        env: &[(&str, String)],
        nofile: Option<u64>,
    ) -> Self {
        let mut cmd = match nofile {
            Some(n) => {
                let mut cmd = Command::new("prlimit");
                cmd.arg(format!("--nofile={n}:{n}")).arg(bin_path(name));
                cmd
            }
            None => Command::new(bin_path(name)),
        };
        cmd.args(args);
        cmd.env("EXAI_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn_command(name, cmd)
    }

    /// Starts any program (a Prometheus server, say), collecting its stderr.
    pub fn spawn_command(name: &'static str, mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("EXAI_TEST_ECHO").is_some() {
                    eprintln!("[{name}] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, log, name }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The first log line containing `needle`, waiting for it to appear.
    pub fn wait_for_log(&self, needle: &str) -> String {
        wait_for(
            &format!("{} to log {needle:?}", self.name),
            PATIENCE,
            || {
                self.log
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|l| l.contains(needle))
                    .cloned()
            },
        )
    }

    pub fn count_log(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_term();
        self.child.wait().expect("wait for child")
    }

    /// SIGTERM, without waiting: the process goes on with its shutdown (a daemon's
    /// drain first).
    pub fn send_term(&self) {
        // SAFETY: signalling our own child by pid; not yet waited for, the pid is still its.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// True when the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        wait_for(&format!("{} to exit", self.name), PATIENCE, || {
            self.child.try_wait().ok().flatten()
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running agent listening on `socket`, with metrics on a free port.
pub struct Agent {
    pub proc: Proc,
    pub metrics_port: u16,
    /// `None` when the agent was started with `HEALTH_CHECK_ENABLED=false`.
    pub health_port: Option<u16>,
    /// `None` when the agent was started with `MONITORING_ENABLED=false`.
    pub dashboard_port: Option<u16>,
}

impl Agent {
    pub fn start(socket: &Path) -> Self {
        Self::start_with(socket, &[])
    }

    pub fn start_with(socket: &Path, env: &[(&str, String)]) -> Self {
        Self::start_with_nofile(socket, env, None)
    }

    /// An agent whose open-file limit is `nofile` (see [`Proc::spawn_with_nofile`]).
    pub fn start_with_nofile(socket: &Path, env: &[(&str, String)], nofile: Option<u64>) -> Self {
        let mut all = vec![
            ("EXAI_EVENTS_SOCKET", socket.display().to_string()),
            ("METRICS_PORT", "0".to_string()),
            ("HEALTH_CHECK_PORT", "0".to_string()),
            ("MONITORING_PORT", "0".to_string()),
            // How full the test machine's disk is is not what a test is about: the disk
            // test gives its own path and thresholds, which override these.
            ("EXAI_HEALTH_DISK_DEGRADED_PERCENT", "99".to_string()),
            ("EXAI_HEALTH_DISK_UNHEALTHY_PERCENT", "100".to_string()),
        ];
        all.extend(env.iter().cloned());
        let proc = Proc::spawn_with_nofile("exai-agent", &[], &all, nofile);
        let enabled = |var: &str| {
            env.iter()
                .rfind(|(k, _)| *k == var)
                .is_none_or(|(_, v)| v != "false")
        };
        let port_of = |what: &str| {
            let line = proc.wait_for_log(what);
            line.rsplit(':')
                .next()
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("no port in {line:?}"))
        };
        let metrics_port = port_of("metrics listening");
        let health_port = enabled("HEALTH_CHECK_ENABLED").then(|| port_of("health listening"));
        let dashboard_port = enabled("MONITORING_ENABLED").then(|| port_of("dashboard listening"));
        proc.wait_for_log("listening for daemons");
        Self {
            proc,
            metrics_port,
            health_port,
            dashboard_port,
        }
    }

    /// `GET path` on the health port: status code and body.
    pub fn health(&self, path: &str) -> (u16, String) {
        let port = self.health_port.expect("health checks are enabled");
        crate::metrics::http_get(port, path)
            .unwrap_or_else(|| panic!("the agent's health port did not answer GET {path}"))
    }

    /// A scrape of the agent's metrics; an agent that does not answer fails the test, so
    /// a dead agent cannot pass for one reporting zeros.
    pub fn scrape(&self) -> Scrape {
        let scrape = Scrape::get(self.metrics_port);
        assert!(
            scrape.text.contains("exai_build_info"),
            "the agent's /metrics did not answer"
        );
        scrape
    }

    /// Waits until the scraped metric (summed over matching series) satisfies `ok`.
    pub fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        ok: impl Fn(f64) -> bool,
    ) -> f64 {
        wait_for(&format!("agent metric {name}{labels:?}"), PATIENCE, || {
            let v = self.scrape().sum(name, labels);
            ok(v).then_some(v)
        })
    }
}

/// A running daemon pointed at `socket`, serving MCP on a free port.
pub struct Daemon {
    pub proc: Proc,
    pub instance_id: String,
    /// Its `daemon` label in the agent's metrics (by default host name and port).
    pub name: String,
    pub mcp_port: u16,
}

impl Daemon {
    pub fn start(socket: &Path) -> Self {
        Self::start_with(socket, &[])
    }

    pub fn start_with(socket: &Path, env: &[(&str, String)]) -> Self {
        Self::start_with_nofile(socket, env, None)
    }

    /// A daemon whose open-file limit is `nofile` (see [`Proc::spawn_with_nofile`]).
    pub fn start_with_nofile(socket: &Path, env: &[(&str, String)], nofile: Option<u64>) -> Self {
        let mut all = vec![
            ("EXAI_EVENTS_SOCKET", socket.display().to_string()),
            ("EXAI_WS_PORT", "0".to_string()),
            // No balancer watches a test's daemon: SIGTERM stops it at once, unless a
            // test about the drain sets its own.
            ("EXAI_DRAIN_S", "0".to_string()),
        ];
        all.extend(env.iter().cloned());
        let proc = Proc::spawn_with_nofile("exai-daemon", &[], &all, nofile);
        let line = proc.wait_for_log("exai-daemon starting");
        let instance_id =
            field(&line, "instance").unwrap_or_else(|| panic!("no instance in {line:?}"));
        let name = field(&line, "daemon").unwrap_or_else(|| panic!("no daemon name in {line:?}"));
        let line = proc.wait_for_log("MCP listening");
        let mcp_port = field(&line, "addr")
            .and_then(|a| a.rsplit(':').next().and_then(|p| p.parse().ok()))
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Self {
            proc,
            instance_id,
            name,
            mcp_port,
        }
    }

    /// A daemon whose Kimi and GLM both point at the fake provider on `llm_port`.
    pub fn with_llm(socket: &Path, llm_port: u16, env: &[(&str, String)]) -> Self {
        let mut all = vec![
            ("GLM_API_KEY", "test-glm-key".to_string()),
            (
                "GLM_API_URL",
                format!("http://127.0.0.1:{llm_port}/api/paas/v4"),
            ),
            ("KIMI_API_KEY", "test-kimi-key".to_string()),
            ("KIMI_API_URL", format!("http://127.0.0.1:{llm_port}/v1")),
        ];
        all.extend(env.iter().cloned());
        Self::start_with(socket, &all)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/mcp", self.mcp_port)
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.mcp_port)
    }
}

/// Runs a scenario of `tests/py/mcp_client.py` with the official MCP Python SDK 1.x and
/// returns the JSON objects it printed, by `step`.
pub fn python_sdk(args: &[&str]) -> std::collections::BTreeMap<String, serde_json::Value> {
    python("mcp_client.py", args)
}

/// Runs a scenario of `tests/py/mcp2_client.py` with the MCP Python SDK 2.x (its own
/// venv, `tests/.venv-mcp2`): Streamable HTTP only.
pub fn python_sdk2(args: &[&str]) -> std::collections::BTreeMap<String, serde_json::Value> {
    python_in(
        ".venv-mcp2",
        "requirements-mcp2.txt",
        "mcp2_client.py",
        args,
    )
}

/// Runs `tests/py/<script>` in the test venv; its JSON lines, keyed by their `step`.
pub fn python(
    script: &str,
    args: &[&str],
) -> std::collections::BTreeMap<String, serde_json::Value> {
    python_in(".venv", "requirements.txt", script, args)
}

fn python_in(
    venv: &str,
    requirements: &str,
    script: &str,
    args: &[&str],
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(venv).join("bin/python");
    assert!(
        python.exists(),
        "{} missing: tests/run.sh creates it (python3 -m venv tests/{venv}; pip install -r tests/py/{requirements})",
        python.display()
    );
    let out = Command::new(python)
        .arg("-W")
        .arg("ignore::DeprecationWarning")
        .arg(root.join("py").join(script))
        .args(args)
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python {script} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| (v["step"].as_str().unwrap_or_default().to_string(), v))
        .collect()
}

/// The value of `key=value` in a log line.
pub fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    let rest = &line[start..];
    Some(
        rest.split_whitespace()
            .next()?
            .trim_matches('"')
            .to_string(),
    )
}
