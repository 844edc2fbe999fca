//! Both binaries validate their settings at start: a bad value or a taken port exits
//! non-zero with a message naming the setting and the value.

use exai_tests::process::bin_path;
use exai_tests::{Agent, Daemon};
use std::process::Command;

fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(bin_path(bin))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn both_binaries_have_help_that_names_their_variables() {
    let out = Command::new(bin_path("exai-agent"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for name in [
        "EXAI_EVENTS_SOCKET",
        "METRICS_PORT",
        "METRICS_HOST",
        "METRICS_ENABLED",
    ] {
        assert!(help.contains(name), "agent --help lacks {name}:\n{help}");
    }
    let out = Command::new(bin_path("exai-daemon"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(help.contains("EXAI_EVENTS_SOCKET"), "{help}");
}

#[test]
fn a_bad_value_exits_non_zero_naming_variable_and_value() {
    let (code, err) = run("exai-agent", &[], &[("METRICS_PORT", "eighty")]);
    assert_eq!(code, 2);
    assert!(err.contains("METRICS_PORT=\"eighty\""), "{err}");

    let (code, err) = run("exai-agent", &["--metrics-port", "70000"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--metrics-port=\"70000\" (overriding METRICS_PORT)"),
        "{err}"
    );

    let (code, err) = run("exai-daemon", &[], &[("EXAI_SAMPLE_WS_MESSAGES", "often")]);
    assert_eq!(code, 2);
    assert!(err.contains("EXAI_SAMPLE_WS_MESSAGES=\"often\""), "{err}");
}

#[test]
fn a_taken_port_exits_non_zero_naming_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let (code, err) = run(
        "exai-agent",
        &[],
        &[
            ("METRICS_PORT", &port),
            ("EXAI_EVENTS_SOCKET", socket.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("cannot bind METRICS_PORT 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn the_daemon_names_a_taken_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let (code, err) = run(
        "exai-daemon",
        &[],
        &[
            ("EXAI_WS_PORT", &port),
            ("EXAI_EVENTS_SOCKET", socket.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("cannot bind EXAI_WS_PORT 127.0.0.1:{port}")),
        "{err}"
    );
    let (code, err) = run("exai-daemon", &["--ws-port", "99999"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--ws-port=\"99999\" (overriding EXAI_WS_PORT)"),
        "{err}"
    );
}

#[test]
fn a_live_agents_socket_is_not_stolen_and_a_stale_one_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sub").join("events.sock");
    let mut first = Agent::start(&socket);
    {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let dir_mode = std::fs::metadata(socket.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700, "socket directory mode");
        let meta = std::fs::symlink_metadata(&socket).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660, "socket mode");
    }
    let (code, err) = run(
        "exai-agent",
        &[],
        &[
            ("METRICS_PORT", "0"),
            ("EXAI_EVENTS_SOCKET", socket.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("another agent is already listening there"),
        "{err}"
    );

    // SIGKILL leaves the socket file behind; the next agent removes it and serves.
    first.proc.kill_hard();
    assert!(socket.exists(), "a killed agent leaves its socket file");
    let second = Agent::start(&socket);
    second.proc.wait_for_log("removing stale socket");
    let daemon = Daemon::start(&socket);
    second.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &daemon.name)],
        |v| v >= 1.0,
    );
}

#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sock");
    std::fs::write(&path, "precious").unwrap();
    let (code, err) = run(
        "exai-agent",
        &[],
        &[
            ("METRICS_PORT", "0"),
            ("EXAI_EVENTS_SOCKET", path.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("exists and is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

/// Whoever can write in the socket's directory can put their own socket in its place and
/// receive every daemon's events: the agent refuses such a directory, naming it.
#[test]
fn a_socket_directory_others_can_write_to_or_own_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let open = parent.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = open.join("events.sock");
    let env = [
        ("METRICS_PORT", "0"),
        ("HEALTH_CHECK_PORT", "0"),
        ("MONITORING_PORT", "0"),
    ];
    let with_socket = |socket: &std::path::Path| {
        let mut env = env.to_vec();
        env.push(("EXAI_EVENTS_SOCKET", socket.to_str().unwrap()));
        run("exai-agent", &[], &env)
    };
    let (code, err) = with_socket(&socket);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&open.display().to_string()), "{err}");
    assert!(err.contains("writable by every user (mode 777)"), "{err}");
    assert!(!socket.exists());

    // Another user's directory (the tests run as root, so it can be given away).
    let theirs = parent.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
    let status = Command::new("chown")
        .arg("65534")
        .arg(&theirs)
        .status()
        .unwrap();
    assert!(status.success(), "chown needs root");
    let (code, err) = with_socket(&theirs.join("events.sock"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("belongs to uid 65534"), "{err}");

    // A directory of its own, closed to others, is used as it is.
    let mine = parent.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o750)).unwrap();
    let mut agent = Agent::start(&mine.join("events.sock"));
    assert!(agent.proc.is_running());
}
