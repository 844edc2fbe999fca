//! Supabase persistence end to end, against `fake-postgrest`: turns spooled while
//! Supabase is down arrive once it is back, exactly once; a daemon killed with records in
//! its spool sends them after a restart; a rejected key is reported, not hammered; the
//! key never shows.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::fake_postgrest::{FakePostgrest, Fault};
use exai_tests::mcp::{self, RawWs};
use exai_tests::{wait_for, Agent, Daemon, PATIENCE};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// Chats spread over this many sessions at once.
const SESSIONS: usize = 4;

fn start_daemon(
    dir: &Path,
    llm: &FakeLlmProc,
    supabase: &FakePostgrest,
    key: &str,
    env: &[(&str, &str)],
) -> Daemon {
    let mut all = vec![
        ("SUPABASE_URL", supabase.url()),
        ("SUPABASE_SERVICE_ROLE_KEY", key.to_string()),
        ("EXAI_SPOOL_DIR", dir.join("spool").display().to_string()),
        ("EXAI_SUPABASE_TIMEOUT_SECS", "2".to_string()),
    ];
    all.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    Daemon::with_llm(&dir.join("events.sock"), llm.port, &all)
}

fn session(daemon: &Daemon) -> RawWs {
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    ws
}

/// `count` chats named `<tag>-<n>`, over [`SESSIONS`] sessions; each session starts a
/// new conversation every 5 turns. Returns the prompts sent.
fn chats(daemon: &Daemon, tag: &str, count: usize) -> BTreeSet<String> {
    let url = daemon.ws_url();
    let workers: Vec<_> = (0..SESSIONS)
        .map(|s| {
            let url = url.clone();
            let tag = tag.to_string();
            std::thread::spawn(move || {
                let mut ws = mcp::connect(&url, &[]).unwrap();
                ws.initialize("2025-11-25");
                let mut sent = Vec::new();
                let mut conversation: Option<String> = None;
                for n in (s..count).step_by(SESSIONS) {
                    let prompt = format!("{tag}-{n}");
                    let mut args = json!({"prompt": prompt});
                    if let Some(id) = &conversation {
                        args["continuation_id"] = id.clone().into();
                    }
                    let result = ws.call_tool("chat", args)["result"].clone();
                    assert_eq!(result["isError"], false, "{result}");
                    conversation = match sent.len() % 5 {
                        4 => None,
                        _ => Some(
                            result["_meta"]["continuation_id"]
                                .as_str()
                                .unwrap()
                                .to_string(),
                        ),
                    };
                    sent.push(prompt);
                }
                sent
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().expect("chat worker"))
        .collect()
}

fn supabase_status(ws: &mut RawWs) -> Value {
    ws.call_tool("status", json!({}))["result"]["structuredContent"]["supabase"].clone()
}

fn wait_spool(ws: &mut RawWs, records: u64) {
    wait_for(&format!("{records} records in the spool"), PATIENCE, || {
        (supabase_status(ws)["spool_records"] == records).then_some(())
    });
}

/// Waits until `fake` holds `turns` turns, then checks each prompt arrived exactly once
/// with its answer, and no message row was ever written twice.
fn assert_arrived_exactly_once(fake: &FakePostgrest, prompts: &BTreeSet<String>) {
    let turns = prompts.len() as u64;
    wait_for(&format!("{turns} turns upstream"), PATIENCE * 2, || {
        (fake.stats().tables["messages"].rows >= 2 * turns).then_some(())
    });
    let users = fake.rows("messages", &[("role", "user")]);
    let answers = fake.rows("messages", &[("role", "assistant")]);
    assert_eq!((users.len(), answers.len()), (prompts.len(), prompts.len()));
    let contents: BTreeSet<String> = users
        .iter()
        .map(|r| r["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(&contents, prompts);
    let answered: BTreeSet<String> = answers
        .iter()
        .map(|r| r["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        answered,
        prompts.iter().map(|p| format!("echo: {p}")).collect()
    );
    let stats = fake.stats();
    assert_eq!(stats.tables["messages"].duplicates, 0, "{stats:?}");
    // Every message belongs to a conversation that arrived.
    let conversations: BTreeSet<String> = fake
        .rows("conversations", &[])
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(users
        .iter()
        .all(|m| conversations.contains(m["conversation_id"].as_str().unwrap())));
}

fn assert_key_never_shown(daemon: &Daemon, key: &str) {
    let leaked: Vec<String> = daemon
        .proc
        .log()
        .into_iter()
        .filter(|l| l.contains(key))
        .collect();
    assert!(
        leaked.is_empty(),
        "the service role key reached the log: {leaked:?}"
    );
}

#[test]
fn turns_spooled_through_an_outage_arrive_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("events.sock"));
    let llm = FakeLlmProc::start(&[]);
    let fake = FakePostgrest::start();
    let daemon = start_daemon(
        dir.path(),
        &llm,
        &fake,
        fake.key(),
        &[("EXAI_SUPABASE_BATCH", "40")],
    );
    let mut ws = session(&daemon);

    let mut prompts = chats(&daemon, "before", 150);
    fake.set_fault(Some(Fault::Unavailable));
    prompts.extend(chats(&daemon, "during", 200));
    wait_for("uploads to meet the outage", PATIENCE, || {
        (fake.stats().by_status.get("503").copied().unwrap_or(0) >= 2).then_some(())
    });
    assert!(supabase_status(&mut ws)["spool_records"].as_u64().unwrap() > 0);
    fake.set_fault(None);
    prompts.extend(chats(&daemon, "after", 150));
    assert_eq!(prompts.len(), 500);

    assert_arrived_exactly_once(&fake, &prompts);
    wait_spool(&mut ws, 0);
    let status = supabase_status(&mut ws);
    assert_eq!(status["uploaded"], 500, "{status}");
    assert_eq!(status["failing"], Value::Null);
    daemon.proc.wait_for_log("Supabase upload failed (HTTP 503");
    daemon.proc.wait_for_log("Supabase uploads resumed");
    // Every request counted, the failed ones as retries; the spool drained.
    agent.wait_metric(
        "mcp_supabase_operations_total",
        &[("table", "messages"), ("result", "ok")],
        |v| v >= 1.0,
    );
    agent.wait_metric(
        "mcp_supabase_operations_total",
        &[("result", "retry")],
        |v| v >= 2.0,
    );
    agent.wait_metric("mcp_supabase_spool_depth", &[], |v| v == 0.0);
    assert_key_never_shown(&daemon, fake.key());
}

#[test]
fn a_daemon_killed_with_records_in_its_spool_sends_them_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let fake = FakePostgrest::start();
    let mut daemon = start_daemon(dir.path(), &llm, &fake, fake.key(), &[]);
    let mut ws = session(&daemon);

    let mut prompts = chats(&daemon, "sent", 250);
    assert_arrived_exactly_once(&fake, &prompts);
    wait_spool(&mut ws, 0);
    // Uploads stall: requests are taken and never answered.
    fake.set_fault(Some(Fault::Stall));
    prompts.extend(chats(&daemon, "spooled", 250));
    wait_spool(&mut ws, 250);
    drop(ws);
    daemon.proc.kill_hard();

    fake.set_fault(None);
    let daemon = start_daemon(dir.path(), &llm, &fake, fake.key(), &[]);
    let line = daemon.proc.wait_for_log("Supabase persistence on");
    assert!(line.contains("records_waiting=250"), "{line}");
    assert_arrived_exactly_once(&fake, &prompts);
    let mut ws = session(&daemon);
    wait_spool(&mut ws, 0);
    assert_key_never_shown(&daemon, fake.key());
}

#[test]
fn a_rejected_key_is_reported_once_and_not_retried_in_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let fake = FakePostgrest::start();
    let wrong = "wrong-service-role-key-a41b7c";
    let daemon = start_daemon(dir.path(), &llm, &fake, wrong, &[]);
    let mut ws = session(&daemon);
    chats(&daemon, "first", 1);
    let line = daemon
        .proc
        .wait_for_log("Supabase rejected the service role key (HTTP 401");
    assert!(
        line.contains("uploads paused, records kept in the spool"),
        "{line}"
    );
    // Fifty more turns, each one waking the uploader: a loop would send fifty requests.
    chats(&daemon, "more", 50);
    wait_spool(&mut ws, 51);
    let stats = fake.stats();
    assert_eq!(
        stats.requests, 1,
        "one rejected request, then a pause: {stats:?}"
    );
    assert_eq!(stats.by_status.get("401"), Some(&1));
    assert_eq!(
        daemon
            .proc
            .count_log("Supabase rejected the service role key"),
        1
    );
    let status = supabase_status(&mut ws);
    assert!(
        status["failing"]
            .as_str()
            .unwrap()
            .contains("service role key rejected (HTTP 401"),
        "{status}"
    );
    assert!(!status.to_string().contains(wrong));
    assert_key_never_shown(&daemon, wrong);
}

#[test]
fn uploads_resume_by_themselves_once_the_key_is_accepted_again() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let fake = FakePostgrest::start();
    fake.set_fault(Some(Fault::Unauthorized));
    let daemon = start_daemon(
        dir.path(),
        &llm,
        &fake,
        fake.key(),
        &[("EXAI_SUPABASE_AUTH_RETRY_SECS", "1")],
    );
    let prompts = chats(&daemon, "paused", 20);
    daemon
        .proc
        .wait_for_log("Supabase rejected the service role key (HTTP 401");
    fake.set_fault(None);
    assert_arrived_exactly_once(&fake, &prompts);
    daemon.proc.wait_for_log("Supabase uploads resumed");
    assert_key_never_shown(&daemon, fake.key());
}

#[test]
fn a_full_spool_refuses_turns_loudly_and_chats_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let fake = FakePostgrest::start();
    fake.set_fault(Some(Fault::Unavailable));
    // The smallest spool there is: room for about a hundred turns.
    let daemon = start_daemon(
        dir.path(),
        &llm,
        &fake,
        fake.key(),
        &[("EXAI_SPOOL_MAX_BYTES", "65536")],
    );
    let prompts = chats(&daemon, "full", 200);
    assert_eq!(prompts.len(), 200, "every chat was answered");
    let line = daemon
        .proc
        .wait_for_log("Supabase spool refused a chat turn");
    assert!(line.contains("spool full"), "{line}");
    assert!(line.contains("EXAI_SPOOL_MAX_BYTES"), "{line}");
    let mut ws = session(&daemon);
    let status = supabase_status(&mut ws);
    let kept = status["spool_records"].as_u64().unwrap();
    let refused = status["spool_refused"].as_u64().unwrap();
    assert_eq!(kept + refused, 200, "{status}");
    assert!(refused > 0 && kept > 0, "{status}");
    assert!(status["spool_bytes"].as_u64().unwrap() <= 65536, "{status}");
    // Logged at most every 10 s, not once per refused turn.
    assert!(daemon.proc.count_log("Supabase spool refused a chat turn") <= 2);

    fake.set_fault(None);
    wait_for("the kept turns to arrive", PATIENCE, || {
        (fake.stats().tables["messages"].rows == 2 * kept).then_some(())
    });
    wait_spool(&mut ws, 0);
}
