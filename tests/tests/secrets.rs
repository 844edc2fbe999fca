//! No credential reaches a log line, the `status` tool or an error a client sees, in
//! whatever form a URL carries it (userinfo, `?pass=`, `?password=`); and the spool of
//! users' conversations is private (directory 0700, files 0600) even when it existed
//! with looser modes.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::fake_postgrest::FakePostgrest;
use exai_tests::mcp::{self, result_text};
use exai_tests::{wait_for, Daemon, PATIENCE};
use serde_json::json;
use std::process::{Child, Command, Stdio};

const REDIS_PASS: &str = "redis-pass-7f3a91";
const KIMI_PASS: &str = "kimi-url-pass-c02e5b";
const SUPABASE_PASS: &str = "supabase-url-pass-41be0c";

/// A `redis-server` on a Unix socket that wants a password.
struct UnixRedis {
    child: Child,
    socket: std::path::PathBuf,
}

impl UnixRedis {
    fn start(dir: &std::path::Path) -> Self {
        let socket = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--requirepass", REDIS_PASS])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (tests/run.sh installs it)");
        wait_for("redis-server's socket", PATIENCE, || {
            socket.exists().then_some(())
        });
        Self { child, socket }
    }
}

impl Drop for UnixRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn no_credential_form_reaches_a_log_status_or_error_and_the_spool_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let redis = UnixRedis::start(dir.path());
    let llm = FakeLlmProc::start(&[]);
    let fake = FakePostgrest::start();
    // A spool directory that exists already, with the modes a umask of 022 gives.
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let closed_port = exai_tests::free_port();

    let daemon = Daemon::start_with(
        &dir.path().join("events.sock"),
        &[
            ("EXAI_LOG", "trace".to_string()),
            (
                "REDIS_URL",
                format!("unix://{}?db=0&pass={REDIS_PASS}", redis.socket.display()),
            ),
            ("KIMI_API_KEY", "test-kimi-key".to_string()),
            (
                "KIMI_API_URL",
                format!("http://kimi-user:{KIMI_PASS}@127.0.0.1:{closed_port}/v1"),
            ),
            ("GLM_API_KEY", "test-glm-key".to_string()),
            (
                "GLM_API_URL",
                format!("http://127.0.0.1:{}/api/paas/v4", llm.port),
            ),
            (
                "SUPABASE_URL",
                format!("http://sb:{SUPABASE_PASS}@127.0.0.1:{}", fake.port()),
            ),
            ("SUPABASE_SERVICE_ROLE_KEY", fake.key().to_string()),
            ("EXAI_SPOOL_DIR", spool.display().to_string()),
            ("EXAI_PROVIDER_MAX_ATTEMPTS", "1".to_string()),
        ],
    );
    daemon
        .proc
        .wait_for_log("Redis reachable; conversations are kept there");

    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    let answered = ws.call_tool("chat", json!({"prompt": "kept", "model": "glm-4.5-flash"}));
    assert_eq!(answered["result"]["isError"], false, "{answered}");
    let failed = ws.call_tool("chat", json!({"prompt": "lost", "model": "kimi-k2"}));
    assert_eq!(failed["result"]["isError"], true, "{failed}");
    let failure = result_text(&failed);
    assert!(failure.contains("cannot connect"), "{failure}");
    let status = ws.call_tool("status", json!({}));
    let status_text = status.to_string();
    assert!(
        status_text.contains("[redacted]@127.0.0.1"),
        "status still says where each provider is: {status_text}"
    );
    // The uploader met Supabase and logged what it answered (reqwest turns a URL's
    // userinfo into Basic authorization, which the fake refuses).
    wait_for("an upload attempt", PATIENCE, || {
        (fake.stats().requests > 0).then_some(())
    });
    daemon
        .proc
        .wait_for_log("Supabase rejected the service role key");

    let secrets = [REDIS_PASS, KIMI_PASS, SUPABASE_PASS];
    for secret in secrets {
        assert!(!failure.contains(secret), "{secret} in an error: {failure}");
        assert!(!status_text.contains(secret), "{secret} in status");
        let leaked: Vec<String> = daemon
            .proc
            .log()
            .into_iter()
            .filter(|l| l.contains(secret))
            .collect();
        assert!(leaked.is_empty(), "{secret} reached the log: {leaked:?}");
    }

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spool), 0o700, "the spool directory");
    let files: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty());
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}
